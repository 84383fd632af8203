"""``pull``: an image from a registry into the store, as podman pull does."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..output import emit_json, record, stdout

if TYPE_CHECKING:
    from ...oci import ImageProgress
    from ..context import Context

__all__ = ["pull"]


def pull(ctx: Context) -> int:
    """Pull [docker://]REF; print the image ID (the record with --json). A bar per layer
    and a total on a terminal."""
    from ..progress import MultiProgress

    bars = MultiProgress("total", enabled=not ctx.json)

    def progress(state: ImageProgress) -> None:
        bars.update(state.done, state.sizes)

    image = ctx.store.pull_image(
        ctx.args[0],
        names=ctx.items("name") or None,
        platform=ctx.text("platform") or None,
        creds=ctx.text("creds") or None,
        authfile=ctx.text("authfile") or None,
        tls_verify=ctx.optbool("tls_verify"),
        progress=progress,
    )
    if ctx.json:
        emit_json(record(image))
    else:
        stdout(image.id)
    return 0
