"""This process's mount table, and removing a directory with whatever is mounted below it.

A container's directories can hold mounts made by others (podman's ``shm`` tmpfs at
``userdata/shm``, a user's bind mount), and so can a layer's (a ``merged`` another process
mounted). Go 1.43 removes such trees with ``system.EnsureRemoveAll``: unmount everything at
or below the path, deepest first, then remove, unmounting again what a removal still finds
busy. :func:`remove_all` does the same, but unmounts before removing anything, so that a
bind mount's files are never deleted through it (Go's first ``os.RemoveAll`` would).
"""

from __future__ import annotations

import errno
import os

from . import _native

__all__ = ["mountpoints", "mounts_in_order", "remove_all"]

#: How often :func:`remove_all` unmounts again what a removal found busy (a mount made
#: meanwhile) before it gives up; Go retries up to 100 times per path.
_BUSY_RETRIES = 100


def _unescape(field: str) -> str:
    if "\\" not in field:
        return field
    out = []
    i = 0
    while i < len(field):
        if field[i] == "\\" and i + 3 < len(field) and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def mountpoints() -> set[str]:
    """Mount points of this process's mount namespace (from ``/proc/self/mountinfo``)."""
    return set(mounts_in_order())


def mounts_in_order() -> list[str]:
    """Mount points of this process's mount namespace, oldest first (a mount stacked on,
    or using, another comes after it)."""
    points = []
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            fields = line.split(" ", 5)
            if len(fields) > 4:
                points.append(_unescape(fields[4]))
    return points


def _unmount_below(path: str) -> None:
    """Detach every mount at or below ``path``, newest first (Go's ``RecursiveUnmount``).
    A mount that cannot be detached (no privilege) is left for the removal to report."""
    prefix = path.rstrip("/") + "/"
    for point in reversed(mounts_in_order()):
        if point == path or point.startswith(prefix):
            try:
                _native.unmount(point)
            except OSError:
                pass


def remove_all(path: str | os.PathLike[str]) -> None:
    """Remove ``path`` and everything below it, unmounting what is mounted there first
    (Go's ``system.EnsureRemoveAll``). A missing path is not an error.

    Raises:
        OSError: Something could not be removed (a mount this process may not detach).
    """
    # Mount points are listed by real paths; ``path`` itself, if a symlink, is what goes.
    path = os.fspath(path)
    real = os.path.join(os.path.realpath(os.path.dirname(path)), os.path.basename(path))
    if not os.path.lexists(real):
        return
    _unmount_below(real)
    for _ in range(_BUSY_RETRIES):
        try:
            _native.remove_tree(real)
            return
        except OSError as e:
            if e.errno != errno.EBUSY:
                raise
        _unmount_below(real)
    _native.remove_tree(real)
