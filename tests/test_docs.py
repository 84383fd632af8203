"""The documentation: every public module in the API reference, every public name with a
docstring, and the site building with warnings as errors."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import pkgutil
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import containers_storage
import pytest

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "docs" / "reference"

#: Modules that are not API (reached through Store; docs/reference/index.md says so).
INTERNAL = (
    "containers_storage.cli",
    "containers_storage.layers",
    "containers_storage.images",
    "containers_storage.containers",
    "containers_storage.drivers",
)


def _public_modules() -> list[str]:
    out = ["containers_storage"]
    for info in pkgutil.walk_packages(containers_storage.__path__, "containers_storage."):
        parts = info.name.split(".")
        if any(p.startswith("_") for p in parts) or info.name.startswith(INTERNAL):
            continue
        out.append(info.name)
    return out


def _documented() -> tuple[set[str], set[str]]:
    """Modules named by a ``:::`` directive, and those whose submodules are shown too."""
    named: set[str] = set()
    with_submodules: set[str] = set()
    for page in REFERENCE.glob("*.md"):
        text = page.read_text()
        for m in re.finditer(r"^::: ([\w.]+)\n((?:    .*\n)*)", text, re.M):
            named.add(m.group(1))
            if "show_submodules: true" in m.group(2):
                with_submodules.add(m.group(1))
    return named, with_submodules


def test_every_public_module_is_in_the_reference() -> None:
    named, with_submodules = _documented()
    missing = [
        m
        for m in _public_modules()
        if m not in named and not any(m.startswith(p + ".") for p in with_submodules)
    ]
    assert missing == []
    index = (REFERENCE / "index.md").read_text()
    for module in INTERNAL:
        assert f"`{module}`" in index or f"`.{module.rsplit('.', 1)[1]}`" in index, module


def _names(module: ModuleType) -> list[tuple[str, object]]:
    return [(name, getattr(module, name)) for name in getattr(module, "__all__", ())]


def test_every_public_name_has_a_docstring() -> None:
    missing = []
    for name in _public_modules():
        module = importlib.import_module(name)
        if not (module.__doc__ or "").strip():
            missing.append(name)
        for attr, obj in _names(module):
            if not (inspect.isclass(obj) or inspect.isroutine(obj)):
                continue  # constants and type aliases: described in the module's docstring
            if not (inspect.getdoc(obj) or "").strip():
                missing.append(f"{name}.{attr}")
            if not inspect.isclass(obj):
                continue
            for member, value in vars(obj).items():
                if member.startswith("_"):
                    continue
                if isinstance(value, property | staticmethod | classmethod) or inspect.isroutine(
                    value
                ):
                    if not (inspect.getdoc(getattr(obj, member)) or "").strip():
                        missing.append(f"{name}.{attr}.{member}")
    assert missing == []


def test_docs_build_strict(tmp_path: Path) -> None:
    if not all(importlib.util.find_spec(m) for m in ("mkdocs", "mkdocstrings", "material")):
        if os.environ.get("CS_REQUIRE_ALL") == "1":
            pytest.fail("needs mkdocs, mkdocs-material and mkdocstrings[python]")
        pytest.skip("needs mkdocs, mkdocs-material and mkdocstrings[python]")
    p = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        check=False,
    )
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "reference" / "store" / "index.html").is_file()
