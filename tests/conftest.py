"""Hooks and fixtures for the whole suite (helpers the tests import are in
:mod:`tests.helpers`).

Set ``CS_REQUIRE_ALL=1`` (``.ci/run`` does) to turn every skip into a failure: in CI the
root-only and Go-tool tests must run, not be skipped.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.helpers import GO_CONTAINERS_STORAGE, SKOPEO, Child


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
