"""The rules for ID-mapped layers and containers (Go's ``userns.go`` and ``idtools``).

A container whose UID/GID maps differ from its image's top layer gets an ID-mapped copy of
that layer (Go's mapped layers), unless the driver shifts owners at mount time. These are
the rules that decide which: pure functions of the maps, the layers and the environment,
used by :class:`~containers_storage.store.Store` under its locks.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence

from .records import IDMap, Layer

__all__ = [
    "FORCE_SHIFTING_ENV",
    "can_use_shifting",
    "contiguous",
    "forced_shifting",
    "layer_fits",
    "new_layer_maps",
    "shifting_disabled_by_test_hook",
]

#: Go's test hook: ``_TEST_FORCE_SUPPORT_SHIFTING=yes-please`` makes the store behave as if a
#: mount program shifted owners at mount time.
FORCE_SHIFTING_ENV = "_TEST_FORCE_SUPPORT_SHIFTING"
_FORCE_SHIFTING = "yes-please"


def contiguous(maps: Sequence[IDMap]) -> bool:
    """Go's ``idtools.IsContiguous``: sorted by host ID, each range follows the last in
    both the container and the host."""
    ranges = sorted(maps, key=lambda m: m.host_id)
    return all(
        b.container_id == a.container_id + a.size and b.host_id == a.host_id + a.size
        for a, b in itertools.pairwise(ranges)
    )


def forced_shifting(uid_map: Sequence[IDMap], gid_map: Sequence[IDMap]) -> bool:
    """Under Go's test hook, layers and containers with contiguous maps are created
    unmapped, as if a mount program shifted owners at mount time."""
    return (
        os.environ.get(FORCE_SHIFTING_ENV) == _FORCE_SHIFTING
        and contiguous(uid_map)
        and contiguous(gid_map)
    )


def shifting_disabled_by_test_hook() -> bool:
    """Under Go's test hook the shifting is left to a mount program (none here)."""
    return _FORCE_SHIFTING in os.environ.get(FORCE_SHIFTING_ENV, "")


def can_use_shifting(
    driver_shifts: bool, uid_map: Sequence[IDMap], gid_map: Sequence[IDMap]
) -> bool:
    """Go's ``canUseShifting``: the driver maps owners at mount time and both maps are
    contiguous.

    Used only when mounting containers Go created that way. Unlike Go 1.43 on a kernel
    with idmapped mounts, layers and containers created here always get their owners
    mapped on disk (Go's ID-mapped copies): a layer created with maps shows mapped owners
    when mounted on its own, which containers/storage's own idmaps tests expect and Go
    1.43 fails on such kernels."""
    return driver_shifts and contiguous(uid_map) and contiguous(gid_map)


def layer_fits(
    layer: Layer,
    uid_map: tuple[IDMap, ...],
    gid_map: tuple[IDMap, ...],
    host_uid: bool,
    host_gid: bool,
) -> bool:
    """Whether a container with these maps can use ``layer`` (an image's top layer or one
    of its ID-mapped copies) as its parent as it is."""
    if forced_shifting(uid_map, gid_map) and not layer.uidmap and not layer.gidmap:
        return True
    if host_uid and layer.uidmap:
        return False
    if host_gid and layer.gidmap:
        return False
    return layer.uidmap == uid_map and layer.gidmap == gid_map


Maps = tuple[tuple[IDMap, ...], tuple[IDMap, ...]]


def new_layer_maps(asked: Maps, host: tuple[bool, bool], inherited: Maps) -> Maps:
    """The (UID, GID) maps of a new layer: those asked for; where none is asked and the
    host's IDs are not wanted (``host``), those ``inherited`` (the parent's, an image's top
    layer's or the store's); both empty under Go's test hook, which leaves shifting to the
    mount."""
    uid_map = asked[0] or (() if host[0] else inherited[0])
    gid_map = asked[1] or (() if host[1] else inherited[1])
    if forced_shifting(uid_map, gid_map):
        return (), ()
    return uid_map, gid_map
