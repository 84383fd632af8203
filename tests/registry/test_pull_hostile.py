"""Pulls a real registry never makes go wrong, from a fake server: a manifest over 4 MiB,
403, 429 and 5xx after the retries, a stalled blob, an interrupted or killed pull. Each ends
in a clear error, and the store holds what it held before (after the next open, for a killed
process)."""

from __future__ import annotations

import functools
import http.server
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import containers_storage as cs
import pytest
from containers_storage.registry import client, connect
from containers_storage.registry import errors as rerrors

from tests.helpers import HANG_GUARD
from tests.registry.fakeserver import FakeServer, Handler, reply
from tests.store.helpers import MANIFEST_TYPE, compact, release_mounts
from tests.tars import d, f, gz, make_tar, sha256

pytestmark = [pytest.mark.root]

#: Incompressible, so that half of it is on the wire while the rest stalls.
BIG = os.urandom(4 << 20)


class Image:
    """A two-layer image served by the fake server as ``FAKE/ns/img:1``."""

    def __init__(self, fake: FakeServer) -> None:
        self.tars = [
            make_tar([d("etc"), f("etc/a", b"a\n")]),
            make_tar([d("big"), f("big/blob", BIG)]),
        ]
        self.blobs = [gz(t) for t in self.tars]
        self.config = compact(
            {
                "architecture": "amd64",
                "os": "linux",
                "rootfs": {"type": "layers", "diff_ids": [sha256(t) for t in self.tars]},
            }
        )
        self.manifest = compact(
            {
                "schemaVersion": 2,
                "mediaType": MANIFEST_TYPE,
                "config": {
                    "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": sha256(self.config),
                    "size": len(self.config),
                },
                "layers": [
                    {
                        "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                        "digest": sha256(b),
                        "size": len(b),
                    }
                    for b in self.blobs
                ],
            }
        )
        fake.routes["/v2/ns/img/manifests/1"] = lambda h: reply(
            h, 200, self.manifest, {"Content-Type": MANIFEST_TYPE}
        )
        for blob in (self.config, *self.blobs):
            fake.routes[self.blob_path(blob)] = functools.partial(reply, status=200, body=blob)
        self.ref = f"{fake.host}/ns/img:1"

    @staticmethod
    def blob_path(blob: bytes) -> str:
        return f"/v2/ns/img/blobs/{sha256(blob)}"


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeServer]:
    server = FakeServer({"/v2/": lambda h: reply(h, 200, b"{}")})
    # Fast retries and a short stall timeout for these tests.
    monkeypatch.setattr(
        connect,
        "Client",
        functools.partial(
            client.Client, retry=client.Retry(3, 0.001, 0.01), timeout=0.5, certs_roots=()
        ),
    )
    yield server
    server.close()


def state(roots: tuple[Path, Path], driver: str) -> dict[str, Any]:
    """The records, and every file and directory of the store but lock files and the
    record files themselves (a failed pull may write an empty list where there was no
    file), after opening it again."""
    s = cs.Store(roots[0], roots[1], driver)
    try:
        layers, images = [x.id for x in s.layers()], [x.id for x in s.images()]
    finally:
        s.shutdown(True)
    files = sorted(
        str(p.relative_to(roots[0]))
        for p in roots[0].rglob("*")
        if not p.name.endswith((".lock", "layers.json", "images.json"))
        # The overlay driver's staging area, made on first use (empty when all is well).
        and str(p.relative_to(roots[0])) != "overlay/tempdirs"
    )
    return {"layers": layers, "images": images, "files": files}


