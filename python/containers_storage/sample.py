"""A small built-in sample layer, for demos and first runs (no download needed).

It has what real layers have: directories, files with modes and owners, a symlink, a hard
link, an executable, and, in :func:`sample_upper_layer`, whiteouts and an opaque directory.
"""

from __future__ import annotations

import gzip
import io
import tarfile

_MTIME = 1_700_000_000


def _tar(members: list[tuple[str, bytes, str | None, int]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data, link, mode in members:
            info = tarfile.TarInfo(name)
            info.mtime = _MTIME
            info.mode = mode
            if name.endswith("/"):
                info.type = tarfile.DIRTYPE
            elif link is not None and link.startswith("hard:"):
                info.type = tarfile.LNKTYPE
                info.linkname = link[5:]
            elif link is not None:
                info.type = tarfile.SYMTYPE
                info.linkname = link
            else:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if info.isfile() else None)
    return buf.getvalue()


def sample_layer() -> bytes:
    """A gzip-compressed base layer (a few files under etc/, usr/ and a bin symlink)."""
    hello = b"#!/bin/sh\necho hello from a containers-storage layer\n"
    members: list[tuple[str, bytes, str | None, int]] = [
        ("etc/", b"", None, 0o755),
        ("etc/os-release", b'NAME="sample"\nID=sample\n', None, 0o644),
        ("etc/hostname", b"sample\n", None, 0o644),
        ("usr/", b"", None, 0o755),
        ("usr/bin/", b"", None, 0o755),
        ("usr/bin/hello", hello, None, 0o755),
        ("usr/bin/hi", b"", "hard:usr/bin/hello", 0o755),
        ("bin", b"", "usr/bin", 0o777),
        ("tmp/", b"", None, 0o1777),
        ("opt/app/", b"", None, 0o755),
        ("opt/app/old.conf", b"old\n", None, 0o644),
    ]
    return gzip.compress(_tar(members), mtime=0)


def sample_upper_layer() -> bytes:
    """An uncompressed layer for the sample: a whiteout and an opaque directory."""
    members: list[tuple[str, bytes, str | None, int]] = [
        ("etc/", b"", None, 0o755),
        ("etc/.wh.hostname", b"", None, 0o644),
        ("opt/app/", b"", None, 0o755),
        ("opt/app/.wh..wh..opq", b"", None, 0o644),
        ("opt/app/new.conf", b"new\n", None, 0o644),
    ]
    return _tar(members)
