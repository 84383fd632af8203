"""Helpers the archive tests import by name: reference tools (GNU tar), source trees on disk,
Go's containers-storage as an oracle, and layers and sinks several modules use."""

from __future__ import annotations

import hashlib
import os
import random
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
from containers_storage.archive import ApplyResult, apply_layer

from tests.archive.manifest import Manifest
from tests.store.helpers import go_argv
from tests.tars import MTIME, TarBuilder


def run(*cmd: str | os.PathLike[str], stdin: bytes | None = None) -> bytes:
    """Run a reference tool; fail the test with its stderr if it fails."""
    argv = [os.fspath(c) for c in cmd]
    proc = subprocess.run(argv, input=stdin, capture_output=True, check=False)
    if proc.returncode != 0:
        pytest.fail(f"{argv} exited {proc.returncode}: {proc.stderr.decode(errors='replace')}")
    return proc.stdout


def apply(source: Any, target: Path, **kwargs: Any) -> ApplyResult:
    """apply_layer onto ``target`` (created if missing)."""
    target.mkdir(parents=True, exist_ok=True)
    return apply_layer(source, os.fspath(target), **kwargs)


def gnu_tar_create(
    src: Path,
    out: Path,
    fmt: str,
    *,
    sparse: bool = False,
    sparse_version: str | None = None,
    xattrs: bool = False,
) -> Path:
    """``tar --format=FMT -C src -cf out .`` (members sorted by name)."""
    args = ["tar", f"--format={fmt}", "--sort=name"]
    if sparse:
        args.append("--sparse")
    if sparse_version:
        args.append(f"--sparse-version={sparse_version}")
    if xattrs:
        args += ["--xattrs", "--xattrs-include=*"]
    run(*args, "-C", src, "-cf", out, ".")
    return out


def pseudo_random(n: int, seed: int = 1) -> bytes:
    return random.Random(seed).randbytes(n)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class TreeBuilder:
    """Creates a source tree on disk; :meth:`finish` sets every mtime, deepest paths first.

    Owners are set before modes (chown clears setuid/setgid), xattrs last (chown clears
    security.capability).
    """

    def __init__(self, root: Path, *, subsecond: bool = False) -> None:
        self.root = root
        root.mkdir(parents=True)
        self.subsecond = subsecond
        self.paths: list[str] = ["."]

    def _path(self, rel: str) -> Path:
        self.paths.append(rel)
        return self.root / rel

    def _meta(
        self,
        path: Path,
        mode: int | None,
        owner: tuple[int, int] | None,
        xattrs: dict[str, bytes] | None,
    ) -> None:
        if owner is not None:
            os.chown(path, *owner, follow_symlinks=False)
        if mode is not None:
            os.chmod(path, mode)
        for name, value in (xattrs or {}).items():
            os.setxattr(path, name, value, follow_symlinks=False)

    def dir(
        self,
        rel: str,
        mode: int = 0o755,
        owner: tuple[int, int] | None = None,
        xattrs: dict[str, bytes] | None = None,
    ) -> None:
        path = self._path(rel)
        path.mkdir()
        self._meta(path, mode, owner, xattrs)

    def file(
        self,
        rel: str,
        data: bytes = b"",
        mode: int = 0o644,
        owner: tuple[int, int] | None = None,
        xattrs: dict[str, bytes] | None = None,
    ) -> None:
        path = self._path(rel)
        path.write_bytes(data)
        self._meta(path, mode, owner, xattrs)

    def symlink(self, rel: str, target: str, owner: tuple[int, int] | None = None) -> None:
        path = self._path(rel)
        os.symlink(target, path)
        self._meta(path, None, owner, None)

    def hardlink(self, rel: str, existing: str) -> None:
        os.link(self.root / existing, self._path(rel))

    def node(self, rel: str, kind: int, mode: int, device: int = 0) -> None:
        path = self._path(rel)
        os.mknod(path, kind | mode, device)
        os.chmod(path, mode)

    def sparse(self, rel: str, size: int, chunks: list[tuple[int, bytes]]) -> None:
        path = self._path(rel)
        with open(path, "wb") as f:
            for offset, data in chunks:
                f.seek(offset)
                f.write(data)
            f.truncate(size)

    def finish(self) -> None:
        for i, rel in sorted(enumerate(self.paths), key=lambda p: -p[1].count("/")):
            ns = (MTIME + 1000 * i) * 10**9 + ((i * 7919 + 123) % 10**9 if self.subsecond else 0)
            if rel == ".":
                continue
            os.utime(self.root / rel, ns=(ns, ns), follow_symlinks=False)
        os.chmod(self.root, 0o755)
        os.utime(self.root, ns=(MTIME * 10**9, MTIME * 10**9))


