"""Names and metadata: get-names, add-names, set-names, metadata, set-metadata."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..output import emit_json, nil_if_empty, stderr, stdout

if TYPE_CHECKING:
    from ..context import Context

__all__ = ["add_names", "get_names", "metadata", "set_metadata", "set_names"]


def get_names(ctx: Context) -> int:
    """Print the names of a layer, image or container, one a line."""
    store = ctx.store
    names = store.names(store.lookup(ctx.args[0]))
    if ctx.json:
        emit_json(names)
    else:
        for name in names:
            stdout(name)
    return 0


def add_names(ctx: Context) -> int:
    """Give a layer, image or container more names (taken from others of its kind)."""
    store = ctx.store
    item = store.lookup(ctx.args[0])
    store.set_names(item, [*store.names(item), *ctx.items("name")])
    if ctx.json:
        emit_json(nil_if_empty(store.names(item)))
    return 0


def set_names(ctx: Context) -> int:
    """Replace the names of a layer, image or container."""
    store = ctx.store
    item = store.lookup(ctx.args[0])
    store.set_names(item, ctx.items("name"))
    if ctx.json:
        emit_json(nil_if_empty(store.names(item)))
    return 0


def metadata(ctx: Context) -> int:
    """Print ``<arg>: <metadata>`` per argument (the value only with --quiet)."""
    found: dict[str, str] = {}
    missing = False
    for what in ctx.args:
        try:
            found[what] = ctx.store.metadata(what).removesuffix("\n")
        except LookupError:
            missing = True
    if ctx.json:
        emit_json(found, sort_keys=True)
    else:
        for what in ctx.args:
            value = found.get(what, "")
            stdout(value if ctx.flag("quiet") else f"{what}: {value}")
    return 1 if missing else 0


def set_metadata(ctx: Context) -> int:
    """Set the metadata of a layer, image or container from --metadata or --metadata-file."""
    if not ctx.text("metadata") and not ctx.text("metadata_file"):
        stderr("no new metadata provided")
        return 1
    value = ctx.metadata()
    if value is None:
        return 1
    ctx.store.set_metadata(ctx.args[0], value)
    return 0
