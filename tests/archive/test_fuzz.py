"""Random and mutated archives: apply_layer only ever raises its documented errors.

A panic in the Rust core would surface as pyo3's PanicException (a BaseException); any
exception other than ArchiveError (and its UnsafePathError) or OSError fails these tests, as
does anything appearing outside the target.
"""

from __future__ import annotations

import gzip
import io
import os
import tarfile
from pathlib import Path

from containers_storage.archive import Limits, apply_layer
from containers_storage.errors import ArchiveError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st


def seed_tar() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for i, name in enumerate(["d/", "d/f", "d/l", "d/h", "d/.wh.x", "e/.wh..wh..opq"]):
            info = tarfile.TarInfo(name.rstrip("/"))
            info.mtime = 1_600_000_000 + i
            if name.endswith("/"):
                info.type = tarfile.DIRTYPE
            elif name == "d/l":
                info.type, info.linkname = tarfile.SYMTYPE, "f"
            elif name == "d/h":
                info.type, info.linkname = tarfile.LNKTYPE, "d/f"
            else:
                info.size = 700
                info.pax_headers = {"SCHILY.xattr.user.k": "v", "mtime": "1600000000.5"}
            tar.addfile(info, io.BytesIO(b"x" * info.size) if info.size else None)
    return buf.getvalue()


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
