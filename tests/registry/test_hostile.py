"""The client against answers the real registry never gives, from a fake server: each ends
in a clear error (or, for what can be recovered, success), never a hang or bad bytes."""

from __future__ import annotations

import http.server
import json
from collections.abc import Iterator

import pytest
from containers_storage.registry import auth, client, errors

from tests.registry.fakeserver import FakeServer, Handler, reply
from tests.tars import sha256

BLOB = bytes(range(256)) * 64
DIGEST = sha256(BLOB)
FAST = client.Retry(attempts=3, initial=0.001, max_delay=0.01)


def ok(h: http.server.BaseHTTPRequestHandler) -> None:
    reply(h, 200, b"{}")


@pytest.fixture
def fake() -> Iterator[FakeServer]:
    server = FakeServer({"/v2/": ok})
    yield server
    server.close()


def connect(fake: FakeServer, **kw: object) -> client.Client:
    return client.Client(fake.host, tls_verify=False, retry=FAST, certs_roots=(), **kw)  # type: ignore[arg-type]


def route(fake: FakeServer, path: str, handler: Handler) -> None:
    fake.routes[path] = handler


def manifest_route(body: bytes, content_type: str) -> Handler:
    return lambda h: reply(h, 200, body, {"Content-Type": content_type})


def test_wrong_digest_body(fake: FakeServer) -> None:
    route(fake, f"/v2/r/blobs/{DIGEST}", lambda h: reply(h, 200, BLOB[:-1] + b"X"))
    chunks = []
    with pytest.raises(
        errors.BlobDigestMismatchError,
        match=f"Digest did not match, expected {DIGEST}, got sha256:",
    ):
        for c in connect(fake).iter_blob("r", DIGEST):
            chunks.append(c)
    assert len(b"".join(chunks)) == len(BLOB)  # everything was read before the verdict


def test_truncated_body_resumed_with_range(fake: FakeServer) -> None:
    def blob(h: http.server.BaseHTTPRequestHandler) -> None:
        rng = h.headers.get("Range")
        if rng is None:
            reply(h, 200, BLOB[:1000], length=len(BLOB))
        else:
            start = int(rng.removeprefix("bytes=").rstrip("-"))
            reply(
                h,
                206,
                BLOB[start:],
                {"Content-Range": f"bytes {start}-{len(BLOB) - 1}/{len(BLOB)}"},
            )

    route(fake, f"/v2/r/blobs/{DIGEST}", blob)
    assert b"".join(connect(fake).iter_blob("r", DIGEST)) == BLOB
    ranges = [hd.get("Range") for m, p, hd in fake.seen if "/blobs/" in p]
    assert ranges == [None, "bytes=1000-"]


def test_truncated_body_every_time(fake: FakeServer) -> None:
    route(fake, f"/v2/r/blobs/{DIGEST}", lambda h: reply(h, 200, BLOB[:10], length=len(BLOB)))
    with pytest.raises(errors.TruncatedBodyError, match=f"reading blob {DIGEST} in"):
        b"".join(connect(fake).iter_blob("r", DIGEST))


@pytest.mark.parametrize(
    ("status", "body", "cls", "text"),
    [
        (
            401,
            b'{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}',
            errors.AuthenticationError,
            "unauthorized: authentication required",
        ),
        (
            403,
            b'{"errors":[{"code":"DENIED",'
            b'"message":"requested access to the resource is denied"}]}',
            errors.HTTPStatusError,
            "denied: requested access to the resource is denied",
        ),
        (
            404,
            b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}',
            errors.HTTPStatusError,
            "manifest unknown: manifest unknown",
        ),
        (
            403,
            b"<html>forbidden</html>",
            errors.HTTPStatusError,
            "StatusCode: 403, <html>forbidden</html>",
        ),
    ],
)
def test_error_statuses(
    fake: FakeServer, status: int, body: bytes, cls: type[Exception], text: str
) -> None:
    route(fake, "/v2/r/manifests/1", lambda h: reply(h, status, body))
    with pytest.raises(cls) as e:
        connect(fake).get_manifest("r", "1")
    assert str(e.value) == f"reading manifest 1 in {fake.host}/r: {text}"
    assert [p for _m, p, _h in fake.seen].count("/v2/r/manifests/1") == 1  # not retried


