"""Hostile layer tarballs: ``apply_layer`` must never touch anything outside the target.

Every case builds its tarball here, with :mod:`tarfile` and raw byte patching where tarfile
will not write the bytes we want, applies it to ``tmp_path/"target"``, and then checks:

1. nothing under ``tmp_path`` outside the target changed (path set, lstat fields including
   ctime and inode, content hashes, symlink targets and xattrs), and no file carrying the
   case's unique escape token appeared in any ancestor of the target, nor in ``/``, ``/etc``,
   ``/tmp``;
2. the outcome is the one the containment policy asks for: success with the entry landed at
   its clamped place inside the target, or the precise exception (``UnsafePathError`` for
   names that climb out, ``ArchiveError`` for corrupt streams and limits).

Where the policy leaves the outcome open (a parent reached through a clamped symlink that
does not exist inside the target, a symlink loop), the case accepts success or a failure
(``ArchiveError`` or ``OSError``), but containment is checked all the same.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import importlib
import io
import lzma
import os
import re
import shutil
import stat
import subprocess
import tarfile
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple

import pytest
from containers_storage.archive import ApplyResult, Limits, apply_layer
from containers_storage.errors import ArchiveError, UnsafePathError

from tests.tars import MTIME

# --------------------------------------------------------------------------------------------
# The layout: tmp_path/outside (canaries), tmp_path/src (the layer file), tmp_path/target.
# --------------------------------------------------------------------------------------------

CANARY = b"canary: must never change\n"
INNER = b"inner canary\n"
#: Fixed times given to every canary, so a utime through a symlink shows up.
CANARY_NS = 1_234_567_890_123_456_789
#: Owner given to the canaries when running as root, so a chown through a symlink shows up.
CANARY_OWNER = 4321


@dataclass
class Env:
    tmp: Path
    outside: Path
    canary: Path
    canary_dir: Path
    inner: Path
    target: Path
    src: Path
    esc: str

    def inside(self, host_path: Path | str) -> Path:
        """Where an absolute host path lands when taken relative to the target root."""
        return self.target / str(host_path).lstrip("/")


@pytest.fixture
def env(tmp_path: Path) -> Env:
    outside = tmp_path / "outside"
    canary_dir = outside / "canarydir"
    canary_dir.mkdir(parents=True)
    canary = outside / "canary"
    canary.write_bytes(CANARY)
    inner = canary_dir / "inner"
    inner.write_bytes(INNER)
    os.symlink("canary", outside / "canary-link")
    os.chmod(canary, 0o640)
    os.chmod(inner, 0o600)
    os.chmod(canary_dir, 0o750)
    os.chmod(outside, 0o755)
    for p, value in ((canary, b"file"), (canary_dir, b"dir")):
        try:
            os.setxattr(p, "user.cs-canary", value)
        except OSError:
            pass
    if os.geteuid() == 0:
        for p in (canary, inner, canary_dir):
            os.chown(p, CANARY_OWNER, CANARY_OWNER)
    for p in (canary, inner, outside / "canary-link", canary_dir, outside):
        os.utime(p, ns=(CANARY_NS, CANARY_NS), follow_symlinks=False)
    src = tmp_path / "src"
    src.mkdir()
    target = tmp_path / "target"
    target.mkdir()
    return Env(
        tmp=tmp_path,
        outside=outside,
        canary=canary,
        canary_dir=canary_dir,
        inner=inner,
        target=target,
        src=src,
        esc=f"cs-hostile-escape-{uuid.uuid4().hex[:12]}",
    )


class Node(NamedTuple):
    mode: int
    uid: int
    gid: int
    size: int
    mtime_ns: int
    ctime_ns: int
    nlink: int
    ino: int
    content: str | None
    link: str | None
    xattrs: tuple[tuple[str, bytes], ...]


def _xattrs(path: str) -> tuple[tuple[str, bytes], ...]:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return ()
    return tuple(sorted((n, os.getxattr(path, n, follow_symlinks=False)) for n in names))


def _node(path: str) -> Node:
    st = os.lstat(path)
    content = link = None
    if stat.S_ISREG(st.st_mode):
        with open(path, "rb") as fh:
            content = hashlib.sha256(fh.read()).hexdigest()
    elif stat.S_ISLNK(st.st_mode):
        link = os.readlink(path)
    return Node(
        st.st_mode,
        st.st_uid,
        st.st_gid,
        st.st_size,
        st.st_mtime_ns,
        st.st_ctime_ns,
        st.st_nlink,
        st.st_ino,
        content,
        link,
        _xattrs(path),
    )


def snapshot(env: Env) -> dict[str, Node]:
    """Everything under tmp_path except the target's contents (the target dir itself too)."""
    nodes: dict[str, Node] = {}
    for root, dirs, files in os.walk(env.tmp, followlinks=False):
        nodes[root] = _node(root)
        if Path(root) == env.tmp:
            dirs[:] = [d for d in dirs if Path(root, d) != env.target]
        for name in files + [d for d in dirs if os.path.islink(os.path.join(root, d))]:
            p = os.path.join(root, name)
            nodes[p] = _node(p)
    return nodes


def assert_unchanged(before: dict[str, Node], after: dict[str, Node]) -> None:
    if before == after:
        return
    diffs = [
        f"  {k}:\n    before {before.get(k)}\n    after  {after.get(k)}"
        for k in sorted(before.keys() | after.keys())
        if before.get(k) != after.get(k)
    ]
    pytest.fail("something outside the target changed:\n" + "\n".join(diffs))


def assert_no_escape(env: Env) -> None:
    places = [*env.target.parents, Path("/etc"), Path("/tmp"), Path("/root"), Path("/")]
    hits = [p / env.esc for p in places if os.path.lexists(p / env.esc)]
    for hit in hits:  # named by this test's unique token: ours to remove
        if hit.is_dir() and not hit.is_symlink():
            shutil.rmtree(hit)
        else:
            hit.unlink()
    assert not hits, f"an entry escaped the target: {[str(h) for h in hits]}"


# --------------------------------------------------------------------------------------------
# Tar building blocks.
# --------------------------------------------------------------------------------------------

