"""Deterministic layer tarballs for the store tests: entries, a PAX writer, digests.

Test modules import what they use: ``from tarfix import Entry, d, f, sym, hard, make_tar``.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import tarfile
from collections.abc import Sequence

__all__ = ["MTIME", "E", "Entry", "d", "f", "gz", "hard", "hexpart", "make_tar", "sha256", "sym"]

#: mtime of every tar entry: 2023-01-01T00:00:00Z.
MTIME = 1_672_531_200

_KINDS = {
    "dir": tarfile.DIRTYPE,
    "file": tarfile.REGTYPE,
    "symlink": tarfile.SYMTYPE,
    "hardlink": tarfile.LNKTYPE,
}


@dataclasses.dataclass(frozen=True)
class Entry:
    """One tar entry: ``kind`` is dir, file, symlink or hardlink (whiteouts are empty
    files)."""

    kind: str
    name: str
    data: bytes = b""
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    target: str = ""
    xattrs: tuple[tuple[str, str], ...] = ()


#: A short name for :class:`Entry`.
E = Entry


def d(name: str, mode: int = 0o755, uid: int = 0, gid: int = 0) -> Entry:
    return Entry("dir", name, mode=mode, uid=uid, gid=gid)


def f(
    name: str,
    data: bytes = b"",
    mode: int = 0o644,
    uid: int = 0,
    gid: int = 0,
    xattrs: tuple[tuple[str, str], ...] = (),
) -> Entry:
    return Entry("file", name, data=data, mode=mode, uid=uid, gid=gid, xattrs=xattrs)


def sym(name: str, target: str) -> Entry:
    return Entry("symlink", name, mode=0o777, target=target)


def hard(name: str, target: str) -> Entry:
    return Entry("hardlink", name, target=target)


def make_tar(entries: Sequence[Entry]) -> bytes:
    """A PAX tar of ``entries`` in the order given (fixed mtimes, no user names)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for e in entries:
            info = tarfile.TarInfo(e.name)
            info.mtime = MTIME
            info.uid, info.gid = e.uid, e.gid
            info.uname = info.gname = ""
            info.mode = e.mode
            info.type = _KINDS[e.kind]
            info.linkname = e.target
            info.size = len(e.data) if e.kind == "file" else 0
            if e.xattrs:
                info.pax_headers = {f"SCHILY.xattr.{k}": v for k, v in e.xattrs}
            tar.addfile(info, io.BytesIO(e.data) if e.kind == "file" else None)
    return buf.getvalue()


def gz(data: bytes) -> bytes:
    """Reproducible gzip (no name, no time)."""
    return gzip.compress(data, compresslevel=9, mtime=0)


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def hexpart(digest: str) -> str:
    return digest.split(":", 1)[1]
