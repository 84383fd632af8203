"""The iterator forms of reassembly and diff stream the same bytes as the file forms."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest
from containers_storage.archive import (
    apply_layer,
    diff,
    iter_diff,
    iter_reassemble,
    reassemble_layer,
)
from containers_storage.errors import ArchiveError

from tests.tars import TarBuilder


def layer(tmp_path: Path) -> tuple[Path, bytes, str]:
    t = TarBuilder()
    t.dir("./")
    t.dir("etc")
    for i in range(40):
        t.file(f"etc/f{i}", bytes([i]) * (i * 997))
    data = t.getvalue()
    target = tmp_path / "layer"
    target.mkdir()
    result = apply_layer(io.BytesIO(data), target, keep_tar_split=True)
    assert result.tar_split is not None
    return target, result.tar_split, result.uncompressed_digest


def test_iter_reassemble_equals_original(tmp_path: Path) -> None:
    target, split, digest = layer(tmp_path)
    h = hashlib.sha256()
    chunks = 0
    for chunk in iter_reassemble(split, target, chunk_size=4096):
        h.update(chunk)
        chunks += 1
    assert "sha256:" + h.hexdigest() == digest
    assert chunks > 1
    out = io.BytesIO()
    reassemble_layer(split, target, out)
    assert "sha256:" + hashlib.sha256(out.getvalue()).hexdigest() == digest


def test_iter_reassemble_reports_errors_after_streaming(tmp_path: Path) -> None:
    target, split, _ = layer(tmp_path)
    (target / "etc/f39").write_bytes(b"changed")
    with pytest.raises(ArchiveError, match="etc/f39"):
        for _ in iter_reassemble(split, target):
            pass


def test_iter_reassemble_closed_early_does_not_hang(tmp_path: Path) -> None:
    target, split, _ = layer(tmp_path)
    it = iter_reassemble(split, target, chunk_size=512)
    next(it)
    it.close()  # the writer gets a broken pipe and stops


def test_iter_diff_equals_diff(tmp_path: Path) -> None:
    target, _, _ = layer(tmp_path)
    out = io.BytesIO()
    diff(target, out)
    streamed = b"".join(iter_diff(target))
    # Whiteout-free diffs of the same tree are deterministic.
    assert streamed == out.getvalue()
