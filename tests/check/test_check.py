"""check and repair against fault injection, on stores written by us and by skopeo: check
reports exactly the damage made; after repair a second check is clean, the Go CLI and
podman list the store, and every image left reproduces its layers byte for byte."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import containers_storage as cs
import pytest
from containers_storage import check as chk

from tests.check import faults
from tests.check.faults import FIRST, SECOND, Ctx, Finding, findings
from tests.check.layout import IMAGES, Populated, populate
from tests.store.helpers import (
    PODMAN,
    Roots,
    go,
    podman_args,
    release_mounts,
    require,
    run,
    tool_env,
)

pytestmark = [pytest.mark.root, pytest.mark.gotools, pytest.mark.skopeo]

WRITERS = ["ours", "skopeo"]


def roots_in(base: Path) -> Roots:
    return base / "root", base / "run"


def open_store(roots: Roots, driver: str, options: tuple[str, ...] = ()) -> cs.Store:
    return cs.Store(roots[0], roots[1], driver, options)


def layer_tar(store: cs.Store, layer_id: str) -> bytes:
    return b"".join(store.diff(None, layer_id, compression="none"))


def assert_listed_by_go_and_podman(roots: Roots, driver: str) -> None:
    for what in ("layers", "images", "containers"):
        p = go(roots, driver, what)
        assert p.stderr == b"", p.stderr
    require(PODMAN)
    env = tool_env(roots, driver)
    run([PODMAN, *podman_args(roots), f"--storage-driver={driver}", "images"], env)
    run([PODMAN, *podman_args(roots), f"--storage-driver={driver}", "ps", "-a"], env)


def assert_images_reproduce(store: cs.Store, ids: Populated, names: set[str]) -> None:
    """Each image in ``names`` is there and gives back the tars it was made from."""
    for name in names:
        image = store.image(name)
        assert image.id == ids.images[name]
        chain = ids.layers[name]
        assert store.image(name).layer == chain[-1]
        for layer_id, tar in zip(chain, IMAGES[name], strict=True):
            got = layer_tar(store, layer_id)
            assert hashlib.sha256(got).digest() == hashlib.sha256(tar).digest(), layer_id


def image_records(roots: Roots, driver: str) -> dict[str, object]:
    path = roots[0] / f"{driver}-images" / "images.json"
    return {r["id"]: r for r in json.loads(path.read_text())}


# -- a store with nothing wrong -------------------------------------------------------------


@pytest.mark.parametrize("writer", WRITERS)
def test_healthy_store_reports_nothing(
    layout: Path, short_dir: Path, driver: str, writer: str
) -> None:
    roots = roots_in(short_dir)
    populate(layout, roots, driver, writer)
    with open_store(roots, driver) as store:
        for quick in (False, True):
            report = store.check(quick=quick)
            assert not report, report.to_json()
            assert report.to_json() == {
                "Layers": {},
                "ROLayers": {},
                "Images": {},
                "ROImages": {},
                "Containers": {},
            }
    release_mounts(short_dir)


# -- one fault at a time --------------------------------------------------------------------


def fault_cases() -> list[object]:
    cases: list[object] = []
    for fault in faults.COMMON:
        cases.append(pytest.param(fault, None, id=fault.__name__))
    for fault in faults.OVERLAY:
        cases.append(pytest.param(fault, "overlay", id=fault.__name__))
    return cases


@pytest.mark.parametrize("writer", WRITERS)
@pytest.mark.parametrize(("fault", "only"), fault_cases())
def test_fault_is_found_and_repaired(
    layout: Path,
    short_dir: Path,
    driver: str,
    writer: str,
    fault: Callable[[Ctx], set[Finding]],
    only: str | None,
) -> None:
    if only is not None and driver != only:
        pytest.skip(f"{only} only")
    roots = roots_in(short_dir)
    ids = populate(layout, roots, driver, writer)
    expected = fault(Ctx(roots, driver, ids))
    before = image_records(roots, driver)

    with open_store(roots, driver) as store:
        report = store.check()
        assert findings(report) == expected
        quick = findings(store.check(quick=True))
        assert quick == (set() if fault is faults.modify else expected)

        # Repair: the damaged images go, the others keep their records untouched.
        damaged = {key for section, key, _ in expected if section == "images"}
        assert store.repair(report, remove_containers=True) == []
        assert not store.check(), store.check().to_json()
        after = image_records(roots, driver)
        for image_id, rec in before.items():
            if image_id not in damaged and image_id in after:
                assert after[image_id] == rec
        kept = {n for n in IMAGES if ids.images[n] in after}
        assert kept == {n for n in IMAGES if ids.images[n] in before} - {
            n for n in IMAGES if ids.images[n] in damaged
        }
        assert_images_reproduce(store, ids, kept)
    assert_listed_by_go_and_podman(roots, driver)
    release_mounts(short_dir)


def test_repair_keeps_containers_unless_told(layout: Path, short_dir: Path, driver: str) -> None:
    """A damaged base layer under a container: without remove_containers the container,
    its image and the layers under it stay, with errors saying why, and check still
    reports the damage; with it, everything built on the layer goes."""
    roots = roots_in(short_dir)
    ids = populate(layout, roots, driver, "ours")
    faults.remove_file(Ctx(roots, driver, ids))
    with open_store(roots, driver) as store:
        errs = store.repair(store.check())
        assert errs
        assert any(isinstance(e, cs.errors.StorageError) for e in errs)
        assert [c.id for c in store.containers()] == [ids.container]
        assert store.image(SECOND).id == ids.images[SECOND]
        report = store.check()
        assert ("layers", ids.layers[FIRST][0], chk.LayerContentModifiedError) in findings(report)
        assert FIRST not in {n for i in store.images() for n in i.names}

        assert store.repair(report, remove_containers=True) == []
        assert not store.check()
        assert store.containers() == []
        assert store.images() == []
    assert_listed_by_go_and_podman(roots, driver)
    release_mounts(short_dir)


def test_problem_messages_name_what_is_wrong(layout: Path, short_dir: Path, driver: str) -> None:
    roots = roots_in(short_dir)
    ids = populate(layout, roots, driver, "ours")
    ctx = Ctx(roots, driver, ids)
    faults.modify(ctx)
    faults.resize(ctx)
    (ctx.content(ctx.l3) / "srv/abs").unlink()
    with open_store(roots, driver) as store:
        report = store.check()
    msgs = sorted(str(p) for p in report.layers[ctx.l3])
    assert msgs == [
        f'layer {ctx.l3}: missing "srv/abs": layer content modified',
        f'layer {ctx.l3}: modified "srv/top.txt" (content differs from its recorded CRC-64): '
        "layer content modified",
    ]
    [msg] = [str(p) for p in report.layers[ctx.l2]]
    assert msg == (
        f'layer {ctx.l2}: modified "etc/hostname" (size 12, recorded 7): layer content modified'
    )
    release_mounts(short_dir)
