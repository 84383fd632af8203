"""Random and mutated archives: apply_layer only ever raises its documented errors.

A panic in the Rust core would surface as pyo3's PanicException (a BaseException); any
exception other than ArchiveError (and its UnsafePathError) or OSError fails these tests, as
does anything appearing outside the target.
"""

from __future__ import annotations

import gzip
import io
import os
from pathlib import Path

from containers_storage.archive import Limits, apply_layer
from containers_storage.errors import ArchiveError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.tars import MTIME, TarBuilder


def seed_tar() -> bytes:
    """A directory, files with PAX records, a symlink, a hard link and whiteouts to mutate."""
    pax = {"SCHILY.xattr.user.k": "v", "mtime": "1600000000.5"}
    t = TarBuilder(uid=0)
    t.dir("d", mtime=MTIME)
    t.file("d/f", b"x" * 700, pax=pax, mtime=MTIME + 1)
    t.symlink("d/l", "f", mtime=MTIME + 2)
    t.hardlink("d/h", "d/f", mtime=MTIME + 3)
    t.file("d/.wh.x", b"x" * 700, pax=pax, mtime=MTIME + 4)
    t.file("e/.wh..wh..opq", b"x" * 700, pax=pax, mtime=MTIME + 5)
    return t.getvalue()


SEED = seed_tar()
SMALL_LIMITS = Limits(max_entries=200, max_total_bytes=1 << 20, max_header_size=1 << 16)


def check(data: bytes, tmp: Path) -> None:
    outside = tmp / "outside"
    outside.mkdir(exist_ok=True)
    (outside / "canary").write_text("canary")
    target = tmp / "target"
    target.mkdir(exist_ok=True)
    before = sorted(os.listdir(tmp)), (outside / "canary").read_text()
    try:
        apply_layer(io.BytesIO(data), target, limits=SMALL_LIMITS, ignore_chown_errors=True)
    except (ArchiveError, OSError):
        pass
    assert (sorted(os.listdir(tmp)), (outside / "canary").read_text()) == before


FUZZ = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@FUZZ
@given(data=st.binary(max_size=4096))
def test_random_bytes(tmp_path: Path, data: bytes) -> None:
    check(data, tmp_path)


@FUZZ
@given(
    flips=st.lists(
        st.tuples(st.integers(0, len(SEED) - 1), st.integers(0, 255)), min_size=1, max_size=8
    ),
    cut=st.one_of(st.none(), st.integers(0, len(SEED))),
)
def test_mutated_tar(tmp_path: Path, flips: list[tuple[int, int]], cut: int | None) -> None:
    data = bytearray(SEED)
    for pos, value in flips:
        data[pos] = value
    check(bytes(data[:cut]), tmp_path)


@FUZZ
@given(flips=st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), max_size=4))
def test_mutated_gzip(tmp_path: Path, flips: list[tuple[int, int]]) -> None:
    data = bytearray(gzip.compress(SEED))
    for pos, value in flips:
        data[pos % len(data)] = value
    check(bytes(data), tmp_path)
