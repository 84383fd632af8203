"""Layer tarballs for every test directory: one builder and the digests of what it writes.

:class:`TarBuilder` writes a tar in memory entry by entry. Tests that describe a layer as
data (to build it and to work out what it must extract to) list :class:`Entry` values, made
by :func:`d`, :func:`f`, :func:`sym` and :func:`hard`, and turn them into a tar with
:func:`make_tar`, which feeds them to a :class:`TarBuilder`.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import os
import tarfile
from collections.abc import Iterable, Mapping
from pathlib import Path

#: The mtime the builders write unless told otherwise, and a fixed epoch for the mtimes the
#: tests set on trees: 2020-09-13T12:26:40Z.
MTIME = 1_600_000_000


class TarBuilder:
    """Builds a tar in memory with Python's tarfile, entry by entry, in the order given.

    Owners default to the running user, so layers built with the defaults extract without
    root; mtimes default to :data:`MTIME`.
    """

    def __init__(self, fmt: int = tarfile.PAX_FORMAT, *, uid: int | None = None) -> None:
        self._buf = io.BytesIO()
        self._tar = tarfile.open(fileobj=self._buf, mode="w", format=fmt)
        self.uid = os.getuid() if uid is None else uid
        self.gid = os.getgid() if uid is None else uid
        # name -> (mode, uid, gid, mtime): a hard link's header repeats its target's, as
        # real archivers write it (the two share one inode).
        self._meta: dict[str, tuple[int, int, int, float]] = {}

    def _add(
        self,
        name: str,
        kind: bytes,
        *,
        data: bytes | None = None,
        linkname: str = "",
        mode: int = 0o644,
        uid: int | None = None,
        gid: int | None = None,
        mtime: float = MTIME,
        pax: Mapping[str, str] | None = None,
        uname: str = "",
        devmajor: int = 0,
        devminor: int = 0,
    ) -> None:
        info = tarfile.TarInfo(name)
        info.type = kind
        info.mode = mode
        info.uid = self.uid if uid is None else uid
        info.gid = self.gid if gid is None else gid
        info.uname = uname
        info.gname = uname
        info.mtime = mtime
        info.linkname = linkname
        info.devmajor = devmajor
        info.devminor = devminor
        if pax:
            info.pax_headers = dict(pax)
        info.size = len(data) if data is not None else 0
        self._meta[name] = (info.mode, info.uid, info.gid, info.mtime)
        self._tar.addfile(info, io.BytesIO(data) if data is not None else None)

    def dir(
        self,
        name: str,
        *,
        mode: int = 0o755,
        uid: int | None = None,
        gid: int | None = None,
        mtime: float = MTIME,
        pax: Mapping[str, str] | None = None,
    ) -> TarBuilder:
        self._add(name, tarfile.DIRTYPE, mode=mode, uid=uid, gid=gid, mtime=mtime, pax=pax)
        return self

    def file(
        self,
        name: str,
        data: bytes = b"",
        *,
        mode: int = 0o644,
        uid: int | None = None,
        gid: int | None = None,
        mtime: float = MTIME,
        pax: Mapping[str, str] | None = None,
        uname: str = "",
    ) -> TarBuilder:
        self._add(
            name,
            tarfile.REGTYPE,
            data=data,
            mode=mode,
            uid=uid,
            gid=gid,
            mtime=mtime,
            pax=pax,
            uname=uname,
        )
        return self

    def symlink(
        self,
        name: str,
        target: str,
        *,
        mode: int = 0o777,
        uid: int | None = None,
        gid: int | None = None,
        mtime: float = MTIME,
        pax: Mapping[str, str] | None = None,
    ) -> TarBuilder:
        self._add(
            name,
            tarfile.SYMTYPE,
            linkname=target,
            mode=mode,
            uid=uid,
            gid=gid,
            mtime=mtime,
            pax=pax,
        )
        return self

    def hardlink(
        self, name: str, target: str, *, mode: int | None = None, mtime: float | None = None
    ) -> TarBuilder:
        """A hard link; its header carries the target's mode, owner and mtime unless
        ``mode`` or ``mtime`` is given (to build the unusual archives whose link headers
        differ)."""
        t_mode, uid, gid, t_mtime = self._meta.get(target, (0o644, self.uid, self.gid, MTIME))
        self._add(
            name,
            tarfile.LNKTYPE,
            linkname=target,
            mode=t_mode if mode is None else mode,
            uid=uid,
            gid=gid,
            mtime=t_mtime if mtime is None else mtime,
        )
        return self

    def chardev(
        self,
        name: str,
        major: int,
        minor: int,
        *,
        mode: int = 0o600,
        mtime: float = MTIME,
        pax: Mapping[str, str] | None = None,
    ) -> TarBuilder:
        self._add(
            name,
            tarfile.CHRTYPE,
            devmajor=major,
            devminor=minor,
            mode=mode,
            mtime=mtime,
            pax=pax,
        )
        return self

    def fifo(
        self,
        name: str,
        *,
        mode: int = 0o644,
        mtime: float = MTIME,
        pax: Mapping[str, str] | None = None,
    ) -> TarBuilder:
        self._add(name, tarfile.FIFOTYPE, mode=mode, mtime=mtime, pax=pax)
        return self

    def entries(self, entries: Iterable[Entry], *, mtime: float = MTIME) -> TarBuilder:
        """Add ``entries`` in order, each written with ``mtime``."""
        for e in entries:
            if e.kind == "dir":
                self.dir(e.name, mode=e.mode, uid=e.uid, gid=e.gid, mtime=mtime)
            elif e.kind == "file":
                pax = {f"SCHILY.xattr.{k}": v for k, v in e.xattrs}
                self.file(e.name, e.data, mode=e.mode, uid=e.uid, gid=e.gid, mtime=mtime, pax=pax)
            elif e.kind == "symlink":
                self.symlink(e.name, e.target, uid=e.uid, gid=e.gid, mtime=mtime)
            elif e.kind == "hardlink":
                self.hardlink(e.name, e.target)
            else:
                raise ValueError(f"unknown entry kind {e.kind!r}")
        return self

    def getvalue(self) -> bytes:
        """Close the archive (end-of-archive blocks, record padding) and return its bytes."""
        self._tar.close()
        return self._buf.getvalue()

    def write(self, path: Path) -> Path:
        path.write_bytes(self.getvalue())
        return path


@dataclasses.dataclass(frozen=True)
class Entry:
    """One tar entry described as data: ``kind`` is dir, file, symlink or hardlink
    (whiteouts are empty files). A hard link's header repeats its target's."""

    kind: str
    name: str
    data: bytes = b""
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    target: str = ""
    xattrs: tuple[tuple[str, str], ...] = ()


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


def make_tar(entries: Iterable[Entry], *, mtime: float = MTIME) -> bytes:
    """A PAX tar of ``entries`` in the order given, each with ``mtime``, owners as the
    entries say (no user names)."""
    return TarBuilder(uid=0).entries(entries, mtime=mtime).getvalue()


def gz(data: bytes) -> bytes:
    """Reproducible gzip (no name, no time)."""
    return gzip.compress(data, compresslevel=9, mtime=0)


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def hexpart(digest: str) -> str:
    return digest.split(":", 1)[1]


def write_many_members(
    path: Path, count: int, *, size: int = 0, pax_bytes: int = 0, last: str = "last"
) -> str:
    """Write a plain tar to ``path``: ``d/``, then ``count`` files ``d/NNNNNN`` of ``size``
    bytes (each with a PAX comment of ``pax_bytes`` when non-zero), then the file ``last``,
    whose presence after an apply shows that the apply got to the end. Streamed to the
    file, so large layers cost no memory here. Returns ``last``."""
    data = b"x" * size
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("d")
        info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, MTIME
        tar.addfile(info)
        for i in range(count):
            info = tarfile.TarInfo(f"d/{i:06d}")
            info.size, info.mode, info.mtime = size, 0o644, MTIME
            if pax_bytes:
                info.pax_headers = {"comment": "c" * pax_bytes}
            tar.addfile(info, io.BytesIO(data))
        info = tarfile.TarInfo(last)
        info.mtime = MTIME
        tar.addfile(info, io.BytesIO(b""))
    return last
