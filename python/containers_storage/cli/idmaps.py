"""The ID-map flags of create-layer, import-layer and create-container (Go's
``paramIDMapping``): ``--uidmap``/``--gidmap``, ``--subuidmap``/``--subgidmap`` and
``--hostuidmap``/``--hostgidmap``, with Go 1.43's parsing and error texts."""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from .context import Context

__all__ = ["IDMapping", "MappingError", "id_mapping", "parse_idmap", "subid_ranges"]

SUBUID = "/etc/subuid"
SUBGID = "/etc/subgid"
_MAX = 0xFFFFFFFF


class MappingError(Exception):
    """The ID-map flags are malformed or contradictory (the text is Go's)."""


class IDMapping(NamedTuple):
    """Go's ``types.IDMappingOptions`` as the CLI fills it."""

    host_uid_mapping: bool
    host_gid_mapping: bool
    uid_map: list[tuple[int, int, int]]
    gid_map: list[tuple[int, int, int]]


def parse_idmap(spec: str, setting: str) -> list[tuple[int, int, int]]:
    """Go's ``idtools.ParseIDMap([]string{spec}, setting)``: ``c:h:s[:c:h:s...]``.

    Raises:
        MappingError: ``initializing ID mappings: uid setting is malformed expected
            ["uint32:uint32:uint32"]: ["0:1"]``.
    """
    if spec == "":
        return []
    from .flags import go_quote

    quoted = f"[{go_quote(spec)}]"
    bad = MappingError(
        f"initializing ID mappings: {setting} setting is malformed expected "
        f'["uint32:uint32:uint32"]: {quoted}'
    )
    parts = spec.split(":")
    if len(parts) % 3:
        raise bad
    out: list[tuple[int, int, int]] = []
    for i in range(0, len(parts), 3):
        try:
            triple = tuple(int(p, 10) for p in parts[i : i + 3])
        except ValueError:
            raise bad from None
        if any(
            n < 0 or n > _MAX or not p.isdigit()
            for n, p in zip(triple, parts[i : i + 3], strict=True)
        ):
            raise bad
        out.append((triple[0], triple[1], triple[2]))
    return out


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
        MappingError: A line is malformed.
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
                raise MappingError(
                    f"cannot parse subuid/gid information: Format not correct for {path} file"
                )
            if parts[0] == name or name == "ALL" or (uid and parts[0] == uid):
                try:
                    out.append((int(parts[1]), int(parts[2])))
                except ValueError as e:
                    raise MappingError(
                        f"string to int conversion failed during subuid/gid parsing of {path}: {e}"
                    ) from None
    return out


def _as_map(ranges: list[tuple[int, int]]) -> list[tuple[int, int, int]]:
    out: list[tuple[int, int, int]] = []
    container = 0
    for start, length in sorted(ranges):
        out.append((container, start, length))
        container += length
    return out


def id_mapping(ctx: Context) -> IDMapping:
    """The ID mapping the command's flags ask for (Go ``paramIDMapping``).

    Raises:
        MappingError: A host map with an explicit one, a malformed map, or a user or group
            without subordinate IDs.
        OSError: ``/etc/subuid`` or ``/etc/subgid`` cannot be read.
    """
    host_uid = ctx.flag("hostuidmap")
    host_gid = ctx.flag("hostgidmap")
    uidmap, gidmap = ctx.text("uidmap"), ctx.text("gidmap")
    sub_uid, sub_gid = ctx.text("subuidmap"), ctx.text("subgidmap")
    if host_uid and (uidmap or sub_uid):
        raise MappingError("host uid map specified along with UID mapping")
    if host_gid and (gidmap or sub_gid):
        raise MappingError("host gid map specified along with GID mapping")
    sub_gid = sub_gid or sub_uid
    sub_uid = sub_uid or sub_gid
    uids: list[tuple[int, int, int]] = []
    gids: list[tuple[int, int, int]] = []
    if sub_uid and sub_gid:
        uid_ranges = subid_ranges(SUBUID, sub_uid)
        gid_ranges = subid_ranges(SUBGID, sub_gid)
        if not uid_ranges:
            raise MappingError(f'no subuid ranges found for user "{sub_uid}" in {SUBUID}')
        if not gid_ranges:
            raise MappingError(f'no subgid ranges found for group "{sub_gid}" in {SUBGID}')
        uids, gids = _as_map(uid_ranges), _as_map(gid_ranges)
    uids += parse_idmap(uidmap, "uid")
    gids += parse_idmap(gidmap, "gid")
    return IDMapping(host_uid, host_gid, uids, gids)
