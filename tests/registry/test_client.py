"""The protocol client against the real registry in its four forms: what skopeo pushed we
read byte for byte, what we push skopeo reads; credentials and certificates as configured."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from containers_storage.registry import auth, client, errors, upload

from tests.registry.helpers import USER, Registry, inspect_raw, make_layout, push, skopeo
from tests.tars import sha256

pytestmark = pytest.mark.skopeo


def connect(reg: Registry, **kw: object) -> client.Client:
    """A client of ``reg`` configured as skopeo is by ``Registry.skopeo_args``."""
    creds = auth.Credentials(*reg.creds) if reg.creds else None
    return client.Client(
        reg.host,
        creds=creds,
        tls_verify=reg.form == "tls",
        cert_dir=reg.cert_dir,
        certs_roots=(),
        **kw,  # type: ignore[arg-type]
    )


def test_pull_what_skopeo_pushed(registry: Registry, tmp_path: Path) -> None:
    layout = make_layout(tmp_path / "layout")
    push(registry, layout, "ns/x")
    c = connect(registry)
    m = c.get_manifest("ns/x", "1")
    assert (m.data, m.media_type, m.digest) == (
        layout.manifest,
        client.OCI_MANIFEST,
        layout.manifest_digest,
    )
    assert c.get_manifest("ns/x", layout.manifest_digest).data == layout.manifest
    doc = json.loads(m.data)
    assert c.get_blob("ns/x", doc["config"]["digest"]) == layout.config
    for desc, blob in zip(doc["layers"], layout.layers, strict=True):
        assert b"".join(c.iter_blob("ns/x", desc["digest"], chunk=7)) == blob
    assert c.scheme == ("https" if registry.form == "tls" else "http")
    if registry.form == "token":
        assert c.authorizer is not None
        # One token for the one scope, however many requests used it.
        assert c.authorizer.token_requests == [("repository:ns/x:pull",)]


def test_push_what_skopeo_reads(registry: Registry, tmp_path: Path) -> None:
    layout = make_layout(tmp_path / "layout")
    c = connect(registry)
    doc = json.loads(layout.manifest)
    assert upload.blob_exists(c, "y", doc["config"]["digest"]) is None
    upload.upload_blob(c, "y", layout.config)
    upload.upload_blob(c, "y", iter([layout.layers[0][:10], layout.layers[0][10:]]),
                       doc["layers"][0]["digest"])  # fmt: skip
    upload.upload_blob(c, "y", layout.layers[1], monolithic=True)
    assert upload.blob_exists(c, "y", doc["config"]["digest"]) == len(layout.config)
    digest = upload.put_manifest(c, "y", "2", layout.manifest, client.OCI_MANIFEST)
    assert digest == layout.manifest_digest
    p = inspect_raw(registry, registry.ref("y:2"))
    assert p.returncode == 0, p.stderr
    assert p.stdout == layout.manifest
    # skopeo copies it out, blobs and all.
    skopeo("copy", "--quiet", *registry.skopeo_args("src"), registry.ref("y:2"),
           f"oci:{tmp_path / 'out'}:2")  # fmt: skip
    assert (tmp_path / "out/blobs/sha256" / layout.manifest_digest[7:]).read_bytes() == (
        layout.manifest
    )


def test_cross_repository_mount(registry: Registry, tmp_path: Path) -> None:
    layout = make_layout(tmp_path / "layout")
    push(registry, layout, "src")
    c = connect(registry)
    d = sha256(layout.layers[0])
    assert upload.mount_blob(c, "dst", d, "src") is True
    assert upload.blob_exists(c, "dst", d) == len(layout.layers[0])
    # A blob the source does not have: the registry opens an upload, which we cancel.
    assert upload.mount_blob(c, "dst", sha256(b"nothing"), "src") is False


def test_missing_manifest_and_blob(plain_registry: Registry) -> None:
    c = connect(plain_registry)
    with pytest.raises(errors.HTTPStatusError) as e:
        c.get_manifest("none", "1")
    assert e.value.status == 404
    assert e.value.codes == ("MANIFEST_UNKNOWN",)
    # skopeo says the same.
    p = inspect_raw(plain_registry, plain_registry.ref("none:1"))
    assert p.returncode != 0
    assert str(e.value) in p.stderr.decode(), (str(e.value), p.stderr)
    with pytest.raises(errors.HTTPStatusError) as e:
        list(c.iter_blob("none", sha256(b"x")))
    assert e.value.status == 404


@pytest.mark.parametrize("form", ["basic", "token"])
def test_wrong_credentials(start: Callable[[str], Registry], form: str) -> None:
    reg = start(form)
    c = client.Client(reg.host, creds=auth.Credentials(USER, "wrong"), tls_verify=False)
    with pytest.raises(errors.AuthenticationError) as e:
        c.get_manifest("x", "1")
    assert e.value.status == 401
    p = skopeo("inspect", "--raw", "--tls-verify=false", "--creds", f"{USER}:wrong",
               reg.ref("x:1"), check=False)  # fmt: skip
    assert str(e.value) in p.stderr.decode(), (str(e.value), p.stderr)


def test_tls_without_the_ca(start: Callable[[str], Registry]) -> None:
    reg = start("tls")
    c = client.Client(reg.host, certs_roots=())
    with pytest.raises(
        errors.RegistryError, match=r"pinging container registry .*CERTIFICATE_VERIFY_FAILED"
    ):
        c.ping()
    # The CA from a certs.d root, found by host:port.
    assert reg.certs_d is not None
    c = client.Client(reg.host, certs_roots=(reg.certs_d,))
    c.ping()
    assert c.scheme == "https"