def populate_common(b: TreeBuilder, *, devices: bool = True) -> None:
    """Regular files, dirs, symlinks, hard links, odd owners and modes (and devices)."""
    b.dir("d")
    b.file("d/file.txt", b"hello\n" * 100)
    b.file("d/empty")
    b.file("d/sp\u00e4ce name \u00fc.txt", b"unicode name")
    b.file("big.bin", pseudo_random(300_000))
    b.dir("d/sub", mode=0o700, owner=(42, 43))
    b.file("d/sub/owned", b"owned", owner=(1234, 5678))
    b.file("suid", b"#!/bin/sh\n", mode=0o4755, owner=(1234, 5678))
    b.file("sgid", b"x", mode=0o2755, owner=(0, 99))
    b.file("private", b"secret", mode=0o600)
    b.file("none", b"nobody", mode=0o000)
    b.dir("sticky", mode=0o1777)
    b.file("sticky/inner", b"i")
    b.dir("sgid_dir", mode=0o2755, owner=(0, 99))
    b.dir("sgid_dir/lowerdir")
    b.file("sgid_dir/lowerdir/old", b"old")
    b.dir("locked", mode=0o000)
    b.file("locked/inner", b"in a 0000 dir")
    b.symlink("abs_link", "/etc/passwd")
    b.symlink("rel_link", "d/file.txt")
    b.symlink("dangling", "no/such/target")
    b.symlink("dir_link", "d", owner=(7, 8))
    b.hardlink("hard", "d/file.txt")
    b.hardlink("d/sub/hard2", "big.bin")
    if devices:
        b.dir("dev")
        b.node("dev/char", stat.S_IFCHR, 0o666, os.makedev(1, 3))
        b.node("dev/block", stat.S_IFBLK, 0o660, os.makedev(259, 70000))
        b.node("dev/fifo", stat.S_IFIFO, 0o620)


CAPABILITY = bytes.fromhex("0100000200100000000000000000000000000000")  # cap_net_admin=ep


SPARSE_FILES: dict[str, tuple[int, list[tuple[int, bytes]]]] = {
    # trailing hole
    "holes": (8 << 20, [(0, b"A" * 5000), (1 << 20, b"B" * 70_000), (5 << 20, b"C" * 10)]),
    # data at the very end
    "tail": (4 << 20, [(3 << 20, b"D" * 4096), ((4 << 20) - 100, b"E" * 100)]),
    # nothing but a hole
    "empty_hole": (4 << 20, []),
}


#: GNU tar's sparse encodings, as (``--format``, ``--sparse-version``) test parameters.
sparse_formats = pytest.mark.parametrize(
    ("fmt", "version"),
    [("gnu", None), ("pax", "0.0"), ("pax", "0.1"), ("pax", "1.0")],
    ids=["gnu-S", "pax-0.0", "pax-0.1", "pax-1.0"],
)


def sparse_tree(root: Path) -> TreeBuilder:
    """A tree with :data:`SPARSE_FILES` and a dense file under ``s/``, left open for more
    (call ``finish()``)."""
    b = TreeBuilder(root)
    b.dir("s")
    for name, (size, chunks) in SPARSE_FILES.items():
        b.sparse(f"s/{name}", size, chunks)
    b.file("s/dense", pseudo_random(20_000))
    return b


