"""Writing to a registry as containers/image v5.23's docker destination does: blob
existence by ``HEAD``, cross-repository mounts (``POST ?mount=&from=``), uploads (``POST``
then one ``PATCH`` with the whole blob then ``PUT ?digest=``, or a monolithic ``PUT``), and
manifest ``PUT``."""

from __future__ import annotations

import hashlib
import urllib.parse
from collections.abc import Iterable

from .client import MAX_ERROR_BODY_SIZE, Client, _read_at_most, status_error
from .errors import HTTPStatusError, RegistryError

__all__ = ["blob_exists", "mount_blob", "put_manifest", "upload_blob"]


def _push_scope(client: Client, repo: str) -> str:
    return client.scope(repo, "pull,push")


def _failed(context: str, status: int, body: bytes) -> HTTPStatusError:
    """``CONTEXT: <the registry's error>``, keeping the status (a push retries on 5xx)."""
    e = status_error(status, body, "", registry_errors=True)
    return type(e)(f"{context}: {e}", status, e.codes)


def blob_exists(client: Client, repo: str, digest: str) -> int | None:
    """``HEAD /v2/REPO/blobs/DIGEST``: the blob's size when the registry has it, None on 404.

    Raises:
        HTTPStatusError: any other status (401 included), as c/image fails then.
    """
    resp = client.request("HEAD", f"/v2/{repo}/blobs/{digest}", scopes=[_push_scope(client, repo)])
    resp.release()
    if resp.status == 200:
        length = resp.headers.get("Content-Length", "")
        return int(length) if length.isdigit() else -1
    if resp.status == 404:
        return None
    raise status_error(
        resp.status, b"", f"checking whether a blob {digest} exists in {client.registry}/{repo}"
    )


def mount_blob(client: Client, repo: str, digest: str, from_repo: str) -> bool:
    """Mount ``digest`` from ``from_repo`` of the same registry into ``repo``: True when the
    registry mounted it (201); False when it opened an upload instead (202; the upload is
    cancelled, as c/image does)."""
    query = urllib.parse.urlencode({"mount": digest, "from": from_repo})
    resp = client.request(
        "POST",
        f"/v2/{repo}/blobs/uploads/?{query}",
        scopes=[_push_scope(client, repo), client.scope(from_repo, "pull")],
        retry=False,
    )
    body = _read_at_most(resp.raw, MAX_ERROR_BODY_SIZE)
    resp.release()
    if resp.status == 201:
        return True
    if resp.status == 202:
        location = resp.headers.get("Location")
        if location:
            d = client.request(
                "DELETE", urllib.parse.urljoin(resp.url, location),
                scopes=[_push_scope(client, repo)], retry=False,
            )  # fmt: skip
            d.release()
        return False
    raise status_error(resp.status, body, "", registry_errors=True)


def _start_upload(client: Client, repo: str) -> str:
    resp = client.request(
        "POST", f"/v2/{repo}/blobs/uploads/", scopes=[_push_scope(client, repo)], retry=False
    )
    body = _read_at_most(resp.raw, MAX_ERROR_BODY_SIZE)
    resp.release()
    location = resp.headers.get("Location")
    context = f"initiating layer upload to /v2/{repo}/blobs/uploads/ in {client.registry}"
    if resp.status != 202:
        raise _failed(context, resp.status, body)
    if not location:
        raise RegistryError(f"{context}: the registry sent no upload Location")
    return urllib.parse.urljoin(resp.url, location)


def _with_query(url: str, **params: str) -> str:
    sep = "&" if urllib.parse.urlsplit(url).query else "?"
    return url + sep + urllib.parse.urlencode(params)


def upload_blob(
    client: Client,
    repo: str,
    data: bytes | Iterable[bytes],
    digest: str | None = None,
    *,
    size: int | None = None,
    monolithic: bool = False,
) -> str:
    """Upload a blob; return its digest. ``data`` is bytes, or chunks (sent with chunked
    transfer encoding unless ``size`` is given; their digest is computed while they are sent
    when ``digest`` is not given). As c/image: ``POST``, one ``PATCH`` with the
    whole blob, ``PUT ?digest=`` with no body; ``monolithic`` uses ``POST`` then one ``PUT
    ?digest=`` carrying the blob. The digest is computed while sending and must match
    ``digest`` when given (a registry refuses a wrong one with DIGEST_INVALID)."""
    h = hashlib.sha256()
    if isinstance(data, bytes):
        h.update(data)
        body: bytes | Iterable[bytes] = data
        size = len(data)
        computed: str | None = "sha256:" + h.hexdigest()
    else:

        def hashing(chunks: Iterable[bytes]) -> Iterable[bytes]:
            for c in chunks:
                h.update(c)
                yield c

        body = hashing(data)
        computed = None
    if digest is None and computed is None and monolithic:
        raise ValueError("upload_blob: the digest of a streamed monolithic blob must be given")
    location = _start_upload(client, repo)
    headers = {"Content-Type": "application/octet-stream"}
    if size is not None:
        headers["Content-Length"] = str(size)
    scopes = [_push_scope(client, repo)]
    if monolithic:
        want = digest or computed
        assert want is not None
        resp = client.request(
            "PUT", _with_query(location, digest=want), scopes=scopes, headers=headers,
            body=body, retry=False,
        )  # fmt: skip
    else:
        resp = client.request(
            "PATCH", location, scopes=scopes, headers=headers, body=body, retry=False
        )
        err = _read_at_most(resp.raw, MAX_ERROR_BODY_SIZE)
        resp.release()
        if not 200 <= resp.status < 400:
            raise _failed("uploading layer chunked", resp.status, err)
        location = urllib.parse.urljoin(resp.url, resp.headers.get("Location") or location)
        # A streamed blob's digest is known once it is sent (c/image computes it the same way).
        want = digest or "sha256:" + h.hexdigest()
        resp = client.request(
            "PUT", _with_query(location, digest=want), scopes=scopes,
            headers={"Content-Length": "0"}, body=b"", retry=False,
        )  # fmt: skip
    err = _read_at_most(resp.raw, MAX_ERROR_BODY_SIZE)
    resp.release()
    if resp.status != 201:
        raise _failed(f"uploading layer to {location}", resp.status, err)
    got = "sha256:" + h.hexdigest()
    if got != want:
        raise RegistryError(f"uploaded blob digest {got} does not match {want}")
    return want


def put_manifest(client: Client, repo: str, reference: str, data: bytes, media_type: str) -> str:
    """``PUT /v2/REPO/manifests/REFERENCE`` (a tag or digest); returns the manifest digest,
    computed locally as c/image does (``Docker-Content-Digest`` is not trusted)."""
    resp = client.request(
        "PUT", f"/v2/{repo}/manifests/{reference}", scopes=[_push_scope(client, repo)],
        headers={"Content-Type": media_type}, body=data, retry=False,
    )  # fmt: skip
    err = _read_at_most(resp.raw, MAX_ERROR_BODY_SIZE)
    resp.release()
    if not 200 <= resp.status < 400:
        raise _failed(
            f"uploading manifest {reference} to {client.registry}/{repo}", resp.status, err
        )
    return "sha256:" + hashlib.sha256(data).hexdigest()
