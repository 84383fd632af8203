"""What the commands print: Go's JSON encoding, Go's error texts, stdout and stderr.

``--json`` output is Go's ``json.NewEncoder(os.Stdout).Encode``: one compact document and a
newline, with ``<``, ``>``, ``&``, U+2028 and U+2029 escaped. Struct fields keep their order;
maps have their keys sorted.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..records import Container, Image, Layer

__all__ = [
    "emit_json",
    "error_text",
    "go_json",
    "nil_if_empty",
    "os_error_text",
    "print_created",
    "record",
    "stderr",
    "stdout",
]


def go_json(obj: Any, *, sort_keys: bool = False) -> str:
    """``obj`` as Go's ``encoding/json`` writes it (compact, HTML-escaped, no newline)."""
    from .._jsonstore import dumps_text

    return dumps_text(obj, sort_keys=sort_keys)


def emit_json(obj: Any, *, sort_keys: bool = False) -> None:
    """Print ``obj`` as one JSON document on stdout (Go's ``json.Encoder.Encode``)."""
    sys.stdout.write(go_json(obj, sort_keys=sort_keys) + "\n")


def nil_if_empty(items: list[Any]) -> list[Any] | None:
    """Go encodes a nil slice as ``null``: what its CLI prints where the list it got from the
    store was built by appending to nothing."""
    return items or None


def record(rec: Layer | Image | Container) -> dict[str, Any]:
    """The JSON object Go's CLI prints for a layer, image or container (the fields of its
    struct: keys other versions wrote, kept by our records, are left out)."""
    doc = rec.to_json()
    for key in rec.extra:
        doc.pop(key, None)
    return doc


def print_created(as_json: bool, rec: Layer | Image) -> None:
    """A record just made: its JSON document, or its ID and a tab-indented line per name."""
    if as_json:
        emit_json(record(rec))
    else:
        stdout(rec.id)
        for name in rec.names:
            stdout(f"\t{name}")


def stdout(text: str) -> None:
    """Print a line on stdout."""
    sys.stdout.write(text + "\n")


def stderr(text: str) -> None:
    """Print a line on stderr (stdout is flushed first, so the two stay in order)."""
    sys.stdout.flush()
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def os_error_text(e: OSError, op: str = "open") -> str:
    """Go's ``*PathError`` text: ``open /x: no such file or directory``."""
    if not e.strerror:
        return str(e)
    msg = e.strerror[:1].lower() + e.strerror[1:]
    if e.filename is None:
        return msg
    return f"{op} {os.fsdecode(e.filename)}: {msg}"


def error_text(e: BaseException) -> str:
    """One line for an error, as Go's ``%+v`` would print it."""
    from ..errors import StorageError

    if isinstance(e, OSError) and not isinstance(e, StorageError):
        if e.filename is None or not e.strerror:
            return os_error_text(e)
        msg = e.strerror[:1].lower() + e.strerror[1:]
        return f"{os.fsdecode(e.filename)}: {msg}"
    text = str(e) or type(e).__name__
    return " ".join(text.splitlines())
