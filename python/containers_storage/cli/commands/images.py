"""Image commands: create-image, images, images-by-digest, image."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...digests import validate_digest
from ...errors import InvalidDigestError
from ..output import emit_json, error_text, nil_if_empty, print_created, record, stderr, stdout

if TYPE_CHECKING:
    from ...records import Image
    from ..context import Context

__all__ = ["create_image", "image", "images", "images_by_digest"]


def create_image(ctx: Context) -> int:
    """Record an image on the top layer given (or none); print its ID and names."""
    metadata = ctx.metadata()
    if metadata is None:
        return 1
    image = ctx.store.create_image(
        ctx.args[0] if ctx.args else None,
        id=ctx.text("id"),
        names=ctx.items("name"),
        metadata=metadata,
        digest=ctx.text("digest"),
    )
    print_created(ctx.json, image)
    return 0


def _print_list(ctx: Context, found: list[Image], nil_when_empty: bool = False) -> None:
    if ctx.json:
        docs = [record(x) for x in found]
        emit_json(nil_if_empty(docs) if nil_when_empty else docs)
        return
    quiet = ctx.flag("quiet")
    for x in found:
        stdout(x.id)
        if quiet:
            continue
        for name in x.names:
            stdout(f"\tname: {name}")
        for digest in x.digests:
            stdout(f"\tdigest: {digest}")
        for name in x.big_data_names:
            stdout(f"\tdata: {name}")


def images(ctx: Context) -> int:
    """List images (IDs only with --quiet)."""
    _print_list(ctx, ctx.store.images(), nil_when_empty=True)
    return 0


def images_by_digest(ctx: Context) -> int:
    """List the images whose digest, or a manifest's, is the one given."""
    found: list[Image] = []
    for arg in ctx.args:
        try:
            validate_digest(arg)
        except InvalidDigestError as e:
            stderr(f"{arg}: {e}")
            return 1
        found.extend(ctx.store.images_by_digest(arg))
    _print_list(ctx, found)
    return 0


def image(ctx: Context) -> int:
    """Describe images, with their sizes; exit 1 if any argument is not an image."""
    store = ctx.store
    matched = ctx.lookup_args(store.image)
    if ctx.json:
        emit_json([record(x) for x in matched])
    else:
        for x in matched:
            stdout(f"ID: {x.id}")
            for name in x.names:
                stdout(f"Name: {name}")
            stdout(f"Top Layer: {x.layer}")
            for layer_id in x.mapped_layers:
                stdout(f"Top Layer: {layer_id}")
            for digest in x.digests:
                stdout(f"Digest: {digest}")
            for name in x.big_data_names:
                stdout(f"Data: {name}")
            try:
                stdout(f"Size: {store.image_size(x.id)}")
            except Exception as e:
                stdout(f"Size unknown: {error_text(e)}")
            if x.read_only:
                stdout("Read Only: true")
    return 0 if len(matched) == len(ctx.args) else 1
