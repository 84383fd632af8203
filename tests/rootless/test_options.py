"""Rootless default store options against Go's CLI, both run as root for a rootless UID.

With ``_CONTAINERS_ROOTLESS_UID`` exported, Go 1.43 computes a rootless user's defaults (and,
being root, can open the store), so every rule of the rootless defaults can be compared
without a namespace: the roots from the XDG variables or their fallbacks, the user's
storage.conf read alone, ``rootless_storage_path`` with ``$UID``, the system options
dropped, ``STORAGE_OPTS`` appended.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import GO_CONTAINERS_STORAGE

pytestmark = [pytest.mark.root, pytest.mark.gotools]

UID = "4242"


def _status(args: list[str], env: dict[str, str]) -> dict[str, str]:
    proc = subprocess.run([*args, "status"], capture_output=True, text=True, env=env, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = {}
    for line in (proc.stdout + proc.stderr).splitlines():
        key, sep, value = line.partition(": ")
        if sep and key in ("Root", "Run Root", "Driver Name", "Driver Options"):
            out[key] = value
    return out


def _both(tmp: Path, **extra: str) -> tuple[dict[str, str], dict[str, str]]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": os.environ.get("PYTHONPATH", ""),
        "HOME": str(tmp / "home"),
        "TMPDIR": str(tmp / "tmp"),
        "_CONTAINERS_ROOTLESS_UID": UID,
        **extra,
    }
    env = {k: v for k, v in env.items() if v}
    (tmp / "home").mkdir(exist_ok=True)
    (tmp / "tmp").mkdir(exist_ok=True)
    ours = _status([sys.executable, "-m", "containers_storage"], env)
    go = _status([GO_CONTAINERS_STORAGE], env)
    for root in ("Root", "Run Root"):  # the stores were made; the next case starts afresh
        subprocess.run([GO_CONTAINERS_STORAGE, "--graph", go[root], "shutdown"], check=False)
    return ours, go


def _umount_below(tmp: Path) -> None:
    for line in reversed(Path("/proc/self/mountinfo").read_text().splitlines()):
        point = line.split()[4]
        if point.startswith(str(tmp)):
            subprocess.run(["umount", "-l", point], check=False)


@pytest.fixture
def tmp(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path
    _umount_below(tmp_path)


def test_fallbacks_without_xdg_variables(tmp: Path) -> None:
    ours, go = _both(tmp)
    assert ours == go
    assert ours["Run Root"] == f"{tmp}/tmp/containers-user-{UID}/containers"
    assert ours["Root"] == f"{tmp}/home/.local/share/containers/storage"
    assert ours["Driver Name"] == "overlay"
    assert ours["Driver Options"] == "[]"  # the system file's mountopt=nodev is not kept


def test_runtime_dir_not_private_falls_back_to_home(tmp: Path) -> None:
    (tmp / "tmp").mkdir()
    (tmp / "tmp" / f"containers-user-{UID}").mkdir(mode=0o755)
    os.chmod(tmp / "tmp" / f"containers-user-{UID}", 0o755)
    ours, go = _both(tmp)
    assert ours == go
    assert ours["Run Root"] == f"{tmp}/home/rundir/containers"


def test_xdg_variables_and_storage_opts(tmp: Path) -> None:
    (tmp / "xdg").mkdir()
    ours, go = _both(
        tmp,
        XDG_RUNTIME_DIR=str(tmp / "xdg"),
        XDG_DATA_HOME=str(tmp / "data"),
        STORAGE_OPTS="overlay.mountopt=nodev",
    )
    assert ours == go
    assert ours["Root"] == f"{tmp}/data/containers/storage"
    assert ours["Run Root"] == f"{tmp}/xdg/containers"
    assert ours["Driver Options"] == "[overlay.mountopt=nodev]"


def test_user_storage_conf_alone(tmp: Path) -> None:
    conf = tmp / "cfg" / "containers" / "storage.conf"
    conf.parent.mkdir(parents=True)
    conf.write_text(
        '[storage]\ndriver = "vfs"\nrootless_storage_path = "$HOME/rsp/$UID"\n'
        '[storage.options.vfs]\nignore_chown_errors = "true"\n'
    )
    ours, go = _both(tmp, XDG_CONFIG_HOME=str(tmp / "cfg"))
    assert ours == go
    assert ours["Root"] == f"{tmp}/home/rsp/{UID}"
    assert ours["Driver Options"] == "[vfs.ignore_chown_errors=true]"
