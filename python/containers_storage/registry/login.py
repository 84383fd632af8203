"""``login`` and ``logout`` as podman 4.3 does them (containers/common v0.50
``pkg/auth``, containers/image v5.23 ``pkg/docker/config``): the credentials are checked with
an authenticated ``GET /v2/``, then stored in the primary auth file (``--authfile``, else
``$REGISTRY_AUTH_FILE``, ``$DOCKER_CONFIG/config.json``, ``$XDG_RUNTIME_DIR/containers/auth.json``,
``/run/containers/UID/auth.json``): its directory made with mode 0700, the file replaced
atomically with mode 0600, ``{"auths": {KEY: {"auth": base64("USER:PASSWORD")}}}`` indented
with tabs as Go's ``json.MarshalIndent`` writes it (other top-level keys are dropped, as c/image
drops them). A ``credHelpers`` entry for the key sends the credentials to its
``docker-credential-*`` program instead."""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import subprocess
import urllib.parse
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .. import _jsonstore
from ..reference import parse_normalized_named
from .auth import Credentials, find_credentials, primary_auth_file, read_auth_file
from .client import Client, status_error
from .errors import AuthenticationError, RegistryConfigError, RegistryError

__all__ = [
    "LoginResult",
    "NotLoggedInError",
    "check_auth",
    "credentials_key",
    "default_auth_file",
    "get_login",
    "login",
    "logout",
    "logout_all",
]


class NotLoggedInError(RegistryError, LookupError):
    """No credentials for the key in the auth file (c/image ``ErrNotLoggedIn``)."""


def default_auth_file(authfile: str | None = None, env: Mapping[str, str] | None = None) -> Path:
    """The auth file podman's login writes: ``authfile``, else ``$REGISTRY_AUTH_FILE``, else
    ``$DOCKER_CONFIG/config.json``, else c/image's primary auth file."""
    env = os.environ if env is None else env
    if not authfile:
        if env.get("REGISTRY_AUTH_FILE"):
            authfile = env["REGISTRY_AUTH_FILE"]
        elif env.get("DOCKER_CONFIG"):
            authfile = os.path.join(env["DOCKER_CONFIG"], "config.json")
    return primary_auth_file(authfile, env)


def credentials_key(arg: str) -> tuple[str, str]:
    """``(key, registry)`` for a login argument (c/common ``parseCredentialsKey``):
    ``http(s)://`` URLs become ``host[:port]``; a repository (``host/ns/repo``) is a key of
    its own, with no tag or digest.

    Raises:
        RegistryConfigError: a repository with a tag or digest, or that does not parse.
    """
    key = arg
    if arg.startswith(("https://", "http://")):
        key = urllib.parse.urlsplit(arg).netloc
    registry = key.split("/", 1)[0]
    if registry == key:
        return key, registry
    try:
        ref = parse_normalized_named(key)
    except RegistryError as e:
        raise RegistryConfigError(f"parse reference from {key!r}: {e}") from e
    if ref.tag is not None or ref.digest is not None:
        raise RegistryConfigError(f"reference {ref!s} contains tag or digest")
    return key, registry


def _insecure(registry: str) -> bool:
    from ..reference import parse_docker_reference
    from . import registries_conf

    try:
        ref = parse_docker_reference(registry + "/x")
        return registries_conf.load().push_destination(ref).insecure
    except RegistryError:
        return False


def check_auth(
    registry: str,
    creds: Credentials,
    *,
    tls_verify: bool | None = None,
    cert_dir: Path | None = None,
) -> None:
    """An authenticated ``GET /v2/`` (c/image ``CheckAuth``).

    Raises:
        AuthenticationError: the registry refused the credentials.
        RegistryError: any other failure.
    """
    verify = (not _insecure(registry)) if tls_verify is None else tls_verify
    client = Client(registry, creds=creds, tls_verify=verify, cert_dir=cert_dir)
    resp = client.request("GET", "/v2/")
    try:
        body = resp.raw.read(1 << 20, decode_content=False)
    finally:
        resp.release()
    if resp.status != 200:
        raise status_error(resp.status, body, "")


def _write_auth_file(path: Path, data: dict[str, Any]) -> None:
    out: dict[str, Any] = {"auths": {k: data["auths"][k] for k in sorted(data["auths"])}}
    if data.get("credHelpers"):
        out["credHelpers"] = {k: data["credHelpers"][k] for k in sorted(data["credHelpers"])}
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    _jsonstore.atomic_write(str(path), _go_indent(out).encode(), 0o600)


def _go_indent(obj: Any, level: int = 0) -> str:
    """Go's ``json.MarshalIndent(obj, "", "\\t")`` of maps and strings."""
    if isinstance(obj, dict):
        if not obj:
            return "{}"
        pad = "\t" * (level + 1)
        items = [
            f"{pad}{_jsonstore.dumps_text(k)}: {_go_indent(v, level + 1)}" for k, v in obj.items()
        ]
        return "{\n" + ",\n".join(items) + "\n" + "\t" * level + "}"
    return _jsonstore.dumps_text(obj)


def _entry(creds: Credentials) -> dict[str, str]:
    auth = base64.b64encode(f"{creds.username}:{creds.password}".encode()).decode()
    return {"auth": auth}


