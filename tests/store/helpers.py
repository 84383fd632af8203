"""Helpers the Store tests import by name: the Go CLI, skopeo's and podman's view of a store,
and what is left mounted (fixtures are in this directory's conftest.py)."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import GO_CONTAINERS_STORAGE, OURS
from tests.tars import hexpart, sha256

#: Debian's podman 4.3 (built against containers/storage 1.43).
PODMAN = os.environ.get("PODMAN", "/usr/bin/podman")

#: A store's (graph root, run root).
Roots = tuple[Path, Path]


def go_argv(roots: Roots, driver: str, *args: str | os.PathLike[str]) -> list[str]:
    """The command line of Debian's Go containers-storage running ``args`` on the store."""
    return _store_argv((GO_CONTAINERS_STORAGE,), roots, driver, args)


def ours_argv(roots: Roots, driver: str, *args: str | os.PathLike[str]) -> list[str]:
    """The command line of our CLI running ``args`` on the store."""
    return _store_argv(OURS, roots, driver, args)


def _store_argv(
    cmd: Sequence[str], roots: Roots, driver: str, args: Sequence[str | os.PathLike[str]]
) -> list[str]:
    store = ["--graph", str(roots[0]), "--run", str(roots[1]), "--storage-driver", driver]
    return [*cmd, *store, *(os.fspath(a) for a in args)]


def go(
    roots: Roots,
    driver: str,
    *args: str,
    check: bool = True,
    input: bytes | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run Debian's Go containers-storage on the store."""
    cmd = go_argv(roots, driver, *args)
    p = subprocess.run(cmd, capture_output=True, input=input, check=False)
    if check and p.returncode != 0:
        raise AssertionError(f"{cmd} failed ({p.returncode}): {p.stdout!r} {p.stderr!r}")
    return p


def ours(roots: Roots, driver: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run our CLI on the store."""
    return subprocess.run(
        ours_argv(roots, driver, *args), capture_output=True, text=True, check=False
    )


def go_json(roots: Roots, driver: str, *args: str) -> Any:
    return json.loads(go(roots, driver, *args).stdout)


def run(
    cmd: Sequence[str], env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    """Run a tool; fail the test, with its output, when it fails."""
    p = subprocess.run(list(cmd), capture_output=True, env=env, check=False)
    if p.returncode != 0:
        raise AssertionError(f"{cmd} failed ({p.returncode}): {p.stdout!r} {p.stderr!r}")
    return p


def require(tool: str) -> None:
    """Skip (fail under CS_REQUIRE_ALL=1) when a Debian tool is missing."""
    if not os.access(tool, os.X_OK):
        if os.environ.get("CS_REQUIRE_ALL") == "1":
            pytest.fail(f"needs {tool}")
        pytest.skip(f"needs {tool}")


def tool_env(roots: Roots, driver: str) -> dict[str, str]:
    """The environment for skopeo and podman: a storage.conf of our own (the store's roots
    and driver) so that the host's default store is never touched."""
    conf = roots[0].parent / f"storage-{roots[0].name}.conf"
    conf.write_text(
        f'[storage]\ndriver = "{driver}"\ngraphroot = "{roots[0]}"\nrunroot = "{roots[1]}"\n'
    )
    return {**os.environ, "CONTAINERS_STORAGE_CONF": str(conf)}


def cs_ref(roots: Roots, driver: str, name: str) -> str:
    """containers/image's reference to image ``name`` in the store."""
    return f"containers-storage:[{driver}@{roots[0]}+{roots[1]}]{name}"


def podman(roots: Roots, driver: str, *args: str) -> subprocess.CompletedProcess[bytes]:
    """Run Debian's podman on the store."""
    require(PODMAN)
    cmd = [PODMAN, *podman_args(roots), f"--storage-driver={driver}", *args]
    return run(cmd, tool_env(roots, driver))


def podman_args(roots: Roots) -> list[str]:
    """podman's global options for a store: cgroupfs and file events (no systemd here), its
    tmpdir next to the store (its run root must be at most 50 characters long)."""
    tmpdir = roots[0].parent / f"podman-tmp-{roots[0].name}"
    tmpdir.mkdir(exist_ok=True)
    return [
        "--root",
        str(roots[0]),
        "--runroot",
        str(roots[1]),
        "--cgroup-manager=cgroupfs",
        "--events-backend=file",
        "--tmpdir",
        str(tmpdir),
    ]


def put_blob(layout: Path, blob: bytes) -> str:
    """Write ``blob`` into an OCI layout's ``blobs/sha256``; returns its digest."""
    digest = sha256(blob)
    (layout / "blobs" / "sha256" / hexpart(digest)).write_bytes(blob)
    return digest


def compact(obj: Any) -> bytes:
    """JSON as image configs, manifests and indexes are written: compact, keys sorted."""
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()


def mounted_under(path: Path) -> list[str]:
    """Mount points at or below ``path`` (from /proc/self/mountinfo)."""
    prefix = os.fspath(path)
    out = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point == prefix or point.startswith(prefix + "/"):
            out.append(point)
    return out


def assert_nothing_mounted_under(path: Path) -> None:
    """Fail when anything is mounted at or below ``path``, after detaching it all."""
    left = mounted_under(path)
    for point in sorted(left, reverse=True):
        subprocess.run(["umount", "-l", point], check=False)
    assert not left, f"left mounted: {left}"


def release_mounts(under: Path) -> list[str]:
    """Detach whatever is still mounted under ``under`` (a Go CLI run leaves the overlay
    home bind-mounted, as Go does); returns what was found, deepest first."""
    from containers_storage import _native
    from containers_storage.drivers.overlay import mountpoints

    prefix = str(under).rstrip("/") + "/"
    found = sorted((p for p in mountpoints() if p.startswith(prefix)), reverse=True)
    for path in found:
        _native.unmount(path)
    return found
