"""Push an image from the store to a registry, as ``skopeo copy containers-storage:IMAGE
docker://REF`` (containers/image v5.23) does.

Each layer is rebuilt byte for byte from its tar-split, compressed (gzip by default, in
1 MiB blocks deflated on every core as pgzip does, see :mod:`.pgzip` and :data:`GZIP_LEVEL`;
zstd or none on request) and streamed to the registry as it is produced (``POST``, one
chunked ``PATCH``, ``PUT ?digest=``: no temporary file), the layers in parallel. Before compressing,
a compressed copy the registry may already have is looked for, as c/image does with its blob
info cache: the layer's own recorded compressed digest, and the digests earlier pushes and
pulls recorded in :mod:`.blobcache`; one that is in the destination repository is skipped
(``HEAD``), one known in another repository of the same registry is mounted from there. The
config is pushed as stored; the manifest is the stored one with the layer descriptors
replaced and serialised as Go's ``json.Marshal`` writes c/image's manifest structures (a
Docker schema 2 image with zstd layers becomes an OCI image, config converted, as c/image's
manifest conversion does).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import json
import os
import threading
import time
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

import urllib3.exceptions

from .. import _jsonstore, errors
from ..digests import sha256_digest
from ..reference import parse_docker_reference
from . import registries_conf
from .auth import Credentials
from .blobcache import BlobInfoCache, Candidate
from .client import DOCKER_V2S2, OCI_MANIFEST, RETRY_STATUSES, Client
from .connect import client_for
from .errors import HTTPStatusError, ManifestError, RegistryError
from .pgzip import gzip_blocks
from .upload import blob_exists, mount_blob, put_manifest, upload_blob

if TYPE_CHECKING:
    from ..oci import ImageProgressCallback
    from ..records import Image, Layer
    from ..store import Store

__all__ = ["COMPRESSIONS", "push_image"]

#: Compression names accepted, and the blob info cache's name of each.
COMPRESSIONS = {"gzip": "gzip", "zstd": "zstd", "none": "uncompressed"}
_BY_COMPRESSOR = {v: k for k, v in COMPRESSIONS.items()}

OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
#: Layer media types per compression (c/image's compressionMIMETypeSets).
_OCI_SETS = (
    {
        "none": "application/vnd.oci.image.layer.v1.tar",
        "gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
        "zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
    },
    {
        "none": "application/vnd.oci.image.layer.nondistributable.v1.tar",
        "gzip": "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
        "zstd": "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    },
)
_DOCKER_SETS = (
    {
        "none": "application/vnd.docker.image.rootfs.diff.tar",
        "gzip": "application/vnd.docker.image.rootfs.diff.tar.gzip",
    },
    {
        "none": "application/vnd.docker.image.rootfs.foreign.diff.tar",
        "gzip": "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    },
)
#: c/image tries at most this many cached candidates per layer.
MAX_CANDIDATES = 5
#: Layers sent at once (c/image's default).
DEFAULT_WORKERS = 6
#: Default deflate level of gzip layers. c/image uses pgzip's default (klauspost's encoder,
#: faster than zlib's at the same level); zlib-rs level 2 costs 60% of level 6's CPU for
#: blobs 2.6% bigger than skopeo's on the benchmark corpus, level 4 for blobs 0.4% smaller
#: (benches/README.md, "Image push").
GZIP_LEVEL = 2


@dataclasses.dataclass(frozen=True)
class _Blob:
    digest: str
    size: int
    compression: str  # gzip, zstd or none
    uploaded: bool


def local_image(
    store: Store, name: str, conf: registries_conf.RegistriesConf | None = None
) -> Image:
    """The image ``name`` names in the store, found as podman finds it: by ID, ID prefix or
    exact name, else by the names a short name may mean locally (its alias,
    ``localhost/NAME``, each search registry, ``docker.io/library/NAME``:
    :meth:`RegistriesConf.local_candidates`), so ``push app:1`` finds ``localhost/app:1``.

    Raises:
        ImageUnknownError: no image has that ID or any of those names.
    """
    try:
        return store.image(name)
    except errors.ImageUnknownError as unknown:
        try:
            candidates = (conf or registries_conf.load()).local_candidates(name)
        except errors.StorageError:
            raise unknown from None
        for ref in candidates:
            with contextlib.suppress(errors.ImageUnknownError):
                return store.image(str(ref))
        raise


def guess_mime_type(manifest: bytes) -> str:
    """The manifest's type as c/image's ``GuessMIMEType`` reads it from the JSON."""
    try:
        m = json.loads(manifest)
    except ValueError:
        return ""
    if not isinstance(m, dict):
        return ""
    if m.get("mediaType"):
        return str(m["mediaType"])
    if m.get("schemaVersion") == 2 and isinstance(m.get("config"), dict):
        if m["config"].get("mediaType") == OCI_CONFIG:
            return OCI_MANIFEST
        return DOCKER_V2S2
    if "manifests" in m:
        return "application/vnd.oci.image.index.v1+json"
    return ""


class _Pusher:
    """One push: the client, the destination, the cache, progress."""

    def __init__(
        self,
        store: Store,
        client: Client,
        repo: str,
        compression: str,
        cache: BlobInfoCache,
        progress: ImageProgressCallback | None,
        gzip_level: int = GZIP_LEVEL,
    ) -> None:
        from ..oci import ImageProgress

        self.store = store
        self.client = client
        self.repo = repo
        self.compression = compression
        self.cache = cache
        self.progress = progress
        self.state = ImageProgress(total_bytes=0)
        self.lock = threading.Lock()
        #: Set when a layer failed: the layers not started yet are not sent.
        self.failed = threading.Event()
        #: Deflates the gzip blocks of every layer (the native code releases the GIL).
        self.pool = concurrent.futures.ThreadPoolExecutor(
            os.cpu_count() or 1, thread_name_prefix="cs-gzip"
        )
        self.gzip_level = gzip_level

    def report(self) -> None:
        if self.progress is not None:
            with self.lock:
                self.progress(self.state)

    def _record(self, blob: _Blob, diff_id: str) -> None:
        self.cache.record(
            self.client.registry, self.repo, blob.digest, diff_id, COMPRESSIONS[blob.compression]
        )

    def candidates(self, layer: Layer, names_repos: list[str]) -> list[Candidate]:
        """Compressed copies of ``layer`` worth looking for: the recorded compressed digest
        (in the repositories the image is named in on this registry) and the cached ones;
        the requested compression first, then the newest."""
        diff_id = layer.diff_digest
        out = {c.digest: c for c in self.cache.candidates(diff_id, self.client.registry)}
        own = layer.compressed_diff_digest
        comp = {2: "gzip", 4: "zstd"}.get(layer.compression or 0)
        if own and own != diff_id and comp is not None:
            known = out.get(own)
            repos = tuple(dict.fromkeys([*(known.repos if known else ()), *names_repos]))
            out[own] = Candidate(own, COMPRESSIONS[comp], repos)
        if self.compression == "none":
            out.setdefault(diff_id, Candidate(diff_id, "uncompressed", ()))
        wanted = COMPRESSIONS[self.compression]
        ordered = sorted(out.values(), key=lambda c: c.compressor != wanted)
        return [c for c in ordered if c.compressor in _BY_COMPRESSOR][:MAX_CANDIDATES]

    def try_reuse(self, layer: Layer, names_repos: list[str]) -> _Blob | None:
        """A blob the registry has for ``layer`` (skipped, or mounted from another repository
        of the same registry), or None."""
        for cand in self.candidates(layer, names_repos):
            comp = _BY_COMPRESSOR[cand.compressor]
            size = blob_exists(self.client, self.repo, cand.digest)
            if size is not None:
                return _Blob(cand.digest, size, comp, False)
            for other in cand.repos:
                if other == self.repo:
                    continue
                try:
                    size = blob_exists(self.client, other, cand.digest)
                    if size is None or not mount_blob(self.client, self.repo, cand.digest, other):
                        continue
                except HTTPStatusError:
                    continue
                return _Blob(cand.digest, size, comp, False)
        return None

    def push_layer(self, layer: Layer, names_repos: list[str]) -> _Blob | None:
        if self.failed.is_set():
            return None
        try:
            return self._push_layer(layer, names_repos)
        except BaseException:
            self.failed.set()
            raise

    def _push_layer(self, layer: Layer, names_repos: list[str]) -> _Blob:
        if not layer.diff_digest:
            raise RegistryError(f"uncompressed digest for layer {layer.id!r} is unknown")
        key = layer.diff_digest
        blob = self.try_reuse(layer, names_repos)
        if blob is None:
            blob = self.upload_layer(layer)
        self._record(blob, layer.diff_digest)
        with self.lock:
            self.state.done[key] = self.state.sizes[key] = blob.size
            self.state.finished.add(key)
        self.report()
        return blob

    def upload_layer(self, layer: Layer) -> _Blob:
        """Compress the layer from its tar-split and stream it up; the whole blob is sent
        again (bounded, with backoff) when the registry fails with 5xx or the connection
        breaks."""
        key = layer.diff_digest
        delay = self.client.retry.initial
        attempt = 0
        while True:
            attempt += 1
            sent = [0]
            with self.lock:
                self.state.done[key] = 0
            # gzip: the tar rebuilt by Rust, compressed here on every core (pgzip's way);
            # zstd and none: rebuilt and compressed by Rust on one thread per layer.
            raw = "none" if self.compression == "gzip" else self.compression
            chunks = self.store.diff(None, layer.id, compression=raw)
            body = chunks
            if self.compression == "gzip":
                body = gzip_blocks(chunks, self.pool, level=self.gzip_level)
            try:
                digest = upload_blob(self.client, self.repo, self._counting(body, key, sent))
                return _Blob(digest, sent[0], self.compression, True)
            except RegistryError as e:
                if attempt >= self.client.retry.attempts or not _transient(e):
                    raise
            finally:
                body.close()
                chunks.close()
            time.sleep(min(delay, self.client.retry.max_delay))
            delay = min(delay * 2, self.client.retry.max_delay)

    def _counting(self, chunks: Iterable[bytes], key: str, sent: list[int]) -> Iterator[bytes]:
        last = 0.0
        for chunk in chunks:
            sent[0] += len(chunk)
            yield chunk
            now = time.monotonic()
            if now - last >= 0.1:
                last = now
                with self.lock:
                    self.state.done[key] = sent[0]
                self.report()

    def push_config(self, config: bytes) -> None:
        digest = sha256_digest(config)
        if blob_exists(self.client, self.repo, digest) is None:
            upload_blob(self.client, self.repo, config, digest)


def _transient(e: RegistryError) -> bool:
    if isinstance(e, HTTPStatusError):
        return e.status in RETRY_STATUSES
    return isinstance(e.__cause__, urllib3.exceptions.HTTPError)


def _sorted_map(m: Any) -> dict[str, Any]:
    return dict(sorted(m.items())) if isinstance(m, dict) else {}


def _oci_descriptor(d: dict[str, Any]) -> dict[str, Any]:
    """An OCI descriptor in image-spec v1.1.0-rc1's field order, empty fields omitted."""
    out: dict[str, Any] = {}
    if d.get("mediaType"):
        out["mediaType"] = d["mediaType"]
    out["digest"] = d.get("digest", "")
    out["size"] = d.get("size", 0)
    if d.get("urls"):
        out["urls"] = d["urls"]
    if d.get("annotations"):
        out["annotations"] = _sorted_map(d["annotations"])
    if d.get("data"):
        out["data"] = d["data"]
    if d.get("platform"):
        p = d["platform"]
        plat = {"architecture": p.get("architecture", ""), "os": p.get("os", "")}
        if p.get("os.version"):
            plat["os.version"] = p["os.version"]
        if p.get("os.features"):
            plat["os.features"] = p["os.features"]
        if p.get("variant"):
            plat["variant"] = p["variant"]
        out["platform"] = plat
    if d.get("artifactType"):
        out["artifactType"] = d["artifactType"]
    return out


