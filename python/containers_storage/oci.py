"""From image to store and back: import and export OCI images, unpack a root file system.

:func:`import_image` reads ``oci:DIR[:TAG]``, ``oci-archive:FILE[:TAG]`` or
``docker-archive:FILE`` and writes what skopeo writes into containers-storage: layer IDs
chained from the DiffIDs (the base layer's ID is its DiffID, each next one is
``sha256(parentID + "+" + diffID)``), the image ID is the config digest, big data
``sha256:<config>``, ``manifest-<digest>``, ``manifest`` and an empty signature item,
``digest`` and ``created`` from the manifest and config, the metadata
``{"signatures-sizes":{"<manifest digest>":[]}}`` (replaced on a re-import). Names are
stored as skopeo's ``containers-storage:NAME`` stores them (``myimg`` ->
``docker.io/library/myimg:latest``, see :mod:`.reference`); without names, the source's
tag or ``RepoTags`` are taken the same way. Every blob is verified against the
manifest and every layer against the config's DiffIDs; on any mismatch nothing stays.
Layers already in the store are reused. With overlay, layers are applied in parallel in
staging directories (they do not depend on each other) and adopted in order.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import tarfile
import tempfile
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from . import _native, errors, reference
from ._platform import Platform, choose_instance
from ._strconv import go_quote
from ._struct import field, struct
from .archive import Limits, apply_layer
from .digests import sha256_digest, sha256_file, sha256_hex, validate_digest
from .records import Image, ImageBigData, Layer

if TYPE_CHECKING:
    from .layers import StagedLayer
    from .store import Store

__all__ = ["ImageProgress", "export_image", "import_image", "parse_reference", "unpack_image"]

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
REF_NAME = "org.opencontainers.image.ref.name"

#: ``progress(event)`` with per-layer and total byte counts.
ImageProgressCallback = Callable[["ImageProgress"], object]


@struct
class ImageProgress:
    """Where an import stands: bytes read per layer (by blob digest) and in total."""

    total_bytes: int
    done: dict[str, int] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)
    finished: set[str] = field(default_factory=set)

    @property
    def done_bytes(self) -> int:
        """Bytes read so far, over all layers."""
        return sum(self.done.values())


def _hex_of(digest: str) -> str:
    """The hex part of a sha256 digest, which layer and image IDs are made of.

    Raises:
        InvalidDigestError: ``digest`` is not a valid sha256 digest.
    """
    try:
        validate_digest(digest)
    except errors.InvalidDigestError as e:
        raise errors.InvalidDigestError(f"invalid digest {go_quote(digest)}: {e}") from None
    return digest[len("sha256:") :]


def parse_reference(ref: str) -> tuple[str, str, str]:
    """``"oci:DIR:TAG"`` -> ``("oci", "DIR", "TAG")`` (tag may be empty)."""
    transport, sep, rest = ref.partition(":")
    if not sep or transport not in ("oci", "oci-archive", "docker-archive"):
        raise ValueError(
            f"invalid image reference {go_quote(ref)}: expected oci:DIR[:TAG], "
            "oci-archive:FILE[:TAG], docker-archive:FILE or docker://REF"
        )
    path, _, tag = rest.partition(":")
    if transport == "docker-archive":
        return transport, rest, ""
    return transport, path, tag


class _Layout:
    """An OCI image layout directory: blobs by digest."""

    def __init__(self, root: str) -> None:
        self.root = root

    def blob_path(self, digest: str) -> str:
        return os.path.join(self.root, "blobs", "sha256", _hex_of(digest))

    def read_blob(self, digest: str, limit: int = 64 << 20) -> bytes:
        with open(self.blob_path(digest), "rb") as f:
            data = f.read(limit + 1)
        if len(data) > limit:
            raise errors.StorageError(f"blob {digest} is too large for a manifest or config")
        actual = sha256_digest(data)
        if actual != digest:
            raise errors.DigestMismatchError(
                f"Digest did not match, expected {digest}, got {actual}"
            )
        return data


class BlobStream(Protocol):
    """A layer blob being read: a file, or a registry's response streamed."""

    def read(self, size: int = ..., /) -> bytes: ...

    def close(self) -> None: ...


#: Opens a layer blob for reading (called once per layer, maybe from a worker thread).
BlobOpener = Callable[[], BlobStream]