def stalled_half(fake: FakeServer, blob: bytes, started: threading.Event) -> Handler:
    """Send the headers and half of ``blob``, then stall until the server is released."""

    def handler(h: http.server.BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Length", str(len(blob)))
        h.end_headers()
        h.wfile.write(blob[: len(blob) // 2])
        h.wfile.flush()
        started.set()
        fake.release.wait(HANG_GUARD)

    return handler


@pytest.mark.parametrize("case", ["manifest-4mib", "403", "429", "503", "stall", "short-body"])
def test_refused_pull_leaves_the_store_as_it_was(
    fake: FakeServer, roots: tuple[Path, Path], driver: str, case: str
) -> None:
    img = Image(fake)
    before = state(roots, driver)
    big_path = Image.blob_path(img.blobs[1])
    expected: tuple[type[BaseException], str] = {
        "manifest-4mib": (rerrors.ManifestError, "exceeded maximum allowed size of 4194304"),
        "403": (rerrors.HTTPStatusError, r"Error fetching blob: .* 403 \(Forbidden\)"),
        "429": (rerrors.TooManyRequestsError, "too many requests to registry"),
        "503": (rerrors.HTTPStatusError, "503"),
        "stall": (rerrors.RegistryError, "timed out"),
        "short-body": (rerrors.TruncatedBodyError, "after 1000 bytes"),
    }[case]
    if case == "manifest-4mib":
        body = b" " * (client.MAX_MANIFEST_BODY_SIZE + 1)
        fake.routes["/v2/ns/img/manifests/1"] = lambda h: reply(
            h, 200, body, {"Content-Type": MANIFEST_TYPE}
        )
    elif case == "403":
        fake.routes[big_path] = lambda h: reply(
            h, 403, b'{"errors":[{"code":"DENIED","message":"denied"}]}'
        )
    elif case in ("429", "503"):
        fake.routes[big_path] = lambda h: reply(h, int(case), b"")
    elif case == "stall":
        fake.routes[big_path] = stalled_half(fake, img.blobs[1], threading.Event())
    else:
        fake.routes[big_path] = lambda h: reply(
            h, 200, img.blobs[1][:1000], length=len(img.blobs[1])
        )
    s = cs.Store(roots[0], roots[1], driver)
    try:
        with pytest.raises(expected[0], match=expected[1]):
            s.pull_image(img.ref, tls_verify=False)
    finally:
        s.shutdown(True)
    fake.release.set()
    assert state(roots, driver) == before
    # The same pull succeeds once the registry behaves.
    for blob in img.blobs:
        fake.routes[Image.blob_path(blob)] = functools.partial(reply, status=200, body=blob)
    fake.routes["/v2/ns/img/manifests/1"] = lambda h: reply(
        h, 200, img.manifest, {"Content-Type": MANIFEST_TYPE}
    )
    s = cs.Store(roots[0], roots[1], driver)
    try:
        image = s.pull_image(img.ref, tls_verify=False)
        assert image.id == sha256(img.config)[7:]
    finally:
        s.shutdown(True)


CHILD = """
import signal, sys
# An ignored SIGINT is inherited through exec (and Python then leaves it ignored).
signal.signal(signal.SIGINT, signal.default_int_handler)
import containers_storage as cs
s = cs.Store(sys.argv[1], sys.argv[2], sys.argv[3])
s.pull_image(sys.argv[4], tls_verify=False)
"""


@pytest.mark.parametrize("how", ["SIGINT", "SIGKILL"])
def test_interrupted_pull_leaves_nothing_after_the_next_open(
    fake: FakeServer, roots: tuple[Path, Path], driver: str, how: str
) -> None:
    img = Image(fake)
    before = state(roots, driver)
    started = threading.Event()
    fake.routes[Image.blob_path(img.blobs[1])] = stalled_half(fake, img.blobs[1], started)
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(roots[0]), str(roots[1]), driver, img.ref],
        stderr=subprocess.PIPE,
    )
    try:
        assert started.wait(HANG_GUARD), "the pull never reached the big layer"
        child.send_signal(getattr(signal, how))
        _, err = child.communicate(timeout=HANG_GUARD)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        fake.release.set()
    release_mounts(roots[0].parent)
    if how == "SIGINT":
        assert child.returncode != 0 and b"KeyboardInterrupt" in err, err
        assert state(roots, driver) == before
        return
    assert child.returncode == -signal.SIGKILL
    # Killed, the pull leaves what c/image leaves: the layers it had completed (here the
    # first, complete and valid), nothing else once the store has been opened again.
    s = cs.Store(roots[0], roots[1], driver)
    try:
        left = [x.id for x in s.layers()]
        assert left in ([], [sha256(img.tars[0])[7:]])
        for layer_id in left:
            s.delete_layer(layer_id)
    finally:
        s.shutdown(True)
    assert state(roots, driver) == before
