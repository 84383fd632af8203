"""Fixtures for the Store tests: one suite, parametrised over the drivers we provide.

Test modules import what they use: ``from storefix import driver, roots, store, go, go_json``.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import containers_storage as cs
import pytest
from conftest import GO_CONTAINERS_STORAGE

#: Drivers every Store test runs with (overlay joins when its driver lands).
STORE_DRIVERS = ["vfs", "overlay"]


@pytest.fixture(params=STORE_DRIVERS)
def driver(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def roots(tmp_path: Path) -> tuple[Path, Path]:
    """(graph root, run root) for a fresh store."""
    return tmp_path / "root", tmp_path / "run"


@pytest.fixture
def store(roots: tuple[Path, Path], driver: str) -> Iterator[cs.Store]:
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


def release_mounts(under: Path) -> list[str]:
    """Detach whatever is still mounted under ``under`` (a Go CLI run leaves the overlay
    home bind-mounted, as Go does); returns what was found, deepest first."""
    from containers_storage import _native
    from containers_storage.drivers.overlay import mountpoints

    prefix = str(under).rstrip("/") + "/"
    found = sorted((p for p in mountpoints() if p.startswith(prefix)), reverse=True)
    for path in found:
        _native.unmount(path, 0)
    return found


def go(
    roots: tuple[Path, Path],
    driver: str,
    *args: str,
    check: bool = True,
    input: bytes | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run Debian's Go containers-storage on the store."""
    cmd = [
        GO_CONTAINERS_STORAGE,
        "--graph",
        str(roots[0]),
        "--run",
        str(roots[1]),
        "--storage-driver",
        driver,
        *args,
    ]
    p = subprocess.run(cmd, capture_output=True, input=input, check=False)
    if check and p.returncode != 0:
        raise AssertionError(f"{cmd} failed ({p.returncode}): {p.stdout!r} {p.stderr!r}")
    return p


def go_json(roots: tuple[Path, Path], driver: str, *args: str) -> Any:
    return json.loads(go(roots, driver, *args).stdout)
