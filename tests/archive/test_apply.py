"""apply_layer: extraction checked against GNU tar and Go containers/storage, and the contract.

References:

* GNU tar extracts the same archives (``tar --xattrs --xattrs-include='*' --numeric-owner
  -xpf``); the manifests of the two trees (see ``manifest.py``) must be equal.
* Debian's Go ``containers-storage`` (GO_CONTAINERS_STORAGE, /usr/bin; the
  ``containers-storage`` on PATH is ours) applies a parent and a child layer into a vfs store;
  our extraction of the same layers must give the same trees.
* Digests and sizes are checked against ``sha256sum`` and hashlib, decompression against the
  gzip/bzip2/xz/zstd command-line tools, tar-split against the exact bytes of the tar.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import stat
import struct
import tarfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from containers_storage.archive import ApplyResult, apply_layer
from containers_storage.errors import ArchiveError, UnsafePathError

from tests.archive.helpers import (
    CAPABILITY,
    SPARSE_FILES,
    GoOverlayStore,
    GoStore,
    TreeBuilder,
    apply,
    child_layer,
    gnu_tar_create,
    populate_common,
    pseudo_random,
    run,
    sha256_hex,
    sparse_formats,
    sparse_tree,
    without_root_mtime,
)
from tests.archive.manifest import (
    Manifest,
    assert_same_tree,
    crc64_iso,
    manifest,
    raw_typeflags,
)
from tests.helpers import HANG_GUARD
from tests.tars import MTIME, TarBuilder

# --------------------------------------------------------------------------------------
# helpers


def gnu_tar_extract(archive: Path, dest: Path) -> Path:
    """The reference extraction."""
    dest.mkdir(parents=True)
    run("tar", "--xattrs", "--xattrs-include=*", "--numeric-owner", "-xpf", archive, "-C", dest)
    return dest


def compare_with_gnu_tar(
    archive: Path, tmp: Path, *, include_root: bool = True, **kwargs: Any
) -> tuple[ApplyResult, Path, Manifest]:
    """Extract ``archive`` with apply_layer and with GNU tar; the trees must be equal."""
    ours = tmp / "ours"
    res = apply(archive, ours, **kwargs)
    ref = gnu_tar_extract(archive, tmp / "gnu")
    got = manifest(ours, include_root=include_root)
    assert_same_tree(got, manifest(ref, include_root=include_root), "apply_layer vs GNU tar")
    return res, ours, got


def assert_hardlinked(root: Path, a: str, b: str) -> None:
    sa, sb = os.lstat(root / a), os.lstat(root / b)
    assert sa.st_ino == sb.st_ino, f"{a} and {b} are not one inode"
    assert sa.st_nlink == sb.st_nlink == 2


# --------------------------------------------------------------------------------------
# 1. format coverage against GNU tar


@pytest.mark.root
def test_ustar(tmp_path: Path) -> None:
    b = TreeBuilder(tmp_path / "src")
    populate_common(b)
    # 146 characters: stored split between ustar's prefix and name fields
    b.dir("p" * 70)
    b.dir("p" * 70 + "/" + "q" * 70)
    b.file("p" * 70 + "/" + "q" * 70 + "/file", b"prefix split")
    b.finish()
    archive = gnu_tar_create(b.root, tmp_path / "l.tar", "ustar")
    flags = {flag for _, flag in raw_typeflags(archive.read_bytes())}
    assert flags <= {bytes([c]) for c in b"0123456"}, flags
    res, ours, _ = compare_with_gnu_tar(archive, tmp_path)
    assert_hardlinked(ours, "d/file.txt", "hard")
    assert res.compression == "none"


@pytest.mark.root
def test_gnu_long_names_and_big_ids(tmp_path: Path) -> None:
    b = TreeBuilder(tmp_path / "src")
    populate_common(b)
    long_dir = "/".join(c * 90 for c in "abc")
    b.dir("a" * 90)
    b.dir("a" * 90 + "/" + "b" * 90)
    b.dir(long_dir, owner=(3_000_000, 3_000_001))
    b.file(long_dir + "/" + "f" * 120, b"deep", owner=(3_000_000, 3_000_001))
    b.symlink("long_target", "t" * 150 + "/" + "u" * 100)
    b.hardlink("zz_hard_to_long", long_dir + "/" + "f" * 120)
    b.finish()
    archive = gnu_tar_create(b.root, tmp_path / "l.tar", "gnu")
    flags = [flag for _, flag in raw_typeflags(archive.read_bytes())]
    assert b"L" in flags and b"K" in flags, "GNU tar did not write L/K headers"
    res, ours, got = compare_with_gnu_tar(archive, tmp_path)
    assert got[long_dir]["uid"] == 3_000_000 and got[long_dir]["gid"] == 3_000_001
    assert os.readlink(ours / "long_target") == "t" * 150 + "/" + "u" * 100
    assert_hardlinked(ours, long_dir + "/" + "f" * 120, "zz_hard_to_long")
    assert_hardlinked(ours, "d/file.txt", "hard")
    assert 3_000_000 in res.uid_set


@pytest.mark.root
@sparse_formats
def test_sparse(tmp_path: Path, fmt: str, version: str | None) -> None:
    b = sparse_tree(tmp_path / "src")
    b.finish()
    archive = gnu_tar_create(b.root, tmp_path / "l.tar", fmt, sparse=True, sparse_version=version)
    if fmt == "gnu":
        with tarfile.open(archive) as tf:
            assert tf.getmember("./s/holes").type == tarfile.GNUTYPE_SPARSE
    _, ours, _ = compare_with_gnu_tar(archive, tmp_path)
    for name, (size, _chunks) in SPARSE_FILES.items():
        st = os.stat(ours / "s" / name)
        assert st.st_size == size
        assert st.st_blocks * 512 < size, f"s/{name} was not extracted sparse"


@pytest.mark.root
def test_pax(tmp_path: Path) -> None:
    b = TreeBuilder(tmp_path / "src", subsecond=True)
    populate_common(b)
    long_dir = "/".join(c * 120 for c in "xyz")  # over 255: needs a PAX path record
    b.dir("x" * 120)
    b.dir("x" * 120 + "/" + "y" * 120)
    b.dir(long_dir, xattrs={"user.dir": b"on a directory"})
    b.file(long_dir + "/file", b"deep")
    b.symlink("long_target", "/".join(["target"] * 50))
    b.hardlink("zz_hard_to_long", long_dir + "/file")
    b.file("big_ids", b"ids", owner=(3_000_000, 3_000_001))
    b.dir("big_ids_dir", owner=(3_000_002, 3_000_003))
    b.file(
        "capbin",
        b"\x7fELF",
        mode=0o755,
        xattrs={
            "security.capability": CAPABILITY,
            "user.comment": b"a comment",
            "user.binary": bytes(range(256)),
            "trusted.note": b"root only",
        },
    )
    b.dir("\u00e9t\u00e9")
    b.file("\u00e9t\u00e9/\u65e5\u672c\u8a9e", b"non-ASCII name")
    b.finish()
    archive = gnu_tar_create(b.root, tmp_path / "l.tar", "pax", xattrs=True)
    data = archive.read_bytes()
    for needle in (b"SCHILY.xattr.security.capability", b"uid=3000000", b" path="):
        assert needle in data, f"GNU tar wrote no {needle!r} record"
    res, ours, got = compare_with_gnu_tar(archive, tmp_path)
    assert got["capbin"]["xattrs"] == {
        "security.capability": CAPABILITY.hex(),
        "trusted.note": b"root only".hex(),
        "user.binary": bytes(range(256)).hex(),
        "user.comment": b"a comment".hex(),
    }
    assert os.stat(ours / "big_ids").st_mtime_ns % 10**9 != 0, "sub-second mtime lost"
    assert_hardlinked(ours, long_dir + "/file", "zz_hard_to_long")
    assert res.uid_set[-1] == 3_000_002 and res.gid_set[-1] == 3_000_003


@pytest.mark.root
def test_v7(tmp_path: Path) -> None:
    b = TreeBuilder(tmp_path / "src")
    populate_common(b, devices=False)
    b.finish()
    archive = gnu_tar_create(b.root, tmp_path / "l.tar", "v7")
    _, ours, _ = compare_with_gnu_tar(archive, tmp_path)
    assert_hardlinked(ours, "d/file.txt", "hard")


@pytest.mark.root
def test_devices_and_modes(tmp_path: Path) -> None:
    """Devices, FIFOs, setuid/setgid/sticky and 0000 modes survive, also under odd owners."""
    b = TreeBuilder(tmp_path / "src")
    populate_common(b)
    b.finish()
    archive = gnu_tar_create(b.root, tmp_path / "l.tar", "gnu")
    _, ours, got = compare_with_gnu_tar(archive, tmp_path)
    want = {
        "suid": ("file", "4755", 1234, 5678),
        "sgid": ("file", "2755", 0, 99),
        "sticky": ("dir", "1777", 0, 0),
        "sgid_dir": ("dir", "2755", 0, 99),
        "private": ("file", "0600", 0, 0),
        "none": ("file", "0000", 0, 0),
        "locked": ("dir", "0000", 0, 0),
        "d/sub": ("dir", "0700", 42, 43),
        "dir_link": ("symlink", "0777", 7, 8),
        "dev/char": ("char", "0666", 0, 0),
        "dev/block": ("block", "0660", 0, 0),
        "dev/fifo": ("fifo", "0620", 0, 0),
    }
    for path, (kind, mode, uid, gid) in want.items():
        e = got[path]
        assert (e["type"], e["mode"], e["uid"], e["gid"]) == (kind, mode, uid, gid), path
    assert (got["dev/block"]["major"], got["dev/block"]["minor"]) == (259, 70000)
    assert (got["dev/char"]["major"], got["dev/char"]["minor"]) == (1, 3)
    assert (ours / "locked" / "inner").read_bytes() == b"in a 0000 dir"


@pytest.mark.root
@pytest.mark.parametrize(
    "fmt",
    [tarfile.GNU_FORMAT, tarfile.PAX_FORMAT, tarfile.USTAR_FORMAT],
    ids=["gnu", "pax", "ustar"],
)
def test_python_tarfile_archives(tmp_path: Path, fmt: int) -> None:
    """Archives from Python's tarfile, with orders GNU tar's own output never has."""
    t = TarBuilder(fmt, uid=0)
    t.dir("./", mtime=MTIME + 1)
    t.file("late/inner", b"written before its directory's entry")
    t.dir("late/", mode=0o750, mtime=MTIME + 5)
    t.file("named", b"numeric owner wins", uid=1234, gid=5678, uname="root")
    t.file("suid_other", b"x", mode=0o4755, uid=1234, gid=5678)
    t.file("dup", b"first")
    t.file("dup", b"second, replaces the first")
    t.file("swap", b"file first")
    t.symlink("swap", "dup")
    t.dir("was_dir")
    t.file("was_dir", b"a file replaces an empty directory")
    t.file("was_file", b"f")
    t.dir("was_file", mode=0o700)
    t.hardlink("hl", "named")
    t.symlink("sl", "named", uid=7, gid=8)
    t.chardev("null", 1, 3, mode=0o666)
    t.fifo("fifo", mode=0o600)
    if fmt == tarfile.PAX_FORMAT:
        t.file("subsec", b"s", mtime=MTIME + 0.25)
        t.file("bigid", b"b", uid=3_000_000, gid=4_000_000)
        t.file("xattr", b"x", pax={"SCHILY.xattr.user.k": "value"})
    if fmt != tarfile.USTAR_FORMAT:
        t.file("n" * 150, b"long name")
    archive = t.write(tmp_path / "l.tar")
    _, ours, got = compare_with_gnu_tar(archive, tmp_path)
    assert (ours / "dup").read_bytes() == b"second, replaces the first"
    assert got["named"]["uid"] == 1234
    assert got["late"]["mtime_ns"] == (MTIME + 5) * 10**9
    assert_hardlinked(ours, "named", "hl")
    if fmt == tarfile.PAX_FORMAT:
        assert got["subsec"]["mtime_ns"] == MTIME * 10**9 + 250_000_000
        assert got["xattr"]["xattrs"] == {"user.k": b"value".hex()}


@pytest.mark.root
def test_implicit_parent_directories(tmp_path: Path) -> None:
    """Members whose parents have no entry: parents are made 0755, owned by the applier."""
    archive = TarBuilder(uid=1234).file("a/b/c/file", b"x", mode=0o600).write(tmp_path / "l.tar")
    apply(archive, tmp_path / "t")
    for d in ("a", "a/b", "a/b/c"):
        st = os.lstat(tmp_path / "t" / d)
        assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o755, d
        assert (st.st_uid, st.st_gid) == (0, 0), d
    st = os.lstat(tmp_path / "t/a/b/c/file")
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_mtime_ns) == (0o600, 1234, MTIME * 10**9)


# --------------------------------------------------------------------------------------
# 2. compression


def sample_layer() -> bytes:
    """A small layer owned by the running user: files, dirs, a symlink, a hard link."""
    t = TarBuilder()
    t.dir("./", mtime=MTIME + 10)
    t.dir("etc", mtime=MTIME + 11)
    t.file("etc/config", b"key = value\n" * 2000, mtime=MTIME + 12)
    t.hardlink("etc/config.hard", "etc/config")
    t.dir("bin", mtime=MTIME + 13)
    t.file("bin/tool", b"\x7fELF" + pseudo_random(50_000, 2), mode=0o755)
    t.symlink("bin/alias", "tool")
    t.dir("data", mode=0o700)
    t.file("data/random.bin", pseudo_random(1_500_000, 3))
    t.file("data/zeros", bytes(200_000))
    t.file("empty")
    return t.getvalue()


def gzip(data: bytes) -> bytes:
    return run("gzip", "-c", "-n", stdin=data)


def zstd(data: bytes) -> bytes:
    return run("zstd", "-q", "-c", stdin=data)


def skippable_frame(payload: bytes) -> bytes:
    return struct.pack("<II", 0x184D2A50, len(payload)) + payload


def thirds(data: bytes) -> list[bytes]:
    a, b = len(data) // 3 + 7, 2 * len(data) // 3 + 13  # not on 512-byte boundaries
    return [data[:a], data[a:b], data[b:]]


def gzip_two_members(data: bytes) -> bytes:
    """One tar stream split at an odd offset, each half its own gzip member."""
    cut = len(data) // 2 + 101
    return gzip(data[:cut]) + gzip(data[cut:])


COMPRESSORS: dict[str, tuple[str, Callable[[bytes], bytes], list[str]]] = {
    # name: (expected compression field, compress, command that decompresses it)
    "none": ("none", lambda d: d, ["cat"]),
    "gzip": ("gzip", gzip, ["gzip", "-dc"]),
    "gzip-multimember": ("gzip", gzip_two_members, ["gzip", "-dc"]),
    "bzip2": ("bzip2", lambda d: run("bzip2", "-c", stdin=d), ["bzip2", "-dc"]),
    "xz": ("xz", lambda d: run("xz", "-c", stdin=d), ["xz", "-dc"]),
    "zstd": ("zstd", zstd, ["zstd", "-dc"]),
    "zstd-multiframe": ("zstd", lambda d: b"".join(map(zstd, thirds(d))), ["zstd", "-dc"]),
    "zstd-skippable": (
        "zstd",
        lambda d: skippable_frame(b"not a tar: skip me" * 10) + zstd(d),
        ["zstd", "-dc"],
    ),
}


@pytest.mark.parametrize("name", list(COMPRESSORS))
def test_compression(tmp_path: Path, name: str) -> None:
    kind, compress, decompress = COMPRESSORS[name]
    tar = sample_layer()
    blob = compress(tar)
    assert run(*decompress, stdin=blob) == tar, "reference tool does not decompress it"
    layer = tmp_path / "layer"
    layer.write_bytes(blob)
    res = apply(layer, tmp_path / "t")
    assert res.compression == kind
    assert res.compressed_digest == "sha256:" + sha256_hex(blob)
    assert res.compressed_size == len(blob)
    assert res.uncompressed_digest == "sha256:" + sha256_hex(tar)
    assert res.uncompressed_size == len(tar)
    plain = tmp_path / "plain.tar"
    plain.write_bytes(tar)
    ref = gnu_tar_extract(plain, tmp_path / "gnu")
    assert_same_tree(manifest(tmp_path / "t"), manifest(ref), f"{name} layer vs GNU tar")


# --------------------------------------------------------------------------------------
# 3. digests and sizes against sha256sum


def sha256sum(cmd: str) -> str:
    out = run("sh", "-c", cmd + " | sha256sum").decode()
    return "sha256:" + out.split()[0]


@pytest.mark.parametrize(("suffix", "tool"), [("gz", "gzip"), ("zst", "zstd"), ("xz", "xz")])
def test_digests_match_sha256sum(tmp_path: Path, suffix: str, tool: str) -> None:
    src = tmp_path / "src"
    (src / "dir").mkdir(parents=True)
    (src / "dir" / "f").write_bytes(pseudo_random(123_457, 9))
    (src / "g").write_text("text\n" * 999)
    plain = gnu_tar_create(src, tmp_path / "l.tar", "pax")
    if tool == "gzip":
        run("gzip", "-k", "-n", plain)
    else:
        run(tool, "-k", "-q", plain)
    layer = tmp_path / f"l.tar.{suffix}"
    res = apply(layer, tmp_path / "t")
    assert res.compressed_digest == sha256sum(f"cat '{layer}'")
    assert res.uncompressed_digest == sha256sum(f"{tool} -dc '{layer}'")
    assert res.compressed_size == int(run("sh", "-c", f"wc -c < '{layer}'"))
    assert res.uncompressed_size == int(run("sh", "-c", f"{tool} -dc '{layer}' | wc -c"))


# --------------------------------------------------------------------------------------
# 4. tar-split


def test_crc64_helper_matches_go_golden_values() -> None:
    """Go's crc64 golden values (hash/crc64 crc64_test.go, ISO column)."""
    assert crc64_iso(b"") == 0
    assert crc64_iso(b"a") == 0x3420000000000000
    assert crc64_iso(b"abc") == 0x3776C42000000000
    assert crc64_iso(b"abcdef") == 0x3002D36776C42000


