"""Store references (``containers-storage:[DRIVER@GRAPHROOT+RUNROOT:OPTIONS]NAME``) as
import sources and export destinations: images copied between stores, skopeo reading and
writing the same spelling."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import containers_storage as cs
import pytest
from containers_storage import errors, storeref
from containers_storage.storeref import StoreReference

from tests.store import test_oci
from tests.store.helpers import Roots, cs_ref
from tests.store.test_oci import NAME, Images, Stores

# The OCI tests' fixtures: an image layout (module scope) and stores closed at the end.
images = test_oci.images
stores = test_oci.stores

pytestmark = [pytest.mark.root, pytest.mark.gotools, pytest.mark.skopeo]


@pytest.mark.parametrize(
    ("ref", "want"),
    [
        ("containers-storage:busybox", StoreReference(image="busybox")),
        (
            "containers-storage:[vfs@/g+/r:vfs.ignore_chown_errors=true,x=y]busybox@abc",
            StoreReference(
                "vfs", "/g", "/r", ("vfs.ignore_chown_errors=true", "x=y"), "busybox@abc", True
            ),
        ),
        ("containers-storage:[/g]x", StoreReference("", "/g", "", (), "x", True)),
        ("containers-storage:[overlay@/g]", StoreReference("overlay", "/g", "", (), "", True)),
        ("containers-storage:[/g+/r]@ab", StoreReference("", "/g", "/r", (), "@ab", True)),
    ],
)
def test_parse(ref: str, want: StoreReference) -> None:
    assert storeref.parse(ref) == want


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("containers-storage:[]x", "invalid reference"),
        ("containers-storage:[/g", "invalid reference"),
        ("containers-storage:[vfs@]x", "invalid reference"),
        ("containers-storage:[@/g]x", "invalid reference"),
        ("containers-storage:[vfs@g+/r]x", "path name is not absolute"),
        ("containers-storage:[/g+r]x", "path name is not absolute"),
        ("oci:/x", '"oci:/x" does not start with containers-storage:'),
    ],
)
def test_parse_errors(ref: str, message: str) -> None:
    with pytest.raises(errors.InvalidReferenceError) as e:
        storeref.parse(ref)
    assert str(e.value) == message


def _layer_digests(store: cs.Store, image: cs.Image) -> list[str]:
    out, layer = [], image.layer
    while layer:
        rec = store.layer(layer)
        out.append(rec.diff_digest)
        layer = rec.parent
    return out[::-1]


def test_round_trip_between_two_stores(stores: Stores, images: Images) -> None:
    """oci -> A; A -> B by import (source reference); B -> C by export (destination
    reference); each copy the same image (ID, layers, files), named as the reference says."""
    a, b, c = stores.roots("a"), stores.roots("b"), stores.roots("c")
    sa, sb, sc = stores.open(a), stores.open(b), stores.open(c)
    original = sa.import_image(images.ref("oci"), names=[NAME])
    want = images.test.diff_ids

    copied = sb.import_image(cs_ref(a, stores.driver, NAME))
    assert (copied.id, copied.names) == (original.id, (NAME,))
    assert _layer_digests(sb, copied) == want
    # A source without a name keeps none unless names are given; @ID and an ID prefix work.
    by_id = sc.import_image(cs_ref(a, stores.driver, "@" + original.id))
    assert (by_id.id, by_id.names) == (original.id, ())
    sc.delete_image(by_id.id)
    by_prefix = sc.import_image(cs_ref(a, stores.driver, original.id[:12]), names=["x:1"])
    assert by_prefix.names == ("docker.io/library/x:1",)
    sc.delete_image(by_prefix.id)

    digest = sb.export_image(NAME, cs_ref(c, stores.driver, "copy:2"))
    (exported,) = sc.images()
    assert (exported.id, exported.names) == (original.id, ("docker.io/library/copy:2",))
    assert exported.digest == digest
    assert _layer_digests(sc, exported) == want
    for s, name in ((sa, NAME), (sb, NAME), (sc, "docker.io/library/copy:2")):
        target = stores.base / f"rootfs-{len(name)}-{id(s)}"
        s.unpack_image(name, target)
        assert (target / "etc").is_dir()


def test_skopeo_reads_and_writes_the_same_spelling(stores: Stores, images: Images) -> None:
    a, b = stores.roots("a"), stores.roots("b")
    sa = stores.open(a)
    original = sa.import_image(images.ref("oci"), names=[NAME])
    # Ours writes into B; skopeo inspects B through the reference.
    sa.export_image(NAME, cs_ref(b, stores.driver, "localhost/copy:1"))
    inspected = json.loads(
        stores.skopeo(None, "inspect", cs_ref(b, stores.driver, "localhost/copy:1")).stdout
    )
    assert inspected["Layers"] == images.test.diff_ids
    assert inspected["Name"] == "localhost/copy"
    config = json.loads(
        stores.skopeo(
            None, "inspect", "--config", cs_ref(b, stores.driver, "localhost/copy:1")
        ).stdout
    )
    assert config["rootfs"]["diff_ids"] == images.test.diff_ids
    # skopeo copies B -> C with the same spelling; ours reads C through it.
    c = stores.roots("c")
    stores.skopeo(
        None,
        "copy",
        "--quiet",
        cs_ref(b, stores.driver, "localhost/copy:1"),
        cs_ref(c, stores.driver, "s:1"),
    )
    sd = stores.open(stores.roots("d"))
    back = sd.import_image(cs_ref(c, stores.driver, "s:1"), names=["back:1"])
    assert back.id == original.id and back.names == ("docker.io/library/back:1",)
    assert _layer_digests(sd, back) == images.test.diff_ids


def test_unknown_image_and_bad_id(stores: Stores, images: Images) -> None:
    a, b = stores.roots("a"), stores.roots("b")
    stores.open(a).import_image(images.ref("oci"), names=[NAME])
    sb = stores.open(b)
    with pytest.raises(errors.ImageUnknownError):
        sb.import_image(cs_ref(a, stores.driver, "localhost/nothing:1"))
    with pytest.raises(errors.InvalidReferenceError, match="does not look like an image ID"):
        sb.import_image(cs_ref(a, stores.driver, NAME + "@zz"))
    with pytest.raises(errors.InvalidReferenceError, match="path name is not absolute"):
        sb.import_image(f"containers-storage:[{stores.driver}@rel]x")
    assert sb.images() == []


def test_cli_spelling(stores: Stores, images: Images, tmp_path: Path) -> None:
    a, b = stores.roots("a"), stores.roots("b")
    original = stores.open(a).import_image(images.ref("oci"), names=[NAME])

    def ours(r: Roots, *args: str) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "containers_storage", "-g", str(r[0]), "-R", str(r[1])]
        return subprocess.run(
            [*cmd, "-s", stores.driver, *args], capture_output=True, text=True, check=False
        )

    p = ours(b, "import-image", cs_ref(a, stores.driver, NAME))
    assert (p.returncode, p.stderr, p.stdout) == (0, "", f"{original.id}\n\t{NAME}\n")
    c = stores.roots("c")
    p = ours(b, "export-image", "--json", NAME, cs_ref(c, stores.driver, "localhost/c:1"))
    assert p.returncode == 0, p.stderr
    listed = json.loads(ours(c, "images", "--json").stdout)
    assert [(i["id"], i["names"]) for i in listed] == [(original.id, ["localhost/c:1"])]
    assert listed[0]["digest"] == json.loads(p.stdout)["digest"]
    for r in (b, c):
        ours(r, "shutdown")
