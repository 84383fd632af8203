"""policy.json as c/image v5.23 reads and evaluates it: parsing tables with c/image's texts,
scope lookup, and twins against ``skopeo --policy F copy`` from a loopback registry."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from containers_storage.reference import parse_docker_reference
from containers_storage.registry import policy
from containers_storage.registry.errors import PolicyDeniedError, RegistryConfigError

from tests.helpers import SKOPEO
from tests.registry.helpers import Registry, make_layout, push
from tests.store.helpers import require

ACCEPT = {"type": "insecureAcceptAnything"}
REJECT = {"type": "reject"}
SIGNED_BY = {"type": "signedBy", "keyType": "GPGKeys", "keyPath": "/nonexistent/key.gpg"}
SIGSTORE = {"type": "sigstoreSigned", "keyPath": "/nonexistent/cosign.pub"}
BASE_LAYER = {"type": "signedBaseLayer", "baseLayerIdentity": {"type": "matchRepository"}}


def write(tmp_path: Path, doc: Any) -> Path:
    path = tmp_path / "policy.json"
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return path


@pytest.mark.parametrize(
    ("doc", "want"),
    [
        ('{"default": [{"type": "reject"}], "x": 1}', 'Unknown key "x"'),
        ('{"default": [], "default": []}', 'Duplicate key "default"'),
        ('{"transports": {}}', "Default policy is missing"),
        ('{"default": []}', "List of verification policy requirements must not be empty"),
        ('{"default": [{"type": "accept"}]}', 'Unknown policy requirement type "accept"'),
        ('{"default": [{"type": "reject", "keyPath": "k"}]}', 'Unknown key "keyPath"'),
        (
            '{"default": [{"type": "insecureAcceptAnything"}], '
            '"transports": {"docker": {"a.test": []}}}',
            "List of verification policy requirements must not be empty",
        ),
        (
            '{"default": [{"type": "signedBy", "keyType": "GPGKeys"}]}',
            "Exactly one of keyPath, keyPaths and keyData must be specified, none of them present",
        ),
        (
            '{"default": [{"type": "signedBy", "keyType": "GPGKeys", "keyPath": "a", '
            '"keyData": "b"}]}',
            "Exactly one of keyPath, keyPaths and keyData must be specified, more than one present",
        ),
        ('{"default": [{"type": "signedBaseLayer"}]}', "baseLayerIdentity not specified"),
    ],
)
def test_invalid_policies(tmp_path: Path, doc: str, want: str) -> None:
    path = write(tmp_path, doc)
    with pytest.raises(RegistryConfigError) as e:
        policy.load(path)
    assert str(e.value) == f'invalid policy in "{path}": {want}'


def test_malformed_and_missing_files(tmp_path: Path) -> None:
    path = write(tmp_path, '{"default": [{"type": "insecureAcceptAnything"}]')
    with pytest.raises(RegistryConfigError, match=r'^invalid policy in ".*policy\.json": '):
        policy.load(path)
    missing = tmp_path / "missing.json"
    with pytest.raises(RegistryConfigError) as e:
        policy.load(missing)
    assert str(e.value) == f"open {missing}: no such file or directory"


def test_default_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert policy.default_path() == Path("/etc/containers/policy.json")
    user = tmp_path / ".config/containers/policy.json"
    user.parent.mkdir(parents=True)
    user.write_text(json.dumps({"default": [REJECT]}))
    assert policy.default_path() == user
    with pytest.raises(PolicyDeniedError):
        policy.load().check(parse_docker_reference("busybox"))


def test_scopes_most_specific_first() -> None:
    ref = parse_docker_reference("registry.example.com:5000/ns/app:1")
    assert policy._docker_scopes(ref) == [
        "registry.example.com:5000/ns/app:1",
        "registry.example.com:5000/ns/app",
        "registry.example.com:5000/ns",
        "registry.example.com:5000",
        "*.example.com",
        "*.com",
    ]
    p = policy.parse(
        json.dumps(
            {
                "default": [REJECT],
                "transports": {
                    "docker": {
                        "": [SIGNED_BY],
                        "*.com": [REJECT],
                        "registry.example.com:5000/ns": [ACCEPT],
                        "registry.example.com:5000/ns/app:2": [REJECT],
                    },
                    "docker-daemon": {"": [ACCEPT]},
                },
            }
        ).encode()
    )
    assert p.requirements(ref) == ("insecureAcceptAnything",)
    assert p.requirements(parse_docker_reference("registry.example.com:5000/ns/app:2")) == (
        "reject",
    )
    assert p.requirements(parse_docker_reference("other.com/a")) == ("reject",)
    assert p.requirements(parse_docker_reference("busybox")) == ("signedBy",)
    assert p.requirements(ref, "docker-daemon") == ("insecureAcceptAnything",)
    assert p.requirements(ref, "oci") == ("reject",)


def test_signature_requirements_are_refused_never_accepted() -> None:
    ref = parse_docker_reference("busybox")
    for req in (SIGNED_BY, SIGSTORE):
        p = policy.parse(json.dumps({"default": [ACCEPT, req]}).encode())
        with pytest.raises(PolicyDeniedError) as e:
            p.check(ref)
        assert str(e.value).startswith("Source image rejected: ")
        assert req["type"] in str(e.value) and "does not verify signatures" in str(e.value)
    p = policy.parse(json.dumps({"default": [ACCEPT, REJECT]}).encode())
    with pytest.raises(PolicyDeniedError) as e:
        p.check(ref)
    assert str(e.value) == (
        "Source image rejected: Running image docker://busybox:latest is rejected by policy."
    )


def skopeo_copy(policy_file: Path, reg: Registry, image: str, out: Path) -> tuple[bool, str]:
    """``skopeo --policy F copy`` of ``image`` in ``reg`` into a dir: (allowed, stderr)."""
    require(SKOPEO)
    env = {**os.environ, "REGISTRY_AUTH_FILE": "/nonexistent/auth.json"}
    cmd = [SKOPEO, "--policy", str(policy_file), "copy", "--quiet", "--src-tls-verify=false"]
    cmd += [reg.ref(image), f"dir:{out}"]
    p = subprocess.run(cmd, capture_output=True, env=env, check=False)
    return p.returncode == 0, p.stderr.decode()


def test_policies_as_skopeo(tmp_path: Path, plain_registry: Registry) -> None:
    reg = plain_registry
    layout = make_layout(tmp_path / "layout")
    push(reg, layout, "img")
    push(reg, layout, "ns/other")
    host = reg.host
    cases: list[tuple[list[dict[str, Any]], dict[str, list[dict[str, Any]]]]] = [
        ([ACCEPT], {}),
        ([REJECT], {}),
        ([ACCEPT, REJECT], {}),
        ([ACCEPT], {f"{host}/img:1": [REJECT]}),
        ([ACCEPT], {f"{host}/img": [REJECT]}),
        ([ACCEPT], {f"{host}/ns": [REJECT]}),
        ([ACCEPT], {host: [REJECT], f"{host}/img": [ACCEPT]}),
        ([ACCEPT], {"*.0.1": [REJECT]}),
        ([ACCEPT], {"*.0.1": [REJECT], host: [ACCEPT]}),
        ([REJECT], {"": [ACCEPT]}),
        ([ACCEPT], {"": [REJECT], "127.0.0.1": [ACCEPT]}),  # the port is part of the host
        ([SIGNED_BY], {}),
        ([SIGSTORE], {}),
        ([BASE_LAYER], {}),
    ]
    for n, (default, scopes) in enumerate(cases):
        path = write(tmp_path, {"default": default, "transports": {"docker": scopes}})
        p = policy.load(path)
        for image in ("img:1", "ns/other:1"):
            allowed, stderr = skopeo_copy(path, reg, image, tmp_path / f"out-{n}-{image[:2]}")
            case = f"{default} {scopes} {image}: skopeo says {stderr!r}"
            try:
                p.check(parse_docker_reference(f"{host}/{image}"))
            except PolicyDeniedError as e:
                assert not allowed, case
                assert "Source image rejected: " in stderr, case
                if "does not verify signatures" not in str(e):
                    assert str(e) in stderr, case
            else:
                assert allowed, case
