"""``containers-storage check``: output, --json, exit codes, --repair and --force, and a
read-only additional store (in a process of its own: this one holds the shared store's
locks read-write)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.check import faults
from tests.check.faults import FIRST, SECOND, Ctx
from tests.check.layout import populate
from tests.store.helpers import Roots, release_mounts

pytestmark = [pytest.mark.root, pytest.mark.gotools]

EMPTY: dict[str, dict[str, list[str]]] = {
    "Layers": {},
    "ROLayers": {},
    "Images": {},
    "ROImages": {},
    "Containers": {},
}


def cli(roots: Roots, driver: str, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "containers_storage", "-g", str(roots[0]), "-R", str(roots[1])]
    return subprocess.run([*argv, "-s", driver, *args], capture_output=True, text=True, check=False)


def test_check_exit_codes_output_and_repair(layout: Path, short_dir: Path, driver: str) -> None:
    roots = short_dir / "root", short_dir / "run"
    ids = populate(layout, roots, driver, "ours")
    p = cli(roots, driver, "check")
    assert (p.returncode, p.stdout, p.stderr) == (0, "", "")
    p = cli(roots, driver, "check", "--json")
    assert (p.returncode, json.loads(p.stdout), p.stderr) == (0, EMPTY, "")

    ctx = Ctx(roots, driver, ids)
    faults.remove_file(ctx)
    l1, a, b, c = ctx.l1, ctx.a, ctx.b, ctx.c
    problem = f'layer {l1}: missing "usr/share/big.bin": layer content modified'
    p = cli(roots, driver, "check")
    assert p.returncode == 1
    assert p.stdout.splitlines() == [
        f"layer {l1}:",
        f" {problem}",
        f"image {a}:",
        f" {problem}",
        f"image {b}:",
        f" {problem}",
        f"container {c}:",
        f" {problem}",
    ]
    assert p.stderr == (
        "check: 1 layer errors, 0 read-only layer errors, 2 image errors, "
        "0 read-only image errors, 1 container errors\n"
    )
    for flag in ("--quick", "-q"):
        p = cli(roots, driver, "check", flag, "-j")
        assert p.returncode == 1
        assert json.loads(p.stdout) == {
            **EMPTY,
            "Layers": {l1: [problem]},
            "Images": {a: [problem], b: [problem]},
            "Containers": {c: [problem]},
        }

    # --repair keeps the container, so the damage stays: exit 1.
    p = cli(roots, driver, "check", "--repair")
    assert p.returncode == 1
    assert f"used by container {c}" in p.stderr or "image used by" in p.stderr, p.stderr
    p = cli(roots, driver, "check", "--json")
    assert p.returncode == 1
    assert c in json.loads(p.stdout)["Containers"]

    # --force takes the container too.
    p = cli(roots, driver, "check", "--force")
    assert p.returncode == 0, p.stderr
    p = cli(roots, driver, "check", "--json")
    assert (p.returncode, json.loads(p.stdout)) == (0, EMPTY)
    p = cli(roots, driver, "images", "--json")
    assert json.loads(p.stdout) in ([], None)
    release_mounts(short_dir)


def test_read_only_store(layout: Path, short_dir: Path, driver: str) -> None:
    shared = short_dir / "shared" / "root", short_dir / "shared" / "run"
    ids = populate(layout, shared, driver, "ours")
    ctx = Ctx(shared, driver, ids)
    faults.modify(ctx)
    release_mounts(short_dir)
    roots = short_dir / "root", short_dir / "run"
    opt = ("--storage-opt", f"{driver}.imagestore={shared[0]}")
    l3, a = ctx.l3, ctx.a
    problem = (
        f'read-only layer {l3}: modified "srv/top.txt" (content differs from its recorded '
        "CRC-64): layer content modified"
    )
    p = cli(roots, driver, *opt, "check", "--json")
    assert p.returncode == 1
    assert json.loads(p.stdout) == {
        **EMPTY,
        "ROLayers": {l3: [problem]},
        "ROImages": {a: [problem]},
    }
    # Quick checks do not read file content: same size, so nothing.
    p = cli(roots, driver, *opt, "check", "--quick")
    assert (p.returncode, p.stdout) == (0, "")

    p = cli(roots, driver, *opt, "check", "--force")
    assert p.returncode == 1
    assert p.stderr == "check: 1 read-only layer errors, 1 read-only image errors\n"
    assert (ctx.content(l3) / "srv/top.txt").read_bytes() == b"TOP LAYER\n"
    p = cli(roots, driver, *opt, "images", "--json")
    assert {n for i in json.loads(p.stdout) for n in i["names"]} == {FIRST, SECOND}
    release_mounts(short_dir)