@struct
class _Source:
    """A resolved image: manifest bytes and digest, config bytes, and per layer its blob
    digest, how to open the blob and its size (from the manifest)."""

    manifest: bytes
    manifest_digest: str
    config: bytes
    config_digest: str
    layers: list[tuple[str, BlobOpener, int]]  # (blob digest, opener, size)
    tags: list[str]
    cleanup: Callable[[], None] = lambda: None
    #: Stops every blob being read (a failed or interrupted import) so no reader stays
    #: blocked on a stalled source.
    abort: Callable[[], None] = lambda: None
    #: Whether the blobs come over the network (a read may block on a stalled server).
    remote: bool = False
    #: Bounds on each layer's apply (a decompression bomb fails); None: the defaults.
    limits: Limits | None = None
    #: The image index the manifest was chosen from, when the reference named one.
    index: bytes | None = None
    index_digest: str = ""


def _resolve_oci(root: str, tag: str, platform: Platform | None = None) -> _Source:
    layout = _Layout(root)
    try:
        with open(os.path.join(root, "index.json"), "rb") as f:
            index = json.load(f)
    except FileNotFoundError:
        raise errors.StorageError(f"{root}: not an OCI layout (no index.json)") from None
    descriptors = index.get("manifests") or []
    if tag:
        matches = [d for d in descriptors if (d.get("annotations") or {}).get(REF_NAME) == tag]
        if not matches:
            raise errors.ImageUnknownError(f"no descriptor found for reference {go_quote(tag)}")
    else:
        matches = descriptors
        if len(matches) != 1:
            raise errors.StorageError(
                f"{root}: the layout holds {len(matches)} images: give a tag (oci:DIR:TAG)"
            )
    desc = matches[0]
    data = layout.read_blob(desc["digest"])
    manifest = json.loads(data)
    digest = desc["digest"]
    index_bytes: bytes | None = None
    index_digest = ""
    if manifest.get("mediaType") in (OCI_INDEX, DOCKER_LIST) or "manifests" in manifest:
        index_bytes, index_digest = data, digest
        oci_index = manifest.get("mediaType") != DOCKER_LIST
        digest = choose_instance(manifest, platform, oci=oci_index)["digest"]
        data = layout.read_blob(digest)
        manifest = json.loads(data)
    config_digest = manifest["config"]["digest"]
    config = layout.read_blob(config_digest)
    layers = []
    for entry in manifest.get("layers", []):
        path = layout.blob_path(entry["digest"])
        if not os.path.exists(path):
            raise errors.StorageError(f"blob {entry['digest']} is missing from {root}")
        layers.append((entry["digest"], _file_opener(path), int(entry.get("size", 0))))
    tags = [tag] if tag else []
    return _Source(
        data,
        digest,
        config,
        config_digest,
        layers,
        tags,
        index=index_bytes,
        index_digest=index_digest,
    )


def _file_opener(path: str) -> BlobOpener:
    def open_blob() -> BlobStream:
        return open(path, "rb")

    return open_blob


def _safe_extract(archive_path: str, target: str) -> None:
    with tarfile.open(archive_path) as t:
        t.extractall(target, filter="data")


def _resolve_docker_archive(path: str, tmp_root: str) -> _Source:
    work = tempfile.mkdtemp(prefix="docker-archive-", dir=tmp_root)
    try:
        _safe_extract(path, work)
        with open(os.path.join(work, "manifest.json"), "rb") as f:
            entries = json.load(f)
        if len(entries) != 1:
            raise errors.StorageError(f"{path}: the archive holds {len(entries)} images")
        entry = entries[0]
        with open(os.path.join(work, entry["Config"]), "rb") as f:
            config = f.read()
        config_digest = sha256_digest(config)
        layers = []
        descs = []
        for rel in entry["Layers"]:
            lp = os.path.join(work, rel)
            d, size = sha256_file(lp)
            layers.append((d, _file_opener(lp), size))
            descs.append(
                {
                    "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                    "size": size,
                    "digest": d,
                }
            )
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": DOCKER_MANIFEST,
                "config": {
                    "mediaType": "application/vnd.docker.container.image.v1+json",
                    "size": len(config),
                    "digest": config_digest,
                },
                "layers": descs,
            },
            separators=(",", ":"),
        ).encode()
        tags = list(entry.get("RepoTags") or [])
        return _Source(
            manifest,
            sha256_digest(manifest),
            config,
            config_digest,
            layers,
            tags,
            cleanup=lambda: _native.remove_tree(work),
        )
    except BaseException:
        _native.remove_tree(work)
        raise