def reassemble(tar_split: bytes | None, root: Path) -> tuple[bytes, list[dict[str, Any]]]:
    """Rebuild the tar from tar-split NDJSON and the extracted files, checking each entry."""
    assert tar_split is not None, "no tar_split in the result"
    out = bytearray()
    files: list[dict[str, Any]] = []
    lines = [line for line in tar_split.split(b"\n") if line.strip()]
    assert lines, "empty tar_split"
    for position, line in enumerate(lines):
        entry = json.loads(line)
        assert entry["position"] == position, entry
        if entry["type"] == 2:
            out += base64.b64decode(entry["payload"])
        elif entry["type"] == 1:
            files.append(entry)
            size = entry.get("size", 0)
            if size == 0:
                assert "size" not in entry, f"size 0 not omitted: {entry}"
                assert entry.get("payload") is None, entry
                continue
            rel = os.path.normpath(entry["name"].lstrip("/"))
            content = (root / rel).read_bytes()
            assert len(content) == size, entry
            crc = crc64_iso(content).to_bytes(8, "big")
            assert base64.b64decode(entry["payload"]) == crc, f"bad CRC-64: {entry}"
            out += content
        else:
            pytest.fail(f"unknown tar-split entry type: {entry}")
    return bytes(out), files


@pytest.mark.parametrize(
    ("fmt", "compressed"),
    [("gnu", False), ("pax", False), ("ustar", False), ("pax", True)],
    ids=["gnu", "pax", "ustar", "pax-gzip"],
)
def test_tar_split_reproduces_the_tar(tmp_path: Path, fmt: str, compressed: bool) -> None:
    b = TreeBuilder(tmp_path / "src", subsecond=True)
    b.dir("d")
    for size in (0, 1, 511, 512, 513, 10_000):
        b.file(f"d/f{size}", pseudo_random(size, size))
    b.symlink("link", "d/f1")
    b.hardlink("hard", "d/f513")
    if fmt != "ustar":
        b.dir("l" * 99)
        b.file("l" * 99 + "/" + "m" * 99, b"long name content")
        b.file("x", b"xattr", xattrs={"user.a": b"b"})
    b.finish()
    plain = gnu_tar_create(b.root, tmp_path / "l.tar", fmt, xattrs=fmt != "ustar")
    tar = plain.read_bytes()
    layer = tmp_path / "l.tar.gz"
    layer.write_bytes(gzip(tar) if compressed else tar)
    res = apply(layer, tmp_path / "t", keep_tar_split=True)
    rebuilt, files = reassemble(res.tar_split, tmp_path / "t")
    assert rebuilt == tar
    with tarfile.open(plain) as tf:
        members = tf.getmembers()
    assert [f["name"].rstrip("/") for f in files] == [m.name for m in members]
    assert res.entries == len(members)


