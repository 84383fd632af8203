"""Go's ``strconv`` where the Go tools show it: ``ParseBool`` and ``Quote`` (``%q``).

The CLI's flags and the drivers' options read booleans with :func:`parse_bool`, so
``--debug=maybe`` and ``vfs.ignore_chown_errors=`` fail with Go's text; messages quote with
:func:`go_quote` where Go writes ``%q``.
"""

from __future__ import annotations

__all__ = ["go_quote", "parse_bool"]

_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})
# The control characters Go's Quote escapes by name.
_NAMED = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v"}


def parse_bool(text: str) -> bool:
    """Go's ``strconv.ParseBool``: the spellings above, nothing else (not ``""``).

    Raises:
        ValueError: With Go's message, ``strconv.ParseBool: parsing "x": invalid syntax``.
    """
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"strconv.ParseBool: parsing {go_quote(text)}: invalid syntax")


def go_quote(text: str) -> str:
    """Go's ``strconv.Quote`` (``%q`` of a string): printable characters kept, the rest
    escaped."""
    out = ['"']
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch in _NAMED:
            out.append(_NAMED[ch])
        elif ch.isprintable():
            out.append(ch)
        elif 0xDC80 <= ord(ch) <= 0xDCFF:  # an undecodable byte (surrogateescape)
            out.append(f"\\x{ord(ch) - 0xDC00:02x}")
        elif ord(ch) < 0x10000:
            out.append(f"\\x{ord(ch):02x}" if ord(ch) < 0x80 else f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    out.append('"')
    return "".join(out)
