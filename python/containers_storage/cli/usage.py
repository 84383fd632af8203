"""Usage and help texts, laid out as the Go CLI lays them out.

On a usage error Go prints the usage on stdout but the flag list (mflag's ``PrintDefaults``)
on stderr; asked for ``--help`` it prints everything on stdout. The flag list shows current
values (``--graph, -g=/var/lib/...``), sorted by name, aligned by Go's ``tabwriter``
(minimum width 20, padding 3).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import TextIO

from .commands.table import COMMANDS, Command
from .flags import FlagSpec

__all__ = ["command_help", "command_usage", "main_help", "main_usage", "print_defaults"]

PROG = "containers-storage"


def _sort_key(spec: FlagSpec) -> tuple[str, str]:
    first = spec.names[0].removeprefix("#").removeprefix("-")
    return first.lower(), first


def print_defaults(specs: Iterable[FlagSpec], defaults: dict[str, str], out: TextIO) -> None:
    """mflag's ``PrintDefaults``: a blank line, then ``  --name, -n=value   usage`` lines."""
    home = os.environ.get("HOME", "")
    if home == "/":
        home = ""
    rows: list[tuple[str, list[str]]] = []
    for spec in sorted(specs, key=_sort_key):
        names = [n for n in spec.names if n and not n.startswith("#")]
        if not names or not spec.usage:
            continue
        value = defaults.get(spec.dest, "")
        if home and value.startswith(home):
            value = "~" + value[len(home) :]
        cell = "  -" + ", -".join(names)
        if value not in ("", "false", "0"):
            cell += "=" + value
        rows.append((cell, spec.usage.split("\n")))
    if not rows:
        return
    width = max(20, max(len(cell) for cell, _ in rows) + 3)
    lines = [""]
    for cell, usage in rows:
        lines.append(f"{cell.ljust(width)} {usage[0]}".rstrip())
        lines.extend(f"{'':<{width}} {more}".rstrip() for more in usage[1:])
    out.write("\n".join(lines) + "\n")


def main_usage(
    specs: Iterable[FlagSpec], defaults: dict[str, str], out: TextIO, flags_out: TextIO
) -> None:
    """The program's usage: commands on ``out``, flags on ``flags_out`` (Go: stderr)."""
    out.write(f"Usage: {PROG} command [options [...]]\n\nCommands:\n\n")
    for cmd in COMMANDS:
        out.write(f"  {cmd.names[0]:<30}{cmd.usage}\n")
    out.write("\nOptions:\n")
    out.flush()
    print_defaults(specs, defaults, flags_out)


def main_help(specs: Iterable[FlagSpec], defaults: dict[str, str], out: TextIO) -> None:
    """``--help``: the usage, all on ``out``, and where the store comes from."""
    main_usage(specs, defaults, out, out)
    out.write(
        "\nWithout --graph, --run, --storage-driver and --storage-opt, the store is the one "
        "podman uses:\nstorage.conf ($CONTAINERS_STORAGE_CONF, else ~/.config/containers/ or "
        "/etc/containers/ or\n/usr/share/containers/), then $STORAGE_DRIVER and $STORAGE_OPTS.\n"
        f"Flags go before positional arguments. Run '{PROG} COMMAND --help' for a command's "
        "flags.\n"
    )


def command_usage(
    cmd: Command,
    name: str,
    specs: Iterable[FlagSpec],
    defaults: dict[str, str],
    out: TextIO,
    flags_out: TextIO,
) -> None:
    """A command's usage as Go prints it on errors: flags on ``flags_out`` (stderr)."""
    out.write(f"Usage: {PROG} {name} {cmd.options_help}\n\n{cmd.usage}\n\nOptions:\n")
    out.flush()
    print_defaults(specs, defaults, flags_out)


def command_help(
    cmd: Command, name: str, specs: Iterable[FlagSpec], defaults: dict[str, str], out: TextIO
) -> None:
    """``COMMAND --help``: usage, details, aliases and flags, all on ``out``."""
    out.write(f"Usage: {PROG} {name} {cmd.options_help}".rstrip() + f"\n\n{cmd.usage}\n")
    if cmd.details:
        import textwrap

        out.write("\n" + textwrap.fill(cmd.details, 88) + "\n")
    aliases = [n for n in cmd.names if n != name]
    if aliases:
        out.write(f"\nAlso called: {', '.join(aliases)}\n")
    bounds = []
    if cmd.min_args:
        bounds.append(f"at least {cmd.min_args}")
    if cmd.max_args:
        bounds.append(f"at most {cmd.max_args}")
    if bounds:
        out.write(f"Arguments: {' and '.join(bounds)}.\n")
    out.write("\nOptions:\n")
    print_defaults(specs, defaults, out)
