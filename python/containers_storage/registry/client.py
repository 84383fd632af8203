"""One registry, spoken to as containers/image v5.23's docker client does: ``/v2/`` ping
(https, then http only when TLS verification is off), challenges from the ping, manifests
with c/image's ``Accept`` list (schema 1 refused), blobs streamed with their digest checked
and resumed with ``Range``, redirects followed by hand (``Authorization`` dropped on a host
change), bounded retries with backoff on 429 and 5xx."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import threading
import time
import urllib.parse
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import urllib3
import urllib3.exceptions

from ..reference import DEFAULT_DOMAIN, DOCKER_HUB_API_HOST
from .auth import (
    Authorizer,
    Challenge,
    Credentials,
    error_codes,
    error_text,
    parse_www_authenticate,
)
from .certs import find_cert_dir, ssl_context
from .errors import (
    AuthenticationError,
    BlobDigestMismatchError,
    HTTPStatusError,
    ManifestError,
    RedirectError,
    RegistryError,
    TooManyRequestsError,
    TruncatedBodyError,
)
from .proxy import proxy_for

__all__ = [
    "MANIFEST_ACCEPT",
    "MAX_MANIFEST_BODY_SIZE",
    "Client",
    "Manifest",
    "Retry",
]

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_V2S2 = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_V2S1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"
DOCKER_V2S1 = "application/vnd.docker.distribution.manifest.v1+json"

#: The manifest types asked for, one ``Accept`` line each, in c/image's order.
MANIFEST_ACCEPT = (
    OCI_MANIFEST,
    DOCKER_V2S2,
    DOCKER_V2S1_SIGNED,
    DOCKER_V2S1,
    DOCKER_LIST,
    OCI_INDEX,
)
SUPPORTED_MANIFESTS = frozenset((OCI_MANIFEST, DOCKER_V2S2, DOCKER_LIST, OCI_INDEX))

#: Go's ``iolimits.MaxManifestBodySize``.
MAX_MANIFEST_BODY_SIZE = 4 << 20
MAX_ERROR_BODY_SIZE = 1 << 20
MAX_REDIRECTS = 10
CHUNK = 1 << 20
USER_AGENT = "containers-storage-python (containers/image 5.23 compatible)"
RETRY_STATUSES = frozenset((429, 500, 502, 503, 504))
#: Connections kept per host: layers go up (and down) six at a time, as c/image sends them.
POOL_SIZE = 8


class _UnverifiedHTTPSPool(urllib3.HTTPSConnectionPool):
    """An HTTPS pool that does not warn about unverified certificates: verification was
    turned off on purpose (``--tls-verify=false``), and c/image says nothing either."""

    def _validate_conn(self, conn: Any) -> None:
        urllib3.HTTPConnectionPool._validate_conn(self, conn)
        if conn.is_closed:
            conn.connect()


_QUIET_POOLS = {"http": urllib3.HTTPConnectionPool, "https": _UnverifiedHTTPSPool}


@dataclasses.dataclass(frozen=True)
class Retry:
    """Bounded retries: ``attempts`` tries in all, waiting ``initial`` seconds, doubling up to
    ``max_delay`` (a ``Retry-After`` in seconds is honoured within that bound). c/image tries
    5 times from 2 s on 429 only; we also retry 5xx and broken connections of bodiless
    requests."""

    attempts: int = 5
    initial: float = 2.0
    max_delay: float = 60.0


@dataclasses.dataclass(frozen=True)
class Manifest:
    """A manifest as received: its bytes, MIME type (without parameters) and digest (the
    SHA-256 of the bytes)."""

    data: bytes
    media_type: str
    digest: str


@dataclasses.dataclass
class _Response:
    status: int
    headers: urllib3.HTTPHeaderDict
    raw: urllib3.BaseHTTPResponse
    url: str

    def release(self) -> None:
        """Read what is left of the body (bounded by urllib3) and return the connection."""
        try:
            self.raw.drain_conn()
        finally:
            self.raw.release_conn()


class Client:
    """A client of the registry ``registry`` (``host[:port]`` as in references: certs.d and
    credentials are keyed by it; ``docker.io`` is reached at its API host).

    ``tls_verify`` False skips certificate checks and allows plain HTTP (registries.conf
    ``insecure``, ``--tls-verify=false``); ``cert_dir`` replaces the certs.d lookup;
    ``timeout`` bounds connecting and each read (a stalled server fails instead of hanging).
    """

    def __init__(
        self,
        registry: str,
        *,
        creds: Credentials | None = None,
        tls_verify: bool = True,
        cert_dir: Path | None = None,
        certs_roots: Sequence[Path] | None = None,
        timeout: float = 30.0,
        retry: Retry | None = None,
        user_agent: str = USER_AGENT,
    ) -> None:
        self.registry = registry
        self.host = DOCKER_HUB_API_HOST if registry == DEFAULT_DOMAIN else registry
        self.creds = creds or Credentials()
        self.tls_verify = tls_verify
        self.retry = retry or Retry()
        self.user_agent = user_agent
        directory = find_cert_dir(registry, cert_dir=cert_dir, roots=certs_roots)
        self.ssl_context = ssl_context(directory, verify=tls_verify)
        self.timeout = urllib3.Timeout(connect=timeout, read=timeout)
        self.pool = urllib3.PoolManager(
            ssl_context=self.ssl_context,
            cert_reqs="CERT_REQUIRED" if tls_verify else "CERT_NONE",
            retries=False,
            timeout=self.timeout,
            maxsize=POOL_SIZE,
        )
        if not tls_verify:
            self.pool.pool_classes_by_scheme = _QUIET_POOLS
        self._proxies: dict[str, urllib3.ProxyManager] = {}
        self._proxy_lock = threading.Lock()
        self.scheme: str | None = None
        self.challenges: list[Challenge] = []
        self.authorizer: Authorizer | None = None
        self._streaming: set[urllib3.BaseHTTPResponse] = set()
        self._streaming_lock = threading.Lock()
        self.aborted = False

    def abort(self) -> None:
        """Stop every blob being streamed now (from any thread): their sockets are shut
        down, so a read blocked on a stalled server returns at once and the stream fails;
        nothing is resumed or retried afterwards."""
        with self._streaming_lock:
            self.aborted = True
            for resp in self._streaming:
                shutdown = getattr(resp, "shutdown", None)
                if shutdown is not None:
                    with contextlib.suppress(RuntimeError, OSError):
                        shutdown()

    # -- connection ---------------------------------------------------------------------

    def ping(self) -> None:
        """``GET /v2/`` once: 200 or 401 is success; remember the scheme and challenges.

        Raises:
            RegistryError: ``pinging container registry HOST: ...`` as c/image says it.
        """
        if self.scheme is not None:
            return
        error: Exception | None = None
        for scheme in ("https", "http") if not self.tls_verify else ("https",):
            try:
                url = f"{scheme}://{self.host}/v2/"
                resp = self.pool_for(url).request(
                    "GET",
                    url,
                    headers=self._base_headers(),
                    redirect=False,
                    preload_content=True,
                )
            except urllib3.exceptions.HTTPError as e:
                error = e
                continue
            if resp.status not in (200, 401):
                error = status_error(resp.status, resp.data, "")
                continue
            self.scheme = scheme
            self.challenges = parse_www_authenticate(resp.headers.getlist("WWW-Authenticate"))
            self.authorizer = Authorizer(self.challenges, self.creds, self._fetch_token)
            return
        raise RegistryError(f"pinging container registry {self.registry}: {_describe(error)}")

    def pool_for(self, url: str) -> urllib3.PoolManager:
        """The connection pool for ``url``: direct, or through the proxy Go's
        ``ProxyFromEnvironment`` would pick (:mod:`.proxy`; https goes through ``CONNECT``)."""
        proxy = proxy_for(url)
        if proxy is None:
            return self.pool
        with self._proxy_lock:
            manager = self._proxies.get(proxy)
            if manager is None:
                parts = urllib.parse.urlsplit(proxy)
                headers = None
                if parts.username is not None:
                    auth = urllib.parse.unquote(parts.username)
                    if parts.password is not None:
                        auth += ":" + urllib.parse.unquote(parts.password)
                    headers = urllib3.make_headers(proxy_basic_auth=auth)
                manager = urllib3.ProxyManager(
                    proxy,
                    proxy_headers=headers,
                    ssl_context=self.ssl_context,
                    cert_reqs="CERT_REQUIRED" if self.tls_verify else "CERT_NONE",
                    retries=False,
                    timeout=self.timeout,
                    maxsize=POOL_SIZE,
                )
                if not self.tls_verify:
                    manager.pool_classes_by_scheme = _QUIET_POOLS
                self._proxies[proxy] = manager
        return manager

    def _base_headers(self) -> dict[str, str]:
        return {
            "Docker-Distribution-API-Version": "registry/2.0",
            "User-Agent": self.user_agent,
        }

    def _fetch_token(
        self, method: str, url: str, headers: dict[str, str], body: bytes | None
    ) -> tuple[int, bytes]:
        try:
            resp = self.pool_for(url).request(
                method, url, headers={**self._base_headers(), **headers}, body=body,
                preload_content=False, redirect=False,
            )  # fmt: skip
            data = resp.read(1 << 20)
            resp.release_conn()
        except urllib3.exceptions.HTTPError as e:
            raise RegistryError(f"fetching token from {url}: {_describe(e)}") from e
        return resp.status, data

    def url(self, path: str) -> str:
        """The absolute URL of ``path`` (``/v2/...``) on this registry (after the ping)."""
        self.ping()
        return f"{self.scheme}://{self.host}{path}"

    def request(
        self,
        method: str,
        path_or_url: str,
        *,
        scopes: Sequence[str] = (),
        headers: urllib3.HTTPHeaderDict | dict[str, str] | None = None,
        body: Any = None,
        retry: bool = True,
    ) -> _Response:
        """One request with authorization for ``scopes``, redirects followed by hand and, for
        bodiless requests (``retry``), 429/5xx and broken connections retried with backoff.
        The response body is not read; the caller reads and releases ``raw``."""
        url = path_or_url if "://" in path_or_url else self.url(path_or_url)
        retry = retry and body is None
        delay = self.retry.initial
        attempt = 0
        while True:
            attempt += 1
            try:
                resp = self._request_following(method, url, scopes, headers, body)
                if attempt == 1 and body is None and self.authorizer is not None:
                    # c/image: a bearer challenge with error="insufficient_scope" on the
                    # first attempt of a bodiless request gets a token with that scope
                    # added, and one more try.
                    extra = insufficient_scope(resp.headers)
                    if extra is not None and extra not in scopes:
                        resp.release()
                        scopes = [*scopes, extra]
                        resp = self._request_following(method, url, scopes, headers, body)
            except (urllib3.exceptions.ProtocolError, urllib3.exceptions.TimeoutError) as e:
                if not retry or attempt >= self.retry.attempts:
                    raise RegistryError(f"{method} {url}: {_describe(e)}") from e
            else:
                if resp.status not in RETRY_STATUSES or not retry or attempt >= self.retry.attempts:
                    return resp
                delay = _retry_after(resp.headers, delay)
                resp.release()
            time.sleep(min(delay, self.retry.max_delay))
            delay = min(delay * 2, self.retry.max_delay)

    def _request_following(
        self,
        method: str,
        url: str,
        scopes: Sequence[str],
        headers: urllib3.HTTPHeaderDict | dict[str, str] | None,
        body: Any,
    ) -> _Response:
        original = urllib.parse.urlsplit(url).netloc
        send_auth = True
        for _ in range(MAX_REDIRECTS + 1):
            h = urllib3.HTTPHeaderDict(self._base_headers())
            if isinstance(headers, urllib3.HTTPHeaderDict):
                for k, v in headers.iteritems():
                    h.add(k, v)
            elif headers is not None:
                for k, v in headers.items():
                    h.add(k, v)
            if send_auth and self.authorizer is not None:
                value = self.authorizer.header(scopes)
                if value is not None:
                    h["Authorization"] = value
            raw = self.pool_for(url).request(
                method, url, headers=h, body=body, preload_content=False, redirect=False,
                decode_content=False,
            )  # fmt: skip
            if raw.status not in (301, 302, 303, 307, 308) or not raw.headers.get("Location"):
                return _Response(raw.status, raw.headers, raw, url)
            location = urllib.parse.urljoin(url, raw.headers["Location"])
            raw.drain_conn()
            raw.release_conn()
            target = urllib.parse.urlsplit(location).netloc
            # Go forwards Authorization only to the same host or a subdomain of it.
            orig_host = original.lower()
            if target.lower() != orig_host and not target.lower().endswith("." + orig_host):
                send_auth = False
            if raw.status == 303 or (raw.status in (301, 302) and method == "POST"):
                method, body = "GET", None
            url = location
        raise RedirectError(f'{method} "{url}": stopped after {MAX_REDIRECTS} redirects')

    # -- manifests ----------------------------------------------------------------------

    def get_manifest(self, repo: str, tag_or_digest: str) -> Manifest:
        """``GET /v2/REPO/manifests/REF`` (by tag or digest; a digest is checked).

        Raises:
            ManifestError: schema 1, an unknown type, over 4 MiB, or not matching the digest.
            HTTPStatusError: any status but 200 (``reading manifest REF in NAME: ...``).
        """
        h = urllib3.HTTPHeaderDict()
        for mt in MANIFEST_ACCEPT:
            h.add("Accept", mt)
        resp = self.request(
            "GET", f"/v2/{repo}/manifests/{tag_or_digest}", scopes=[self.scope(repo)], headers=h
        )
        name = f"{self.registry}/{repo}"
        try:
            if resp.status != 200:
                body = _read_at_most(resp.raw, MAX_ERROR_BODY_SIZE)
                raise _with_context(
                    status_error(resp.status, body, "", registry_errors=True),
                    f"reading manifest {tag_or_digest} in {name}",
                )
            data = _read_at_most(resp.raw, MAX_MANIFEST_BODY_SIZE)
        finally:
            resp.release()
        media_type = (resp.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
        if media_type in ("", "application/json", "text/plain") or media_type not in (
            SUPPORTED_MANIFESTS | {DOCKER_V2S1, DOCKER_V2S1_SIGNED}
        ):
            media_type = DOCKER_V2S1_SIGNED  # c/image's NormalizedMIMEType
        if media_type in (DOCKER_V2S1, DOCKER_V2S1_SIGNED):
            raise ManifestError(
                f"reading manifest {tag_or_digest} in {name}: manifest type "
                f"{media_type} (Docker schema 1, or no known type: "
                f"{resp.headers.get('Content-Type')!r}) is not supported; only Docker schema 2 "
                "and OCI images can be pulled"
            )
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        if tag_or_digest.startswith("sha256:") and digest != tag_or_digest:
            raise ManifestError(
                f"Manifest digest {digest} does not match expected digest {tag_or_digest}"
            )
        return Manifest(data, media_type, digest)

    # -- blobs --------------------------------------------------------------------------

    def iter_blob(
        self,
        repo: str,
        digest: str,
        *,
        size: int | None = None,
        chunk: int = CHUNK,
        verify: bool = True,
    ) -> Iterator[bytes]:
        """The bytes of blob ``digest``, streamed; a connection that breaks is resumed with a
        ``Range`` request (bounded by the retry count). The digest is checked at the end:
        the last ``next()`` raises :class:`BlobDigestMismatchError` instead of finishing, so
        a consumer must not trust what it got until the iterator is exhausted. With
        ``verify`` False the digest is left to the consumer (an apply that computes it
        anyway), and the bytes are not hashed twice.

        Raises:
            HTTPStatusError: any status but 200 (``reading blob D in NAME: ...``).
            TruncatedBodyError: the body stopped short and could not be resumed.
        """
        if not digest.startswith("sha256:"):
            raise BlobDigestMismatchError(f"unsupported digest algorithm in {digest}")
        path = f"/v2/{repo}/blobs/{digest}"
        name = f"{self.registry}/{repo}"
        h = hashlib.sha256()
        got = 0
        expected: int | None = size
        resumes = 0
        while True:
            if self.aborted:
                raise RegistryError(f"reading blob {digest} in {name}: aborted")
            headers = {"Range": f"bytes={got}-"} if got else {}
            resp = self.request("GET", path, scopes=[self.scope(repo)], headers=headers)
            with self._streaming_lock:
                self._streaming.add(resp.raw)
            try:
                if got and resp.status == 206:
                    pass
                elif resp.status == 200:
                    skip = got  # the server ignored Range: drop what we have
                    length = resp.headers.get("Content-Length")
                    if expected is None and length is not None and length.isdigit():
                        expected = int(length)
                else:
                    body = _read_at_most(resp.raw, MAX_ERROR_BODY_SIZE)
                    raise _with_context(
                        status_error(resp.status, body, "Error fetching blob"),
                        f"reading blob {digest} in {name}",
                    )
                if resp.status == 206:
                    skip = 0
                try:
                    for data in resp.raw.stream(chunk, decode_content=False):
                        if skip:
                            cut = min(skip, len(data))
                            data, skip = data[cut:], skip - cut
                            if not data:
                                continue
                        if verify:
                            h.update(data)
                        got += len(data)
                        yield data
                except (urllib3.exceptions.ProtocolError, urllib3.exceptions.TimeoutError) as e:
                    resumes += 1
                    if self.aborted:
                        raise RegistryError(f"reading blob {digest} in {name}: aborted") from e
                    if resumes >= self.retry.attempts:
                        raise TruncatedBodyError(
                            f"reading blob {digest} in {name}: {_describe(e)} after {got} bytes"
                        ) from e
                    continue
            finally:
                with self._streaming_lock:
                    self._streaming.discard(resp.raw)
                resp.release()
            if self.aborted:
                raise RegistryError(f"reading blob {digest} in {name}: aborted")
            if expected is not None and got < expected:
                resumes += 1
                if resumes >= self.retry.attempts:
                    raise TruncatedBodyError(
                        f"reading blob {digest} in {name}: unexpected EOF after {got} of "
                        f"{expected} bytes"
                    )
                continue
            break
        actual = "sha256:" + h.hexdigest()
        if verify and actual != digest:
            raise BlobDigestMismatchError(f"Digest did not match, expected {digest}, got {actual}")

    def get_blob(self, repo: str, digest: str, *, limit: int = MAX_MANIFEST_BODY_SIZE) -> bytes:
        """A small blob (a config) read whole, at most ``limit`` bytes, digest checked."""
        out = bytearray()
        for data in self.iter_blob(repo, digest):
            out += data
            if len(out) > limit:
                raise ManifestError(f"exceeded maximum allowed size of {limit} bytes")
        return bytes(out)

    def scope(self, repo: str, actions: str = "pull") -> str:
        """The token scope for ``repo`` (``repository:REPO:ACTIONS``)."""
        return f"repository:{repo}:{actions}"


def insufficient_scope(headers: urllib3.HTTPHeaderDict) -> str | None:
    """The scope a lone bearer challenge with ``error="insufficient_scope"`` asks for
    (``type:name:actions``), or None."""
    challenges = parse_www_authenticate(headers.getlist("WWW-Authenticate"))
    if len(challenges) != 1 or challenges[0].scheme != "bearer":
        return None
    params = challenges[0].parameters
    scope = params.get("scope", "")
    if params.get("error") != "insufficient_scope" or scope.count(":") < 2:
        return None
    kind, _, rest = scope.partition(":")
    name, _, actions = rest.rpartition(":")
    return scope if kind and name and actions else None


def _read_at_most(raw: urllib3.BaseHTTPResponse, limit: int) -> bytes:
    data = raw.read(limit + 1, decode_content=False)
    if len(data) > limit:
        raise ManifestError(f"exceeded maximum allowed size of {limit} bytes")
    return data


def _retry_after(headers: urllib3.HTTPHeaderDict, delay: float) -> float:
    value = headers.get("Retry-After", "")
    if value.isdigit():
        return float(value)
    return delay


def _describe(error: BaseException | None) -> str:
    if isinstance(error, urllib3.exceptions.MaxRetryError) and error.reason is not None:
        return str(error.reason)
    return str(error)


def _with_context(error: HTTPStatusError, context: str) -> HTTPStatusError:
    error.args = (f"{context}: {error.args[0]}",)
    return error


def status_error(
    status: int, body: bytes, context: str, *, registry_errors: bool = False
) -> HTTPStatusError:
    """c/image's error for an unexpected status: 429 ``too many requests to registry``, 401
    ``unable to retrieve auth token: invalid username/password: ...``, otherwise the
    distribution error text (``manifest unknown: manifest unknown``) or ``invalid status
    code from registry N (Text)``."""
    import http

    codes = error_codes(body)
    if status == 429:
        return TooManyRequestsError("too many requests to registry", status, codes)
    text = error_text(body)
    if registry_errors and text:
        cls = AuthenticationError if status == 401 else HTTPStatusError
        return cls(text, status, codes)
    if status == 401:
        return AuthenticationError(
            "unable to retrieve auth token: invalid username/password: "
            + (text or "authentication required"),
            status,
            codes,
        )
    try:
        phrase = http.HTTPStatus(status).phrase
    except ValueError:
        phrase = ""
    if registry_errors:
        snippet = body.decode(errors="replace")
        if len(snippet) > 50:
            snippet = snippet[:50] + "..."
        return HTTPStatusError(f"StatusCode: {status}, {snippet}", status, codes)
    prefix = f"{context}: " if context else ""
    return HTTPStatusError(
        f"{prefix}invalid status code from registry {status} ({phrase})", status, codes
    )