def _resolve(source: str, tmp_root: str) -> _Source:
    transport, path, tag = parse_reference(source)
    if transport == "oci":
        return _resolve_oci(path, tag)
    if transport == "oci-archive":
        work = tempfile.mkdtemp(prefix="oci-archive-", dir=tmp_root)
        try:
            _safe_extract(path, work)
            src = _resolve_oci(work, tag)
        except BaseException:
            _native.remove_tree(work)
            raise
        src.cleanup = lambda: _native.remove_tree(work)
        return src
    return _resolve_docker_archive(path, tmp_root)


def chain_ids(diff_ids: Sequence[str]) -> list[str]:
    """Layer IDs as containers/image computes them for containers-storage."""
    out: list[str] = []
    for d in diff_ids:
        hexpart = _hex_of(d)
        out.append(hexpart if not out else sha256_hex(f"{out[-1]}+{hexpart}".encode()))
    return out


class _Counter:
    """A blob stream wrapper counting bytes read into an :class:`ImageProgress`."""

    def __init__(
        self, f: BlobStream, key: str, state: ImageProgress, report: Callable[[], None]
    ) -> None:
        self.f = f
        self.key = key
        self.state = state
        self.report = report

    def read(self, n: int = -1) -> bytes:
        data = self.f.read(n)
        self.state.done[self.key] = self.state.done.get(self.key, 0) + len(data)
        self.report()
        return data

    def close(self) -> None:
        self.f.close()

    def abort(self) -> None:
        abort = getattr(self.f, "abort", None)
        if abort is not None:
            abort()


def import_image(
    store: Store,
    source: str,
    names: Sequence[str] = (),
    progress: ImageProgressCallback | None = None,
    workers: int | None = None,
) -> Image:
    """Import an image into ``store`` as skopeo would (see the module docstring).

    Raises:
        InvalidReferenceError: A name is not a valid reference (c/image's text).
        DigestMismatchError: A blob or a layer does not match its digest, or a digested
            name does not name the manifest or its index (nothing is kept).
        ImageUnknownError: The tag is not in the layout.
        ArchiveError: A layer is not a valid tarball (nothing is kept).
    """
    if source.startswith("containers-storage:"):  # another store: see storeref
        from .storeref import import_from

        return import_from(store, source, names, progress)
    if source.startswith("docker://"):
        from .pull import pull_image

        return pull_image(store, source, names=names or None, progress=progress, workers=workers)
    given = [reference.storage_name(n) for n in names]
    tmp_root = os.path.join(store.graph_root(), "tmp")
    os.makedirs(tmp_root, mode=0o700, exist_ok=True)
    src = _resolve(source, tmp_root)
    try:
        refs = given or [reference.storage_name(t) for t in src.tags]
        check_destination_digests(src, refs)
        stored = list(dict.fromkeys(name for name, _digest in refs))
        return _import(store, src, stored, progress, workers)
    finally:
        src.cleanup()


def check_destination_digests(src: _Source, refs: Sequence[tuple[str, str]]) -> None:
    """c/image's copy: a digested destination name (``(name, digest)`` as
    :func:`~containers_storage.reference.storage_name` gives) must name the source's
    manifest or its index.

    Raises:
        DigestMismatchError: one names another digest.
    """
    for _name, digest in refs:
        if digest and digest not in (src.manifest_digest, src.index_digest):
            raise errors.DigestMismatchError(
                "Digest of source image's manifest would not match destination reference"
            )


