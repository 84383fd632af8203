"""``containers-storage``: entry point, global flags and dispatch.

Global flags follow the Go 1.43 CLI (mflag): ``--graph/-g``, ``--run/-R``,
``--storage-driver/-s``, ``--storage-opt`` (repeatable) and ``--debug/-D``, with defaults from
``STORAGE_DRIVER`` and ``STORAGE_OPTS``. Subcommands register themselves in ``COMMANDS``; this
module imports nothing heavy so that start-up stays small.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence

from .. import __version__

#: Modules that register subcommands (each has ``add_parser(sub)``); imported lazily by name
#: so that start-up stays small.
COMMAND_MODULES = ("apply_cmd",)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for the global flags and every registered subcommand."""
    parser = argparse.ArgumentParser(
        prog="containers-storage",
        description=(
            "Manage container layers, images and containers in a containers/storage store "
            "shared with podman, buildah and skopeo."
        ),
    )
    parser.add_argument("--version", action="version", version=f"containers-storage {__version__}")
    parser.add_argument("-g", "--graph", metavar="DIR", help="root of the store's data")
    parser.add_argument("-R", "--run", metavar="DIR", help="root of the store's runtime state")
    parser.add_argument(
        "-s",
        "--storage-driver",
        metavar="DRIVER",
        default=os.environ.get("STORAGE_DRIVER"),
        help="storage driver (default: $STORAGE_DRIVER or storage.conf)",
    )
    parser.add_argument(
        "--storage-opt",
        metavar="OPT",
        action="append",
        default=[o for o in os.environ.get("STORAGE_OPTS", "").split(",") if o],
        help="storage driver option (repeatable; default: $STORAGE_OPTS)",
    )
    parser.add_argument("-D", "--debug", action="store_true", help="print debugging information")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        module = importlib.import_module(f"{__package__}.{name}")
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``); return the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 1
    func: Callable[[argparse.Namespace], int] = args.func
    return func(args)