def test_tar_split_of_python_tarfile_layer(tmp_path: Path) -> None:
    """Record padding of tarfile (to 10240 bytes) and PAX headers are raw segments."""
    tar = sample_layer()
    res = apply(io.BytesIO(tar), tmp_path / "t", keep_tar_split=True)
    rebuilt, files = reassemble(res.tar_split, tmp_path / "t")
    assert rebuilt == tar
    hard = next(f for f in files if f["name"] == "etc/config.hard")
    assert "size" not in hard and hard.get("payload") is None


# --------------------------------------------------------------------------------------
# 5. sources and progress


class GeneratorReader:
    """A raw reader with only read(): short reads of odd sizes from a generator."""

    def __init__(self, data: bytes) -> None:
        self._chunks = self._generate(data)
        self._pending = b""

    @staticmethod
    def _generate(data: bytes) -> Iterator[bytes]:
        sizes = [1, 7919, 3, 65536, 511, 100_003]
        pos = 0
        i = 0
        while pos < len(data):
            n = sizes[i % len(sizes)]
            yield data[pos : pos + n]
            pos += n
            i += 1

    def read(self, size: int = -1) -> bytes:
        if not self._pending:
            self._pending = next(self._chunks, b"")
        if size is None or size < 0:
            size = len(self._pending)
        out, self._pending = self._pending[:size], self._pending[size:]
        return out


