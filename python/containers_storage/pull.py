"""Pull ``docker://REF`` into the store as ``podman pull`` does (containers/image v5.23 into
containers/storage 1.43).

The registry is a source of :mod:`.oci`'s copy pipeline like an OCI layout: the manifest
(an index or list resolved to this machine's platform, or ``platform``), the config, and per
layer a blob opened as a stream. Each blob goes from the socket through the digest check
into the decompressing apply with no temporary file; with overlay the layers are applied in
parallel staging directories (6 at a time, as c/image) and adopted in order. What is stored
is what skopeo and podman store (layer IDs, image ID, big data, digests, names); layers whose
IDs are in the store already are not downloaded, nor blobs the store applied before under
another parent (c/image's reuse by compressed digest: applied from the store's copy).

The reference is read through :mod:`.registry.registries_conf` (short names, mirrors,
``insecure``, ``blocked``) and checked by :mod:`.registry.policy`; the stored name is the
candidate that was pulled (``docker.io/library/busybox:latest``), as podman stores it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import urllib3

from . import oci, reference
from ._platform import Platform, choose_instance, parse_platform
from .registry import policy, registries_conf
from .registry.auth import Credentials
from .registry.client import DOCKER_LIST, OCI_INDEX, Client
from .registry.connect import client_for
from .registry.errors import ManifestError, RegistryError

if TYPE_CHECKING:
    from .archive import Limits
    from .oci import ImageProgressCallback
    from .records import Image
    from .store import Store

__all__ = ["DEFAULT_PARALLEL", "pull_image"]

#: Layers transferred at once (c/image's ``maxParallelDownloads``).
DEFAULT_PARALLEL = 6


class _BlobStream:
    """A blob's chunks as a readable stream (``read`` returns the next chunk whatever the
    size asked; an empty result is the end). The digest is checked by the iterator when the
    last chunk has been read."""

    def __init__(self, chunks: Iterator[bytes], client: Client) -> None:
        self._chunks = chunks
        self._client = client

    def read(self, size: int = -1, /) -> bytes:
        return next(self._chunks, b"")

    def close(self) -> None:
        close = getattr(self._chunks, "close", None)
        if close is not None:
            close()

    def abort(self) -> None:
        """Unblock a read waiting on the network (the pull failed or was interrupted)."""
        self._client.abort()


def _foreign_chunks(client: Client, repo: str, digest: str, urls: Sequence[str]) -> Iterator[bytes]:
    """A non-distributable layer as c/image fetches it: each http(s) URL of the descriptor
    tried without credentials, the first 200 wins; else the registry's blob endpoint. The
    apply checks the digest of what it reads against the manifest's."""
    for url in urls:
        if not url.startswith(("http://", "https://")):
            continue
        try:
            resp = client.pool.request(
                "GET", url, preload_content=False, decode_content=False, redirect=True
            )
        except urllib3.exceptions.HTTPError:
            continue
        try:
            if resp.status != 200:
                continue
            yield from resp.stream(1 << 20, decode_content=False)
            return
        finally:
            resp.release_conn()
    yield from client.iter_blob(repo, digest, verify=False)


def _opener(client: Client, repo: str, desc: dict[str, Any]) -> oci.BlobOpener:
    digest = str(desc["digest"])
    urls = [u for u in desc.get("urls") or [] if isinstance(u, str)]

    def open_blob() -> oci.BlobStream:
        # The apply computes the blob's digest and checks it (``compressed_digest``): it
        # is not hashed a second time on the way in.
        if urls:
            return _BlobStream(_foreign_chunks(client, repo, digest, urls), client)
        return _BlobStream(client.iter_blob(repo, digest, verify=False), client)

    return open_blob


def _resolve(client: Client, repo: str, tag_or_digest: str, wanted: Platform | None) -> oci._Source:
    """The manifest (through an index or list), the config and the layer openers."""
    m = client.get_manifest(repo, tag_or_digest)
    index: bytes | None = None
    index_digest = ""
    if m.media_type in (OCI_INDEX, DOCKER_LIST):
        index, index_digest = m.data, m.digest
        desc = choose_instance(json.loads(m.data), wanted, oci=m.media_type == OCI_INDEX)
        m = client.get_manifest(repo, str(desc["digest"]))
        if m.media_type in (OCI_INDEX, DOCKER_LIST):
            raise ManifestError(
                f"manifest {m.digest} in {client.registry}/{repo}: an index inside an index "
                "is not supported"
            )
    try:
        manifest = json.loads(m.data)
        config_digest = str(manifest["config"]["digest"])
        descs = list(manifest.get("layers") or [])
    except (ValueError, KeyError, TypeError) as e:
        raise ManifestError(f"invalid manifest {m.digest}: {e}") from None
    config = client.get_blob(repo, config_digest)
    layers = [(str(d["digest"]), _opener(client, repo, d), int(d.get("size") or 0)) for d in descs]
    return oci._Source(
        m.data,
        m.digest,
        config,
        config_digest,
        layers,
        [],
        index=index,
        index_digest=index_digest,
        abort=client.abort,
        remote=True,
    )