#: tarfile's USTAR_FORMAT, GNU_FORMAT, PAX_FORMAT.
TarFormat = Literal[0, 1, 2]
BLOCK = 512
END = bytes(2 * BLOCK)
REG, DIR, SYM, LNK, CHR = (
    tarfile.REGTYPE,
    tarfile.DIRTYPE,
    tarfile.SYMTYPE,
    tarfile.LNKTYPE,
    tarfile.CHRTYPE,
)


def pad(data: bytes) -> bytes:
    return data + bytes(-len(data) % BLOCK)


def member(
    name: str,
    *,
    kind: bytes = REG,
    data: bytes = b"",
    mode: int | None = None,
    linkname: str = "",
    pax: dict[str, str] | None = None,
    uid: int | None = None,
    gid: int | None = None,
    size: int | None = None,
    devmajor: int = 0,
    devminor: int = 0,
    fmt: TarFormat = tarfile.PAX_FORMAT,
) -> bytes:
    """One member's header block(s) (PAX/GNU extension headers included) and padded data."""
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.mode = mode if mode is not None else (0o755 if kind == DIR else 0o644)
    ti.size = len(data) if size is None else size
    ti.mtime = MTIME
    ti.uid = os.geteuid() if uid is None else uid
    ti.gid = os.getegid() if gid is None else gid
    ti.linkname = linkname
    ti.devmajor = devmajor
    ti.devminor = devminor
    if pax:
        ti.pax_headers = dict(pax)
    return ti.tobuf(fmt, "utf-8", "surrogateescape") + pad(data)


def f(name: str, data: bytes = b"data\n", **kw: Any) -> bytes:
    return member(name, data=data, **kw)


def d(name: str, **kw: Any) -> bytes:
    return member(name, kind=DIR, **kw)


def sl(name: str, to: str, **kw: Any) -> bytes:
    return member(name, kind=SYM, linkname=to, **kw)


def hl(name: str, to: str, **kw: Any) -> bytes:
    return member(name, kind=LNK, linkname=to, **kw)


def chardev(name: str, major: int = 0, minor: int = 0) -> bytes:
    return member(name, kind=CHR, mode=0o600, devmajor=major, devminor=minor, uid=0, gid=0)


def tar(*members: bytes) -> bytes:
    return b"".join(members) + END


def gnu_long(kind: bytes, value: str) -> bytes:
    """A GNU ``L`` (long name) or ``K`` (long link) pseudo-member carrying ``value``."""
    raw = value.encode() + b"\0"
    return member("././@LongLink", kind=kind, data=raw, fmt=tarfile.GNU_FORMAT, uid=0, gid=0)


def dir_chain(host_path: Path | str) -> bytes:
    """Directory entries for every parent of an absolute path (``/a/``, ``/a/b/``, ...)."""
    parts = Path(host_path).parts[1:-1]
    return b"".join(d("/" + "/".join(parts[: i + 1])) for i in range(len(parts)))


def rechecksum(buf: bytearray, off: int = 0) -> None:
    """Recompute the checksum of the header block at ``off`` after patching it."""
    hdr = bytearray(buf[off : off + BLOCK])
    hdr[148:156] = b" " * 8
    buf[off + 148 : off + 156] = b"%06o\0 " % sum(hdr)


def patched(data: bytes, off: int, new: bytes, *, fix: bool) -> bytes:
    buf = bytearray(data)
    buf[off : off + len(new)] = new
    if fix:
        rechecksum(buf, off - off % BLOCK)
    return bytes(buf)


def ustar(name: str, data: bytes = b"data\n") -> bytes:
    return member(name, data=data, fmt=tarfile.USTAR_FORMAT)


def base256(value: int) -> bytes:
    """A 12-byte base-256 numeric field (GNU extension); negative values in two's complement."""
    raw = (value % (1 << 88)).to_bytes(11, "big")
    return bytes([0xFF if value < 0 else 0x80]) + raw


def corrupt(data: bytes, off: int) -> bytes:
    buf = bytearray(data)
    buf[off] ^= 0xFF
    return bytes(buf)


def zstd_compress(data: bytes) -> bytes:
    """zstd with a content checksum: the ``zstandard`` module, else the ``zstd`` CLI."""
    try:
        zstandard: Any = importlib.import_module("zstandard")
    except ImportError:
        zstandard = None
    if zstandard is not None:
        out: bytes = zstandard.ZstdCompressor(write_checksum=True).compress(data)
        return out
    if shutil.which("zstd") is None:
        pytest.skip("needs the zstandard module or the zstd CLI (apt-get install zstd)")
    done = subprocess.run(["zstd", "-q", "-c", "--check"], input=data, capture_output=True)
    assert done.returncode == 0, done.stderr
    return done.stdout


# --------------------------------------------------------------------------------------------
# Expected outcomes and post-checks.
# --------------------------------------------------------------------------------------------

FS_FAIL: tuple[type[Exception], ...] = (ArchiveError, OSError)


@dataclass(frozen=True)
class Expect:
    ok: bool
    raises: tuple[type[Exception], ...] = ()
    match: str | None = None
    forbid: tuple[type[Exception], ...] = ()

    def describe(self) -> str:
        what = [c.__name__ for c in self.raises]
        return " or ".join((["success"] if self.ok else []) + what)


OK = Expect(ok=True)
UNSAFE = Expect(ok=False, raises=(UnsafePathError,))
ARCHIVE = Expect(ok=False, raises=(ArchiveError,))
#: The policy leaves the outcome open; containment is what counts.
EITHER = Expect(ok=True, raises=FS_FAIL)
FAILS = Expect(ok=False, raises=FS_FAIL)
#: A name that is lexically odd but may be cleaned to a place inside the root.
OK_OR_UNSAFE = Expect(ok=True, raises=(UnsafePathError,))
#: Refused, but not as a path-safety matter: ArchiveError and not its UnsafePathError subclass.
REFUSED = Expect(ok=False, raises=(ArchiveError,), forbid=(UnsafePathError,))


def corrupt_stream(name: str | None = None) -> Expect:
    words = ["invalid tar header", "unexpected EOF"] + ([re.escape(name)] if name else [])
    return Expect(
        ok=False, raises=(ArchiveError,), match="|".join(words), forbid=(UnsafePathError,)
    )


