"""``containers-storage apply-layer``: apply a layer tarball onto a directory (no store)."""

from __future__ import annotations

import argparse
import io
import json
import os
import sys

from .progress import ProgressBar


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the command."""
    p = sub.add_parser(
        "apply-layer",
        help="apply a layer tarball onto a directory (any compression; whiteouts applied)",
        description=(
            "Apply a layer tarball (plain, gzip, bzip2, xz or zstd) onto DIR, confined to it, "
            "and print its digests. Without -f, applies the built-in sample layer."
        ),
    )
    p.add_argument("dir", metavar="DIR", help="target directory (created if missing)")
    p.add_argument("-f", "--file", help="layer tarball ('-' for standard input)")
    p.add_argument(
        "--whiteouts",
        choices=["vfs", "overlay", "aufs"],
        default="vfs",
        help="how whiteouts are written (default: vfs, i.e. deletions)",
    )
    p.add_argument("--ignore-chown-errors", action="store_true", help="do not fail on chown")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Apply the layer; print its digests (or JSON)."""
    from ..archive import apply_layer
    from ..errors import ArchiveError

    os.makedirs(args.dir, exist_ok=True)
    bar = ProgressBar("applying", enabled=not args.json)
    try:
        if args.file is None:
            from ..sample import sample_layer, sample_upper_layer

            result = apply_layer(io.BytesIO(sample_layer()), args.dir, progress=bar)
            upper = apply_layer(
                io.BytesIO(sample_upper_layer()), args.dir, whiteouts=args.whiteouts
            )
            results = [result, upper]
        else:
            source = sys.stdin.buffer if args.file == "-" else args.file
            results = [
                apply_layer(
                    source,
                    args.dir,
                    whiteouts=args.whiteouts,
                    ignore_chown_errors=args.ignore_chown_errors,
                    progress=bar,
                    keep_tar_split=False,  # not printed; would grow with the layer
                )
            ]
    except (ArchiveError, OSError) as e:
        bar.close()
        print(f"containers-storage: {e}", file=sys.stderr)
        return 1
    bar.close()
    if args.json:
        docs = [{k: v for k, v in vars(r).items() if k != "tar_split"} for r in results]
        print(json.dumps(docs if len(docs) > 1 else docs[0]))
        return 0
    for r in results:
        print(f"diff-digest:            {r.uncompressed_digest}")
        print(f"compressed-diff-digest: {r.compressed_digest} ({r.compression})")
        print(f"diff-size:              {r.uncompressed_size}")
        print(f"entries:                {r.entries}")
    return 0
