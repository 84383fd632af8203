"""Helpers the registry tests import by name: Debian's ``docker-registry`` (distribution 2.8)
on 127.0.0.1 in four forms (plain HTTP, TLS with a test CA in a ``certs.d`` directory,
htpasswd basic auth, bearer tokens from a token issuer thread), the keys and certificates made
with ``openssl``, a small OCI layout to push with skopeo (fixtures are in conftest.py)."""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import http.client
import http.server
import json
import os
import secrets
import socket
import ssl
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import HANG_GUARD, SKOPEO
from tests.store.helpers import Layout as OciLayout
from tests.store.helpers import compact, require
from tests.tars import d, f, make_tar, sha256

#: Debian's registry (github.com/docker/distribution 2.8).
DOCKER_REGISTRY = os.environ.get("DOCKER_REGISTRY", "/usr/bin/docker-registry")
OPENSSL = "/usr/bin/openssl"
HTPASSWD = "/usr/bin/htpasswd"

#: The forms a test registry takes.
FORMS = ("http", "tls", "basic", "token")

#: The one account of the basic and token forms.
USER = "tester"
PASSWORD = "s3cret-pass"

#: The token form's service and issuer names (the registry checks both in every token).
SERVICE = "test-registry"
ISSUER = "test-token-issuer"


@dataclasses.dataclass(frozen=True)
class Pki:
    """Keys and certificates for the registries of one test session."""

    ca_crt: Path
    server_crt: Path  # for IP 127.0.0.1, signed by ca_crt
    server_key: Path
    token_crt: Path  # self-signed; the token form's rootcertbundle
    token_key: Path  # RSA: tokens are RS256
    htpasswd: Path  # USER:PASSWORD, bcrypt


def openssl(*args: str, cwd: Path) -> None:
    require(OPENSSL)
    subprocess_in(cwd, [OPENSSL, *args])


def subprocess_in(cwd: Path, cmd: list[str]) -> bytes:
    """Run ``cmd`` in ``cwd``; fail the test with its output when it fails."""
    p = subprocess.run(cmd, cwd=cwd, capture_output=True, check=False)
    if p.returncode != 0:
        raise AssertionError(f"{cmd} failed ({p.returncode}): {p.stdout!r} {p.stderr!r}")
    return p.stdout


def make_pki(base: Path) -> Pki:
    """A CA, a server certificate for 127.0.0.1 it signs, a token-signing key and certificate,
    and an htpasswd file, all under ``base``."""
    base.mkdir(parents=True, exist_ok=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    days = ["-days", "7"]
    openssl(
        "req", "-x509", *ec, *days, "-keyout", "ca.key", "-out", "ca.crt",
        "-subj", "/CN=containers-storage test CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=base,
    )  # fmt: skip
    openssl("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1",
            cwd=base)  # fmt: skip
    (base / "server.ext").write_text(
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n"
    )
    openssl(
        "x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", *days, "-extfile", "server.ext", "-out", "server.crt",
        cwd=base,
    )  # fmt: skip
    openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", *days, "-keyout", "token.key",
        "-out", "token.crt", "-subj", "/CN=containers-storage test token issuer",
        cwd=base,
    )  # fmt: skip
    require(HTPASSWD)
    line = subprocess_in(base, [HTPASSWD, "-Bbn", USER, PASSWORD])
    (base / "htpasswd").write_bytes(line)
    return Pki(
        ca_crt=base / "ca.crt",
        server_crt=base / "server.crt",
        server_key=base / "server.key",
        token_crt=base / "token.crt",
        token_key=base / "token.key",
        htpasswd=base / "htpasswd",
    )


# -- the token issuer ---------------------------------------------------------------------


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sign_jwt(pki: Pki, claims: dict[str, Any]) -> str:
    """An RS256 JWT as distribution 2.8 accepts it: the signing certificate in ``x5c``."""
    der = subprocess_in(
        pki.token_crt.parent, [OPENSSL, "x509", "-in", str(pki.token_crt), "-outform", "DER"]
    )
    header = {"typ": "JWT", "alg": "RS256", "x5c": [base64.b64encode(der).decode()]}
    signing_input = f"{b64url(compact(header))}.{b64url(compact(claims))}"
    p = subprocess.run(
        [OPENSSL, "dgst", "-sha256", "-sign", str(pki.token_key)],
        input=signing_input.encode(),
        capture_output=True,
        check=True,
    )
    return f"{signing_input}.{b64url(p.stdout)}"


@dataclasses.dataclass(frozen=True)
class TokenRequest:
    """One request the issuer answered: the Basic user (None: anonymous), the scopes asked
    and the HTTP status given."""

    account: str | None
    scopes: tuple[str, ...]
    service: str | None
    status: int


