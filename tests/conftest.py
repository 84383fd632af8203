"""Hooks and fixtures for the whole suite (helpers the tests import are in
:mod:`tests.helpers`): the store fixtures, parametrised over the drivers we provide, are
shared by every directory.

Set ``CS_REQUIRE_ALL=1`` (``.ci/run`` does) to turn every skip into a failure: in CI the
root-only and Go-tool tests must run, not be skipped.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import containers_storage as cs
import pytest

from tests.helpers import GO_CONTAINERS_STORAGE, SKOPEO, Child
from tests.store.helpers import Roots, assert_nothing_mounted_under, release_mounts

#: Drivers every Store test runs with.
STORE_DRIVERS = ["vfs", "overlay"]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip tests that need what this machine lacks; under CS_REQUIRE_ALL=1, refuse to run."""
    missing: dict[str, str] = {}
    if os.geteuid() != 0:
        missing["root"] = "needs root"
    if not os.access(GO_CONTAINERS_STORAGE, os.X_OK):
        missing["gotools"] = f"needs Debian's containers-storage at {GO_CONTAINERS_STORAGE}"
    if not os.access(SKOPEO, os.X_OK):
        missing["skopeo"] = f"needs Debian's skopeo at {SKOPEO}"
    needed = {m for m in missing for item in items if item.get_closest_marker(m)}
    if needed and os.environ.get("CS_REQUIRE_ALL") == "1":
        reasons = "; ".join(missing[m] for m in sorted(needed))
        raise pytest.UsageError(f"CS_REQUIRE_ALL=1 but some tests cannot run here: {reasons}")
    for item in items:
        for marker, reason in missing.items():
            if item.get_closest_marker(marker):
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture
def children() -> Iterator[list[Child]]:
    """Children started by a test; killed at its end whatever happened."""
    started: list[Child] = []
    yield started
    for child in started:
        child.kill()


@pytest.fixture(autouse=True)
def _detach_what_a_test_left_mounted(request: pytest.FixtureRequest) -> Iterator[None]:
    """After each test that has a ``tmp_path``, detach what is still mounted in it: a Go,
    skopeo or podman run on an overlay store leaves the driver's home bind-mounted (as Go
    does), and pytest, removing old temporary directories, would fail on it at the end of
    the session. Tests that check for leaked mounts assert that themselves, before this."""
    yield
    tmp = request.node.funcargs.get("tmp_path") if hasattr(request.node, "funcargs") else None
    if tmp is not None:
        release_mounts(tmp)


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