def _variant(sets: tuple[dict[str, str], ...], media_type: str, compression: str) -> str | None:
    for s in sets:
        if media_type in s.values():
            return s.get(compression)
    return None


def _layer_type(sets: tuple[dict[str, str], ...], media_type: str, blob: _Blob) -> str:
    out = _variant(sets, media_type, blob.compression)
    if out is None:
        raise ManifestError(
            f"preparing updated manifest, layer {blob.digest!r}: media type {media_type!r} "
            f"cannot hold a {blob.compression} layer"
        )
    return out


def oci_manifest(m: dict[str, Any], blobs: list[_Blob]) -> bytes:
    """An OCI manifest with its layers replaced, as c/image's ``OCI1.Serialize`` writes it
    (layer annotations and URLs are dropped, as ``UpdateLayerInfos`` does)."""
    out: dict[str, Any] = {"schemaVersion": m.get("schemaVersion", 2)}
    if m.get("mediaType"):
        out["mediaType"] = m["mediaType"]
    out["config"] = _oci_descriptor(m.get("config") or {})
    layers = m.get("layers") or []
    out["layers"] = [
        {
            "mediaType": _layer_type(_OCI_SETS, layers[i].get("mediaType", ""), b),
            "digest": b.digest,
            "size": b.size,
        }
        for i, b in enumerate(blobs)
    ]
    if m.get("refers"):
        out["refers"] = _oci_descriptor(m["refers"])
    if m.get("annotations"):
        out["annotations"] = _sorted_map(m["annotations"])
    return _jsonstore.dumps(out)


