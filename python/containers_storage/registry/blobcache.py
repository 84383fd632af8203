"""What is known about blobs beyond one copy, as containers/image v5.23's blob info cache
keeps it (``pkg/blobinfocache``): which compressed digest holds which uncompressed one, the
compressor of a digest, and the repositories of a registry a digest is known to be in.

c/image keeps this in a BoltDB file (``blob-info-cache-v1.boltdb``); this module keeps the
same facts in its own JSON file beside it (``blob-info-cache-python-v1.json`` in
``/var/lib/containers/cache`` for root, ``$XDG_DATA_HOME/containers/cache`` otherwise, or
``$CONTAINERS_STORAGE_BLOB_INFO_CACHE_DIR``), read and replaced under an fcntl lock. Push
uses it to find a compressed copy of a layer that a registry already has (skip or
cross-repository mount) without compressing the layer again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .._jsonstore import atomic_write
from ..lockfile import Lockfile

__all__ = ["BlobInfoCache", "Candidate", "default_cache_dir"]

CACHE_FILE = "blob-info-cache-python-v1.json"
#: How many locations are kept per digest and registry (the oldest are dropped).
MAX_LOCATIONS = 16


def default_cache_dir() -> Path:
    """c/image's blob info cache directory (``pkg/blobinfocache/default.go``)."""
    override = os.environ.get("CONTAINERS_STORAGE_BLOB_INFO_CACHE_DIR")
    if override:
        return Path(override)
    if os.geteuid() == 0:
        return Path("/var/lib/containers/cache")
    data = os.environ.get("XDG_DATA_HOME") or os.path.join(Path.home(), ".local/share")
    return Path(data) / "containers/cache"


@dataclasses.dataclass(frozen=True)
class Candidate:
    """A blob that may stand for a layer: its digest, compressor (``gzip``, ``zstd``,
    ``uncompressed``) and the repositories of the registry it is known to be in (newest
    first)."""

    digest: str
    compressor: str
    repos: tuple[str, ...]


class BlobInfoCache:
    """The cache file in ``directory`` (default :func:`default_cache_dir`). Failures to read
    or write it are not errors: it only saves work."""

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory if directory is not None else default_cache_dir()
        self.path = self.directory / CACHE_FILE

    def _load(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_bytes())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    @contextlib.contextmanager
    def _updating(self) -> Iterator[dict[str, Any]]:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            lock = Lockfile(str(self.path) + ".lock")
        except OSError:
            yield {}
            return
        with lock.writing():
            data = self._load()
            yield data
            with contextlib.suppress(OSError):
                atomic_write(str(self.path), json.dumps(data).encode(), sync_dir=False)

    def candidates(self, uncompressed: str, registry: str) -> list[Candidate]:
        """The known compressed forms of the layer ``uncompressed`` (and the layer itself)
        with the repositories of ``registry`` each is known to be in, newest first."""
        data = self._load()
        pairs = data.get("uncompressed") or {}
        compressors = data.get("compressor") or {}
        where = (data.get("locations") or {}).get(registry) or {}
        out = []
        for digest, diff_id in pairs.items():
            if diff_id != uncompressed or digest not in where:
                continue
            repos = sorted(where[digest], key=lambda r: -where[digest][r])
            out.append(Candidate(digest, compressors.get(digest, ""), tuple(repos)))
        out.sort(key=lambda c: -max(where[c.digest].values()))
        return out

    def record(
        self, registry: str, repo: str, digest: str, uncompressed: str, compressor: str
    ) -> None:
        """Remember that ``digest`` (compressed by ``compressor``) holds ``uncompressed``
        and is in ``registry``/``repo`` now."""
        with self._updating() as data:
            data.setdefault("uncompressed", {})[digest] = uncompressed
            data.setdefault("compressor", {})[digest] = compressor
            regs = data.setdefault("locations", {}).setdefault(registry, {})
            repos = regs.setdefault(digest, {})
            repos[repo] = time.time()
            if len(repos) > MAX_LOCATIONS:
                for old in sorted(repos, key=lambda r: repos[r])[: len(repos) - MAX_LOCATIONS]:
                    del repos[old]
