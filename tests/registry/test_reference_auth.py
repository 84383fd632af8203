"""References as containers/image normalises them; auth files and challenges as it reads
them."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from containers_storage.reference import parse_docker_reference, parse_normalized_named
from containers_storage.registry import auth, errors

from tests.registry.helpers import skopeo


@pytest.mark.parametrize(
    ("given", "want"),
    [
        ("busybox", "docker.io/library/busybox:latest"),
        ("docker://busybox:1", "docker.io/library/busybox:1"),
        ("index.docker.io/user/app", "docker.io/user/app:latest"),
        ("localhost/app", "localhost/app:latest"),
        ("127.0.0.1:5000/a/b:t", "127.0.0.1:5000/a/b:t"),
        ("quay.io/x/y@sha256:" + "a" * 64, "quay.io/x/y@sha256:" + "a" * 64),
    ],
)
def test_normalisation(given: str, want: str) -> None:
    assert str(parse_docker_reference(given)) == want


@pytest.mark.parametrize(
    "given",
    [
        "Busybox",
        "a" * 64,
        "busybox:tag@sha256:" + "a" * 64,
        "x/y@sha256:abc",
        "x//y",
        "",
        "UPPER/x",
    ],
)
@pytest.mark.skopeo
def test_errors_match_skopeo(given: str) -> None:
    with pytest.raises(errors.InvalidReferenceError) as e:
        parse_docker_reference(given)
    p = skopeo("inspect", f"docker://{given}", check=False)
    assert p.returncode != 0
    assert str(e.value) in p.stderr.decode(), (str(e.value), p.stderr)


def test_familiar_and_api_host() -> None:
    r = parse_normalized_named("busybox")
    assert (r.familiar, r.api_host, r.tag) == ("busybox", "registry-1.docker.io", None)
    assert parse_normalized_named("quay.io/a/b:1").familiar == "quay.io/a/b:1"


def entry(user: str, password: str) -> dict[str, str]:
    return {"auth": base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_auth_file_order_and_keys(tmp_path: Path) -> None:
    first, xdg = tmp_path / "first.json", tmp_path / "xdg"
    (xdg / "containers").mkdir(parents=True)
    first.write_text(
        json.dumps({"auths": {"r.io/ns/repo": entry("repo", "1"), "r.io": entry("host", "2")}})
    )
    (xdg / "containers/auth.json").write_text(
        json.dumps({"auths": {"https://other.io/v1/": entry("o", "3")}})
    )
    env = {"HOME": str(tmp_path), "XDG_CONFIG_HOME": str(xdg), "REGISTRY_AUTH_FILE": str(first)}
    assert auth.find_credentials("r.io/ns/repo", env=env) == auth.Credentials("repo", "1")
    assert auth.find_credentials("r.io/ns/other", env=env) == auth.Credentials("host", "2")
    assert auth.find_credentials("other.io/x", env=env) == auth.Credentials("o", "3")
    assert not auth.find_credentials("none.io/x", env=env)
    assert [a.path for a in auth.auth_file_paths(env=env)] == [
        first,
        xdg / "containers/auth.json",
        tmp_path / ".docker/config.json",
        tmp_path / ".dockercfg",
    ]


def test_missing_xdg_runtime_dir(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path), "XDG_RUNTIME_DIR": str(tmp_path / "gone")}
    with pytest.raises(
        errors.RegistryConfigError, match="directory set by \\$XDG_RUNTIME_DIR does not exist"
    ):
        auth.auth_file_paths(env=env)


def test_cred_helper(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    helper = tmp_path / "bin/docker-credential-fake"
    helper.parent.mkdir()
    helper.write_text(
        '#!/bin/sh\nread host\necho "{\\"Username\\":\\"u-$host\\",\\"Secret\\":\\"s\\"}"\n'
    )
    helper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{helper.parent}:/usr/bin:/bin")
    f = tmp_path / "auth.json"
    f.write_text(
        json.dumps({"credHelpers": {"h.io": "fake"}, "auths": {"h.io": entry("no", "no")}})
    )
    env = {"HOME": str(tmp_path), "REGISTRY_AUTH_FILE": str(f)}
    assert auth.find_credentials("h.io/x", env=env) == auth.Credentials("u-h.io", "s")


def test_www_authenticate() -> None:
    (b, t) = auth.parse_www_authenticate(
        [
            'Basic realm="r"',
            'Bearer realm="https://a/token",service="reg",scope="repository:x:pull,push"',
        ]
    )
    assert (b.scheme, dict(b.parameters)) == ("basic", {"realm": "r"})
    assert t.scheme == "bearer"
    assert dict(t.parameters) == {
        "realm": "https://a/token",
        "service": "reg",
        "scope": "repository:x:pull,push",
    }
