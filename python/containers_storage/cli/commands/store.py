"""Store-wide commands: status, version, shutdown, wipe."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..flags import go_list
from ..output import emit_json, error_text, stderr

if TYPE_CHECKING:
    from ..context import Context

__all__ = ["shutdown", "status", "version", "wipe"]


def status(ctx: Context) -> int:
    """Print the roots, driver, options and driver status pairs (on stderr, as Go does)."""
    store = ctx.store
    try:
        pairs = [list(p) for p in store.status()]
    except Exception as e:
        stderr(f"status: {error_text(e)}")
        return 1
    basics = [
        ["Root", store.graph_root()],
        ["Run Root", store.run_root()],
        ["Driver Name", store.graph_driver_name()],
        ["Driver Options", go_list(store.graph_options())],
    ]
    report = basics + pairs
    if ctx.json:
        emit_json(report)
    else:
        for key, value in report:
            stderr(f"{key}: {value}")
    return 0


def version(ctx: Context) -> int:
    """The store's version pairs: none (Go prints nothing either; ``--version`` is ours)."""
    pairs = [list(p) for p in ctx.store.version()]
    if ctx.json:
        emit_json(pairs)
    else:
        for key, value in pairs:
            stderr(f"{key}: {value}")
    return 0


def _result(ctx: Context, action: str, err: BaseException | None) -> int:
    if ctx.json:
        # Go encodes a nil error as "" and an error value as an object without fields.
        emit_json("" if err is None else {})
    elif err is not None:
        stderr(f"{action}: {error_text(err)}")
    return 0 if err is None else 1


def shutdown(ctx: Context) -> int:
    """Release the store (unmounting what is mounted with --force)."""
    try:
        ctx.store.shutdown(ctx.flag("force"))
    except Exception as e:
        return _result(ctx, ctx.name, e)
    return _result(ctx, ctx.name, None)


def wipe(ctx: Context) -> int:
    """Delete every container, image and layer."""
    try:
        ctx.store.wipe()
    except Exception as e:
        return _result(ctx, ctx.name, e)
    return _result(ctx, ctx.name, None)
