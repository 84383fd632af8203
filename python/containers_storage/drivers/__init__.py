"""Graph drivers: where a layer's files live and how they are mounted.

A driver owns ``GRAPHROOT/<name>/``; the layer store keeps the records and calls the driver
to create, fill, mount, diff and remove layer directories. :func:`new_driver` builds one from
its name and the ``--storage-opt`` list.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import NotSupportedError
from .base import Driver, MountOptions

__all__ = ["Driver", "MountOptions", "new_driver"]

#: Drivers this package provides.
DRIVERS = ("overlay", "vfs")


def new_driver(name: str, graph_root: str, run_root: str, options: Sequence[str] = ()) -> Driver:
    """The driver ``name`` (``overlay2`` means ``overlay``) for a store.

    Raises:
        NotSupportedError: No such driver here (Go: ``driver not supported``).
        ValueError: An option the driver does not know.
    """
    if name in ("overlay", "overlay2"):
        from .overlay import OverlayDriver

        return OverlayDriver(graph_root, run_root, options)
    if name == "vfs":
        from .vfs import VfsDriver

        return VfsDriver(graph_root, run_root, options)
    raise NotSupportedError(f"failed to GetDriver graph {name} {graph_root}: driver not supported")
