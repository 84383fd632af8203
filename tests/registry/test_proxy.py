"""Proxies as Go's http.ProxyFromEnvironment picks them (loopback never proxied), a push
through a CONNECT proxy next to skopeo going through the same proxy, and the one retry with
the scope an ``insufficient_scope`` challenge asks for."""

from __future__ import annotations

import hashlib
import http.server
import select
import socket
import socketserver
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import containers_storage as cs
import pytest
from containers_storage.registry.client import Client
from containers_storage.registry.errors import RegistryError
from containers_storage.registry.proxy import proxy_for
from containers_storage.registry.upload import blob_exists

from tests.helpers import HANG_GUARD
from tests.registry.fakeserver import FakeServer, reply
from tests.registry.helpers import Registry, make_layout, skopeo

P = "http://proxy.example:3128"


@pytest.mark.parametrize(
    ("url", "env", "want"),
    [
        ("https://r.example/v2/", {"HTTPS_PROXY": P}, P),
        ("https://r.example/v2/", {"https_proxy": P}, P),
        ("https://r.example/v2/", {"HTTPS_PROXY": P, "https_proxy": "http://other:1"}, P),
        ("https://r.example/v2/", {"HTTP_PROXY": P}, None),
        ("http://r.example/v2/", {"HTTP_PROXY": P}, P),
        ("http://r.example/v2/", {"HTTP_PROXY": P, "REQUEST_METHOD": "GET"}, None),
        ("https://r.example/v2/", {"HTTPS_PROXY": "proxy.example:3128"}, P),
        # Loopback is never proxied; a name is, whatever it resolves to.
        ("https://127.0.0.1:5000/v2/", {"HTTPS_PROXY": P}, None),
        ("https://[::1]:5000/v2/", {"HTTPS_PROXY": P}, None),
        ("https://localhost:5000/v2/", {"HTTPS_PROXY": P}, None),
        ("https://localhost.localdomain/v2/", {"HTTPS_PROXY": P}, P),
        # NO_PROXY.
        ("https://r.example/v2/", {"HTTPS_PROXY": P, "NO_PROXY": "*"}, None),
        ("https://r.example/v2/", {"HTTPS_PROXY": P, "NO_PROXY": "r.example"}, None),
        ("https://a.r.example/v2/", {"HTTPS_PROXY": P, "NO_PROXY": "r.example"}, None),
        ("https://r.example/v2/", {"HTTPS_PROXY": P, "NO_PROXY": ".r.example"}, P),
        ("https://a.r.example/", {"HTTPS_PROXY": P, "NO_PROXY": "*.r.example"}, None),
        ("https://xr.example/v2/", {"HTTPS_PROXY": P, "NO_PROXY": "r.example"}, P),
        ("https://r.example:5000/", {"HTTPS_PROXY": P, "NO_PROXY": "r.example:5000"}, None),
        ("https://r.example:5001/", {"HTTPS_PROXY": P, "NO_PROXY": "r.example:5000"}, P),
        ("https://r.example/", {"HTTPS_PROXY": P, "NO_PROXY": "r.example:443"}, None),
        ("https://10.1.2.3/", {"HTTPS_PROXY": P, "NO_PROXY": "10.0.0.0/8"}, None),
        ("https://11.1.2.3/", {"HTTPS_PROXY": P, "NO_PROXY": "10.0.0.0/8"}, P),
        ("https://10.1.2.3/", {"HTTPS_PROXY": P, "no_proxy": " foo , 10.1.2.3 "}, None),
        ("https://R.Example/", {"HTTPS_PROXY": P, "NO_PROXY": "r.EXAMPLE"}, None),
    ],
)
def test_proxy_choice(url: str, env: dict[str, str], want: str | None) -> None:
    assert proxy_for(url, env) == want


class ConnectProxy:
    """A CONNECT-only proxy on 127.0.0.1: tunnels to ``127.0.0.1:PORT`` whatever host is
    asked (so a name that does not resolve reaches the test registry); ``targets`` lists
    the ``host:port`` of each CONNECT."""

    def __init__(self) -> None:
        self.targets: list[str] = []
        proxy = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                line = self.rfile.readline().decode()
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                method, target, _ = line.split(" ", 2)
                proxy.targets.append(target)
                if method != "CONNECT":
                    self.wfile.write(b"HTTP/1.1 405 Method Not Allowed\r\n\r\n")
                    return
                port = int(target.rsplit(":", 1)[1])
                upstream = socket.create_connection(("127.0.0.1", port), timeout=HANG_GUARD)
                self.wfile.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
                self.wfile.flush()
                pipe(self.connection, upstream)

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(HANG_GUARD)


