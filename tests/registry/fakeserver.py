"""A tiny HTTP server thread on 127.0.0.1 for the answers a real registry never gives
(wrong bytes, truncated bodies, stalls, redirect loops...): each path maps to a handler."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Callable
from typing import Any

from tests.helpers import HANG_GUARD

Handler = Callable[[http.server.BaseHTTPRequestHandler], None]


class FakeServer:
    """Serve ``routes`` (path without query -> handler); unknown paths get 404. ``seen``
    lists (method, path, headers) of every request; ``release`` ends stalls."""

    def __init__(self, routes: dict[str, Handler]) -> None:
        self.routes = routes
        self.seen: list[tuple[str, str, dict[str, str]]] = []
        self.release = threading.Event()
        fake = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def handle_any(self) -> None:
                fake.seen.append((self.command, self.path, dict(self.headers.items())))
                route = fake.routes.get(self.path.split("?", 1)[0])
                if route is None:
                    reply(self, 404, b'{"errors":[{"code":"NAME_UNKNOWN","message":"no"}]}')
                else:
                    route(self)

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = handle_any  # noqa: N815

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(HANG_GUARD)


def reply(
    h: http.server.BaseHTTPRequestHandler,
    status: int,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    *,
    length: int | None = None,
) -> None:
    """Answer with ``body``; ``length`` claims another Content-Length (then the connection
    is closed after the body, as a broken server does)."""
    h.send_response(status)
    for k, v in (headers or {}).items():
        h.send_header(k, v)
    h.send_header("Content-Length", str(len(body) if length is None else length))
    if length is not None:
        h.send_header("Connection", "close")
        h.close_connection = True
    h.end_headers()
    if h.command != "HEAD":
        h.wfile.write(body)
        h.wfile.flush()