def _import(
    store: Store,
    src: _Source,
    names: list[str],
    progress: ImageProgressCallback | None,
    workers: int | None,
) -> Image:
    if sha256_digest(src.config) != src.config_digest:
        raise errors.DigestMismatchError(f"config does not match {src.config_digest}")
    config = json.loads(src.config)
    diff_ids = list((config.get("rootfs") or {}).get("diff_ids") or [])
    if len(diff_ids) != len(src.layers):
        raise errors.StorageError(
            f"the config lists {len(diff_ids)} DiffIDs for {len(src.layers)} layers"
        )
    ids = chain_ids(diff_ids)
    _reuse_local_blobs(store, src, ids, diff_ids)
    state = ImageProgress(total_bytes=sum(size for _d, _p, size in src.layers))
    for d, _p, size in src.layers:
        state.sizes[d] = size
    lock = threading.Lock()

    def report() -> None:
        if progress is not None:
            with lock:
                progress(state)

    created: list[str] = []
    todo = []
    for i, (blob, _path, _size) in enumerate(src.layers):
        try:
            existing = store.layer(ids[i])
        except errors.LayerUnknownError:
            existing = None
        if existing is not None:
            if existing.diff_digest and existing.diff_digest != diff_ids[i]:
                raise errors.DigestMismatchError(
                    f"layer {ids[i]} in the store has DiffID {existing.diff_digest}, "
                    f"expected {diff_ids[i]}"
                )
            state.done[blob] = state.sizes[blob]
            state.finished.add(blob)
            continue
        todo.append(i)
    try:
        driver = store.graph_driver()
        if driver.supports_staging and len(todo) > 1:
            _import_staged(store, src, ids, diff_ids, todo, state, report, created, workers)
        else:
            for i in todo:
                blob, opener, _size = src.layers[i]
                reader = _Counter(opener(), blob, state, report)

                def put(i: int = i, reader: _Counter = reader, blob: str = blob) -> None:
                    if _put_or_reuse(
                        store, ids, diff_ids, i, reader, None, compressed_digest=blob,
                        limits=src.limits,
                    ):  # fmt: skip
                        created.append(ids[i])

                try:
                    if src.remote:
                        _interruptible(src, put)
                    else:
                        put()
                finally:
                    reader.close()
                state.finished.add(blob)
                report()
        image = _create_image(store, src, config, ids[-1] if ids else "", names)
        report()
        return image
    except BaseException:
        src.abort()
        for layer_id in reversed(created):
            with contextlib.suppress(errors.StorageError):
                store.delete_layer(layer_id)
        raise


def _reuse_local_blobs(store: Store, src: _Source, ids: list[str], diff_ids: list[str]) -> None:
    """c/image's blob reuse for a remote layer that is not in the store under its own ID: a
    layer applied from the same blob (its compressed digest, or its DiffID for an
    uncompressed blob) holds the same tar, so its diff is exported uncompressed into an
    anonymous temporary file (as c/image does) and applied on the new parent instead of
    downloading the blob again. Unlike c/image, the new record's compressed digest is the
    DiffID of what was applied, not the blob's (``put_layer`` verifies what it records)."""
    if not src.remote:
        return
    for i, (blob, _opener, _size) in enumerate(src.layers):
        with contextlib.suppress(errors.LayerUnknownError):
            store.layer(ids[i])
            continue
        same = [
            x
            for x in (
                *_layers_or_none(store.layers_by_compressed_digest, blob),
                *_layers_or_none(store.layers_by_uncompressed_digest, blob),
            )
            if x.diff_digest == diff_ids[i]
        ]
        if not same:
            continue
        tmp_dir = os.path.join(store.graph_root(), "tmp")
        os.makedirs(tmp_dir, mode=0o700, exist_ok=True)
        # Anonymous (O_TMPFILE): nothing is left behind by a crash. Closed by its reader.
        spool = tempfile.TemporaryFile(dir=tmp_dir)
        try:
            store.diff_to(None, same[0].id, spool, compression="none")
            spool.seek(0)
        except BaseException:
            spool.close()
            raise

        def reopen(spool: BlobStream = spool) -> BlobStream:
            return spool

        src.layers[i] = (diff_ids[i], reopen, same[0].diff_size)


def _layers_or_none(lookup: Callable[[str], list[Layer]], digest: str) -> list[Layer]:
    try:
        return lookup(digest)
    except errors.LayerUnknownError:
        return []


def _interruptible(src: _Source, call: Callable[[], None]) -> None:
    """Run ``call`` on a thread and wait for it. The apply checks for Ctrl-C only while
    data flows; a read blocked on a stalled server would hide it. Here the wait gets the
    interrupt, stops the source's streams (so the apply fails at once), and returns only
    once ``call`` has cleaned up."""
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="cs-put") as ex:
        future = ex.submit(call)
        try:
            future.result()
        except BaseException:
            src.abort()
            concurrent.futures.wait([future])
            raise