@pytest.fixture
def gz_sample(tmp_path: Path) -> tuple[Path, bytes, Manifest]:
    """(path of a gzip layer, its bytes, manifest of GNU tar's extraction)."""
    tar = sample_layer()
    plain = tmp_path / "sample.tar"
    plain.write_bytes(tar)
    ref = manifest(gnu_tar_extract(plain, tmp_path / "gnu"))
    blob = gzip(tar)
    layer = tmp_path / "sample.tar.gz"
    layer.write_bytes(blob)
    return layer, blob, ref


SOURCES = ["str", "pathlib", "fd", "pipe-fd", "fileobj", "bytesio", "generator-reader"]


@pytest.mark.parametrize("kind", SOURCES)
def test_sources(tmp_path: Path, gz_sample: tuple[Path, bytes, Manifest], kind: str) -> None:
    layer, blob, ref = gz_sample
    target = tmp_path / "t"
    target.mkdir()
    if kind == "str":
        res = apply_layer(str(layer), str(target))
    elif kind == "pathlib":
        res = apply_layer(layer, target)
    elif kind == "fd":
        fd = os.open(layer, os.O_RDONLY)
        try:
            res = apply_layer(fd, str(target))
            os.fstat(fd)  # the caller's descriptor stays open
        finally:
            os.close(fd)
    elif kind == "pipe-fd":
        rfd, wfd = os.pipe()

        def feed() -> None:
            with contextlib.suppress(BrokenPipeError), open(wfd, "wb") as w:
                w.write(blob)

        writer = threading.Thread(target=feed)
        writer.start()
        try:
            res = apply_layer(rfd, str(target))
        finally:
            os.close(rfd)
            writer.join(timeout=HANG_GUARD)
    elif kind == "fileobj":
        with open(layer, "rb") as f:
            res = apply_layer(f, str(target))
            assert not f.closed
    elif kind == "bytesio":
        res = apply_layer(io.BytesIO(blob), str(target))
    else:
        res = apply_layer(GeneratorReader(blob), str(target))
    assert res.compression == "gzip"
    assert res.compressed_digest == "sha256:" + sha256_hex(blob)
    assert res.compressed_size == len(blob)
    assert_same_tree(manifest(target), ref, f"{kind} source vs GNU tar")


