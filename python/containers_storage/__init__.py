"""containers/storage for Python: layers, images and containers shared with podman.

The store format, lock files and CLI follow Go containers/storage 1.43, so podman, buildah
and skopeo on the same machine can share a store with this package.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from . import errors
from ._native import __version__
from .errors import StorageError
from .lockfile import Lockfile

if TYPE_CHECKING:
    from .options import StoreOptions
    from .records import Container, IDMap, Image, ImageBigData, Layer
    from .store import Store, get_store

__all__ = [
    "Container",
    "IDMap",
    "Image",
    "ImageBigData",
    "Layer",
    "Lockfile",
    "StorageError",
    "Store",
    "StoreOptions",
    "__version__",
    "errors",
    "get_store",
]

if "logging" in sys.modules:  # otherwise _log adds the NullHandler with the first event
    from ._log import silence

    silence(sys.modules["logging"])

# Imported on first use, so that ``import containers_storage`` (and the CLI's start-up)
# stays small.
_LAZY = {
    "Store": "store",
    "get_store": "store",
    "StoreOptions": "options",
    "Layer": "records",
    "Image": "records",
    "ImageBigData": "records",
    "Container": "records",
    "IDMap": "records",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