def docker_manifest(m: dict[str, Any], blobs: list[_Blob]) -> bytes:
    """A Docker schema 2 manifest with its layers replaced (c/image's ``Schema2``)."""
    c = m.get("config") or {}
    config: dict[str, Any] = {
        "mediaType": c.get("mediaType", ""),
        "size": c.get("size", 0),
        "digest": c.get("digest", ""),
    }
    if c.get("urls"):
        config["urls"] = c["urls"]
    layers = m.get("layers") or []
    return _jsonstore.dumps(
        {
            "schemaVersion": m.get("schemaVersion", 2),
            "mediaType": m.get("mediaType", ""),
            "config": config,
            "layers": [
                {
                    "mediaType": _layer_type(_DOCKER_SETS, layers[i].get("mediaType", ""), b),
                    "size": b.size,
                    "digest": b.digest,
                }
                for i, b in enumerate(blobs)
            ],
        }
    )


def oci_config(config: bytes) -> bytes:
    """A Docker image config as an OCI one: c/image's ``OCIConfig`` (decoded into
    image-spec's ``Image``, so unknown fields are dropped) then ``json.Marshal``."""
    from ..oci import _go_time

    c = json.loads(config)
    out: dict[str, Any] = {}
    if c.get("created"):
        out["created"] = _go_time(c["created"])
    if c.get("author"):
        out["author"] = c["author"]
    out["architecture"] = c.get("architecture") or ""
    if c.get("variant"):
        out["variant"] = c["variant"]
    out["os"] = c.get("os") or ""
    if c.get("os.version"):
        out["os.version"] = c["os.version"]
    if c.get("os.features"):
        out["os.features"] = c["os.features"]
    src = c.get("config") or {}
    ic: dict[str, Any] = {}
    for name in ("User", "ExposedPorts", "Env", "Entrypoint", "Cmd", "Volumes", "WorkingDir"):
        v = src.get(name)
        if v:
            ic[name] = {k: {} for k in sorted(v)} if name in ("ExposedPorts", "Volumes") else v
    if src.get("Labels"):
        ic["Labels"] = _sorted_map(src["Labels"])
    if src.get("StopSignal"):
        ic["StopSignal"] = src["StopSignal"]
    out["config"] = ic
    rootfs = c.get("rootfs") or {}
    out["rootfs"] = {"type": rootfs.get("type") or "", "diff_ids": rootfs.get("diff_ids")}
    history = []
    for h in c.get("history") or []:
        e: dict[str, Any] = {}
        if h.get("created"):
            e["created"] = _go_time(h["created"])
        for name in ("created_by", "author", "comment", "empty_layer"):
            if h.get(name):
                e[name] = h[name]
        history.append(e)
    if history:
        out["history"] = history
    return _jsonstore.dumps(out)