def _import_staged(
    store: Store,
    src: _Source,
    ids: list[str],
    diff_ids: list[str],
    todo: list[int],
    state: ImageProgress,
    report: Callable[[], None],
    created: list[str],
    workers: int | None,
) -> None:
    """Apply the missing layers in parallel staging directories, adopt them in order."""
    n = workers or max(1, min(len(todo), os.cpu_count() or 1))

    def stage(i: int) -> StagedLayer:
        blob, opener, _size = src.layers[i]
        reader = _Counter(opener(), blob, state, report)
        try:
            return store.stage_layer(reader, limits=src.limits)
        finally:
            reader.close()

    with concurrent.futures.ThreadPoolExecutor(max_workers=n, thread_name_prefix="cs-stage") as ex:
        futures = {i: ex.submit(stage, i) for i in todo}
        try:
            for i in todo:
                staged = futures[i].result()
                blob = src.layers[i][0]
                if _put_or_reuse(store, ids, diff_ids, i, None, staged, compressed_digest=blob):
                    created.append(ids[i])
                state.finished.add(blob)
                report()
        except BaseException:
            src.abort()
            for f in futures.values():
                f.cancel()
            for f in futures.values():
                with contextlib.suppress(BaseException):
                    staged = f.result()
                    staged.discard()
            raise


def _put_or_reuse(
    store: Store,
    ids: list[str],
    diff_ids: list[str],
    i: int,
    diff: _Counter | None,
    staged: StagedLayer | None,
    *,
    compressed_digest: str,
    limits: Limits | None = None,
) -> bool:
    """Put layer ``i``; when another process put it meanwhile, check and reuse theirs (as
    c/image does). Returns whether this call created it."""
    try:
        store.put_layer(
            ids[i - 1] if i else None,
            diff,
            id=ids[i],
            staged=staged,
            compressed_digest=compressed_digest,
            uncompressed_digest=diff_ids[i],
            limits=limits,
        )
        return True
    except errors.DuplicateIDError:
        if staged is not None:
            staged.discard()
        existing = store.layer(ids[i])
        if existing.diff_digest and existing.diff_digest != diff_ids[i]:
            raise errors.DigestMismatchError(
                f"layer {ids[i]} in the store has DiffID {existing.diff_digest}, "
                f"expected {diff_ids[i]}"
            ) from None
        return False


def _create_image(
    store: Store, src: _Source, config: dict[str, Any], top: str, names: list[str]
) -> Image:
    image_id = _hex_of(src.config_digest)
    md_hex = _hex_of(src.manifest_digest)
    digest = src.index_digest or src.manifest_digest
    metadata = json.dumps({"signatures-sizes": {src.manifest_digest: []}}, separators=(",", ":"))
    created = config.get("created") or None
    # What skopeo stores with an image, in its order.
    big_data = [ImageBigData(src.config_digest, src.config)]
    if src.index is not None:
        big_data.append(ImageBigData(f"manifest-{src.index_digest}", src.index, src.index_digest))
    big_data += [
        ImageBigData(f"manifest-{src.manifest_digest}", src.manifest, src.manifest_digest),
        ImageBigData("manifest", src.manifest, src.manifest_digest),
        ImageBigData(f"signature-{md_hex}", b""),
    ]
    try:
        existing = store.image(image_id)
    except errors.ImageUnknownError:
        existing = None
    if existing is None:
        try:
            # One write, so that no other process sees the image without its manifest
            # or its names (skopeo makes several).
            return store.create_image(
                top,
                id=image_id,
                add_names=names,
                metadata=metadata,
                digest=digest,
                created=_go_time(created) if created else None,
                big_data=big_data,
            )
        except errors.DuplicateIDError:
            # Another process imported it meanwhile: as c/image, take theirs.
            existing = store.image(image_id)
    # c/image's order: big data, then the metadata (replaced: only this manifest's
    # signature sizes stay), then AddNames (new names first, then the ones it had).
    for item in big_data:
        store.set_image_big_data(image_id, item.key, item.data, item.manifest_digester())
    store.set_metadata(image_id, metadata)
    if names:
        store.set_names(image_id, [*names, *(n for n in existing.names if n not in names)])
    return store.image(image_id)


def _go_time(text: str) -> str:
    """An RFC 3339 time as Go re-marshals it: same instant and offset, nanoseconds with
    trailing zeros trimmed, ``Z`` for UTC."""
    from ._jsonstore import format_time, parse_time

    body, tz = text, "Z"
    if text.endswith(("Z", "z")):
        body = text[:-1]
    elif len(text) > 6 and text[-6] in "+-" and text[-3] == ":":
        body, tz = text[:-6], text[-6:]
    if tz in ("+00:00", "-00:00"):
        tz = "Z"
    # Format the wall-clock time as written (with its own offset), then restore the offset.
    ns = parse_time(body + "Z")
    return format_time(ns)[:-1] + tz


