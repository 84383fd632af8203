"""Go's ``pkg/idtools`` map syntax: ``container:host:size[:container:host:size...]``.

One parser for storage.conf's ``remap-uids``/``remap-gids`` and the CLI's ``--uidmap`` and
``--gidmap``, as Go uses ``idtools.ParseIDMap`` for both.
"""

from __future__ import annotations

from ._strconv import go_quote
from .errors import InvalidMappingsError
from .records import IDMap

__all__ = ["parse_idmap"]

_MAX = 0xFFFFFFFF


def _is_uint32(text: str) -> bool:
    """Whether Go's ``strconv.ParseUint(text, 10, 32)`` takes ``text``."""
    return text.isascii() and text.isdigit() and int(text) <= _MAX


def parse_idmap(spec: str, setting: str) -> tuple[IDMap, ...]:
    """Go's ``idtools.ParseIDMap([]string{spec}, setting)``; ``""`` is no map.

    Args:
        spec: ``container:host:size`` triples joined by ``:``.
        setting: What the map is, for the message (``uid``, ``remap-uids``).

    Raises:
        InvalidMappingsError: With Go's message, ``initializing ID mappings: uid setting is
            malformed expected ["uint32:uint32:uint32"]: ["0:1"]``.
    """
    if spec == "":
        return ()
    parts = spec.split(":")
    if len(parts) % 3 or not all(_is_uint32(p) for p in parts):
        raise InvalidMappingsError(
            f"initializing ID mappings: {setting} setting is malformed expected "
            f'["uint32:uint32:uint32"]: [{go_quote(spec)}]'
        )
    n = [int(p) for p in parts]
    return tuple(IDMap(n[i], n[i + 1], n[i + 2]) for i in range(0, len(n), 3))
