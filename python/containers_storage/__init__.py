"""containers/storage for Python: layers, images and containers shared with podman.

The store format, lock files and CLI follow Go containers/storage 1.43, so podman, buildah
and skopeo on the same machine can share a store with this package.
"""

from __future__ import annotations

from . import errors
from ._native import __version__
from .errors import StorageError
from .lockfile import Lockfile

__all__ = ["Lockfile", "StorageError", "__version__", "errors"]
