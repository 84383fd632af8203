"""Flag parsing as Go's ``pkg/mflag`` does it (the Go CLI's flag library).

The rules, which argparse cannot express:

* A flag registered as ``"-graph"`` is spelled ``--graph``; one registered as ``"g"`` is
  ``-g``. ``-graph`` is not ``--graph``: it is split into ``-g -r -a -p -h`` and fails.
* ``--flag=value`` and ``--flag value`` both work; booleans take ``--flag=false`` (Go's
  ``strconv.ParseBool`` spellings) but never a separate value.
* Clusters of single-letter flags (``-qj``) are split into ``-q -j``.
* Parsing stops at the first argument that is not a flag, or after ``--``: flags cannot
  follow positional arguments.
* A flag given twice: the last value wins (lists append).

Errors are reported the way mflag's ``failf`` reports them: the message and a ``See '...
--help'.`` line on stderr, then :class:`FlagError` is raised for the caller to exit.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, MutableMapping, Sequence
from typing import Literal, NamedTuple, TextIO

from .._strconv import go_quote, parse_bool

__all__ = [
    "FlagError",
    "FlagKind",
    "FlagSet",
    "FlagSpec",
    "FlagValues",
    "HelpRequested",
    "go_list",
]

#: ``optbool`` is a boolean that stays None when not given (``--tls-verify``).
FlagKind = Literal["bool", "optbool", "string", "list"]

#: The values of a parse: ``dest`` to ``bool``, ``str`` or ``list[str]``.
FlagValues = MutableMapping[str, "bool | str | list[str] | None"]


class FlagError(Exception):
    """A flag could not be parsed; the message was already printed (mflag's ``failf``)."""


class HelpRequested(Exception):  # noqa: N818 (a signal, not an error)
    """``-h``, ``-help`` or ``--help`` was given where no such flag is defined."""


class FlagSpec(NamedTuple):
    """One flag: its mflag names (``"-json"`` is ``--json``, ``"j"`` is ``-j``), where its
    value goes, its kind and its help text."""

    names: tuple[str, ...]
    dest: str
    kind: FlagKind
    usage: str

    @property
    def spellings(self) -> list[str]:
        """The command-line spellings, ``["--json", "-j"]`` (deprecated ``#`` names left out)."""
        return ["-" + n for n in self.names if n and not n.startswith("#")]


def go_list(items: Iterable[object]) -> str:
    """Go's ``%v`` of a slice: ``[a b c]``."""
    return "[" + " ".join(str(i) for i in items) + "]"


def _zero(kind: FlagKind) -> bool | str | list[str] | None:
    if kind == "list":
        return []
    if kind == "optbool":
        return None
    return False if kind == "bool" else ""


def _show(value: bool | str | list[str] | None) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return go_list(value)
    return value


def _trim_quotes(text: str) -> str:
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        return text[1:-1]
    return text


class FlagSet:
    """The flags of the program or of one command, parsed mflag's way.

    Args:
        name: The set's name (the command, or ``containers-storage``), used in messages.
        specs: The flags.
        values: Where parsed values go, keyed by ``FlagSpec.dest``; shared between the
            global set and a command's set so that the last occurrence of a global flag wins
            wherever it appears. Lists are appended to.
        argv0: The program as invoked, for ``See '<argv0> <name> --help'.``.
        err: Where parse errors are reported (stderr).
    """

    def __init__(
        self,
        name: str,
        specs: Iterable[FlagSpec],
        values: FlagValues,
        argv0: str,
        err: TextIO | None = None,
    ) -> None:
        self.name = name
        self.specs = list(specs)
        self.values = values
        self.argv0 = argv0
        self.err = err if err is not None else sys.stderr
        self.formal: dict[str, FlagSpec] = {}
        for spec in self.specs:
            for n in spec.names:
                n = n.removeprefix("#")
                if n:
                    self.formal[n] = spec
            if spec.dest not in values:
                values[spec.dest] = _zero(spec.kind)
        #: Each flag's value when the set was made, as mflag shows it in the usage.
        self.defaults = {spec.dest: _show(values[spec.dest]) for spec in self.specs}
        self.args: list[str] = []

    def _fail(self, message: str) -> FlagError:
        print(message, file=self.err)
        if self.argv0 == self.name:
            print(f"See '{self.argv0} --help'.", file=self.err)
        else:
            print(f"See '{self.argv0} {self.name} --help'.", file=self.err)
        return FlagError(message)

    def _set(self, spec: FlagSpec, value: str) -> None:
        if spec.kind == "list":
            current = self.values[spec.dest]
            assert isinstance(current, list)
            current.append(value)
        else:
            self.values[spec.dest] = value

    def _parse_one(self) -> tuple[bool, str]:
        """mflag's ``parseOne``: ``(seen, retry_name)``; raises on errors."""
        if not self.args:
            return False, ""
        s = self.args[0]
        if len(s) < 2 or s[0] != "-":
            return False, ""
        if s == "--":
            self.args.pop(0)
            return False, ""
        name = s[1:]
        if name[0] == "=":
            raise self._fail(f"bad flag syntax: {s}")
        self.args.pop(0)
        has_value = False
        value = ""
        if "=" in name:
            name, value = name.split("=", 1)
            value = _trim_quotes(value)
            has_value = True
        spec = self.formal.get(name)
        if spec is None:
            if name in ("-help", "help", "h"):
                raise HelpRequested()
            if name.startswith("-"):
                raise self._fail(f"flag provided but not defined: -{name}")
            return False, name
        if spec.kind in ("bool", "optbool"):
            if has_value:
                try:
                    self.values[spec.dest] = parse_bool(value)
                except ValueError as e:
                    raise self._fail(
                        f"invalid boolean value {go_quote(value)} for  -{name}: {e}"
                    ) from None
            else:
                self.values[spec.dest] = True
        else:
            if not has_value and self.args:
                value = self.args.pop(0)
                has_value = True
            if not has_value:
                raise self._fail(f"flag needs an argument: -{name}")
            self._set(spec, value)
        return True, ""

    def parse(self, arguments: Sequence[str]) -> list[str]:
        """Parse flags from the front of ``arguments``; return the rest (positional).

        Raises:
            FlagError: A flag is unknown, lacks its value or has a bad boolean value (the
                message is already on stderr).
            HelpRequested: ``-h``/``-help``/``--help`` was given and is not a defined flag.
        """
        self.args = list(arguments)
        while True:
            seen, retry = self._parse_one()
            if seen:
                continue
            if not retry:
                break
            if len(retry) == 1:
                raise self._fail(f"flag provided but not defined: -{retry}")
            # A cluster of single-letter flags: each letter in turn, as mflag does.
            for letter in retry:
                self.args.insert(0, "-" + letter)
                try:
                    seen2, retry2 = self._parse_one()
                except (HelpRequested, FlagError):
                    # mflag reports the letter's error, then the cluster's.
                    seen2, retry2 = False, letter
                if not seen2 and retry2:
                    raise self._fail(f"flag provided but not defined: -{retry}")
        return self.args
