"""``containers-storage apply-layer``: apply a layer tarball onto a directory (no store)."""

from __future__ import annotations

import io
import sys
from typing import TYPE_CHECKING

from ..._strconv import go_quote
from ..output import emit_json, error_text, os_error_text, stderr
from ..progress import ProgressBar

if TYPE_CHECKING:
    from ..context import Context

__all__ = ["run"]


def run(ctx: Context) -> int:
    """Apply the layer; print its digests (or JSON)."""
    from ...archive import WhiteoutFormat, apply_layer
    from ...errors import ArchiveError, StorageError

    target = ctx.args[0]
    formats: dict[str, WhiteoutFormat] = {"vfs": "vfs", "overlay": "overlay", "aufs": "aufs"}
    whiteouts = formats.get(ctx.text("whiteouts") or "vfs")
    if whiteouts is None:
        stderr(f"invalid --whiteouts {go_quote(ctx.text('whiteouts'))}: want vfs, overlay or aufs")
        return 1
    path = ctx.text("file")
    bar = ProgressBar("applying", enabled=not ctx.json)
    try:
        if not path:
            from ...sample import sample_layer, sample_upper_layer

            ignore = ctx.flag("ignore_chown_errors")
            result = apply_layer(
                io.BytesIO(sample_layer()), target, ignore_chown_errors=ignore, progress=bar
            )
            upper = apply_layer(
                io.BytesIO(sample_upper_layer()),
                target,
                whiteouts=whiteouts,
                ignore_chown_errors=ignore,
            )
            results = [result, upper]
        else:
            source = sys.stdin.buffer if path == "-" else path
            results = [
                apply_layer(
                    source,
                    target,
                    whiteouts=whiteouts,
                    ignore_chown_errors=ctx.flag("ignore_chown_errors"),
                    progress=bar,
                )
            ]
    except (ArchiveError, OSError) as e:
        bar.close()
        plain = isinstance(e, OSError) and not isinstance(e, StorageError)
        stderr(os_error_text(e) if plain and isinstance(e, OSError) else error_text(e))
        return 1
    bar.close()
    if ctx.json:
        docs = [{k: v for k, v in vars(r).items() if k != "tar_split"} for r in results]
        emit_json(docs if len(docs) > 1 else docs[0])
        return 0
    for r in results:
        print(f"diff-digest:            {r.uncompressed_digest}")
        print(f"compressed-diff-digest: {r.compressed_digest} ({r.compression})")
        print(f"diff-size:              {r.uncompressed_size}")
        print(f"entries:                {r.entries}")
    return 0
