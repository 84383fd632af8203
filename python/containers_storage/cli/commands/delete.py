"""Deletion commands: delete, delete-layer, delete-image, delete-container.

Each argument is tried; failures are reported on stderr as ``<arg>: <error>`` (with
``--json``, as a map of argument to error text) and make the exit code 1.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..output import emit_json, error_text, stderr

if TYPE_CHECKING:
    from ..context import Context

__all__ = ["delete_container", "delete_image", "delete_layer", "delete_thing"]


def _each(ctx: Context, action: Callable[[str], object]) -> int:
    results: dict[str, str] = {}
    for what in ctx.args:
        try:
            action(what)
            results[what] = ""
        except Exception as e:
            results[what] = error_text(e)
    if ctx.json:
        emit_json(results, sort_keys=True)
    else:
        for what, err in results.items():
            if err:
                stderr(f"{what}: {err}")
    return 1 if any(results.values()) else 0


def delete_thing(ctx: Context) -> int:
    """Delete layers, images or containers without safety checks."""
    return _each(ctx, ctx.store.delete)


def delete_layer(ctx: Context) -> int:
    """Delete layers that nothing uses."""
    return _each(ctx, ctx.store.delete_layer)


def delete_container(ctx: Context) -> int:
    """Delete containers and their layers."""
    return _each(ctx, ctx.store.delete_container)


def delete_image(ctx: Context) -> int:
    """Delete images and the layers only they use (with --test, only say which)."""
    commit = not ctx.flag("test")
    results: dict[str, dict[str, Any]] = {}
    for what in ctx.args:
        record: dict[str, Any] = {}
        try:
            layers = ctx.store.delete_image(what, commit)
            if layers:
                record["deleted-layers"] = layers
        except Exception as e:
            record["error"] = error_text(e)
        results[what] = record
    if ctx.json:
        emit_json(results, sort_keys=True)
    else:
        for what, record in results.items():
            if record.get("error"):
                stderr(f"{what}: {record['error']}")
            else:
                for layer_id in record.get("deleted-layers", ()):
                    stderr(f"{what}: {layer_id}")
    return 1 if any(r.get("error") for r in results.values()) else 0