class FailingReader:
    """Gives the first ``fail_at`` bytes of ``data``, then raises OSError."""

    def __init__(self, data: bytes, fail_at: int) -> None:
        self._data = data
        self._pos = 0
        self._fail_at = fail_at

    def read(self, size: int = -1) -> bytes:
        if self._pos >= self._fail_at:
            raise OSError("simulated read failure")
        n = self._fail_at - self._pos if size < 0 else min(size, self._fail_at - self._pos)
        out = self._data[self._pos : self._pos + n]
        self._pos += len(out)
        return out


@pytest.mark.parametrize(
    "fail_at", [0, 1536, 2000, 3072], ids=["start", "member-boundary", "mid-member", "before-end"]
)
def test_reader_failure_propagates(tmp_path: Path, fail_at: int) -> None:
    """A reader that fails makes apply_layer fail: a read error is not an end of file.

    1536 and 3072 are member boundaries (512-byte header + 1024 bytes of content each).
    """
    layer = TarBuilder().file("a", b"x" * 1000).file("b", b"y" * 1000).getvalue()
    with pytest.raises((OSError, ArchiveError)):
        apply(FailingReader(layer, fail_at), tmp_path / "t")


@pytest.mark.parametrize("kind", ["path", "generator-reader"])
def test_progress(tmp_path: Path, kind: str) -> None:
    t = TarBuilder()
    for i in range(8):
        t.file(f"f{i}", pseudo_random(1 << 20, i))
    tar = t.getvalue()
    layer = tmp_path / "l.tar"
    layer.write_bytes(tar)
    calls: list[tuple[float, int, int | None]] = []

    def progress(done: int, total: int | None) -> None:
        calls.append((time.monotonic(), done, total))

    start = time.monotonic()
    source: Any = layer if kind == "path" else GeneratorReader(tar)
    res = apply(source, tmp_path / "t", progress=progress)
    elapsed = time.monotonic() - start
    assert calls, "progress never called"
    assert calls[-1][1] == res.compressed_size == len(tar)
    dones = [c[1] for c in calls]
    assert dones == sorted(dones), f"progress went backwards: {dones}"
    assert all(total is None or total == len(tar) for _, _, total in calls)
    assert len(calls) <= 10 * elapsed + 3, f"{len(calls)} calls in {elapsed:.3f}s"


# --------------------------------------------------------------------------------------
# 6. uid_set, gid_set, entries


@pytest.mark.root
@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT], ids=["pax", "gnu"])
def test_owner_sets_and_entries(tmp_path: Path, fmt: int) -> None:
    t = TarBuilder(fmt, uid=0)
    t.dir("./", gid=0)
    t.file("a", b"a", uid=1000, gid=1001)
    t.file("b", b"b", uid=3_000_000, gid=3_000_001)
    t.symlink("c", "a", uid=5, gid=7)
    t.hardlink("c_hard", "a")
    t.dir("d", uid=0, gid=100)
    t.file("d/.wh..wh..opq", uid=4242, gid=4343)
    t.file(".wh.gone", uid=4444, gid=4545)
    t.file("n" * 120, b"long", uid=1000, gid=1001)  # an extension header, not an entry
    archive = t.write(tmp_path / "l.tar")
    flags = [flag for _, flag in raw_typeflags(archive.read_bytes())]
    assert len(flags) > 9, "no extension headers: the test would prove nothing"
    res = apply(archive, tmp_path / "t")
    assert list(res.uid_set) == [0, 5, 1000, 3_000_000]
    assert list(res.gid_set) == [0, 7, 100, 1001, 3_000_001]
    assert res.entries == 9


# --------------------------------------------------------------------------------------
# 7. whiteouts


def populate_parent(target: Path) -> None:
    """What a parent layer left in the target."""
    (target / "keep").mkdir(parents=True)
    (target / "keep" / "file").write_bytes(b"keep")
    (target / "gone_file").write_bytes(b"x")
    (target / "gone_dir" / "nested").mkdir(parents=True)
    (target / "gone_dir" / "nested" / "deep").write_bytes(b"x")
    opq = target / "opq"
    (opq / "lowerdir" / "nested").mkdir(parents=True)
    (opq / "lowerdir" / "nested" / "old").write_bytes(b"old")
    (opq / "lowerdir" / "old").write_bytes(b"old")
    (opq / "lowerfile").write_bytes(b"lower")
    (opq / "both").write_bytes(b"lower version")
    os.symlink("lowerfile", opq / "lowerlink")


def tree_paths(root: Path) -> set[str]:
    return set(manifest(root, include_root=False))


def test_vfs_whiteouts_delete(tmp_path: Path) -> None:
    target = tmp_path / "t"
    populate_parent(target)
    t = TarBuilder()
    t.dir("./", mtime=MTIME + 1)
    t.file(".wh.gone_file")
    t.file(".wh.gone_dir")
    t.file(".wh.never_existed")
    t.dir("keep", mtime=MTIME + 2)
    t.file("keep/new", b"new")
    res = apply(io.BytesIO(t.getvalue()), target)  # whiteouts="vfs" is the default
    assert tree_paths(target) >= {"keep", "keep/file", "keep/new", "opq"}
    for gone in ("gone_file", "gone_dir", ".wh.gone_file", ".wh.gone_dir", ".wh.never_existed"):
        assert not os.path.lexists(target / gone), gone
    # directory mtimes are set after the deletions too
    assert os.stat(target).st_mtime_ns == (MTIME + 1) * 10**9
    assert os.stat(target / "keep").st_mtime_ns == (MTIME + 2) * 10**9
    assert res.entries == 6


OPAQUE_ORDERS = ["marker-first", "marker-after-dir", "marker-middle", "marker-last"]


