"""Big-data commands: list-, get-, get-…-size, get-…-digest and set-…-data for images,
containers and layers."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, BinaryIO

from ...digests import sha256_digest, validate_digest
from ...errors import InvalidDigestError
from ..output import emit_json, nil_if_empty, os_error_text, stderr, stdout

if TYPE_CHECKING:
    from ..context import Context

__all__ = [
    "get_container_data",
    "get_container_data_digest",
    "get_container_data_size",
    "get_image_data",
    "get_image_data_digest",
    "get_image_data_size",
    "get_layer_data",
    "list_container_data",
    "list_image_data",
    "list_layer_data",
    "set_container_data",
    "set_image_data",
    "set_layer_data",
]


def _id(ctx: Context, kind: str) -> str:
    """The ID of the item named by the first argument (the Store's lookup error if none)."""
    found: Any = getattr(ctx.store, kind)(ctx.args[0])
    return str(found.id)


def _list(ctx: Context, kind: str) -> int:
    keys: list[str] = getattr(ctx.store, f"list_{kind}_big_data")(_id(ctx, kind))
    if ctx.json:
        emit_json(nil_if_empty(keys))
    else:
        for key in keys:
            stdout(key)
    return 0


def _get(ctx: Context, kind: str) -> int:
    item = _id(ctx, kind)
    path = ctx.text("file")
    out: BinaryIO
    if path:
        try:
            out = open(path, "wb")
        except OSError as e:
            stderr(os_error_text(e))
            return 1
    else:
        sys.stdout.flush()
        out = sys.stdout.buffer
    try:
        data: bytes = getattr(ctx.store, f"{kind}_big_data")(item, ctx.args[1])
        out.write(data)
    finally:
        if path:
            out.close()
        else:
            out.flush()
    return 0


def _size(ctx: Context, kind: str) -> int:
    size: int = getattr(ctx.store, f"{kind}_big_data_size")(_id(ctx, kind), ctx.args[1])
    stdout(str(size))
    return 0


def _digest(ctx: Context, kind: str) -> int:
    digest: str = getattr(ctx.store, f"{kind}_big_data_digest")(_id(ctx, kind), ctx.args[1])
    try:
        validate_digest(digest)
    except InvalidDigestError as e:
        stderr(str(e))
        return 1
    stdout(digest)
    return 0


def _set(ctx: Context, kind: str) -> int:
    item = _id(ctx, kind)
    path = ctx.text("file")
    try:
        if path:
            with open(path, "rb") as f:
                data = f.read()
        else:
            data = sys.stdin.buffer.read()
    except OSError as e:
        stderr(os_error_text(e, "read" if isinstance(e, IsADirectoryError) else "open"))
        return 1
    if kind == "image":
        # Go's CLI digests manifests as plain bytes ("with sometimes wrong digest").
        ctx.store.set_image_big_data(item, ctx.args[1], data, sha256_digest)
    else:
        getattr(ctx.store, f"set_{kind}_big_data")(item, ctx.args[1], data)
    return 0


def list_image_data(ctx: Context) -> int:
    """List an image's big-data keys."""
    return _list(ctx, "image")


def get_image_data(ctx: Context) -> int:
    """Write one of an image's big-data items to --file or stdout."""
    return _get(ctx, "image")


def get_image_data_size(ctx: Context) -> int:
    """Print the size of one of an image's big-data items."""
    return _size(ctx, "image")


def get_image_data_digest(ctx: Context) -> int:
    """Print the digest of one of an image's big-data items."""
    return _digest(ctx, "image")


def set_image_data(ctx: Context) -> int:
    """Store --file (or stdin) as one of an image's big-data items."""
    return _set(ctx, "image")


def list_container_data(ctx: Context) -> int:
    """List a container's big-data keys."""
    return _list(ctx, "container")


def get_container_data(ctx: Context) -> int:
    """Write one of a container's big-data items to --file or stdout."""
    return _get(ctx, "container")


def get_container_data_size(ctx: Context) -> int:
    """Print the size of one of a container's big-data items."""
    return _size(ctx, "container")


def get_container_data_digest(ctx: Context) -> int:
    """Print the digest of one of a container's big-data items."""
    return _digest(ctx, "container")


def set_container_data(ctx: Context) -> int:
    """Store --file (or stdin) as one of a container's big-data items."""
    return _set(ctx, "container")


def list_layer_data(ctx: Context) -> int:
    """List a layer's big-data keys."""
    return _list(ctx, "layer")


def get_layer_data(ctx: Context) -> int:
    """Write one of a layer's big-data items to --file or stdout."""
    return _get(ctx, "layer")


def set_layer_data(ctx: Context) -> int:
    """Store --file (or stdin) as one of a layer's big-data items."""
    return _set(ctx, "layer")