Check = Callable[[Env, "ApplyResult | None"], None]


def is_file(p: Path, content: bytes) -> None:
    assert not p.is_symlink(), f"{p} is a symlink"
    assert p.is_file(), f"{p} is not a regular file"
    assert p.read_bytes() == content


def is_link(p: Path, to: str) -> None:
    assert p.is_symlink(), f"{p} is not a symlink"
    assert os.readlink(p) == to


def is_real_dir(p: Path) -> None:
    assert not p.is_symlink(), f"{p} is still a symlink"
    assert p.is_dir(), f"{p} is not a directory"


def absent(p: Path) -> None:
    assert not os.path.lexists(p), f"{p} should not exist"


def is_whiteout_dev(p: Path) -> None:
    st = os.lstat(p)
    assert stat.S_ISCHR(st.st_mode), f"{p} is not a character device"
    assert st.st_rdev == 0, f"{p} is not a 0:0 device"


def canary_links_one(e: Env) -> None:
    assert os.lstat(e.canary).st_nlink == 1, "the outside canary got a new hard link"


def same_inode(a: Path, b: Path) -> None:
    assert os.lstat(a).st_ino == os.lstat(b).st_ino, f"{a} is not a hard link of {b}"


def if_ok(*checks: Callable[[Env], None]) -> Check:
    """Run ``checks`` only when the apply succeeded (for cases whose outcome is open)."""

    def run(e: Env, res: ApplyResult | None) -> None:
        if res is not None:
            for check in checks:
                check(e)

    return run


def always(*checks: Callable[[Env], None]) -> Check:
    def run(e: Env, res: ApplyResult | None) -> None:
        for check in checks:
            check(e)

    return run


def no_entries(e: Env, res: ApplyResult | None) -> None:
    assert res is not None
    assert res.entries == 0


def gzip_landed(e: Env, res: ApplyResult | None) -> None:
    assert res is not None
    assert res.compression == "gzip"
    assert res.compressed_digest.startswith("sha256:")
    is_file(e.target / "etc" / e.esc, b"gz\n")


# --------------------------------------------------------------------------------------------
# Preparing the target (a "lower layer" already there).
# --------------------------------------------------------------------------------------------


def pre_symlink(name: str, to: Callable[[Env], str]) -> Callable[[Env], None]:
    def prep(e: Env) -> None:
        os.symlink(to(e), e.target / name)

    return prep


def pre_file(where: Callable[[Env], Path], content: bytes = b"lower\n") -> Callable[[Env], None]:
    def prep(e: Env) -> None:
        p = where(e)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(content)

    return prep


def pre_dir(where: Callable[[Env], Path]) -> Callable[[Env], None]:
    def prep(e: Env) -> None:
        where(e).mkdir(parents=True, exist_ok=True)

    return prep


def prep_all(*preps: Callable[[Env], None]) -> Callable[[Env], None]:
    def prep(e: Env) -> None:
        for p in preps:
            p(e)

    return prep


def tarmageddon(e: Env) -> bytes:
    # What a reader that trusts the ustar size (0) instead of the PAX size would extract.
    smuggled = f("smuggled", b"smuggled\n") + f(f"../{e.esc}", b"smuggled\n") + f(".wh.keep")
    carrier = member("carrier", size=0, pax={"size": str(len(smuggled))}) + smuggled
    return tar(carrier, f("after", b"after\n"))


def tarmageddon_check(e: Env, res: ApplyResult | None) -> None:
    smuggled = f("smuggled", b"smuggled\n") + f(f"../{e.esc}", b"smuggled\n") + f(".wh.keep")
    is_file(e.target / "carrier", smuggled)
    absent(e.target / "smuggled")
    is_file(e.target / "keep", b"lower\n")
    is_file(e.target / "after", b"after\n")


def layer_of(*members: bytes) -> Callable[[Env], bytes]:
    """A builder for a fixed member list (for generated cases)."""
    data = tar(*members)
    return lambda e: data


def truncated_at(cut: Callable[[bytes], int], *members: bytes) -> bytes:
    data = tar(*members)
    return data[: cut(data)]


# --------------------------------------------------------------------------------------------
# The cases.
# --------------------------------------------------------------------------------------------

Source = Literal["path", "pathlike", "fileobj", "bytesio", "fd", "pipe"]
Whiteouts = Literal["vfs", "overlay", "aufs"]


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[Env], bytes]
    expect: Expect
    check: Check | None = None
    prepare: Callable[[Env], None] | None = None
    whiteouts: Whiteouts = "vfs"
    limits: dict[str, int] = field(default_factory=dict)
    source: Source = "path"
    root: bool = False


#: Overlay control xattrs smuggled as PAX records, with the whiteout mode to apply in.
OVERLAY_CONTROL_XATTRS: tuple[tuple[str, Whiteouts], ...] = (
    ("trusted.overlay.opaque", "vfs"),
    ("trusted.overlay.opaque", "overlay"),
    ("trusted.overlay.redirect", "vfs"),
    ("user.overlay.opaque", "vfs"),
    ("user.overlay.redirect", "overlay"),
    ("user.containers.override_stat", "vfs"),
)

