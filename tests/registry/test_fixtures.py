"""The test registries are what they claim: skopeo pushes to and inspects each form, and each
form refuses what it must (no CA, no credentials, wrong credentials)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.registry.helpers import USER, Registry, inspect_raw, make_layout, push, skopeo

pytestmark = pytest.mark.skopeo


def test_skopeo_pushes_and_inspects(registry: Registry, tmp_path: Path) -> None:
    layout = make_layout(tmp_path / "layout")
    push(registry, layout, "x")
    p = inspect_raw(registry, registry.ref("x:1"))
    assert p.returncode == 0, p.stderr
    assert p.stdout == layout.manifest
    info = json.loads(skopeo("inspect", *registry.skopeo_args(""), registry.ref("x:1")).stdout)
    assert info["Digest"] == layout.manifest_digest
    assert info["Layers"] == [json.loads(layout.manifest)["layers"][i]["digest"] for i in range(2)]
    # The blobs are in the registry's own storage.
    blobs = registry.storage / "docker/registry/v2/blobs/sha256"
    assert sum(1 for _ in blobs.glob("*/*/data")) == 4  # 2 layers, config, manifest


def test_tls_needs_the_ca(start: Callable[[str], Registry], tmp_path: Path) -> None:
    reg = start("tls")
    layout = make_layout(tmp_path / "layout")
    push(reg, layout, "x")
    p = skopeo("inspect", "--raw", reg.ref("x:1"), check=False)
    assert p.returncode != 0
    assert b"certificate signed by unknown authority" in p.stderr


@pytest.mark.parametrize("form", ["basic", "token"])
def test_auth_forms_refuse_without_credentials(
    start: Callable[[str], Registry], tmp_path: Path, form: str
) -> None:
    reg = start(form)
    layout = make_layout(tmp_path / "layout")
    push(reg, layout, "x")
    p = inspect_raw(reg, reg.ref("x:1"), creds=False)
    assert p.returncode != 0
    assert b"unauthorized" in p.stderr.lower() or b"401" in p.stderr
    p = skopeo(
        "inspect", "--raw", "--tls-verify=false", "--creds", f"{USER}:wrong", reg.ref("x:1"),
        check=False,
    )  # fmt: skip
    assert p.returncode != 0


def test_token_issuer_sees_scopes(start: Callable[[str], Registry], tmp_path: Path) -> None:
    reg = start("token")
    layout = make_layout(tmp_path / "layout")
    push(reg, layout, "ns/x")
    assert reg.issuer is not None
    asked = [r for r in reg.issuer.requests if r.status == 200]
    assert asked, reg.issuer.requests
    assert all(r.account == USER for r in asked)
    assert any("repository:ns/x:pull,push" in r.scopes for r in asked), asked
