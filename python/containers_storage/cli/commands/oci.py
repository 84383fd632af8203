"""Image transfer commands (ours): import-image, export-image, unpack-image."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..output import emit_json, print_created, stdout

if TYPE_CHECKING:
    from ...oci import ImageProgress
    from ..context import Context

__all__ = ["export_image", "import_image", "unpack_image"]


def import_image(ctx: Context) -> int:
    """Import oci:DIR[:TAG], oci-archive:FILE[:TAG] or docker-archive:FILE as skopeo would;
    print the image ID and names. A bar per layer and a total on a terminal."""
    from ..progress import MultiProgress

    bars = MultiProgress("total", enabled=not ctx.json)

    def progress(state: ImageProgress) -> None:
        bars.update(state.done, state.sizes)

    image = ctx.store.import_image(ctx.args[0], names=ctx.items("name"), progress=progress)
    print_created(ctx.json, image)
    return 0


def export_image(ctx: Context) -> int:
    """Write an image as an OCI layout (oci:DIR[:TAG]); print the manifest digest."""
    digest = ctx.store.export_image(ctx.args[0], ctx.args[1])
    if ctx.json:
        emit_json({"digest": digest})
    else:
        stdout(digest)
    return 0


def unpack_image(ctx: Context) -> int:
    """Flatten an image's layers into a plain directory."""
    ctx.store.unpack_image(ctx.args[0], ctx.args[1])
    return 0
