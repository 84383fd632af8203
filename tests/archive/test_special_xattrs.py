"""xattrs on members that cannot be opened for writing (fifos, devices, symlinks)."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest
from containers_storage.archive import apply_layer


def layer(kind: bytes, name: str, xattr: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(name)
        info.type = kind
        info.mode = 0o644
        if kind == tarfile.SYMTYPE:
            info.linkname = "elsewhere"
        if kind == tarfile.CHRTYPE:
            info.devmajor, info.devminor = 1, 3
        info.pax_headers = {f"SCHILY.xattr.{xattr}": "kept"}
        tar.addfile(info)
    return buf.getvalue()


@pytest.mark.root
@pytest.mark.parametrize(
    ("kind", "name"),
    [(tarfile.FIFOTYPE, "fifo"), (tarfile.CHRTYPE, "null"), (tarfile.SYMTYPE, "link")],
)
def test_trusted_xattr_lands_on_the_entry_itself(tmp_path: Path, kind: bytes, name: str) -> None:
    target = tmp_path / "t"
    target.mkdir()
    apply_layer(io.BytesIO(layer(kind, name, "trusted.note")), target)
    value = os.getxattr(target / name, "trusted.note", follow_symlinks=False)
    assert value == b"kept"
