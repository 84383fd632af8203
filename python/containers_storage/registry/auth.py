"""Credentials and authentication, as containers/image v5.23 finds and uses them: auth files
in c/image's order (``pkg/docker/config``), ``credHelpers`` through ``docker-credential-*``
programs, ``WWW-Authenticate`` challenges (``docker/wwwauthenticate.go``), Basic and bearer
authentication with tokens cached per scope (``docker/docker_client.go``)."""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .errors import AuthenticationError, RegistryConfigError, RegistryError

__all__ = [
    "AUTH_FILE_HELPER",
    "AuthFile",
    "Authorizer",
    "Challenge",
    "Credentials",
    "auth_file_paths",
    "find_credentials",
    "parse_www_authenticate",
]

#: The credential helper name that means "the auth files" (registries.conf default).
AUTH_FILE_HELPER = "containers-auth.json"

#: Go's ``iolimits.MaxAuthTokenBodySize``.
MAX_AUTH_TOKEN_BODY_SIZE = 1 << 20


@dataclasses.dataclass(frozen=True)
class Credentials:
    """A user name and password, or an identity (refresh) token."""

    username: str = ""
    password: str = ""
    identity_token: str = ""

    def __bool__(self) -> bool:
        return bool(self.username or self.password or self.identity_token)


@dataclasses.dataclass(frozen=True)
class AuthFile:
    """One auth file to search; ``legacy`` is the old ``~/.dockercfg`` format (a bare map)."""

    path: Path
    legacy: bool = False


def auth_file_paths(
    authfile: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None
) -> list[AuthFile]:
    """The auth files in c/image's search order: ``authfile`` (else ``$REGISTRY_AUTH_FILE``,
    else ``$XDG_RUNTIME_DIR/containers/auth.json``, else ``/run/containers/UID/auth.json``),
    ``$XDG_CONFIG_HOME/containers/auth.json``, ``$DOCKER_CONFIG/config.json`` (or
    ``~/.docker/config.json``), ``~/.dockercfg``. The first is where login writes.

    Raises:
        RegistryConfigError: ``$XDG_RUNTIME_DIR`` names a directory that does not exist
            (Go's text); only when it decides the first path.
    """
    env = os.environ if env is None else env
    home = Path(env.get("HOME") or Path.home())
    first = primary_auth_file(authfile, env)
    paths = [AuthFile(first)]
    xdg_config = env.get("XDG_CONFIG_HOME") or str(home / ".config")
    paths.append(AuthFile(Path(xdg_config) / "containers/auth.json"))
    docker_config = env.get("DOCKER_CONFIG")
    paths.append(
        AuthFile(
            Path(docker_config) / "config.json" if docker_config else home / ".docker/config.json"
        )
    )
    paths.append(AuthFile(home / ".dockercfg", legacy=True))
    return paths


def primary_auth_file(
    authfile: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None
) -> Path:
    """The auth file login writes and lookups search first (see :func:`auth_file_paths`)."""
    env = os.environ if env is None else env
    if authfile is not None and os.fspath(authfile) != "":
        return Path(authfile)
    if env.get("REGISTRY_AUTH_FILE"):
        return Path(env["REGISTRY_AUTH_FILE"])
    runtime_dir = env.get("XDG_RUNTIME_DIR")
    if runtime_dir:
        if not os.path.exists(runtime_dir):
            raise RegistryConfigError(
                f'"{runtime_dir}" directory set by $XDG_RUNTIME_DIR does not exist. Either '
                "create the directory or unset $XDG_RUNTIME_DIR."
            )
        return Path(runtime_dir) / "containers/auth.json"
    return Path(f"/run/containers/{os.getuid()}/auth.json")


