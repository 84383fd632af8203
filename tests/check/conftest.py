"""Fixtures of the check tests: the OCI layout they import (built once)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.check.layout import build_layout


@pytest.fixture(scope="session")
def layout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("check-oci") / "layout"
    build_layout(path)
    return path