def push_image(
    store: Store,
    image: str,
    dest: str,
    *,
    compression: str = "gzip",
    compression_level: int | None = None,
    creds: str | Credentials | None = None,
    authfile: str | None = None,
    tls_verify: bool | None = None,
    progress: ImageProgressCallback | None = None,
    workers: int = DEFAULT_WORKERS,
    cache: BlobInfoCache | None = None,
    client: Client | None = None,
) -> str:
    """Push ``image`` (a name or ID in ``store``) to ``dest`` (``[docker://]REF``); return
    the pushed manifest's digest. See the module docstring.

    ``compression_level`` (gzip only, 1-9; skopeo's ``--dest-compress-level``) defaults to
    :data:`GZIP_LEVEL`. ``creds`` (``USER[:PASSWORD]`` or :class:`Credentials`) beats the
    auth files (``authfile`` first); ``tls_verify`` None follows registries.conf
    ``insecure``; ``progress`` is called with an :class:`~containers_storage.oci.ImageProgress`
    keyed by DiffID (bytes sent).

    Raises:
        ValueError: an unknown compression.
        InvalidReferenceError: ``dest`` is not a docker reference.
        ImageUnknownError: no such image.
        RegistryError: the registry refused something (texts as c/image's).
    """
    if compression not in COMPRESSIONS:
        raise ValueError(
            f"unknown compression {compression!r}: expected one of {', '.join(COMPRESSIONS)}"
        )
    level = GZIP_LEVEL if compression_level is None else compression_level
    if not 1 <= level <= 9:
        raise ValueError(f"invalid gzip compression level {level}: expected 1-9")
    ref = parse_docker_reference(dest)
    conf = registries_conf.load()
    target = conf.push_destination(ref)
    img = local_image(store, image, conf)
    try:
        manifest_bytes = store.image_big_data(img.id, "manifest")
    except errors.StorageError as e:
        raise RegistryError(f"reading image manifest for {img.id!r}: {e}") from e
    mtype = guess_mime_type(manifest_bytes)
    if mtype not in (OCI_MANIFEST, DOCKER_V2S2):
        raise ManifestError(
            f"image {img.id}: its manifest type {mtype!r} cannot be pushed (only OCI and "
            "Docker schema 2 images)"
        )
    man = json.loads(manifest_bytes)
    config_digest = (man.get("config") or {}).get("digest", "")
    config = store.image_big_data(img.id, config_digest)
    from ..oci import _layer_chain

    chain = _layer_chain(store, img.layer or "")
    if len(chain) != len(man.get("layers") or []):
        raise ManifestError(
            f"creating LayerInfosForCopy of image {img.id!r}: the manifest lists "
            f"{len(man.get('layers') or [])} layers, the store holds {len(chain)}"
        )
    if client is None:
        client = client_for(
            target.ref,
            insecure=target.insecure,
            creds=creds,
            authfile=authfile,
            tls_verify=tls_verify,
        )
    repo = target.ref.path
    names_repos = []
    for name in img.names:
        with contextlib.suppress(errors.StorageError):
            r = parse_docker_reference(name)
            if r.domain == target.ref.domain:
                names_repos.append(r.path)
    pusher = _Pusher(store, client, repo, compression, cache or BlobInfoCache(), progress, level)
    for layer in chain:
        guess = layer.compressed_size if layer.compression and compression != "none" else 0
        pusher.state.sizes[layer.diff_digest] = guess or layer.diff_size
    pusher.state.total_bytes = sum(pusher.state.sizes.values())
    client.ping()
    n = max(1, min(workers, len(chain)))
    with (
        pusher.pool,
        concurrent.futures.ThreadPoolExecutor(n, thread_name_prefix="cs-push") as ex,
    ):
        futures = [ex.submit(pusher.push_layer, layer, names_repos) for layer in chain]
        try:
            results = [f.result() for f in futures]
        except BaseException:
            pusher.failed.set()
            raise
    blobs = [b for b in results if b is not None]
    assert len(blobs) == len(chain)
    out_type = mtype
    if mtype == DOCKER_V2S2 and any(b.compression == "zstd" for b in blobs):
        # Docker schema 2 has no zstd layers: c/image converts the image to OCI.
        out_type = OCI_MANIFEST
        config = oci_config(config)
        layers = [
            dict(entry, mediaType=_OCI_FROM_DOCKER.get(entry.get("mediaType", ""), ""))
            for entry in man.get("layers") or []
        ]
        man = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": OCI_CONFIG,
                "digest": sha256_digest(config),
                "size": len(config),
            },
            "layers": layers,
        }
    pusher.push_config(config)
    data = oci_manifest(man, blobs) if out_type == OCI_MANIFEST else docker_manifest(man, blobs)
    digest = sha256_digest(data)
    if target.ref.digest is not None and target.ref.digest != digest:
        raise ManifestError(
            "Digest of source image's manifest would not match destination reference"
        )
    put_manifest(client, repo, target.ref.tag_or_digest, data, out_type)
    pusher.report()
    return digest


_OCI_FROM_DOCKER = {
    "application/vnd.docker.image.rootfs.diff.tar": "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.docker.image.rootfs.diff.tar.gzip": (
        "application/vnd.oci.image.layer.v1.tar+gzip"
    ),
    "application/vnd.docker.image.rootfs.foreign.diff.tar": (
        "application/vnd.oci.image.layer.nondistributable.v1.tar"
    ),
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip": (
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
    ),
}