CASES: list[Case] = [
    # ---- plain traversal in member names -----------------------------------------------
    Case("dotdot_file", lambda e: tar(f(f"../{e.esc}")), UNSAFE),
    Case("a_dotdot_dotdot_file", lambda e: tar(f(f"a/../../{e.esc}")), UNSAFE),
    Case("dot_dotdot_file", lambda e: tar(f(f"./../{e.esc}")), UNSAFE),
    Case("deep_climb", lambda e: tar(d("a"), d("a/b"), f(f"a/b/../../../../{e.esc}")), UNSAFE),
    Case("dotdot_onto_outside_canary", lambda e: tar(f("../outside/canary", b"pwned")), UNSAFE),
    Case(
        "dotdot_back_into_target",
        lambda e: tar(f(f"../target/{e.esc}")),
        UNSAFE,
        check=always(lambda e: absent(e.target / e.esc)),
    ),
    Case("dotdot_dir_entry", lambda e: tar(d(f"../{e.esc}", mode=0o777)), UNSAFE),
    Case("dotdot_symlink_entry", lambda e: tar(sl(f"../{e.esc}", "/etc/passwd")), UNSAFE),
    Case("setuid_via_dotdot", lambda e: tar(f(f"../{e.esc}", mode=0o4755)), UNSAFE),
    Case(
        "setgid_setuid_via_subdir_climb",
        lambda e: tar(d("x"), f("x/../../outside/suid", b"#!/bin/sh\n", mode=0o6755)),
        UNSAFE,
    ),
    Case(
        "dotdot_after_good_entries_keeps_them_inside",
        lambda e: tar(f("good", b"good\n"), f(f"../{e.esc}")),
        UNSAFE,
        source="fileobj",
    ),
    Case(
        "clean_inside_name_is_fine",
        lambda e: tar(f("a/../b", b"b\n")),
        OK,
        check=always(lambda e: is_file(e.target / "b", b"b\n")),
    ),
    Case(
        "slash_dotdot_is_cleaned_or_refused",
        lambda e: tar(f(f"/../{e.esc}", b"x\n")),
        OK_OR_UNSAFE,
        check=if_ok(lambda e: is_file(e.target / e.esc, b"x\n")),
    ),
    # ---- absolute names -----------------------------------------------------------------
    Case(
        "absolute_etc_passwd",
        lambda e: tar(d("/etc"), f(f"/etc/{e.esc}", b"root:x:0:0::/root:/bin/sh\n")),
        OK,
        check=always(lambda e: is_file(e.target / "etc" / e.esc, b"root:x:0:0::/root:/bin/sh\n")),
    ),
    Case(
        "absolute_double_slash",
        lambda e: tar(f(f"//{e.esc}", b"x\n")),
        OK,
        check=always(lambda e: is_file(e.target / e.esc, b"x\n")),
    ),
    Case(
        "absolute_name_of_outside_canary",
        lambda e: tar(dir_chain(e.canary), f(str(e.canary), b"pwned\n")),
        OK,
        check=always(lambda e: is_file(e.inside(e.canary), b"pwned\n")),
        source="pathlike",
    ),
    Case(
        "absolute_name_of_outside_canary_without_parents",
        lambda e: tar(f(str(e.canary), b"pwned\n")),
        EITHER,
        check=if_ok(lambda e: is_file(e.inside(e.canary), b"pwned\n")),
    ),
    # ---- symlinks: content, write-through, chains, loops ----------------------------------
    Case(
        "symlink_targets_are_content",
        lambda e: tar(sl("sh", "/bin/sh"), sl("etc", "../../../../etc"), sl("c", str(e.canary))),
        OK,
        check=always(
            lambda e: is_link(e.target / "sh", "/bin/sh"),
            lambda e: is_link(e.target / "etc", "../../../../etc"),
            lambda e: is_link(e.target / "c", str(e.canary)),
        ),
    ),
    Case(
        "absolute_symlink_etc_then_write_through",
        lambda e: tar(d("etc"), sl("link", "/etc"), f(f"link/{e.esc}", b"through\n")),
        OK,
        check=always(lambda e: is_file(e.target / "etc" / e.esc, b"through\n")),
        source="bytesio",
    ),
    Case(
        "absolute_symlink_to_outside_dir_clamped_inside",
        lambda e: tar(sl("d", str(e.outside)), f(f"d/{e.esc}", b"clamped\n")),
        OK,
        prepare=pre_dir(lambda e: e.inside(e.outside)),
        check=always(lambda e: is_file(e.inside(e.outside) / e.esc, b"clamped\n")),
    ),
    Case(
        "absolute_symlink_to_outside_dir_then_file",
        lambda e: tar(sl("d", str(e.canary_dir)), f("d/newfile", b"new\n")),
        EITHER,
        check=if_ok(lambda e: is_file(e.inside(e.canary_dir) / "newfile", b"new\n")),
    ),
    Case(
        "absolute_symlink_to_outside_dir_overwrite_canary",
        lambda e: tar(sl("d", str(e.outside)), f("d/canary", b"pwned\n", mode=0o777)),
        EITHER,
        check=if_ok(lambda e: is_file(e.inside(e.outside) / "canary", b"pwned\n")),
    ),
    Case(
        "symlink_to_outside_file_used_as_parent",
        lambda e: tar(sl("c", str(e.canary)), f("c/x", b"x\n")),
        EITHER,
    ),
    Case(
        "relative_symlink_chain_escape",
        lambda e: tar(sl("a", "b"), sl("b", "../../.."), f(f"a/{e.esc}", b"chain\n")),
        OK,
        check=always(lambda e: is_file(e.target / e.esc, b"chain\n")),
    ),
    Case(
        "relative_up_symlink",
        lambda e: tar(sl("up", "../../.."), f(f"up/{e.esc}", b"up\n")),
        OK,
        check=always(lambda e: is_file(e.target / e.esc, b"up\n")),
    ),
    Case(
        "relative_symlink_to_outside_canarydir_clamped",
        lambda e: tar(
            d("outside"),
            d("outside/canarydir"),
            sl("d", "../outside/canarydir"),
            f(f"d/{e.esc}", b"clamped\n"),
            f("d/inner", b"replaced\n"),
        ),
        OK,
        check=always(
            lambda e: is_file(e.target / "outside/canarydir" / e.esc, b"clamped\n"),
            lambda e: is_file(e.target / "outside/canarydir/inner", b"replaced\n"),
        ),
    ),
    Case(
        "symlink_loop",
        lambda e: tar(sl("l1", "l2"), sl("l2", "l1"), f("l1/x")),
        FAILS,
    ),
    Case("symlink_self_loop", lambda e: tar(sl("s", "s"), f("s/x")), FAILS),
    # ---- an existing final component is replaced, never written through --------------------
    Case(
        "file_replaces_absolute_symlink",
        lambda e: tar(sl("f", str(e.canary)), f("f", b"pwned\n", mode=0o777)),
        OK,
        check=always(lambda e: is_file(e.target / "f", b"pwned\n")),
    ),
    Case(
        "file_replaces_relative_escaping_symlink",
        lambda e: tar(sl("f", "../outside/canary"), f("f", b"pwned\n")),
        OK,
        check=always(lambda e: is_file(e.target / "f", b"pwned\n")),
        source="fd",
    ),
    Case(
        "file_replaces_lower_layer_symlink",
        lambda e: tar(f("f", b"pwned\n")),
        OK,
        prepare=pre_symlink("f", lambda e: str(e.canary)),
        check=always(lambda e: is_file(e.target / "f", b"pwned\n")),
    ),
    Case(
        "dir_entry_over_symlink_cve_2026_33056",
        lambda e: tar(sl("foo", str(e.canary_dir)), d("foo", mode=0o777)),
        EITHER,
        check=if_ok(lambda e: is_real_dir(e.target / "foo")),
    ),
    Case(
        "dir_entry_dot_over_symlink",
        lambda e: tar(sl("foo", str(e.canary_dir)), d("foo/.", mode=0o777)),
        EITHER,
        check=if_ok(lambda e: is_real_dir(e.target / "foo")),
        source="fd",
    ),
    Case(
        "dir_entry_over_relative_escaping_symlink",
        lambda e: tar(sl("foo", "../outside/canarydir"), d("foo/", mode=0o777)),
        EITHER,
        check=if_ok(lambda e: is_real_dir(e.target / "foo")),
    ),
    Case(
        "dir_entry_over_lower_layer_symlink",
        lambda e: tar(d("foo", mode=0o777)),
        EITHER,
        prepare=pre_symlink("foo", lambda e: str(e.canary_dir)),
        check=if_ok(lambda e: is_real_dir(e.target / "foo")),
    ),
    Case(
        "dir_entry_over_symlink_with_owner",
        lambda e: tar(sl("foo", str(e.canary_dir)), d("foo", mode=0o777, uid=1000, gid=1000)),
        EITHER,
        check=if_ok(lambda e: is_real_dir(e.target / "foo")),
        root=True,
    ),
    Case(
        "subdir_entry_under_symlink_to_outside",
        lambda e: tar(sl("d", str(e.canary_dir)), d("d/sub", mode=0o777)),
        EITHER,
    ),
    Case(
        "dir_replaced_by_absolute_symlink_then_written",
        lambda e: tar(d("d"), f("d/a"), sl("d", str(e.outside)), f(f"d/{e.esc}", b"x\n")),
        EITHER,
        check=if_ok(lambda e: is_file(e.inside(e.outside) / e.esc, b"x\n")),
    ),
    Case(
        "dir_replaced_by_relative_symlink_then_written",
        lambda e: tar(
            d("outside"),
            d("d"),
            f("d/a"),
            sl("d", "../../outside"),
            f(f"d/{e.esc}", b"x\n"),
            f("d/canary", b"pwned\n"),
        ),
        OK,
        check=always(
            lambda e: is_link(e.target / "d", "../../outside"),
            lambda e: is_file(e.target / "outside" / e.esc, b"x\n"),
            lambda e: is_file(e.target / "outside/canary", b"pwned\n"),
        ),
        source="pipe",
    ),
    # ---- hard links -----------------------------------------------------------------------
    Case("hardlink_dotdot", lambda e: tar(hl("h", "../outside/canary")), UNSAFE),
    Case("hardlink_a_dotdot_dotdot", lambda e: tar(hl("h", "a/../../outside/canary")), UNSAFE),
    Case(
        "hardlink_name_dotdot",
        lambda e: tar(f("a"), hl(f"../{e.esc}", "a")),
        UNSAFE,
        source="pipe",
    ),
    Case(
        "hardlink_absolute_to_outside_canary",
        lambda e: tar(hl("h", str(e.canary))),
        ARCHIVE,
    ),
    Case(
        "hardlink_absolute_to_outside_canary_resolves_inside",
        lambda e: tar(hl("h", str(e.canary))),
        OK,
        prepare=pre_file(lambda e: e.inside(e.canary), b"inside copy\n"),
        check=always(
            lambda e: is_file(e.target / "h", b"inside copy\n"),
            lambda e: same_inode(e.target / "h", e.inside(e.canary)),
        ),
    ),
    Case(
        "hardlink_via_symlinked_parent",
        lambda e: tar(sl("d", str(e.outside)), hl("h", "d/canary")),
        ARCHIVE,
    ),
    Case(
        "hardlink_via_relative_symlinked_parent_resolves_inside",
        lambda e: tar(
            d("outside"),
            f("outside/canary", b"inside copy\n"),
            sl("d", "../../outside"),
            hl("h", "d/canary"),
        ),
        OK,
        check=always(
            lambda e: is_file(e.target / "h", b"inside copy\n"),
            lambda e: same_inode(e.target / "h", e.target / "outside/canary"),
        ),
    ),
    Case(
        "hardlink_to_symlink_pointing_outside",
        lambda e: tar(sl("s", str(e.canary)), hl("h", "s")),
        EITHER,
        check=if_ok(
            lambda e: is_link(e.target / "h", str(e.canary)),
            lambda e: same_inode(e.target / "h", e.target / "s"),
        ),
    ),
    Case(
        "hardlink_to_lower_layer_symlink_pointing_outside",
        lambda e: tar(hl("h", "s")),
        EITHER,
        prepare=pre_symlink("s", lambda e: "../outside/canary"),
        check=if_ok(lambda e: is_link(e.target / "h", "../outside/canary")),
    ),
    Case(
        "hardlink_chain_to_symlink_outside_then_written",
        lambda e: tar(
            sl("s", "../../outside/canary"),
            hl("h1", "s"),
            hl("h2", "h1"),
            f("h2", b"pwned\n", mode=0o777),
        ),
        EITHER,
        check=if_ok(lambda e: is_file(e.target / "h2", b"pwned\n")),
    ),
    Case("hardlink_to_nonexistent", lambda e: tar(hl("h", "nope")), ARCHIVE),
    # ---- whiteouts (vfs) ------------------------------------------------------------------
    Case(
        "whiteout_positive_control",
        lambda e: tar(f("dir/.wh.file", b"")),
        OK,
        prepare=prep_all(
            pre_file(lambda e: e.target / "dir/file"), pre_file(lambda e: e.target / "dir/kept")
        ),
        check=always(
            lambda e: absent(e.target / "dir/file"),
            lambda e: is_file(e.target / "dir/kept", b"lower\n"),
        ),
    ),
    Case("whiteout_dotdot_canary", lambda e: tar(f("../outside/.wh.canary", b"")), UNSAFE),
    Case("whiteout_dotdot_esc", lambda e: tar(f(f"../.wh.{e.esc}", b"")), UNSAFE),
    Case("whiteout_a_dotdot_dotdot", lambda e: tar(f("a/../../outside/.wh.canary", b"")), UNSAFE),
    *(
        Case(
            f"whiteout_invalid_name[{name}]",
            layer_of(f(name, b"")),
            ARCHIVE,
            prepare=pre_file(lambda e: e.target / "sub/file"),
            check=always(lambda e: is_file(e.target / "sub/file", b"lower\n")),
        )
        for name in (".wh.", ".wh..", ".wh...", "sub/.wh..", "sub/.wh.")
    ),
    Case(
        "whiteout_pax_path_escape",
        lambda e: tar(member("innocent", pax={"path": "../outside/.wh.canary"})),
        UNSAFE,
        check=always(lambda e: absent(e.target / "innocent")),
    ),
    Case(
        "whiteout_in_absolute_symlinked_dir",
        lambda e: tar(sl("d", str(e.canary_dir)), f("d/.wh.inner", b"")),
        EITHER,
    ),
    Case(
        "whiteout_in_absolute_symlinked_dir_clamped",
        lambda e: tar(sl("d", str(e.canary_dir)), f("d/.wh.inner", b"")),
        OK,
        prepare=pre_file(lambda e: e.inside(e.inner)),
        check=always(lambda e: absent(e.inside(e.inner))),
    ),
    Case(
        "whiteout_in_relative_symlinked_dir",
        lambda e: tar(sl("d", "../outside"), f("d/.wh.canary", b"")),
        EITHER,
    ),
    Case(
        "whiteout_in_lower_layer_symlinked_dir",
        lambda e: tar(f("d/.wh.canary", b"")),
        EITHER,
        prepare=pre_symlink("d", lambda e: str(e.outside)),
    ),
    Case(
        "whiteout_of_lower_layer_symlink_to_outside_dir",
        lambda e: tar(f(".wh.s", b"")),
        OK,
        prepare=pre_symlink("s", lambda e: str(e.canary_dir)),
        check=always(lambda e: absent(e.target / "s")),
    ),
    Case(
        "whiteout_of_dir_holding_symlink_to_outside",
        lambda e: tar(f(".wh.d", b"")),
        OK,
        prepare=prep_all(
            pre_dir(lambda e: e.target / "d"), pre_symlink("d/link", lambda e: str(e.canary_dir))
        ),
        check=always(lambda e: absent(e.target / "d")),
    ),
    Case(
        "opaque_in_absolute_symlinked_dir",
        lambda e: tar(sl("d", str(e.canary_dir)), f("d/.wh..wh..opq", b"")),
        EITHER,
    ),
    Case(
        "opaque_in_lower_layer_symlinked_dir",
        lambda e: tar(f("d/.wh..wh..opq", b"")),
        EITHER,
        prepare=pre_symlink("d", lambda e: "../outside/canarydir"),
    ),
    Case(
        "opaque_dir_holding_symlink_to_outside",
        lambda e: tar(d("d"), f("d/.wh..wh..opq", b""), f("d/new", b"new\n")),
        OK,
        prepare=prep_all(
            pre_dir(lambda e: e.target / "d"), pre_symlink("d/link", lambda e: str(e.canary_dir))
        ),
        check=always(
            lambda e: absent(e.target / "d/link"),
            lambda e: is_file(e.target / "d/new", b"new\n"),
        ),
    ),
    # ---- whiteouts and devices (overlay) --------------------------------------------------
    Case(
        "overlay_whiteout_positive_control",
        lambda e: tar(f(".wh.gone", b"")),
        OK,
        whiteouts="overlay",
        check=always(lambda e: is_whiteout_dev(e.target / "gone")),
        root=True,
    ),
    Case(
        "overlay_whiteout_dotdot_canary",
        lambda e: tar(f("../outside/.wh.canary", b"")),
        UNSAFE,
        whiteouts="overlay",
        root=True,
    ),
    Case(
        "overlay_whiteout_invalid_dotdot",
        lambda e: tar(f(".wh..", b"")),
        ARCHIVE,
        whiteouts="overlay",
        root=True,
    ),
    Case(
        "overlay_whiteout_in_symlinked_dir",
        lambda e: tar(sl("d", str(e.canary_dir)), f("d/.wh.inner", b"")),
        EITHER,
        whiteouts="overlay",
        check=if_ok(lambda e: is_whiteout_dev(e.inside(e.inner))),
        root=True,
    ),
    Case(
        "overlay_opaque_in_symlinked_dir",
        lambda e: tar(sl("d", str(e.canary_dir)), f("d/.wh..wh..opq", b"")),
        EITHER,
        whiteouts="overlay",
        root=True,
    ),
    Case(
        "overlay_chardev_dotdot",
        lambda e: tar(chardev(f"../{e.esc}")),
        UNSAFE,
        whiteouts="overlay",
        root=True,
    ),
    Case(
        "overlay_chardev_over_canary_via_symlink",
        lambda e: tar(sl("d", "../outside"), chardev("d/canary")),
        EITHER,
        whiteouts="overlay",
        root=True,
    ),
    Case(
        "chardev_dotdot_vfs",
        lambda e: tar(chardev(f"../{e.esc}", 1, 3)),
        UNSAFE,
        root=True,
    ),
    # ---- PAX and GNU overrides of names ---------------------------------------------------
    Case(
        "pax_path_dotdot",
        lambda e: tar(member("innocent", data=b"x\n", pax={"path": f"../../{e.esc}"})),
        UNSAFE,
        check=always(lambda e: absent(e.target / "innocent")),
    ),
    Case(
        "pax_path_absolute",
        lambda e: tar(d("etc"), member("innocent", data=b"x\n", pax={"path": f"/etc/{e.esc}"})),
        OK,
        check=always(
            lambda e: is_file(e.target / "etc" / e.esc, b"x\n"),
            lambda e: absent(e.target / "innocent"),
        ),
    ),
    Case(
        "pax_linkpath_hardlink_escape",
        lambda e: tar(f("a"), hl("h", "a", pax={"linkpath": "../outside/canary"})),
        UNSAFE,
    ),
    Case(
        "pax_linkpath_symlink_is_content",
        lambda e: tar(sl("s", "innocent", pax={"linkpath": "../../../../etc/shadow"})),
        OK,
        check=always(lambda e: is_link(e.target / "s", "../../../../etc/shadow")),
    ),
    Case(
        "gnu_longname_dotdot",
        lambda e: tar(
            gnu_long(tarfile.GNUTYPE_LONGNAME, f"../../{e.esc}"),
            member("innocent", data=b"x\n", fmt=tarfile.GNU_FORMAT),
        ),
        UNSAFE,
        check=always(lambda e: absent(e.target / "innocent")),
    ),
    Case(
        "gnu_longname_long_dotdot_chain",
        lambda e: tar(f("../" * 40 + e.esc, fmt=tarfile.GNU_FORMAT)),
        UNSAFE,
    ),
    Case(
        "gnu_longlink_hardlink_escape",
        lambda e: tar(
            f("innocent"),
            gnu_long(tarfile.GNUTYPE_LONGLINK, "../outside/canary"),
            hl("h", "innocent", fmt=tarfile.GNU_FORMAT),
        ),
        UNSAFE,
    ),
    Case(
        "tarmageddon_pax_size_drives_stream",
        tarmageddon,
        OK,
        prepare=pre_file(lambda e: e.target / "keep"),
        check=tarmageddon_check,
    ),
    Case(
        "pax_size_larger_than_data",
        lambda e: tar(member("pax-liar", data=b"x" * 100, pax={"size": "100000"})),
        corrupt_stream("pax-liar"),
    ),
    # ---- corrupt streams ------------------------------------------------------------------
    Case(
        "size_lie",
        lambda e: tar(member("liar", data=b"x" * 100, size=10000, fmt=tarfile.USTAR_FORMAT)),
        corrupt_stream("liar"),
    ),
    Case(
        "truncated_in_header",
        lambda e: truncated_at(lambda t: 3 * BLOCK + 100, f("a", b"a" * 600), f("second-member")),
        corrupt_stream("second-member"),
        source="fileobj",
    ),
    Case(
        "truncated_in_data",
        lambda e: truncated_at(
            lambda t: BLOCK + 300, ustar("first-member", b"a" * 600), ustar("b")
        ),
        corrupt_stream("first-member"),
        source="pipe",
    ),
    Case(
        "bad_header_checksum",
        lambda e: tar(patched(ustar("a"), 100, b"0000777", fix=False)),
        corrupt_stream(),
    ),
    Case(
        "garbage_between_entries",
        lambda e: tar(ustar("a"), b"\xde\xad\xbe\xef" * 128, ustar("b")),
        corrupt_stream(),
        check=always(lambda e: absent(e.target / "b")),
    ),
    Case(
        "zero_block_then_garbage",
        lambda e: ustar("a") + bytes(BLOCK) + b"\xde\xad\xbe\xef" * 128 + END,
        corrupt_stream(),
    ),
    Case(
        "bad_octal_size",
        lambda e: tar(patched(ustar("octal-member"), 124, b"zzzzzzzzzzz\0", fix=True)),
        corrupt_stream("octal-member"),
    ),
    Case(
        "base256_huge_size",
        lambda e: tar(patched(ustar("huge"), 124, base256(1 << 62), fix=True)),
        Expect(ok=False, raises=(ArchiveError,), forbid=(UnsafePathError,)),
    ),
    Case(
        "base256_negative_size",
        lambda e: tar(patched(ustar("negative-size"), 124, base256(-512), fix=True)),
        corrupt_stream("negative-size"),
    ),
    Case("garbage_only", lambda e: b"\xde\xad\xbe\xef" * 1024, corrupt_stream()),
    Case(
        "trailing_junk_after_end",
        lambda e: tar(ustar("a", b"a\n")) + b"junk" * 300,
        Expect(ok=True, raises=(ArchiveError,)),
        check=always(lambda e: is_file(e.target / "a", b"a\n")),
    ),
    Case("empty_stream", lambda e: b"", Expect(ok=True, raises=(ArchiveError,))),
    Case(
        "only_end_blocks",
        lambda e: END,
        OK,
        check=no_entries,
    ),
    # ---- limits ---------------------------------------------------------------------------
    Case(
        "limits_positive_control",
        lambda e: tar(*(f(f"f{i}") for i in range(5))),
        OK,
        limits={"max_entries": 10, "max_total_bytes": 1 << 20},
    ),
    Case(
        "limit_max_entries",
        lambda e: tar(*(f(f"f{i}") for i in range(20))),
        REFUSED,
        limits={"max_entries": 10},
    ),
    Case(
        "limit_max_total_bytes",
        lambda e: tar(f("big", b"b" * 5000)),
        REFUSED,
        limits={"max_total_bytes": 1000},
    ),
    Case(
        "limit_gzip_bomb",
        lambda e: gzip.compress(tar(f("zeros", bytes(8 << 20))), mtime=0),
        REFUSED,
        limits={"max_total_bytes": 1 << 20},
    ),
    Case(
        "limit_pax_header_size",
        lambda e: tar(member("p", pax={"comment": "c" * 10000})),
        REFUSED,
        limits={"max_header_size": 4096},
    ),
    Case(
        "limit_pax_header_default_1mib",
        lambda e: tar(member("p", pax={"comment": "c" * (2 << 20)})),
        REFUSED,
    ),
    Case(
        "limit_gnu_longname_header_size",
        lambda e: tar(
            gnu_long(tarfile.GNUTYPE_LONGNAME, "/".join(["n" * 200] * 50)),
            member("innocent", fmt=tarfile.GNU_FORMAT),
        ),
        REFUSED,
        limits={"max_header_size": 4096, "max_path_length": 1 << 20, "max_depth": 1 << 20},
    ),
    Case(
        "limit_max_depth",
        lambda e: tar(f("d/" * 20 + "f")),
        REFUSED,
        limits={"max_depth": 10},
    ),
    Case("limit_max_depth_default", lambda e: tar(f("a/" * 600 + "f")), REFUSED),
    Case(
        "limit_max_path_length",
        lambda e: tar(f("ab/" * 66 + "f")),
        REFUSED,
        limits={"max_path_length": 100},
    ),
    Case("limit_max_path_length_default", lambda e: tar(f("/".join(["p" * 200] * 25))), REFUSED),
    # ---- compression ----------------------------------------------------------------------
    Case(
        "gzip_contained_write_through",
        lambda e: gzip.compress(
            tar(d("etc"), sl("link", "/etc"), f(f"link/{e.esc}", b"gz\n")), mtime=0
        ),
        OK,
        check=gzip_landed,
    ),
    Case(
        "gzip_traversal",
        lambda e: gzip.compress(tar(f(f"../{e.esc}")), mtime=0),
        UNSAFE,
        source="fileobj",
    ),
    Case(
        "gzip_bad_crc",
        lambda e: corrupt(gzip.compress(tar(f("a", b"a" * 3000)), mtime=0), -8),
        REFUSED,
    ),
    Case(
        "gzip_truncated",
        lambda e: (lambda z: z[: len(z) // 2])(gzip.compress(tar(f("a", os.urandom(3000))))),
        REFUSED,
    ),
    Case(
        "zstd_traversal",
        lambda e: zstd_compress(tar(f(f"a/../../{e.esc}"))),
        UNSAFE,
    ),
    Case(
        "zstd_bad_checksum",
        lambda e: corrupt(zstd_compress(tar(f("a", b"a" * 3000))), -2),
        REFUSED,
    ),
    Case(
        "zstd_corrupt_frame",
        lambda e: (lambda z: corrupt(z, len(z) // 2))(zstd_compress(tar(f("a", os.urandom(3000))))),
        REFUSED,
        source="fd",
    ),
    Case(
        "xz_truncated",
        lambda e: (lambda z: z[: len(z) // 2])(lzma.compress(tar(f("a", os.urandom(3000))))),
        REFUSED,
    ),
    Case(
        "bzip2_truncated",
        lambda e: (lambda z: z[: len(z) // 2])(bz2.compress(tar(f("a", os.urandom(3000))))),
        REFUSED,
    ),
    # ---- overlay control xattrs smuggled in PAX records -------------------------------------
    *(
        Case(
            f"overlay_control_xattr[{key}-{mode}]",
            layer_of(d("d", pax={f"SCHILY.xattr.{key}": "y"})),
            REFUSED,
            whiteouts=mode,
        )
        for key, mode in OVERLAY_CONTROL_XATTRS
    ),
]


def _params() -> list[Any]:
    names = [c.name for c in CASES]
    dupes = {n for n in names if names.count(n) > 1}
    assert not dupes, f"duplicate case names: {dupes}"
    return [pytest.param(c, id=c.name, marks=[pytest.mark.root] if c.root else []) for c in CASES]


# --------------------------------------------------------------------------------------------
# Running a case.
# --------------------------------------------------------------------------------------------


def _feed(wfd: int, data: bytes) -> None:
    try:
        with os.fdopen(wfd, "wb") as w:
            w.write(data)
    except OSError:
        pass  # the reader gave up early (the apply failed): fine


def run_apply(env: Env, case: Case, layer: Path, data: bytes) -> ApplyResult:
    limits = Limits(**case.limits) if case.limits else None
    target = str(env.target)

    def call(source: Any) -> ApplyResult:
        return apply_layer(source, target, whiteouts=case.whiteouts, limits=limits)

    if case.source == "path":
        return call(str(layer))
    if case.source == "pathlike":
        return call(layer)
    if case.source == "bytesio":
        return call(io.BytesIO(data))
    if case.source == "fileobj":
        with open(layer, "rb") as fh:
            return call(fh)
    if case.source == "fd":
        fd = os.open(layer, os.O_RDONLY)
        ino = os.fstat(fd).st_ino
        try:
            return call(fd)
        finally:
            try:  # close it unless apply_layer took it over and closed it
                if os.fstat(fd).st_ino == ino:
                    os.close(fd)
            except OSError:
                pass
    assert case.source == "pipe"
    rfd, wfd = os.pipe()
    writer = threading.Thread(target=_feed, args=(wfd, data), daemon=True)
    writer.start()
    try:
        return call(rfd)
    finally:
        try:
            if stat.S_ISFIFO(os.fstat(rfd).st_mode):
                os.close(rfd)
        except OSError:
            pass
        writer.join(timeout=60)


@pytest.mark.parametrize("case", _params())
def test_hostile_layer(case: Case, env: Env) -> None:
    if case.prepare is not None:
        case.prepare(env)
    data = case.build(env)
    layer = env.src / "layer"
    layer.write_bytes(data)

    before = snapshot(env)
    res: ApplyResult | None = None
    err: Exception | None = None
    try:
        res = run_apply(env, case, layer, data)
    except Exception as exc:
        err = exc
    assert_unchanged(before, snapshot(env))
    assert_no_escape(env)
    canary_links_one(env)

    want = case.expect
    if err is None:
        assert want.ok, f"expected {want.describe()}, but apply_layer succeeded"
        assert res is not None
    else:
        if not isinstance(err, want.raises) or isinstance(err, want.forbid):
            raise AssertionError(
                f"expected {want.describe()}, got {type(err).__name__}: {err}"
            ) from err
        if want.match is not None and not re.search(want.match, str(err)):
            raise AssertionError(f"message {str(err)!r} does not match {want.match!r}") from err
    if case.check is not None:
        case.check(env, res)


def test_case_count() -> None:
    """The table keeps at least the cases the containment policy asks for."""
    assert len(CASES) >= 45
