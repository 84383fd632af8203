"""login and logout write the auth file exactly as podman 4.3 does (checked byte for byte
against ``podman login``/``logout`` on the same registry), podman and skopeo read what we
write, we read what podman writes, and ``credHelpers`` entries send the credentials to their
helper program."""

from __future__ import annotations

import base64
import io
import json
import os
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from containers_storage.cli.main import main
from containers_storage.registry import login as api
from containers_storage.registry.auth import Credentials, find_credentials
from containers_storage.registry.errors import AuthenticationError, RegistryConfigError

from tests.registry.helpers import PASSWORD, USER, Registry, make_layout, push
from tests.store.helpers import PODMAN, require

pytestmark = pytest.mark.skopeo


def podman(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    require(PODMAN)
    env = {k: v for k, v in os.environ.items() if k not in ("REGISTRY_AUTH_FILE", "DOCKER_CONFIG")}
    return subprocess.run([PODMAN, *args], input=stdin, env=env, capture_output=True, check=False)


@pytest.fixture(params=["basic", "token"])
def auth_registry(request: pytest.FixtureRequest, start: Callable[[str], Registry]) -> Registry:
    return start(str(request.param))


def test_login_file_is_podmans(auth_registry: Registry, tmp_path: Path) -> None:
    ours = tmp_path / "new-dir" / "auth.json"
    said: list[str] = []
    path = api.login(auth_registry.host, USER, PASSWORD, authfile=str(ours), tls_verify=False,
                     say=said.append)  # fmt: skip
    assert path == ours
    assert said == ["Login Succeeded!"]
    assert stat.S_IMODE(ours.stat().st_mode) == 0o600
    assert stat.S_IMODE(ours.parent.stat().st_mode) == 0o700
    theirs = tmp_path / "podman" / "auth.json"
    p = podman("login", "--authfile", str(theirs), "--tls-verify=false", "-u", USER, "-p",
               PASSWORD, auth_registry.host)  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert p.stdout == b"Login Succeeded!\n"
    assert ours.read_bytes() == theirs.read_bytes()
    entry = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    host = auth_registry.host
    want = f'{{\n\t"auths": {{\n\t\t"{host}": {{\n\t\t\t"auth": "{entry}"\n\t\t}}\n\t}}\n}}'
    assert ours.read_text() == want
    # podman and skopeo use what we wrote.
    p = podman("login", "--authfile", str(ours), "--get-login", auth_registry.host)
    assert p.stdout == f"{USER}\n".encode(), p.stderr
    layout = make_layout(tmp_path / "layout")
    push(auth_registry, layout, "x")
    p = subprocess.run(
        ["skopeo", "inspect", "--raw", "--tls-verify=false", "--authfile", str(ours),
         f"docker://{auth_registry.host}/x:1"],
        capture_output=True, check=False,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert p.stdout == layout.manifest


def test_we_read_what_podman_writes(auth_registry: Registry, tmp_path: Path) -> None:
    theirs = tmp_path / "auth.json"
    p = podman("login", "--authfile", str(theirs), "--tls-verify=false", "-u", USER,
               "--password-stdin", auth_registry.host, stdin=PASSWORD.encode() + b"\n")  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert api.get_login(auth_registry.host, authfile=str(theirs)) == USER
    creds = find_credentials(f"{auth_registry.host}/x", authfile=theirs)
    assert (creds.username, creds.password) == (USER, PASSWORD)
    # Already logged in: the stored credentials are checked and kept.
    said: list[str] = []
    api.login(auth_registry.host, authfile=str(theirs), tls_verify=False, say=said.append)
    assert said == [
        f"Authenticating with existing credentials for {auth_registry.host}",
        f"Existing credentials are valid. Already logged in to {auth_registry.host}",
    ]


def test_wrong_password(auth_registry: Registry, tmp_path: Path) -> None:
    ours = tmp_path / "auth.json"
    with pytest.raises(AuthenticationError) as e:
        api.login(auth_registry.host, USER, "wrong", authfile=str(ours), tls_verify=False)
    assert not ours.exists()
    p = podman("login", "--authfile", str(tmp_path / "p.json"), "--tls-verify=false", "-u", USER,
               "-p", "wrong", auth_registry.host)  # fmt: skip
    assert p.returncode != 0
    assert p.stderr.decode().strip() == f"Error: {e.value}"


def test_logout_as_podman(tmp_path: Path, start: Callable[[str], Registry]) -> None:
    reg = start("basic")
    files = []
    for who in ("ours", "podman"):
        f = tmp_path / who / "auth.json"
        api.login(reg.host, USER, PASSWORD, authfile=str(f), tls_verify=False, say=lambda s: None)
        api.store_credentials(f, "other.example:5000", Credentials("a", "b"))
        files.append(f)
    said: list[str] = []
    api.logout(reg.host, authfile=str(files[0]), say=said.append)
    assert said == [f"Removed login credentials for {reg.host}"]
    p = podman("logout", "--authfile", str(files[1]), reg.host)
    assert p.stdout == f"Removed login credentials for {reg.host}\n".encode(), p.stderr
    assert files[0].read_bytes() == files[1].read_bytes()
    with pytest.raises(api.NotLoggedInError, match=f"^not logged into {reg.host}$"):
        api.logout(reg.host, authfile=str(files[0]))
    p = podman("logout", "--authfile", str(files[1]), reg.host)
    assert p.stderr.decode().strip() == f"Error: not logged into {reg.host}"
    assert files[0].read_bytes() == files[1].read_bytes()
    api.logout_all(authfile=str(files[0]), say=said.append)
    p = podman("logout", "--authfile", str(files[1]), "--all")
    assert p.stdout == b"Removed login credentials for all registries\n"
    assert files[0].read_bytes() == files[1].read_bytes() == b'{\n\t"auths": {}\n}'
    with pytest.raises(RegistryConfigError, match="checking authfile: stat"):
        api.logout(reg.host, authfile=str(tmp_path / "missing.json"))


def test_cli_login_logout(
    start: Callable[[str], Registry],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reg = start("token")
    authfile = str(tmp_path / "auth.json")
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    argv = ["login", "--authfile", authfile, "-u", USER, "--password-stdin", "--tls-verify=false"]
    assert main([*argv, reg.host]) == 0
    assert capsys.readouterr().out == "Login Succeeded!\n"
    assert main(["login", "--authfile", authfile, "--get-login", reg.host]) == 0
    assert capsys.readouterr().out == f"{USER}\n"
    assert main(["logout", "--authfile", authfile, reg.host]) == 0
    assert capsys.readouterr().out == f"Removed login credentials for {reg.host}\n"
    assert main(["login", "--authfile", authfile, "--get-login", reg.host]) != 0
    assert f"not logged into {reg.host}" in capsys.readouterr().err
    monkeypatch.setattr("sys.stdin", io.StringIO("nope\n"))
    assert main([*argv, reg.host]) != 0
    assert f'logging into "{reg.host}": invalid username/password' in capsys.readouterr().err


def test_cred_helper_gets_the_credentials(
    auth_registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    log = tmp_path / "helper.log"
    helper = bindir / "docker-credential-testhelper"
    helper.write_text(
        f'#!/bin/sh\nin=$(cat)\necho "$1 $in" >> {log}\n'
        'if [ "$1" = get ]; then echo "credentials not found in native keychain"; exit 1; fi\n'
    )
    helper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    authfile = tmp_path / "auth.json"
    authfile.write_text(
        json.dumps({"auths": {}, "credHelpers": {auth_registry.host: "testhelper"}})
    )
    api.login(auth_registry.host, USER, PASSWORD, authfile=str(authfile), tls_verify=False,
              say=lambda s: None)  # fmt: skip
    (store_line,) = [x for x in log.read_text().splitlines() if x.startswith("store ")]
    stored = json.loads(store_line.split(" ", 1)[1])
    assert stored == {"ServerURL": auth_registry.host, "Username": USER, "Secret": PASSWORD}
    assert json.loads(authfile.read_text())["auths"] == {}
    api.logout(auth_registry.host, authfile=str(authfile), say=lambda s: None)
    assert log.read_text().splitlines()[-1] == f"erase {auth_registry.host}"