def _open(
    ref: reference.Reference,
    conf: registries_conf.RegistriesConf,
    wanted: Platform | None,
    creds: str | Credentials | None,
    authfile: str | os.PathLike[str] | None,
    tls_verify: bool | None,
) -> oci._Source:
    """The image from the first of ``ref``'s sources (mirrors, then the primary) whose
    manifest can be read; c/image's error when none can."""
    failures: list[tuple[registries_conf.Source, RegistryError]] = []
    for source in conf.pull_sources(ref):
        client = client_for(
            source.ref, insecure=source.insecure, creds=creds, authfile=authfile,
            tls_verify=tls_verify,
        )  # fmt: skip
        try:
            return _resolve(client, source.ref.path, source.ref.tag_or_digest, wanted)
        except RegistryError as e:
            failures.append((source, e))
    if not failures:
        raise RegistryError(f"no source to pull {ref} from")
    last_source, last = failures[-1]
    if len(failures) > 1:
        # c/image's text for a pull whose mirrors failed too.
        mirrors = ", ".join(f"{s.ref}: {e}" for s, e in failures[:-1])
        last.args = (f"(Mirrors also failed: [{mirrors}]): {last_source.ref}: {last}",)
    raise last


def pull_image(
    store: Store,
    ref: str,
    *,
    names: Sequence[str] | None = None,
    platform: str | Platform | None = None,
    creds: str | Credentials | None = None,
    authfile: str | os.PathLike[str] | None = None,
    tls_verify: bool | None = None,
    progress: ImageProgressCallback | None = None,
    workers: int | None = None,
    limits: Limits | None = None,
) -> Image:
    """Pull ``ref`` (``[docker://]NAME[:TAG|@DIGEST]``) into ``store``; see the module
    docstring. ``names`` replaces the pulled name (each stored as c/image stores a
    ``containers-storage:`` name); ``platform`` is ``OS/ARCH[/VARIANT]``; ``creds``
    ``USER[:PASSWORD]`` beats the auth files (``authfile`` first, then c/image's search
    order); ``tls_verify`` False allows plain HTTP and unchecked certificates (None: the
    registries.conf ``insecure`` of each endpoint); ``workers`` bounds the layers
    transferred at once (default 6); ``limits`` bounds each layer's apply (sizes, entries:
    a decompression bomb fails with ``ArchiveError``).

    Raises:
        InvalidReferenceError: ``ref`` or a name is not a valid reference.
        RegistryError: the registry refused or failed (its subclasses tell why: 401
            :class:`~.registry.errors.AuthenticationError`, 404
            :class:`~.registry.errors.HTTPStatusError`, a bad manifest
            :class:`~.registry.errors.ManifestError`, ...); the last candidate's error
            when several were tried.
        PolicyDeniedError, RegistryBlockedError: the configuration forbids the pull.
        DigestMismatchError: a blob or a layer does not match its digest (nothing kept).
        ArchiveError: a layer is not a valid tarball, or exceeds the apply limits.
    """
    name = ref[len("docker://") :] if ref.startswith("docker://") else ref
    wanted = parse_platform(platform) if isinstance(platform, str) else platform
    given = [reference.storage_name(n) for n in names or ()]
    conf = registries_conf.load()
    rules = policy.load()
    failures: list[BaseException] = []
    for candidate in conf.candidates(name):
        rules.check(candidate)
        try:
            src = _open(candidate, conf, wanted, creds, authfile, tls_verify)
        except RegistryError as e:
            # c/image's context for what went wrong before any layer was copied.
            e.args = (f"initializing source docker://{candidate}: {e}",)
            failures.append(e)
            continue
        src.limits = limits
        stored = [n for n, _d in given] or [str(candidate)]
        oci.check_destination_digests(src, given)
        return oci._import(
            store,
            src,
            list(dict.fromkeys(stored)),
            progress,
            workers if workers is not None else DEFAULT_PARALLEL,
        )
    if len(failures) == 1:
        raise failures[0]
    raise RegistryError(
        "initializing source: " + "; ".join(str(e) for e in failures)
    ) from failures[-1]