def pipe(a: socket.socket, b: socket.socket) -> None:
    """Copy bytes both ways until either side closes."""
    try:
        while True:
            ready, _, _ = select.select([a, b], [], [], HANG_GUARD)
            if not ready:
                return
            for s in ready:
                data = s.recv(1 << 16)
                if not data:
                    return
                (b if s is a else a).sendall(data)
    finally:
        b.close()


@pytest.fixture
def proxy() -> Iterator[ConnectProxy]:
    p = ConnectProxy()
    yield p
    p.close()


@pytest.mark.skopeo
def test_push_through_a_connect_proxy(
    start: Callable[[str], Registry],
    proxy: ConnectProxy,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reg = start("tls")
    port = reg.host.rsplit(":", 1)[1]
    name = f"registry.test:{port}"  # not loopback by name: Go and we proxy it
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    monkeypatch.setenv("CONTAINERS_STORAGE_BLOB_INFO_CACHE_DIR", str(tmp_path / "cache"))
    layout = make_layout(tmp_path / "layout")
    with cs.Store(tmp_path / "root", tmp_path / "run", "vfs") as st:
        st.import_image(layout.ref, names=["localhost/x:1"])
        digest = st.push_image("localhost/x:1", f"docker://{name}/p:1", tls_verify=False)
        assert proxy.targets and set(proxy.targets) == {name}
        # Loopback by address is never proxied (the proxy sees nothing more).
        seen = len(proxy.targets)
        client = Client(reg.host, cert_dir=reg.cert_dir)
        assert blob_exists(client, "p", "sha256:" + "0" * 64) is None
        assert len(proxy.targets) == seen
        # Without the proxy, the name does not resolve.
        monkeypatch.setenv("NO_PROXY", "registry.test")
        with pytest.raises(RegistryError, match=r"pinging container registry registry\.test"):
            st.push_image("localhost/x:1", f"docker://{name}/p:2", tls_verify=False)
        st.shutdown(True)
    # skopeo (Go's rules) goes through the proxy for the same name, and reads our push.
    p = subprocess.run(
        ["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{name}/p:1"],
        env={"HTTPS_PROXY": proxy.url, "PATH": "/usr/bin:/bin"}, capture_output=True,
        check=False,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert proxy.targets[-1] == name
    assert "sha256:" + hashlib.sha256(p.stdout).hexdigest() == digest
    assert skopeo("inspect", "--raw", *reg.skopeo_args(""), reg.ref("p:1")).stdout == p.stdout


def test_insufficient_scope_gets_a_token_for_it_and_one_retry() -> None:
    tokens: list[str] = []
    server: FakeServer

    def token(h: http.server.BaseHTTPRequestHandler) -> None:
        query = h.path.split("?", 1)[1] if "?" in h.path else ""
        tokens.append(query)
        body = b'{"token": "T%d"}' % len(tokens)
        reply(h, 200, body, {"Content-Type": "application/json"})

    def ping(h: http.server.BaseHTTPRequestHandler) -> None:
        realm = f"http://{server.host}/token"
        reply(h, 401, b"", {"WWW-Authenticate": f'Bearer realm="{realm}",service="svc"'})

    def blob(h: http.server.BaseHTTPRequestHandler) -> None:
        if h.headers.get("Authorization") == "Bearer T2":
            reply(h, 200, b"")
            return
        realm = f"http://{server.host}/token"
        challenge = (
            f'Bearer realm="{realm}",service="svc",error="insufficient_scope",'
            'scope="repository:other/repo:pull"'
        )
        reply(h, 401, b"", {"WWW-Authenticate": challenge})

    digest = "sha256:" + "1" * 64
    server = FakeServer({"/v2/": ping, "/token": token, f"/v2/x/blobs/{digest}": blob})
    try:
        client = Client(server.host, tls_verify=False)
        assert blob_exists(client, "x", digest) is not None
    finally:
        server.close()
    assert len(tokens) == 2
    assert "scope=repository%3Ax%3Apull%2Cpush" in tokens[0]
    assert "scope=repository%3Aother%2Frepo%3Apull" in tokens[1]
    assert "scope=repository%3Ax%3Apull%2Cpush" in tokens[1]
    heads = [s for s in server.seen if s[0] == "HEAD"]
    assert len(heads) == 2  # one retry only