def read_auth_file(path: Path, legacy: bool = False) -> dict[str, Any]:
    """An auth file as ``{"auths": {...}, "credHelpers": {...}, ...}`` (a missing file is
    empty; the legacy format's bare map becomes ``auths``)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {"auths": {}, "credHelpers": {}}
    try:
        data = json.loads(raw)
    except ValueError as e:
        raise RegistryConfigError(
            f'reading JSON file "{path}": unmarshaling JSON at "{path}": {e}'
        ) from e
    if not isinstance(data, dict):
        raise RegistryConfigError(
            f'reading JSON file "{path}": unmarshaling JSON at "{path}": not an object'
        )
    if legacy:
        data = {"auths": data}
    data.setdefault("auths", {})
    data.setdefault("credHelpers", {})
    if data["auths"] is None:
        data["auths"] = {}
    if data["credHelpers"] is None:
        data["credHelpers"] = {}
    return data


def _normalize_registry(registry: str) -> str:
    return "index.docker.io" if registry in ("registry-1.docker.io", "docker.io") else registry


def _normalize_key(key: str, legacy: bool) -> str:
    stripped = key.removeprefix("http://").removeprefix("https://")
    if legacy or stripped != key:
        stripped = stripped.split("/", 1)[0]
    return _normalize_registry(stripped)


def _decode_entry(entry: Any) -> Credentials:
    if not isinstance(entry, dict):
        return Credentials()
    try:
        decoded = base64.b64decode(entry.get("auth") or "", validate=True).decode()
    except ValueError as e:
        raise RegistryConfigError(f"illegal base64 data in auth file: {e}") from e
    user, sep, password = decoded.partition(":")
    if not sep:
        return Credentials()
    return Credentials(user, password.strip("\x00"), entry.get("identitytoken") or "")


def credential_helper_get(helper: str, registry: str) -> Credentials:
    """``docker-credential-HELPER get`` for ``registry`` (a not-found answer is no
    credentials; the user ``<token>`` means an identity token)."""
    try:
        p = subprocess.run(
            [f"docker-credential-{helper}", "get"],
            input=registry.encode(),
            capture_output=True,
            check=False,
        )
    except FileNotFoundError as e:
        raise RegistryError(
            f'exec: "docker-credential-{helper}": executable file not found in $PATH'
        ) from e
    out = p.stdout.decode(errors="replace").strip()
    if p.returncode != 0:
        if out == "credentials not found in native keychain":
            return Credentials()
        raise RegistryError(out or f"docker-credential-{helper} exited {p.returncode}")
    try:
        answer = json.loads(out)
        user, secret = answer["Username"], answer["Secret"]
    except (ValueError, KeyError, TypeError) as e:
        raise RegistryError(f"docker-credential-{helper}: invalid answer: {e}") from e
    if user == "<token>":
        return Credentials(identity_token=secret)
    return Credentials(user, secret)


def find_credentials_in_file(key: str, registry: str, auth_file: AuthFile) -> Credentials:
    """The credentials one auth file holds for ``key`` (``host/ns/repo``): its
    ``credHelpers`` entry for the host, else the most specific ``auths`` key, else any key
    that normalises to the host."""
    data = read_auth_file(auth_file.path, auth_file.legacy)
    helper = data["credHelpers"].get(registry)
    if helper:
        return credential_helper_get(helper, registry)
    auths = data["auths"]
    keys = [registry] if auth_file.legacy else _keys_for(key)
    for k in keys:
        if k in auths:
            return _decode_entry(auths[k])
    wanted = _normalize_registry(registry)
    for k, v in auths.items():
        if _normalize_key(k, auth_file.legacy) == wanted:
            return _decode_entry(v)
    return Credentials()


def _keys_for(key: str) -> list[str]:
    out = [key]
    while "/" in key:
        key = key.rsplit("/", 1)[0]
        out.append(key)
    return out


def find_credentials(
    key: str,
    *,
    authfile: str | os.PathLike[str] | None = None,
    helpers: Sequence[str] = (AUTH_FILE_HELPER,),
    env: Mapping[str, str] | None = None,
) -> Credentials:
    """The credentials for ``key`` (a registry ``host[:port]`` or a repository
    ``host/ns/repo``), from each of ``helpers`` in order (registries.conf
    ``credential-helpers``; ``containers-auth.json`` means the auth files); empty when none."""
    if key.startswith(("http://", "https://")):
        raise RegistryConfigError(f"key {key} contains http[s]:// prefix")
    registry = key.split("/", 1)[0]
    failures: list[str] = []
    for helper in helpers:
        try:
            if helper == AUTH_FILE_HELPER:
                for auth_file in auth_file_paths(authfile, env):
                    creds = find_credentials_in_file(key, registry, auth_file)
                    if creds:
                        return creds
                continue
            creds = credential_helper_get(helper, registry)
        except RegistryError as e:
            failures.append(str(e))
            continue
        if creds:
            return creds
    if failures:
        raise RegistryError("; ".join(failures))
    return Credentials()


# -- challenges ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Challenge:
    """One ``WWW-Authenticate`` challenge: the scheme and parameter names lower-cased."""

    scheme: str
    parameters: Mapping[str, str]


_TOKEN_CHARS = frozenset(
    "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)


def _token(s: str, i: int) -> tuple[str, int]:
    j = i
    while j < len(s) and s[j] in _TOKEN_CHARS:
        j += 1
    return s[i:j], j


def _skip_space(s: str, i: int) -> int:
    while i < len(s) and s[i] in " \t":
        i += 1
    return i


def _parse_one(value: str) -> Challenge | None:
    scheme, i = _token(value, _skip_space(value, 0))
    if not scheme:
        return None
    params: dict[str, str] = {}
    while True:
        i = _skip_space(value, i)
        name, i = _token(value, i)
        if not name:
            break
        i = _skip_space(value, i)
        if i >= len(value) or value[i] != "=":
            break
        i = _skip_space(value, i + 1)
        if i < len(value) and value[i] == '"':
            out = []
            i += 1
            while i < len(value) and value[i] != '"':
                if value[i] == "\\" and i + 1 < len(value):
                    i += 1
                out.append(value[i])
                i += 1
            if i >= len(value):
                break
            i += 1
            val = "".join(out)
        else:
            val, i = _token(value, i)
            if not val:
                break
        params[name.lower()] = val
        i = _skip_space(value, i)
        if i < len(value) and value[i] == ",":
            i += 1
        elif i < len(value):
            break
    return Challenge(scheme.lower(), params)


def parse_www_authenticate(values: Sequence[str]) -> list[Challenge]:
    """One challenge per header line (as c/image reads them): ``scheme`` then
    ``name=token`` or ``name="quoted"`` parameters separated by commas."""
    out = []
    for v in values:
        c = _parse_one(v)
        if c is not None:
            out.append(c)
    return out


# -- authorizing requests -----------------------------------------------------------------

#: Performs one token request: (method, url, headers, body) -> (status, body bytes).
Fetch = Callable[[str, str, dict[str, str], bytes | None], tuple[int, bytes]]


@dataclasses.dataclass
class _Token:
    token: str
    expires: float


class Authorizer:
    """The ``Authorization`` header for requests to one registry: the first supported
    scheme among the ping's challenges; bearer tokens fetched from the challenge's realm and
    cached per scope set until they expire."""

    def __init__(self, challenges: Sequence[Challenge], creds: Credentials, fetch: Fetch) -> None:
        self.challenges = list(challenges)
        self.creds = creds
        self.fetch = fetch
        self._tokens: dict[tuple[str, ...], _Token] = {}
        self._lock = threading.Lock()
        #: Token requests made (the scopes asked), for tests and logs.
        self.token_requests: list[tuple[str, ...]] = []

    def header(self, scopes: Sequence[str]) -> str | None:
        """The header value for a request needing ``scopes``; None when no challenge needs
        one."""
        for ch in self.challenges:
            if ch.scheme == "basic":
                raw = f"{self.creds.username}:{self.creds.password}".encode()
                return "Basic " + base64.b64encode(raw).decode()
            if ch.scheme == "bearer":
                return "Bearer " + self.bearer_token(ch, tuple(scopes))
        return None

    def bearer_token(self, ch: Challenge, scopes: tuple[str, ...]) -> str:
        """A token for ``scopes`` from the challenge's realm (cached until it expires)."""
        with self._lock:
            cached = self._tokens.get(scopes)
            if cached is not None and time.time() < cached.expires:
                return cached.token
            tok = self._fetch_token(ch, scopes)
            self._tokens[scopes] = tok
            return tok.token

    def _fetch_token(self, ch: Challenge, scopes: tuple[str, ...]) -> _Token:
        realm = ch.parameters.get("realm")
        if not realm:
            raise AuthenticationError("missing realm in bearer auth challenge", 401)
        service = ch.parameters.get("service", "")
        self.token_requests.append(scopes)
        headers: dict[str, str] = {}
        if self.creds.identity_token:
            form = [
                ("grant_type", "refresh_token"),
                ("refresh_token", self.creds.identity_token),
                ("client_id", "containers/image"),
            ]
            if service:
                form.append(("service", service))
            form += [("scope", s) for s in scopes]
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            status, body = self.fetch("POST", realm, headers, urllib.parse.urlencode(form).encode())
        else:
            query = []
            if self.creds.username:
                query.append(("account", self.creds.username))
            if service:
                query.append(("service", service))
            query += [("scope", s) for s in scopes]
            if self.creds.username and self.creds.password:
                raw = f"{self.creds.username}:{self.creds.password}".encode()
                headers["Authorization"] = "Basic " + base64.b64encode(raw).decode()
            sep = "&" if "?" in realm else "?"
            url = realm + (sep + urllib.parse.urlencode(query) if query else "")
            status, body = self.fetch("GET", url, headers, None)
        if status == 401:
            raise AuthenticationError(
                "unable to retrieve auth token: invalid username/password: "
                f"{error_text(body) or 'authentication required'}",
                401,
            )
        if status != 200:
            raise AuthenticationError(
                f"fetching token from {realm}: invalid status code from registry {status}", status
            )
        try:
            answer = json.loads(body)
            token = answer.get("token") or answer.get("access_token") or ""
            expires_in = int(answer.get("expires_in") or 0)
        except (ValueError, AttributeError, TypeError) as e:
            raise AuthenticationError(f"decoding token from {realm}: {e}", status) from e
        if not token:
            raise AuthenticationError(f"no token in the answer of {realm}", status)
        return _Token(token, time.time() + max(expires_in, 60))


def error_text(body: bytes) -> str:
    """distribution's error body as Go's errcode prints it (``manifest unknown: manifest
    unknown``; several joined as ``errors:`` lines); "" when it is not one."""
    try:
        errors = json.loads(body)["errors"]
        parts = [f"{e['code'].replace('_', ' ').lower()}: {e.get('message', '')}" for e in errors]
    except (ValueError, KeyError, TypeError, AttributeError):
        return ""
    if len(parts) == 1:
        return parts[0]
    return "errors:\n" + "".join(p + "\n" for p in parts) if parts else ""


def error_codes(body: bytes) -> tuple[str, ...]:
    """The ``code`` of each distribution error in ``body``."""
    try:
        return tuple(str(e["code"]) for e in json.loads(body)["errors"])
    except (ValueError, KeyError, TypeError):
        return ()
