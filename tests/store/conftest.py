"""Fixtures for the Store tests: one suite, parametrised over the drivers we provide
(helpers the tests import are in :mod:`tests.store.helpers`)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import containers_storage as cs
import pytest

from tests.store.helpers import Roots, assert_nothing_mounted_under, release_mounts

#: Drivers every Store test runs with.
STORE_DRIVERS = ["vfs", "overlay"]


@pytest.fixture(params=STORE_DRIVERS)
def driver(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def roots(tmp_path: Path) -> Roots:
    """(graph root, run root) for a fresh store."""
    return tmp_path / "root", tmp_path / "run"


@pytest.fixture
def store(roots: Roots, driver: str) -> Iterator[cs.Store]:
    s = cs.Store(roots[0], roots[1], driver)
    yield s
    try:
        s.shutdown(True)
    except cs.StorageError:
        pass
    release_mounts(roots[0].parent)


@pytest.fixture
def no_leaked_mounts(tmp_path: Path) -> Iterator[None]:
    """Detach mounts a test left under its directory (a store opened without the ``store``
    fixture, or a Go CLI run on an overlay store)."""
    yield
    release_mounts(tmp_path)


@pytest.fixture
def nothing_left_mounted(tmp_path: Path) -> Iterator[None]:
    """Fail a test that leaves anything mounted below its tmp_path (and clean it up)."""
    yield
    assert_nothing_mounted_under(tmp_path)


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A directory with a short path: podman refuses a run root longer than 50 characters,
    and pytest's tmp_path is longer than that. Nothing may be left mounted below it."""
    path = Path(tempfile.mkdtemp(prefix="cs-store-", dir="/tmp"))
    yield path
    try:
        assert_nothing_mounted_under(path)
    finally:
        shutil.rmtree(path, ignore_errors=True)