class TokenIssuer:
    """A token server on 127.0.0.1 (``GET /token?service=&scope=``): a correct Basic
    USER:PASSWORD gets every action it asks for, no credentials get a token with no access,
    wrong credentials get 401. ``requests`` lists what it was asked, in order."""

    def __init__(self, pki: Pki) -> None:
        self.pki = pki
        self.requests: list[TokenRequest] = []
        self.expires_in = 300
        issuer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                issuer.answer(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/token"

    def answer(self, h: http.server.BaseHTTPRequestHandler) -> None:
        url = urllib.parse.urlsplit(h.path)
        query = urllib.parse.parse_qs(url.query)
        scopes = tuple(query.get("scope", []))
        service = query.get("service", [None])[0]
        account: str | None = None
        authorized = False
        auth = h.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
            account = user
            authorized = (user, password) == (USER, PASSWORD)
            status = 200 if authorized else 401
        else:
            status = 200
        self.requests.append(TokenRequest(account, scopes, service, status))
        if url.path != "/token" or status != 200:
            body = b'{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}'
            h.send_response(404 if url.path != "/token" else status)
        else:
            now = int(time.time())
            access = []
            for scope in scopes if authorized else ():
                kind, name, actions = scope_parts(scope)
                access.append({"type": kind, "name": name, "actions": actions})
            claims = {
                "iss": ISSUER,
                "sub": account or "",
                "aud": service or SERVICE,
                "exp": now + self.expires_in,
                "nbf": now - 10,
                "iat": now,
                "jti": secrets.token_hex(8),
                "access": access,
            }
            token = sign_jwt(self.pki, claims)
            body = compact({"token": token, "expires_in": self.expires_in})
            h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(HANG_GUARD)


def scope_parts(scope: str) -> tuple[str, str, list[str]]:
    """``repository:a/b:pull,push`` -> ("repository", "a/b", ["pull", "push"]) (a name may
    hold a ``:port``, so split at the first and the last colon)."""
    kind, _, rest = scope.partition(":")
    name, _, actions = rest.rpartition(":")
    return kind, name, [a for a in actions.split(",") if a]


# -- the registry -------------------------------------------------------------------------


@dataclasses.dataclass
class Registry:
    """A running ``docker-registry`` on 127.0.0.1."""

    form: str
    host: str  # 127.0.0.1:PORT
    base: Path
    proc: subprocess.Popen[bytes]
    certs_d: Path | None  # a certs.d root holding HOST/ca.crt (the TLS form)
    issuer: TokenIssuer | None

    @property
    def scheme(self) -> str:
        return "https" if self.form == "tls" else "http"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}"

    @property
    def creds(self) -> tuple[str, str] | None:
        return (USER, PASSWORD) if self.form in ("basic", "token") else None

    @property
    def cert_dir(self) -> Path | None:
        """The ``certs.d/HOST:PORT`` directory of the TLS form (skopeo's ``--cert-dir``)."""
        return None if self.certs_d is None else self.certs_d / self.host

    @property
    def storage(self) -> Path:
        """The registry's filesystem storage root."""
        return self.base / "storage"

    def ref(self, repo: str) -> str:
        """A ``docker://`` reference into this registry."""
        return f"docker://{self.host}/{repo}"

    def skopeo_args(self, side: str, *, creds: bool = True) -> list[str]:
        """skopeo's TLS and credential options for this registry; ``side`` is "src", "dest"
        or "" (``inspect``)."""
        prefix = f"--{side}-" if side else "--"
        args = (
            [f"{prefix}tls-verify=false"]
            if self.cert_dir is None
            else [f"{prefix}cert-dir", str(self.cert_dir)]
        )
        if creds and self.creds is not None:
            args += [f"{prefix}creds", ":".join(self.creds)]
        return args

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(HANG_GUARD)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(HANG_GUARD)
        if self.issuer is not None:
            self.issuer.close()

    def log(self) -> str:
        return (self.base / "registry.log").read_text(errors="replace")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def registry_config(base: Path, form: str, port: int, pki: Pki, realm: str) -> dict[str, Any]:
    """distribution 2.8's configuration for ``form`` (YAML; JSON is YAML)."""
    http_conf: dict[str, Any] = {"addr": f"127.0.0.1:{port}", "secret": secrets.token_hex(16)}
    config: dict[str, Any] = {
        "version": "0.1",
        "log": {"level": "info", "accesslog": {"disabled": False}},
        "storage": {
            "filesystem": {"rootdirectory": str(base / "storage")},
            "delete": {"enabled": True},
        },
        "http": http_conf,
    }
    if form == "tls":
        http_conf["tls"] = {"certificate": str(pki.server_crt), "key": str(pki.server_key)}
    elif form == "basic":
        config["auth"] = {"htpasswd": {"realm": "basic-realm", "path": str(pki.htpasswd)}}
    elif form == "token":
        config["auth"] = {
            "token": {
                "realm": realm,
                "service": SERVICE,
                "issuer": ISSUER,
                "rootcertbundle": str(pki.token_crt),
            }
        }
    return config