@pytest.mark.parametrize("order", OPAQUE_ORDERS)
def test_vfs_opaque_directory(tmp_path: Path, order: str) -> None:
    """Lower content of opq/ goes, this layer's stays, wherever the marker is."""
    target = tmp_path / "t"
    populate_parent(target)
    layer = [
        ("dir", "opq", b""),
        ("file", "opq/new", b"new"),
        ("dir", "opq/lowerdir", b""),
        ("file", "opq/lowerdir/newnested", b"new nested"),
        ("file", "opq/both", b"upper version"),
    ]
    marker = ("file", "opq/.wh..wh..opq", b"")
    index = {"marker-first": 0, "marker-after-dir": 1, "marker-middle": 3, "marker-last": 5}
    layer.insert(index[order], marker)
    t = TarBuilder()
    for kind, name, data in layer:
        if kind == "dir":
            t.dir(name, mtime=MTIME + 7)
        else:
            t.file(name, data)
    apply(io.BytesIO(t.getvalue()), target, whiteouts="vfs")
    assert {p for p in tree_paths(target) if p.startswith("opq")} == {
        "opq",
        "opq/new",
        "opq/both",
        "opq/lowerdir",
        "opq/lowerdir/newnested",
    }
    assert (target / "opq" / "both").read_bytes() == b"upper version"
    assert (target / "keep" / "file").exists() and (target / "gone_file").exists()
    assert os.stat(target / "opq").st_mtime_ns == (MTIME + 7) * 10**9


@pytest.mark.root
@pytest.mark.parametrize("order", ["marker-first", "marker-after-dir", "marker-last"])
def test_overlay_whiteouts(tmp_path: Path, order: str) -> None:
    target = tmp_path / "t"
    t = TarBuilder()
    t.file(".wh.top")
    t.dir("d")
    t.file("d/.wh.gone")
    marker_first = order == "marker-first"
    if marker_first:
        t.file("o/.wh..wh..opq")
    t.dir("o")
    if order == "marker-after-dir":
        t.file("o/.wh..wh..opq")
    t.file("o/new", b"new")
    if order == "marker-last":
        t.file("o/.wh..wh..opq")
    apply(io.BytesIO(t.getvalue()), target, whiteouts="overlay")
    for wh in ("top", "d/gone"):
        st = os.lstat(target / wh)
        assert stat.S_ISCHR(st.st_mode), wh
        assert st.st_rdev == os.makedev(0, 0), wh
        assert stat.S_IMODE(st.st_mode) == 0, wh  # Go: mknod(path, S_IFCHR, 0)
    assert os.getxattr(target / "o", "trusted.overlay.opaque") == b"y"
    assert "trusted.overlay.opaque" not in os.listxattr(target / "d")
    assert (target / "o" / "new").read_bytes() == b"new"
    names = tree_paths(target)
    assert not [n for n in names if ".wh." in n], names


def test_aufs_keeps_whiteout_files(tmp_path: Path) -> None:
    target = tmp_path / "t"
    populate_parent(target)
    t = TarBuilder()
    t.file(".wh.gone_file")
    t.dir("opq")
    t.file("opq/.wh..wh..opq")
    t.file("opq/new", b"new")
    apply(io.BytesIO(t.getvalue()), target, whiteouts="aufs")
    for path in (".wh.gone_file", "opq/.wh..wh..opq"):
        st = os.lstat(target / path)
        assert stat.S_ISREG(st.st_mode) and st.st_size == 0, path
    assert (target / "gone_file").exists()
    assert (target / "opq" / "lowerfile").exists()
    assert (target / "opq" / "lowerdir" / "nested" / "old").exists()


@pytest.mark.parametrize("mode", ["vfs", "overlay"])
@pytest.mark.parametrize("where", ["", "sub/"], ids=["top", "subdir"])
@pytest.mark.parametrize("name", [".wh.", ".wh..", ".wh..."])
def test_invalid_whiteout_names(tmp_path: Path, mode: str, where: str, name: str) -> None:
    if mode == "overlay" and os.geteuid() != 0:
        pytest.skip("overlay whiteouts need root")
    target = tmp_path / "layers" / "t"
    (target / "sub").mkdir(parents=True)
    (target / "sub" / "keep").write_bytes(b"k")
    (target / "keep").write_bytes(b"k")
    t = TarBuilder()
    if where:
        t.dir(where)
    t.file(where + name)
    with pytest.raises(ArchiveError):
        apply(io.BytesIO(t.getvalue()), target, whiteouts=mode)
    # nothing was removed on the way to the error
    assert (target / "keep").exists() and (target / "sub" / "keep").exists()
    assert sorted(os.listdir(tmp_path / "layers")) == ["t"]


# --------------------------------------------------------------------------------------
# 8. Go containers/storage as the oracle


