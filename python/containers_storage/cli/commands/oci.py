"""Image transfer commands (ours): import-image, export-image, unpack-image."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import TYPE_CHECKING

from ..output import emit_json, os_error_text, print_created, stderr, stdout

if TYPE_CHECKING:
    from ...oci import ImageProgress
    from ..context import Context

__all__ = ["export_image", "import_image", "unpack_image"]


def _os_errors(command: Callable[[Context], int]) -> Callable[[Context], int]:
    """A file that cannot be opened or written is Go's one line (``open /x: no such file or
    directory``); the store's own errors go to the caller."""

    @wraps(command)
    def run(ctx: Context) -> int:
        from ...errors import StorageError

        try:
            return command(ctx)
        except OSError as e:
            if isinstance(e, StorageError) or not e.strerror:
                raise
            stderr(os_error_text(e))
            return 1

    return run


@_os_errors
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


@_os_errors
def export_image(ctx: Context) -> int:
    """Write an image as an OCI layout (oci:DIR[:TAG]); print the manifest digest."""
    digest = ctx.store.export_image(ctx.args[0], ctx.args[1])
    if ctx.json:
        emit_json({"digest": digest})
    else:
        stdout(digest)
    return 0


@_os_errors
def unpack_image(ctx: Context) -> int:
    """Flatten an image's layers into a plain directory."""
    ctx.store.unpack_image(ctx.args[0], ctx.args[1])
    return 0
