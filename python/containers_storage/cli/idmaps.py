"""The ID-map flags of create-layer, import-layer and create-container (Go's
``paramIDMapping``): ``--uidmap``/``--gidmap``, ``--subuidmap``/``--subgidmap`` and
``--hostuidmap``/``--hostgidmap``, with Go 1.43's parsing and error texts."""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from ..errors import InvalidMappingsError
from ..idtools import parse_idmap
from ..records import IDMap

if TYPE_CHECKING:
    from .context import Context

__all__ = ["IDMapping", "id_mapping", "subid_ranges"]

SUBUID = "/etc/subuid"
SUBGID = "/etc/subgid"


class IDMapping(NamedTuple):
    """Go's ``types.IDMappingOptions`` as the CLI fills it."""

    host_uid_mapping: bool
    host_gid_mapping: bool
    uid_map: list[IDMap]
    gid_map: list[IDMap]


def _uid_of(name: str) -> str:
    import pwd

    try:
        return str(pwd.getpwnam(name).pw_uid)
    except KeyError:
        return ""


def subid_ranges(path: str, name: str) -> list[tuple[int, int]]:
    """``(start, length)`` ranges of ``name`` in ``/etc/subuid`` or ``/etc/subgid`` (Go's
    ``parseSubidFile``: matched by name, by the user's UID, or all for ``ALL``).

    Raises:
        OSError: The file cannot be read.
        InvalidMappingsError: A line is malformed.
    """
    uid = _uid_of(name)
    out: list[tuple[int, int]] = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for raw in f:
            text = raw.strip()
            if not text or text.startswith("#"):
                continue
            parts = text.split(":")
            if len(parts) != 3:
                raise InvalidMappingsError(
                    f"cannot parse subuid/gid information: Format not correct for {path} file"
                )
            if parts[0] == name or name == "ALL" or (uid and parts[0] == uid):
                try:
                    out.append((int(parts[1]), int(parts[2])))
                except ValueError as e:
                    raise InvalidMappingsError(
                        f"string to int conversion failed during subuid/gid parsing of {path}: {e}"
                    ) from None
    return out


def _as_map(ranges: list[tuple[int, int]]) -> list[IDMap]:
    out: list[IDMap] = []
    container = 0
    for start, length in sorted(ranges):
        out.append(IDMap(container, start, length))
        container += length
    return out


def id_mapping(ctx: Context) -> IDMapping:
    """The ID mapping the command's flags ask for (Go ``paramIDMapping``).

    Raises:
        InvalidMappingsError: A host map with an explicit one, a malformed map, or a user or group
            without subordinate IDs.
        OSError: ``/etc/subuid`` or ``/etc/subgid`` cannot be read.
    """
    host_uid = ctx.flag("hostuidmap")
    host_gid = ctx.flag("hostgidmap")
    uidmap, gidmap = ctx.text("uidmap"), ctx.text("gidmap")
    sub_uid, sub_gid = ctx.text("subuidmap"), ctx.text("subgidmap")
    if host_uid and (uidmap or sub_uid):
        raise InvalidMappingsError("host uid map specified along with UID mapping")
    if host_gid and (gidmap or sub_gid):
        raise InvalidMappingsError("host gid map specified along with GID mapping")
    sub_gid = sub_gid or sub_uid
    sub_uid = sub_uid or sub_gid
    uids: list[IDMap] = []
    gids: list[IDMap] = []
    if sub_uid and sub_gid:
        uid_ranges = subid_ranges(SUBUID, sub_uid)
        gid_ranges = subid_ranges(SUBGID, sub_gid)
        if not uid_ranges:
            raise InvalidMappingsError(f'no subuid ranges found for user "{sub_uid}" in {SUBUID}')
        if not gid_ranges:
            raise InvalidMappingsError(f'no subgid ranges found for group "{sub_gid}" in {SUBGID}')
        uids, gids = _as_map(uid_ranges), _as_map(gid_ranges)
    uids += parse_idmap(uidmap, "uid")
    gids += parse_idmap(gidmap, "gid")
    return IDMapping(host_uid, host_gid, uids, gids)