class GoStore:
    """A store driven by Go's containers-storage CLI (vfs; subclasses pick another driver)."""

    driver = "vfs"

    def __init__(self, base: Path) -> None:
        self.graph = base / "graph"
        self.runroot = base / "run"

    def argv(self, *args: str | os.PathLike[str]) -> list[str]:
        """The Go CLI's command line for ``args`` on this store."""
        return go_argv((self.graph, self.runroot), self.driver, *args)

    def cli(self, *args: str | os.PathLike[str]) -> str:
        """Run the Go CLI; fail the test if it fails; its output, stripped."""
        argv = self.argv(*args)
        proc = subprocess.run(argv, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            pytest.fail(f"{argv} exited {proc.returncode}: {proc.stderr}")
        return proc.stdout.strip()

    def create_layer(self, parent: str | None = None) -> str:
        out = self.cli("create-layer", *([parent] if parent else []))
        layer_id = out.split()[-1]
        assert len(layer_id) == 64, out
        return layer_id

    def applydiff(self, archive: Path, layer_id: str) -> None:
        self.cli("applydiff", "-f", archive, layer_id)

    def layer_dir(self, layer_id: str) -> Path:
        return self.graph / "vfs" / "dir" / layer_id


class GoOverlayStore(GoStore):
    """An overlay store driven by Go's CLI (native diff: ``Native Overlay Diff: true``)."""

    driver = "overlay"

    def diff_dir(self, layer: str) -> Path:
        return self.graph / "overlay" / layer / "diff"

    def lowers(self, layer: str) -> list[Path]:
        """The lower layers' diff directories, nearest first (Go's getLowerDiffPaths)."""
        lower = self.graph / "overlay" / layer / "lower"
        if not lower.exists():
            return []
        links = [p for p in lower.read_text().strip().split(":") if p]
        return [(self.graph / "overlay" / p).resolve() for p in links]

    def close(self) -> None:
        """Shut the driver down; Go bind-mounts its overlay home on itself: unmount what
        is left under the store."""
        if self.graph.exists():
            subprocess.run(self.argv("shutdown"), capture_output=True, check=False)
        base = os.fspath(self.graph.parent)
        mountinfo = Path("/proc/self/mountinfo").read_text().splitlines()
        for point in reversed([line.split()[4] for line in mountinfo]):
            if point == base or point.startswith(base + "/"):
                subprocess.run(["umount", "-l", point], capture_output=True, check=False)


def child_layer(big_bin_mtime: int) -> bytes:
    """Whiteouts, an opaque dir, and replacements over the tree of populate_common.

    The hard link to the parent's big.bin carries big.bin's own mtime, as real tars do
    (test_go_hardlink_header_mtime covers a link header whose mtime differs).
    """
    t = TarBuilder(uid=0)
    t.dir("./", mtime=MTIME + 50)
    t.file(".wh.private")
    t.file(".wh.locked")  # a 0000 directory with content
    t.dir("d", mtime=MTIME + 51)
    t.file("d/.wh.empty")
    t.file("d/file.txt", b"replaced: hard keeps the old inode\n")
    t.dir("d/sub", mode=0o750, mtime=MTIME + 52)  # merged: content kept, metadata changed
    t.dir("sticky", mode=0o1777, mtime=MTIME + 53)
    t.file("sticky/.wh..wh..opq")
    t.file("sticky/new", b"new")
    t.dir("sgid_dir", mode=0o2755, gid=99, mtime=MTIME + 54)
    t.dir("sgid_dir/lowerdir", mtime=MTIME + 55)
    t.file("sgid_dir/lowerdir/new", b"new")
    t.file("sgid_dir/.wh..wh..opq")  # marker after the entries it must keep
    t.dir("dir_link", mtime=MTIME + 56)  # a symlink in the parent becomes a directory
    t.file("dir_link/f", b"f")
    t.file("rel_link", b"a symlink became a file")
    t.dir("suid", mtime=MTIME + 57)  # a file became a directory
    t.file("suid/x", b"x")
    t.symlink("sgid", "d")  # a file became a symlink
    t.dir("newdir", mtime=MTIME + 58)
    t.file("newdir/f", b"xattrs", pax={"SCHILY.xattr.user.note": "from the child"})
    t.hardlink("newhard", "big.bin", mtime=big_bin_mtime)
    t.dir("dev", mtime=MTIME + 59)
    t.file("dev/.wh.char")
    return t.getvalue()


def without_root_mtime(m: Manifest) -> Manifest:
    """The one documented exclusion from comparisons with Go: the layer root's mtime.

    Go's chrootarchive makes a ``temp-storage-extract*`` directory in the layer root and
    removes it after UnpackLayer restored directory times, so Go leaves the root's mtime at
    the time of the apply, whatever the tar's ``./`` entry says (we keep the tar's).
    """
    m["."] = {k: v for k, v in m["."].items() if k != "mtime_ns"}
    return m


class WriteOnly:
    """A sink with nothing but ``write`` (no ``fileno``, no ``flush``)."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.chunks.append(bytes(data))
        return len(data)