# -- export and unpack ------------------------------------------------------------------------


def export_image(store: Store, image_ref: str, dest: str) -> str:
    """Write the image as an OCI layout ``oci:DIR[:TAG]``; returns the manifest digest.

    Layers are written uncompressed, reproduced byte for byte from their tar-split (so
    each blob's digest is the layer's DiffID); the config is the stored one, unchanged.
    """
    if dest.startswith("containers-storage:"):  # another store: see storeref
        from .storeref import export_to

        return export_to(store, image_ref, dest)
    transport, path, tag = parse_reference(dest)
    if transport != "oci":
        raise ValueError("export supports oci:DIR[:TAG] destinations")
    image = store.image(image_ref)
    config_key = next((k for k in image.big_data_names if k.startswith("sha256:")), None)
    if config_key is None:
        raise errors.StorageError(f"image {image.id} has no config item (sha256:<digest>)")
    config = store.image_big_data(image.id, config_key)
    chain = _layer_chain(store, image.layer)
    os.makedirs(os.path.join(path, "blobs", "sha256"), exist_ok=True)
    with open(os.path.join(path, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    layers = []
    for layer in chain:
        tmp = os.path.join(path, "blobs", "sha256", f".tmp-{layer.id}")
        with open(tmp, "wb") as out:
            for chunk in store.diff(None, layer.id, compression="none"):
                out.write(chunk)
        digest, size = sha256_file(tmp)
        os.replace(tmp, _Layout(path).blob_path(digest))
        layers.append(
            {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest, "size": size}
        )
    config_digest = sha256_digest(config)
    _write_blob(path, config)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config_digest,
                "size": len(config),
            },
            "layers": layers,
        },
        separators=(",", ":"),
    ).encode()
    manifest_digest = _write_blob(path, manifest)
    index_path = os.path.join(path, "index.json")
    try:
        with open(index_path, "rb") as f:
            index = json.load(f)
    except FileNotFoundError:
        index = {"schemaVersion": 2, "manifests": []}
    desc: dict[str, Any] = {
        "mediaType": OCI_MANIFEST,
        "digest": manifest_digest,
        "size": len(manifest),
    }
    if tag:
        desc["annotations"] = {REF_NAME: tag}
        index["manifests"] = [
            m
            for m in index.get("manifests", [])
            if (m.get("annotations") or {}).get(REF_NAME) != tag
        ]
    index.setdefault("manifests", []).append(desc)
    tmp_index = index_path + ".tmp"
    with open(tmp_index, "w") as f:
        json.dump(index, f, separators=(",", ":"))
    os.replace(tmp_index, index_path)
    return manifest_digest


def _write_blob(root: str, data: bytes) -> str:
    digest = sha256_digest(data)
    with open(_Layout(root).blob_path(digest), "wb") as f:
        f.write(data)
    return digest


def _layer_chain(store: Store, top: str) -> list[Layer]:
    chain = []
    layer_id = top
    while layer_id:
        layer = store.layer(layer_id)
        chain.append(layer)
        layer_id = layer.parent
    return list(reversed(chain))


def unpack_image(store: Store, image_ref: str, target_dir: str) -> None:
    """Flatten the image's layers into ``target_dir`` (created if missing): what
    ``umoci raw unpack`` and ``crane export`` give. Each layer's tar is streamed from the
    store into the extractor, whiteouts applied as deletions."""
    image = store.image(image_ref)
    os.makedirs(target_dir, exist_ok=True)
    for layer in _layer_chain(store, image.layer):
        read_fd, write_fd = os.pipe()
        failure: list[BaseException] = []

        def produce(
            layer_id: str = layer.id, fd: int = write_fd, failure: list[BaseException] = failure
        ) -> None:
            try:
                with os.fdopen(fd, "wb") as w:
                    store.diff_to(None, layer_id, w, compression="none")
            except BaseException as e:  # re-raised below
                failure.append(e)

        t = threading.Thread(target=produce, daemon=True, name="cs-unpack")
        t.start()
        try:
            apply_layer(read_fd, target_dir, whiteouts="vfs")
        finally:
            os.close(read_fd)
            t.join()
        if failure:
            raise failure[0]