def _helper(helper: str, action: str, payload: bytes) -> None:
    try:
        p = subprocess.run(
            [f"docker-credential-{helper}", action], input=payload, capture_output=True, check=False
        )
    except FileNotFoundError as e:
        raise RegistryError(
            f'exec: "docker-credential-{helper}": executable file not found in $PATH'
        ) from e
    if p.returncode != 0:
        raise RegistryError(p.stdout.decode(errors="replace").strip() or p.stderr.decode().strip())


def store_credentials(path: Path, key: str, creds: Credentials) -> None:
    """c/image's ``SetCredentials`` into the auth file ``path``."""
    data = read_auth_file(path)
    helper = data["credHelpers"].get(key)
    if helper:
        if "/" in key:
            raise RegistryError(
                f"authentication with a credential helper ({helper}) is not supported for "
                "namespaced keys"
            )
        body = {"ServerURL": key, "Username": creds.username, "Secret": creds.password}
        _helper(helper, "store", json.dumps(body).encode())
        return
    data["auths"][key] = _entry(creds)
    _write_auth_file(path, data)


@dataclasses.dataclass(frozen=True)
class LoginResult:
    """What login printed (podman's texts), and the auth file it wrote."""

    messages: list[str]
    path: Path


def get_login(arg: str, *, authfile: str | None = None) -> str:
    """The user name logged in for ``arg`` (``--get-login``).

    Raises:
        NotLoggedInError: ``not logged into KEY``.
    """
    key, _ = credentials_key(arg)
    creds = find_credentials(key, authfile=default_auth_file(authfile))
    if not creds.username:
        raise NotLoggedInError(f"not logged into {key}")
    return creds.username


def login(
    arg: str,
    username: str = "",
    password: str = "",
    *,
    authfile: str | None = None,
    tls_verify: bool | None = None,
    cert_dir: Path | None = None,
    ask: Callable[[str, bool], str] | None = None,
    say: Callable[[str], object] = print,
) -> Path:
    """Log in to ``arg`` (``host[:port]``, a URL, or ``host/ns/repo``) as podman does; the
    credentials are checked, then written; ``say`` gets podman's messages (``Login
    Succeeded!``); ``ask(prompt, secret)`` reads a missing user name or password. Returns the
    auth file's path.

    Raises:
        AuthenticationError: ``logging into "KEY": invalid username/password``.
        RegistryError: the registry could not be reached (``authenticating creds for ...``).
    """
    key, registry = credentials_key(arg)
    path = default_auth_file(authfile)
    existing = find_credentials(key, authfile=path)
    if existing.identity_token:
        raise RegistryError("currently logged in, auth file contains an Identity token")
    if not username and not password and existing.username and existing.password:
        say(f"Authenticating with existing credentials for {key}")
        try:
            check_auth(registry, existing, tls_verify=tls_verify, cert_dir=cert_dir)
        except RegistryError:
            say("Existing credentials are invalid, please enter valid username and password")
        else:
            say(f"Existing credentials are valid. Already logged in to {registry}")
            return path
    if not username:
        if ask is None:
            raise RegistryError("getting username and password: no user name given")
        prompt = f"Username ({existing.username}): " if existing.username else "Username: "
        username = ask(prompt, False).strip() or existing.username
    if not password:
        if ask is None:
            raise RegistryError("getting username and password: no password given")
        password = ask("Password: ", True)
    creds = Credentials(username.strip(), password)
    try:
        check_auth(registry, creds, tls_verify=tls_verify, cert_dir=cert_dir)
    except AuthenticationError as e:
        raise AuthenticationError(
            f"logging into {key!r}: invalid username/password".replace("'", '"'), e.status
        ) from e
    except RegistryError as e:
        raise RegistryError(f'authenticating creds for "{key}": {e}') from e
    store_credentials(path, key, creds)
    say("Login Succeeded!")
    return path


def logout(arg: str, *, authfile: str | None = None, say: Callable[[str], object] = print) -> None:
    """Remove the credentials for ``arg`` from the auth file (and its credential helper).

    Raises:
        RegistryConfigError: ``--authfile`` names a file that does not exist.
        NotLoggedInError: ``not logged into KEY``.
    """
    _check_authfile(authfile)
    key, _ = credentials_key(arg)
    path = default_auth_file(authfile)
    data = read_auth_file(path)
    logged_in = False
    helper = data["credHelpers"].get(key)
    if helper:
        _helper(helper, "erase", key.encode())
        logged_in = True
    if key in data["auths"]:
        logged_in = True
        del data["auths"][key]
    # c/image rewrites the file even when nothing was removed.
    _write_auth_file(path, data)
    if not logged_in:
        raise NotLoggedInError(f"not logged into {key}")
    say(f"Removed login credentials for {key}")


def logout_all(*, authfile: str | None = None, say: Callable[[str], object] = print) -> None:
    """Remove every credential from the auth file (``--all``), erasing what its credential
    helpers hold."""
    _check_authfile(authfile)
    path = default_auth_file(authfile)
    data = read_auth_file(path)
    for registry, helper in data["credHelpers"].items():
        _helper(helper, "erase", registry.encode())
    _write_auth_file(path, {"auths": {}})
    say("Removed login credentials for all registries")


def _check_authfile(authfile: str | None) -> None:
    if authfile and not os.path.exists(authfile):
        raise RegistryConfigError(f"checking authfile: stat {authfile}: no such file or directory")
