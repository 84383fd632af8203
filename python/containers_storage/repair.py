"""Mending what :func:`containers_storage.check.check` found (Go 1.48's ``Store.Repair``).

Damaged layers go with everything built on them: the images made of them (through
:meth:`Store.delete_image`, which takes the layers only they used), then the layers
themselves, children first (:meth:`Store.delete_layer`); containers on them only with
``remove_containers`` (else the damage stays and an error says why). Orphan driver
directories and tar-split files are removed, overlay links and ``lower`` files made again,
stale mount counts reset. Each step takes the store's locks as the public methods do, and
re-reads the store under them before acting, so an item that is sound by then (a layer
podman finished meanwhile, a mount that came back) is left alone. Every step is one
of the store's crash-safe operations: after a kill, running check and repair again ends
the work.

Read-only additional stores are never changed: their problems stay in the report.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

from . import errors
from .check import (
    CheckProblem,
    CheckReport,
    LayerLinkError,
    LayerLowerError,
    LayerMountStaleError,
    LayerUnaccountedError,
    TarSplitUnaccountedError,
)

if TYPE_CHECKING:
    from .drivers.overlay import OverlayDriver
    from .layers import LayerStore
    from .store import Store

__all__ = ["repair"]


def _kinds(problems: list[CheckProblem]) -> set[type[CheckProblem]]:
    return {type(p) for p in problems}


def repair(
    store: Store, report: CheckReport, *, remove_containers: bool = False
) -> list[Exception]:
    """Mend ``store`` as ``report`` says; returns the errors of what could not be done."""
    errs: list[Exception] = []
    if remove_containers:
        for ctr_id in report.containers:
            try:
                store.delete_container(ctr_id)
            except errors.NotAContainerError:
                pass
            except Exception as e:
                errs.append(errors.StorageError(f"deleting container {ctr_id}: {e}"))
    for image_id, problems in report.images.items():
        if not any(p.removes for p in problems):
            continue
        try:
            store.delete_image(image_id)
        except (errors.NotAnImageError, errors.LayerUnknownError):
            pass  # gone already, or a layer of it was (Go ignores these too)
        except Exception as e:
            errs.append(errors.StorageError(f"deleting image {image_id}: {e}"))
    damaged = [i for i, ps in report.layers.items() if any(p.removes for p in ps)]
    _delete_layers(store, damaged, errs)
    rl = store._layer_store()
    with rl.writing():
        for layer_id, problems in report.layers.items():
            kinds = _kinds(problems)
            if LayerUnaccountedError in kinds and layer_id not in rl.by_id:
                _guard(errs, f"deleting storage layer {layer_id}", rl.driver.remove, layer_id)
            if TarSplitUnaccountedError in kinds and layer_id not in rl.by_id:
                path = rl.tar_split_path(layer_id)
                with contextlib.suppress(FileNotFoundError):
                    _guard(errs, f"removing {path}", os.unlink, path)
            if LayerMountStaleError in kinds and layer_id in rl.by_id:
                _reset_mount(rl, layer_id, errs)
        if any({LayerLinkError, LayerLowerError} & _kinds(ps) for ps in report.layers.values()):
            _guard(errs, "repairing overlay links", _repair_links, rl, report)
    return errs


def _guard(errs: list[Exception], what: str, fn: Callable[..., object], *args: object) -> None:
    try:
        fn(*args)
    except FileNotFoundError:
        pass
    except Exception as e:
        errs.append(errors.StorageError(f"{what}: {e}"))


def _delete_layers(store: Store, damaged: list[str], errs: list[Exception]) -> None:
    """Delete the damaged layers and the layers on top of them, children first."""
    if not damaged:
        return
    children: dict[str, list[str]] = {}
    known: set[str] = set()
    for layer in store.layers():
        if not layer.read_only:
            children.setdefault(layer.parent, []).append(layer.id)
            known.add(layer.id)
    order: list[str] = []
    seen: set[str] = set()

    def visit(layer_id: str) -> None:
        if layer_id in seen:
            return
        seen.add(layer_id)
        for child in children.get(layer_id, ()):
            visit(child)
        order.append(layer_id)

    for layer_id in damaged:
        if layer_id in known:
            visit(layer_id)
    users = {c.layer: c.id for c in store.containers()}
    blocked: set[str] = set()
    for layer_id in order:
        if any(child in blocked for child in children.get(layer_id, ())):
            blocked.add(layer_id)
            continue
        if layer_id in users:
            blocked.add(layer_id)
            errs.append(
                errors.LayerUsedByContainerError(
                    f"deleting layer {layer_id}: layer {layer_id} used by container "
                    f"{users[layer_id]}: {errors.LayerUsedByContainerError.go_message}"
                )
            )
            continue
        try:
            store.delete_layer(layer_id)
        except (errors.NotALayerError, errors.LayerUnknownError):
            pass
        except Exception as e:
            blocked.add(layer_id)
            errs.append(errors.StorageError(f"deleting layer {layer_id}: {e}"))


def _reset_mount(rl: LayerStore, layer_id: str, errs: list[Exception]) -> None:
    """Drop a mount count whose mount is gone (checked again under the lock)."""
    path, count = rl.mounts.get(layer_id, ("", 0))
    if count > 0 and not rl.driver_still_mounted(layer_id, path):
        _guard(errs, f"unmounting layer {layer_id}", rl.unmount, layer_id, True)


def _repair_links(rl: LayerStore, report: CheckReport) -> None:
    """overlay: remove dangling ``l/`` links, give every layer its ``link`` file and
    symlink, and write again the ``lower`` files that name missing links (parents first)."""
    from .drivers import overlay

    driver = cast("OverlayDriver", rl.driver)
    home = driver.home
    link_dir = os.path.join(home, "l")
    os.makedirs(link_dir, mode=0o755, exist_ok=True)
    pointing: dict[str, str] = {}
    for name in os.listdir(link_dir):
        path = os.path.join(link_dir, name)
        try:
            target = os.readlink(path)
        except OSError:
            target = ""
        parts = target.split("/")
        layer_id = parts[1] if len(parts) == 3 and parts[0] == ".." else ""
        if not layer_id or not os.path.isdir(os.path.join(home, layer_id, "diff")):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            continue
        pointing.setdefault(layer_id, name)
    for rec in rl.records:
        d = os.path.join(home, rec.id)
        if not os.path.isdir(d):
            continue
        link = (driver._read(os.path.join(d, "link")) or "").strip()
        path = os.path.join(link_dir, link)
        if link and os.path.realpath(path) == os.path.realpath(os.path.join(d, "diff")):
            continue  # sound
        if link and not os.path.lexists(path):
            driver._symlink_link(link, rec.id)
            continue
        # No link file, or its name is another layer's: the layer's own l/ entry if it has
        # one (Go's recreateSymlinks), else a new name.
        link = pointing.get(rec.id) or overlay._link_id()
        if not os.path.lexists(os.path.join(link_dir, link)):
            driver._symlink_link(link, rec.id)
        driver._write_small(os.path.join(d, "link"), link)

    def depth(layer_id: str) -> int:
        n = 0
        rec = rl.by_id.get(layer_id)
        while rec is not None and rec.parent:
            n += 1
            rec = rl.by_id.get(rec.parent)
        return n

    # Parents first: a child's lower file is its parent's link plus the parent's lower.
    bad = [i for i, ps in report.layers.items() if LayerLowerError in _kinds(ps)]
    for layer_id in sorted((i for i in bad if i in rl.by_id), key=depth):
        rec = rl.by_id[layer_id]
        d = os.path.join(home, layer_id)
        if rec.parent and os.path.isdir(d):
            driver._write_small(os.path.join(d, "lower"), driver._lower_of_child(rec.parent))
