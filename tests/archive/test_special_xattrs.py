"""xattrs on members that cannot be opened for writing (fifos, devices, symlinks)."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest
from containers_storage.archive import apply_layer

from tests.tars import TarBuilder


def layer(kind: bytes, name: str, xattr: str) -> bytes:
    """A layer of one ``kind`` member (fifo, character device or symlink) with an xattr."""
    pax = {f"SCHILY.xattr.{xattr}": "kept"}
    t = TarBuilder(uid=0)
    if kind == tarfile.SYMTYPE:
        t.symlink(name, "elsewhere", pax=pax)
    elif kind == tarfile.CHRTYPE:
        t.chardev(name, 1, 3, pax=pax)
    else:
        t.fifo(name, pax=pax)
    return t.getvalue()


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