@pytest.mark.gotools
@pytest.mark.root
def test_go_containers_storage_parent_and_child(tmp_path: Path) -> None:
    b = TreeBuilder(tmp_path / "src")
    populate_common(b)
    # Go's vfs driver copies a parent into its child keeping only security.capability and
    # trusted.overlay.opaque of the xattrs, so the parent gets no user.* xattrs here.
    b.file("capbin", b"\x7fELF", mode=0o755, xattrs={"security.capability": CAPABILITY})
    b.finish()
    tar_a = gnu_tar_create(b.root, tmp_path / "a.tar", "pax", xattrs=True)
    tar_b = tmp_path / "b.tar"
    tar_b.write_bytes(child_layer(os.lstat(b.root / "big.bin").st_mtime_ns // 10**9))

    go = GoStore(tmp_path / "go")
    parent = go.create_layer()
    go.applydiff(tar_a, parent)
    child = go.create_layer(parent)
    go.applydiff(tar_b, child)

    x = tmp_path / "x"
    apply(tar_a, x)
    assert_same_tree(
        without_root_mtime(manifest(x)),
        without_root_mtime(manifest(go.layer_dir(parent))),
        "parent layer vs Go",
    )
    y = tmp_path / "y"
    run("cp", "-a", x, y)
    res = apply(tar_b, y, whiteouts="vfs")
    go_child = without_root_mtime(manifest(go.layer_dir(child)))
    assert_same_tree(without_root_mtime(manifest(y)), go_child, "child layer vs Go")
    assert "sgid_dir/lowerdir/old" not in go_child  # the oracle did what the test means
    with tarfile.open(tar_b) as tf:
        assert res.entries == len(tf.getmembers())


@pytest.mark.gotools
@pytest.mark.root
def test_go_hardlink_header_mtime(tmp_path: Path) -> None:
    """A hard link whose header mtime differs from its target's, compared with Go.

    Go's createTarFile ends with ``Chtimes(path, hdr.AccessTime, hdr.ModTime)`` for a
    TypeLink member too, so the shared inode takes the link header's mtime.
    """
    t = TarBuilder(uid=0)
    t.dir("./")
    t.file("f", b"content", mtime=MTIME)
    t.hardlink("h", "f", mtime=MTIME + 99)
    archive = t.write(tmp_path / "l.tar")
    go = GoStore(tmp_path / "go")
    layer = go.create_layer()
    go.applydiff(archive, layer)
    apply(archive, tmp_path / "ours")
    assert_same_tree(
        without_root_mtime(manifest(tmp_path / "ours")),
        without_root_mtime(manifest(go.layer_dir(layer))),
        "hard link mtime vs Go",
    )


def implicit_dirs_layer() -> bytes:
    """Directories the tar does not list, under setgid and plain parents, and empty
    ``SCHILY.xattr.*`` records beside set ones."""
    t = TarBuilder(uid=0)
    t.dir("./")
    t.dir("s", mode=0o2775, gid=99)  # setgid: made before its implicit children
    t.file("s/a/b/f", b"x", gid=5)  # s/a and s/a/b are implicit
    t.dir("s/plain", mode=0o755, gid=6)  # explicit, not setgid, in a setgid parent
    t.file("s/plain/c/f", b"y")  # s/plain/c implicit: no setgid to inherit
    t.dir("n", mode=0o750, gid=7)
    t.file("n/c/f", b"z")
    t.file("x", b"x", pax={"SCHILY.xattr.user.empty": "", "SCHILY.xattr.user.set": "v"})
    t.dir("xd", pax={"SCHILY.xattr.user.empty": ""})
    return t.getvalue()


@pytest.mark.gotools
@pytest.mark.root
@pytest.mark.parametrize("umask", [0o022, 0o077], ids=["umask022", "umask077"])
@pytest.mark.parametrize("driver", ["vfs", "overlay"])
def test_go_implicit_dirs_and_empty_xattrs(tmp_path: Path, driver: str, umask: int) -> None:
    """Missing parents get Go's mode, group and setgid bit (vfs: 0755 under Go's umask 0,
    the setgid parent's group; overlay: 0777 less the umask, owned by root), also under a
    setgid directory the same tar made; an empty xattr record sets nothing, as in Go."""
    archive = tmp_path / "l.tar"
    archive.write_bytes(implicit_dirs_layer())
    go = GoStore(tmp_path / "go") if driver == "vfs" else GoOverlayStore(tmp_path / "go")
    old = os.umask(umask)
    try:
        layer = go.create_layer()
        go.applydiff(archive, layer)
        ours = tmp_path / "ours"
        apply(archive, ours, whiteouts=driver)
        layer_dir = go.diff_dir(layer) if isinstance(go, GoOverlayStore) else go.layer_dir(layer)
        want = manifest(layer_dir, include_root=False, mtimes=False)
    finally:
        os.umask(old)
        if isinstance(go, GoOverlayStore):
            go.close()
    assert_same_tree(manifest(ours, include_root=False, mtimes=False), want, "vs Go")
    # The oracle shows what the test is about.
    umask_free = driver == "vfs" or umask == 0o022
    assert want["s/a/b"]["mode"] == ("2755" if umask_free else "2700")
    assert want["s/a/b"]["gid"] == (99 if driver == "vfs" else 0)
    assert want["s/plain/c"]["mode"] == ("0755" if umask_free else "0700")
    assert "user.empty" not in str(want["x"]) and "user.set" in str(want["x"])


# --------------------------------------------------------------------------------------
# 9. ID mapping


def owners_layer() -> bytes:
    t = TarBuilder(uid=0)
    t.dir("./")
    t.file("root_file", b"r", uid=0, gid=0)
    t.file("user_file", b"u", uid=1000, gid=1000, mode=0o4755)
    t.dir("top_dir", uid=65535, gid=65535)
    t.symlink("link", "root_file", uid=5, gid=6)
    return t.getvalue()


def owners(root: Path) -> dict[str, tuple[int, int]]:
    return {p: (cast(int, e["uid"]), cast(int, e["gid"])) for p, e in manifest(root).items()}


@pytest.mark.root
def test_id_mapping(tmp_path: Path) -> None:
    res = apply(
        io.BytesIO(owners_layer()),
        tmp_path / "t",
        uid_map=[(0, 100000, 65536)],
        gid_map=[(0, 200000, 65536)],
    )
    assert owners(tmp_path / "t") == {
        ".": (100000, 200000),
        "root_file": (100000, 200000),
        "user_file": (101000, 201000),
        "top_dir": (165535, 265535),
        "link": (100005, 200006),
    }
    assert stat.S_IMODE(os.lstat(tmp_path / "t" / "user_file").st_mode) == 0o4755
    assert list(res.uid_set) == [0, 5, 1000, 65535]  # as in the headers, before mapping
    assert list(res.gid_set) == [0, 6, 1000, 65535]


@pytest.mark.root
def test_id_mapping_several_ranges(tmp_path: Path) -> None:
    apply(
        io.BytesIO(owners_layer()),
        tmp_path / "t",
        uid_map=[(0, 100000, 1000), (1000, 300000, 64536)],
        gid_map=[(0, 400000, 6), (6, 500000, 65530)],
    )
    assert owners(tmp_path / "t") == {
        ".": (100000, 400000),
        "root_file": (100000, 400000),
        "user_file": (300000, 500994),
        "top_dir": (364535, 565529),
        "link": (100005, 500000),
    }


@pytest.mark.root
@pytest.mark.parametrize("which", ["uid", "gid"])
def test_id_outside_the_map(tmp_path: Path, which: str) -> None:
    t = TarBuilder(uid=0)
    t.file("mapped", b"m", uid=10, gid=10)
    bad_uid, bad_gid = (70000, 10) if which == "uid" else (10, 70000)
    t.file("unmapped", b"u", uid=bad_uid, gid=bad_gid)
    layer = t.getvalue()
    maps: dict[str, Any] = {"uid_map": [(0, 100000, 65536)], "gid_map": [(0, 100000, 65536)]}
    with pytest.raises(ArchiveError):
        apply(io.BytesIO(layer), tmp_path / "t1", **maps)
    apply(io.BytesIO(layer), tmp_path / "t2", ignore_chown_errors=True, **maps)
    st = os.lstat(tmp_path / "t2" / "mapped")
    assert (st.st_uid, st.st_gid) == (100010, 100010)
    assert (tmp_path / "t2" / "unmapped").read_bytes() == b"u"


# --------------------------------------------------------------------------------------
# 10. errors, with Go's words (containers/storage tests/apply-junk.bats)

JUNK_COMPRESSORS: dict[str, list[str]] = {
    "uncompressed": ["cat"],
    "gzip": ["gzip", "-c"],
    "bzip2": ["bzip2", "-c"],
    "xz": ["xz", "-c"],
    "zstd": ["zstd", "-q", "-c"],
}


def os_release() -> bytes:
    try:
        return Path("/etc/os-release").read_bytes()
    except OSError:
        return b'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\n'


@pytest.mark.parametrize("compressor", list(JUNK_COMPRESSORS))
@pytest.mark.parametrize("junk", ["os-release", "short", "random"])
def test_junk_is_rejected(tmp_path: Path, compressor: str, junk: str) -> None:
    words: tuple[str, ...]
    if junk == "os-release":
        data, words = os_release(), ("invalid tar header", "unexpected EOF")
    elif junk == "short":
        data, words = b"sorry, not even enough info for a tar header here\n", ("unexpected EOF",)
    else:
        data = b"R" + pseudo_random(8191, 42)  # "R": no compression magic
        words = ("invalid tar header", "unexpected EOF")
    blob = run(*JUNK_COMPRESSORS[compressor], stdin=data)
    with pytest.raises(ArchiveError) as excinfo:
        apply(io.BytesIO(blob), tmp_path / "t")
    assert any(w in str(excinfo.value) for w in words), str(excinfo.value)


@pytest.mark.parametrize("compressor", ["uncompressed", "gzip", "zstd", "gzip-stream-cut"])
def test_truncated_layer(tmp_path: Path, compressor: str) -> None:
    tar = sample_layer()
    if compressor == "gzip-stream-cut":
        full = gzip(tar)
        blob = full[: len(full) // 2]
    else:
        blob = run(*JUNK_COMPRESSORS[compressor], stdin=tar[: len(tar) // 2])
    with pytest.raises(ArchiveError, match="unexpected EOF"):
        apply(io.BytesIO(blob), tmp_path / "t")


# --------------------------------------------------------------------------------------
# entries that would land outside the target


def test_dotdot_member_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    layer = TarBuilder().file("../outside/evil", b"x").getvalue()
    with pytest.raises(UnsafePathError):
        apply(io.BytesIO(layer), tmp_path / "t")
    assert not (outside / "evil").exists()


def test_hardlink_outside_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"secret")
    layer = TarBuilder().hardlink("hl", "../outside/secret").getvalue()
    with pytest.raises(ArchiveError):
        apply(io.BytesIO(layer), tmp_path / "t")
    assert os.lstat(outside / "secret").st_nlink == 1


def test_absolute_member_lands_inside(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    layer = TarBuilder().file(str(outside / "abs"), b"inside").getvalue()
    apply(io.BytesIO(layer), tmp_path / "t")
    assert not (outside / "abs").exists()
    assert (tmp_path / "t" / str(outside / "abs").lstrip("/")).read_bytes() == b"inside"


def test_symlinks_do_not_lead_outside(tmp_path: Path) -> None:
    """Writing through a symlink that points out of the target never touches the outside.

    Go resolves such paths inside the layer (it chroots); refusing them is also acceptable.
    """
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"secret")
    t = TarBuilder()
    t.symlink("abs", str(outside))
    t.symlink("rel", "../outside")
    t.file("abs/pwned", b"x")
    t.file("rel/pwned2", b"x")
    t.hardlink("hl", "abs/secret")
    t.symlink("abs/link", "x")
    with contextlib.suppress(ArchiveError, OSError):
        apply(io.BytesIO(t.getvalue()), tmp_path / "t")
    assert sorted(os.listdir(outside)) == ["secret"]
    assert (outside / "secret").read_bytes() == b"secret"
    assert os.lstat(outside / "secret").st_nlink == 1


def test_existing_entries_are_replaced(tmp_path: Path) -> None:
    """A file replaces a parent layer's directory tree and vice versa (Go: RemoveAll)."""
    target = tmp_path / "t"
    (target / "was_dir" / "sub").mkdir(parents=True)
    (target / "was_dir" / "sub" / "f").write_bytes(b"f")
    (target / "was_file").write_bytes(b"f")
    os.symlink("/", target / "was_link")
    t = TarBuilder()
    t.file("was_dir", b"now a file")
    t.dir("was_file")
    t.file("was_file/inner", b"inner")
    t.dir("was_link")
    t.file("was_link/inner", b"inner, not under /")
    apply(io.BytesIO(t.getvalue()), target)
    assert (target / "was_dir").read_bytes() == b"now a file"
    assert (target / "was_file" / "inner").read_bytes() == b"inner"
    assert not os.path.islink(target / "was_link")
    assert not os.path.exists("/was_link") and not os.path.exists("/inner")
    assert (target / "was_link" / "inner").read_bytes() == b"inner, not under /"


def test_empty_target_is_not_required(tmp_path: Path) -> None:
    """Applying onto a non-empty target merges (a vfs child layer starts as a copy)."""
    target = tmp_path / "t"
    (target / "old").mkdir(parents=True)
    (target / "old" / "kept").write_bytes(b"k")
    apply(io.BytesIO(sample_layer()), target)
    assert (target / "old" / "kept").read_bytes() == b"k"
    assert (target / "etc" / "config").exists()
