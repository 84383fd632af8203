"""``exists``: whether layers, images or containers are known by the names given."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..output import emit_json, stdout

if TYPE_CHECKING:
    from ..context import Context

__all__ = ["exists"]


def _is(ctx: Context, kind: str, what: str) -> bool:
    try:
        getattr(ctx.store, kind)(what)
    except LookupError:
        return False
    return True


def exists(ctx: Context) -> int:
    """Print ``<arg>: true|false`` per argument; exit 1 if any is missing, or is not of the
    kind --layer, --image or --container asks for."""
    found: dict[str, bool] = {}
    missing = False
    for what in ctx.args:
        present = ctx.store.exists(what)
        found[what] = present
        for kind in ("container", "image", "layer"):
            if ctx.flag(kind) and not _is(ctx, kind, what):
                present = False
        missing = missing or not present
    if ctx.json:
        emit_json(found, sort_keys=True)
    elif not ctx.flag("quiet"):
        for what, present in found.items():
            stdout(f"{what}: {'true' if present else 'false'}")
    return 1 if missing else 0