def ping(reg: Registry) -> int | None:
    """The status of ``GET /v2/``, or None when nothing answers yet."""
    host, port = reg.host.rsplit(":", 1)
    conn: http.client.HTTPConnection
    if reg.form == "tls":
        assert reg.cert_dir is not None
        ctx = ssl.create_default_context(cafile=str(reg.cert_dir / "ca.crt"))
        conn = http.client.HTTPSConnection(host, int(port), timeout=5, context=ctx)
    else:
        conn = http.client.HTTPConnection(host, int(port), timeout=5)
    try:
        conn.request("GET", "/v2/")
        return conn.getresponse().status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def start_registry(base: Path, form: str, pki: Pki) -> Registry:
    """Start ``docker-registry serve`` in ``form`` with its storage under ``base``; return once
    ``/v2/`` answers (200, or 401 for the auth forms)."""
    require(DOCKER_REGISTRY)
    assert form in FORMS, form
    base.mkdir(parents=True, exist_ok=True)
    for _attempt in range(5):  # another process may take the free port before we bind it
        port = free_port()
        issuer = TokenIssuer(pki) if form == "token" else None
        realm = issuer.realm if issuer is not None else ""
        config = base / "config.yml"
        config.write_text(json.dumps(registry_config(base, form, port, pki, realm), indent=2))
        certs_d = None
        if form == "tls":
            certs_d = base / "certs.d"
            (certs_d / f"127.0.0.1:{port}").mkdir(parents=True, exist_ok=True)
            (certs_d / f"127.0.0.1:{port}" / "ca.crt").write_bytes(pki.ca_crt.read_bytes())
        with (base / "registry.log").open("wb") as log:
            proc = subprocess.Popen(
                [DOCKER_REGISTRY, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT
            )
        reg = Registry(form, f"127.0.0.1:{port}", base, proc, certs_d, issuer)
        want = 401 if form in ("basic", "token") else 200
        deadline = time.monotonic() + HANG_GUARD
        while proc.poll() is None and time.monotonic() < deadline:
            status = ping(reg)
            if status == want:
                return reg
            if status is not None:
                reg.stop()
                pytest.fail(f"registry {form} answered /v2/ with {status}:\n{reg.log()}")
            time.sleep(0.02)
        reg.stop()
        if "address already in use" not in reg.log():
            pytest.fail(f"registry {form} never answered /v2/:\n{reg.log()}")
    pytest.fail(f"registry {form}: no free port")


# -- what to push -------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Layout:
    """A one-image OCI layout: ``oci:PATH:TAG`` for skopeo."""

    path: Path
    tag: str
    config: bytes
    layers: tuple[bytes, ...]  # the gzip blobs
    manifest: bytes

    @property
    def ref(self) -> str:
        return f"oci:{self.path}:{self.tag}"

    @property
    def manifest_digest(self) -> str:
        return sha256(self.manifest)


def make_layout(path: Path, tag: str = "1", *, layer_bytes: tuple[bytes, ...] = ()) -> Layout:
    """An OCI layout with one image of two small gzip layers (plus one file per extra
    ``layer_bytes`` entry, to make big blobs)."""
    tars = [
        make_tar([d("etc"), f("etc/hello", b"hello\n")]),
        make_tar([d("usr"), f("usr/greeting", b"from the second layer\n")]),
    ]
    tars += [make_tar([f(f"blob{i}", data)]) for i, data in enumerate(layer_bytes)]
    fields = {"created": "2024-01-02T03:04:05Z", "config": {"Cmd": ["/bin/sh"]}}
    built = OciLayout(path).add_configured(tag, tars, fields)
    return Layout(path, tag, built.config, tuple(built.blobs), built.manifest)


def skopeo(*args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    """Run skopeo with an accept-anything policy and no user auth file."""
    require(SKOPEO)
    env = {**os.environ, "REGISTRY_AUTH_FILE": "/nonexistent/auth.json"}
    cmd = [SKOPEO, "--insecure-policy", *args]
    p = subprocess.run(cmd, capture_output=True, env=env, check=False)
    if check and p.returncode != 0:
        raise AssertionError(f"{cmd} failed ({p.returncode}): {p.stdout!r} {p.stderr!r}")
    return p


def push(reg: Registry, layout: Layout, repo: str) -> None:
    """skopeo copy the layout's image into ``repo:TAG`` of ``reg``."""
    skopeo("copy", "--quiet", *reg.skopeo_args("dest"), layout.ref, reg.ref(f"{repo}:{layout.tag}"))


def inspect_raw(
    reg: Registry, ref: str, *, creds: bool = True
) -> subprocess.CompletedProcess[bytes]:
    """``skopeo inspect --raw`` of ``ref`` (docker://...) in ``reg``, not checked."""
    return skopeo("inspect", "--raw", *reg.skopeo_args("", creds=creds), ref, check=False)


@contextlib.contextmanager
def running(base: Path, form: str, pki: Pki) -> Iterator[Registry]:
    """A registry for the duration of a ``with`` block."""
    reg = start_registry(base, form, pki)
    try:
        yield reg
    finally:
        reg.stop()
