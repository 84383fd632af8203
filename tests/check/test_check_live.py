"""check beside live tools: a store podman is running a container from reports nothing,
and a repair killed at any step (SIGKILL) ends clean when run again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import containers_storage as cs
import pytest

from tests.check import faults
from tests.check.faults import SECOND, Ctx
from tests.check.layout import build_layout, populate, runnable_tar
from tests.check.test_check import assert_images_reproduce, assert_listed_by_go_and_podman
from tests.store.helpers import PODMAN, podman_args, release_mounts, require, run, tool_env

pytestmark = [pytest.mark.root, pytest.mark.gotools]


def test_healthy_while_podman_runs_a_container(
    layout: Path, short_dir: Path, driver: str, tmp_path: Path
) -> None:
    require(PODMAN)
    roots = short_dir / "root", short_dir / "run"
    populate(layout, roots, driver, "ours")
    build_layout(tmp_path / "runnable", {"localhost/runnable:1": (runnable_tar(),)})
    with cs.Store(roots[0], roots[1], driver) as store:
        store.import_image(f"oci:{tmp_path / 'runnable'}:runnable", ["localhost/runnable:1"])
    env = tool_env(roots, driver)
    podman = [PODMAN, *podman_args(roots), f"--storage-driver={driver}", "--runtime", "runc"]
    # podman's default limits are past what a process without CAP_SYS_RESOURCE may set.
    limits = ["--ulimit=nofile=1024:1024", "--ulimit=nproc=4096:4096"]
    image, command = "localhost/runnable:1", ["/bin/sleep", "600"]
    run([*podman, "run", "-d", *limits, "--name", "sleeper", image, *command], env)
    try:
        with cs.Store(roots[0], roots[1], driver) as store:
            ctr = store.container("sleeper")
            assert store.mounted(ctr.id) > 0
            for quick in (False, True):
                report = store.check(quick=quick)
                assert not report, report.to_json()
            assert store.repair(store.check()) == []
            assert store.mounted(ctr.id) > 0
        state = run([*podman, "inspect", "--format", "{{.State.Status}}", "sleeper"], env)
        assert state.stdout.strip() == b"running"
    finally:
        subprocess.run([*podman, "rm", "-f", "-t", "0", "sleeper"], env=env, check=False)
        release_mounts(short_dir)


#: Run in a child: check, then repair, SIGKILLed just before its Nth step (a rename, an
#: unlink, a symlink or a tree removal). Exits 0 when repair ran to its end.
CHILD = r"""
import os, signal, sys
import containers_storage as cs
from containers_storage import _native
graph, run_root, driver, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
store = cs.Store(graph, run_root, driver)
report = store.check()
count = [0]
def step(fn):
    def wrapped(*args, **kwargs):
        count[0] += 1
        if count[0] == n:
            os.kill(os.getpid(), signal.SIGKILL)
        return fn(*args, **kwargs)
    return wrapped
os.rename = step(os.rename)
os.unlink = step(os.unlink)
os.symlink = step(os.symlink)
_native.remove_tree = step(_native.remove_tree)
errs = store.repair(report, remove_containers=True)
sys.exit(1 if errs else 0)
"""


def damage(ctx: Ctx) -> None:
    faults.resize(ctx)
    faults.orphan_directory(ctx)
    faults.orphan_tar_split(ctx)
    faults.container_layer_missing(ctx)
    if ctx.driver == "overlay":
        faults.link_file_missing(ctx)
        faults.link_missing(ctx)
        faults.stale_mount(ctx)


def test_repair_killed_at_each_step_then_rerun_ends_clean(
    layout: Path, short_dir: Path, driver: str
) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    for n in range(1, 200):
        base = short_dir / f"n{n}"
        roots = base / "root", base / "run"
        ids = populate(layout, roots, driver, "ours")
        damage(Ctx(roots, driver, ids))
        args = [sys.executable, "-c", CHILD, str(roots[0]), str(roots[1]), driver, str(n)]
        p = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
        if p.returncode == 0:
            break
        assert p.returncode == -signal.SIGKILL, p.stderr
        with cs.Store(roots[0], roots[1], driver) as store:
            assert store.repair(store.check(), remove_containers=True) == []
            assert not store.check(), store.check().to_json()
            assert_images_reproduce(store, ids, {SECOND})
            assert {n for i in store.images() for n in i.names} == {SECOND}
        assert_listed_by_go_and_podman(roots, driver)
        release_mounts(base)
    else:
        pytest.fail("repair never ran to its end")
    release_mounts(short_dir)
    assert n > 10, "too few steps to be a test"