def test_429_then_success(fake: FakeServer) -> None:
    m = json.dumps({"schemaVersion": 2, "mediaType": client.OCI_MANIFEST}).encode()
    calls: list[int] = []

    def flaky(h: http.server.BaseHTTPRequestHandler) -> None:
        calls.append(1)
        if len(calls) < 3:
            reply(h, 429 if len(calls) == 1 else 503, b"slow down", {"Retry-After": "0"})
        else:
            reply(h, 200, m, {"Content-Type": client.OCI_MANIFEST})

    route(fake, "/v2/r/manifests/1", flaky)
    assert connect(fake).get_manifest("r", "1").data == m
    assert len(calls) == 3


@pytest.mark.parametrize(
    ("status", "text"),
    [(429, "too many requests to registry"), (502, "StatusCode: 502, bad gateway")],
)
def test_retries_run_out(fake: FakeServer, status: int, text: str) -> None:
    route(fake, "/v2/r/manifests/1", lambda h: reply(h, status, b"bad gateway"))
    with pytest.raises(errors.HTTPStatusError) as e:
        connect(fake).get_manifest("r", "1")
    assert e.value.status == status
    assert str(e.value).endswith(text)
    assert [p for _m, p, _h in fake.seen].count("/v2/r/manifests/1") == FAST.attempts


def test_redirect_loop(fake: FakeServer) -> None:
    route(
        fake,
        f"/v2/r/blobs/{DIGEST}",
        lambda h: reply(h, 307, b"", {"Location": f"/v2/r/blobs/{DIGEST}"}),
    )
    with pytest.raises(errors.RedirectError, match="stopped after 10 redirects"):
        list(connect(fake).iter_blob("r", DIGEST))
    assert len(fake.seen) == 1 + 11


def test_redirect_to_another_host_drops_authorization(fake: FakeServer) -> None:
    cdn = FakeServer({f"/cdn/{DIGEST}": lambda h: reply(h, 200, BLOB)})
    try:
        fake.routes["/v2/"] = lambda h: reply(h, 401, b"", {"WWW-Authenticate": 'Basic realm="x"'})
        other = cdn.host.replace("127.0.0.1", "localhost")
        route(
            fake,
            f"/v2/r/blobs/{DIGEST}",
            lambda h: reply(h, 307, b"", {"Location": f"http://{other}/cdn/{DIGEST}"}),
        )
        c = connect(fake, creds=auth.Credentials("u", "p"))
        assert b"".join(c.iter_blob("r", DIGEST)) == BLOB
        assert fake.seen[-1][2].get("Authorization", "").startswith("Basic ")
        assert "Authorization" not in cdn.seen[-1][2]
    finally:
        cdn.close()


def test_stalled_server_times_out(fake: FakeServer) -> None:
    def stall(h: http.server.BaseHTTPRequestHandler) -> None:
        fake.release.wait()

    route(fake, "/v2/r/manifests/1", stall)
    with pytest.raises(errors.RegistryError, match="timed out"):
        connect(fake, timeout=0.2).get_manifest("r", "1")


def test_manifest_over_4_mib(fake: FakeServer) -> None:
    body = b" " * (client.MAX_MANIFEST_BODY_SIZE + 1)
    route(fake, "/v2/r/manifests/1", manifest_route(body, client.OCI_MANIFEST))
    with pytest.raises(
        errors.ManifestError, match="exceeded maximum allowed size of 4194304 bytes"
    ):
        connect(fake).get_manifest("r", "1")
    # Exactly 4 MiB is accepted.
    route(fake, "/v2/r/manifests/2", manifest_route(body[:-1], client.OCI_MANIFEST))
    assert len(connect(fake).get_manifest("r", "2").data) == client.MAX_MANIFEST_BODY_SIZE


@pytest.mark.parametrize(
    "content_type", [client.DOCKER_V2S1_SIGNED, client.DOCKER_V2S1, "application/json", ""]
)
def test_schema1_refused(fake: FakeServer, content_type: str) -> None:
    body = json.dumps({"schemaVersion": 1, "name": "r", "tag": "1", "fsLayers": []}).encode()
    route(fake, "/v2/r/manifests/1", manifest_route(body, content_type))
    with pytest.raises(errors.ManifestError, match="schema 1"):
        connect(fake).get_manifest("r", "1")


def test_manifest_by_digest_checked(fake: FakeServer) -> None:
    body = json.dumps({"schemaVersion": 2, "mediaType": client.OCI_MANIFEST}).encode()
    wrong = sha256(body + b" ")
    route(fake, f"/v2/r/manifests/{wrong}", manifest_route(body, client.OCI_MANIFEST))
    with pytest.raises(errors.ManifestError, match=f"does not match expected digest {wrong}"):
        connect(fake).get_manifest("r", wrong)
