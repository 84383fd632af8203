"""Issue 8: images from OCI layouts and archives into a store, and back out, against the real
tools (Debian's skopeo, podman, umoci and the Go containers-storage CLI).

A module-scoped builder writes small, reproducible images into one OCI layout: ``test:1`` (a
base layer, and an upper layer with a whiteout and an opaque directory), ``other:1`` (the same
base, another upper layer), ``zone:1`` (a config ``created`` with a UTC offset) and ``multi:1``
(an image index: ``test:1`` for amd64, an empty image for arm64); the layout as an
``oci-archive``, and ``test:1`` as a ``docker-archive`` (``docker save`` format, uncompressed
layer tars). Layers are gzip tars with directories, files, a symlink, a hard link, a setuid
file, xattrs carried in PAX records and files owned by 1000:1001.

Each test makes its own stores below ``tmp_path`` (podman's below a short directory in /tmp),
shuts ours down, runs Go's ``shutdown`` on every store a tool opened (the overlay driver
leaves its home bind-mounted), and fails if anything stays mounted.
"""

from __future__ import annotations

import base64
import dataclasses
import gzip
import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import tarfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import containers_storage as cs
import pytest
from containers_storage import errors
from containers_storage.oci import ImageProgress

from tests.helpers import SKOPEO
from tests.store.helpers import (
    CREATED,
    MANIFEST_TYPE,
    REF_NAME,
    Built,
    Layout,
    Roots,
    StoreSet,
    assert_nothing_mounted_under,
    compact,
    cs_ref,
    go,
    go_json,
    ours_argv,
    podman,
    require,
    run,
    tool_env,
    write_policy,
)
from tests.tars import d, f, hard, hexpart, make_tar, sha256, sym

pytestmark = [pytest.mark.root, pytest.mark.gotools, pytest.mark.skopeo]

#: Debian's umoci 0.4 (the Go CLI, skopeo and podman come from tests.helpers and
#: tests.store.helpers).
UMOCI = os.environ.get("UMOCI", "/usr/bin/umoci")

TAG = "test:1"
OTHER_TAG = "other:1"
NAME = "localhost/test:1"
OTHER_NAME = "localhost/other:1"
#: An image whose config's ``created`` is not in UTC (skopeo keeps the offset).
ZONE_TAG = "zone:1"
ZONE_CREATED = "2023-01-02T01:00:00.5+01:00"
#: An image index: test:1 for amd64 and an empty image for arm64.
MULTI_TAG = "multi:1"
#: test:1 under another manifest: the same JSON re-serialised (indented).
INDENTED_TAG = "indented:1"


# -- building images ----------------------------------------------------------------------


BASE = (
    d("bin/"),
    f("bin/tool", b"#!/bin/sh\necho tool\n" * 50, mode=0o4755),
    sym("bin/sh", "tool"),
    d("etc/"),
    f("etc/hostname", b"base\n", xattrs=(("user.fixture", "hello"),)),
    f("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n"),
    f("etc/to-delete.txt", b"bye\n"),
    d("home/"),
    d("home/user/", mode=0o700, uid=1000, gid=1001),
    f("home/user/notes.txt", b"notes\n", mode=0o600, uid=1000, gid=1001),
    d("opt/"),
    d("opt/app/"),
    f("opt/app/old1.txt", b"old1\n"),
    d("opt/app/sub/"),
    f("opt/app/sub/old2.txt", b"old2\n"),
    d("srv/"),
    f("srv/a.txt", b"linked twice\n"),
    hard("srv/b.txt", "srv/a.txt"),
    d("tmp/", mode=0o1777),
)

UPPER = (
    d("etc/"),
    f("etc/.wh.to-delete.txt", b""),
    sym("etc/abs-link", "/etc/hostname"),
    f("etc/hostname", b"upper\n", xattrs=(("user.fixture", "second"), ("user.y", "why"))),
    d("opt/"),
    d("opt/app/"),
    f("opt/app/.wh..wh..opq", b""),
    f("opt/app/new.txt", b"new\n"),
    d("srv/"),
    f("srv/data.txt", b"shared data\n"),
    hard("srv/data-hardlink.txt", "srv/data.txt"),
    sym("srv/sym-link", "data.txt"),
)

OTHER_UPPER = (
    d("usr/"),
    d("usr/share/"),
    f("usr/share/other.txt", b"the other image\n" * 100, uid=7, gid=8),
)


def tar_directory(src: Path, out: Path) -> None:
    """A tar of a directory's contents (an oci-archive)."""
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        for p in sorted(src.rglob("*")):
            tar.add(p, arcname=str(p.relative_to(src)), recursive=False)


def docker_archive(out: Path, image: Built, repo_tags: Sequence[str]) -> None:
    """``docker save`` format: manifest.json, the config and uncompressed layer tars."""
    members: dict[str, bytes] = {}
    layers = []
    for t in image.tars:
        name = f"{hexpart(sha256(t))}/layer.tar"
        members[name] = t
        layers.append(name)
    config_name = f"{image.image_id}.json"
    members[config_name] = image.config
    manifest = [{"Config": config_name, "RepoTags": list(repo_tags), "Layers": layers}]
    members["manifest.json"] = json.dumps(manifest).encode()
    out.write_bytes(make_tar([f(name, data) for name, data in members.items()]))


@dataclasses.dataclass
class Images:
    layout: Path
    oci_archive: Path
    docker_archive: Path
    policy: Path
    built: dict[str, Built]
    multi_index: bytes

    @property
    def test(self) -> Built:
        return self.built[TAG]

    @property
    def other(self) -> Built:
        return self.built[OTHER_TAG]

    def ref(self, transport: str, tag: str = TAG) -> str:
        if transport == "oci":
            return f"oci:{self.layout}:{tag}"
        if transport == "oci-archive":
            return f"oci-archive:{self.oci_archive}:{tag}"
        assert tag == TAG
        return f"docker-archive:{self.docker_archive}"


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Images:
    base = tmp_path_factory.mktemp("images")
    layout = Layout(base / "layout")
    base_tar = make_tar(BASE)
    built = {
        TAG: layout.add_image(TAG, [base_tar, make_tar(UPPER)]),
        OTHER_TAG: layout.add_image(OTHER_TAG, [base_tar, make_tar(OTHER_UPPER)]),
        ZONE_TAG: layout.add_image(
            ZONE_TAG, [base_tar, make_tar((f("zone.txt", b"zone\n"),))], created=ZONE_CREATED
        ),
    }
    empty = compact({"architecture": "arm64", "os": "linux", "rootfs": {"type": "layers"}})
    arm = layout.put_manifest(empty, [])
    multi_index = layout.add_index(MULTI_TAG, [("arm64", arm), ("amd64", built[TAG].manifest)])
    built[MULTI_TAG] = built[TAG]
    indented = json.dumps(json.loads(built[TAG].manifest), indent=2).encode()
    layout.put(indented)
    layout.tag(INDENTED_TAG, indented)
    built[INDENTED_TAG] = dataclasses.replace(built[TAG], manifest=indented)
    tar_directory(layout.root, base / "layout.tar")
    docker_archive(base / "docker.tar", built[TAG], [NAME])
    policy = write_policy(base / "policy.json")
    return Images(layout.root, base / "layout.tar", base / "docker.tar", policy, built, multi_index)


# -- running the tools, cleaning up -------------------------------------------------------


class Stores(StoreSet):
    """Opens our Stores and runs skopeo/podman/Go on roots; closes all of them at the end."""

    def __init__(self, base: Path, driver: str, policy: Path) -> None:
        super().__init__(base, driver)
        self.policy = policy

    def skopeo(self, r: Roots | None, *args: str) -> subprocess.CompletedProcess[bytes]:
        """skopeo with a storage.conf for ``r`` (or for an unused store of its own, so the
        host's default store is never touched)."""
        env = tool_env(r or self.roots("skopeo-default"), self.driver)
        return run([SKOPEO, "--policy", str(self.policy), *args], env)

    def skopeo_run(self, r: Roots, *args: str) -> subprocess.CompletedProcess[bytes]:
        """skopeo as :meth:`skopeo`, its failure returned, not raised."""
        env = tool_env(r, self.driver)
        cmd = [SKOPEO, "--policy", str(self.policy), *args]
        return subprocess.run(cmd, capture_output=True, env=env, check=False)

    def skopeo_import(self, r: Roots, src: str, name: str) -> None:
        self.skopeo(r, "copy", "--quiet", src, cs_ref(r, self.driver, name))

    def go(self, r: Roots, *args: str) -> subprocess.CompletedProcess[bytes]:
        return go(r, self.driver, *args)

    def go_json(self, r: Roots, *args: str) -> Any:
        return go_json(r, self.driver, *args)


@pytest.fixture
def stores(tmp_path: Path, driver: str, images: Images) -> Iterator[Stores]:
    s = Stores(tmp_path, driver, images.policy)
    yield s
    s.close()
    assert_nothing_mounted_under(tmp_path)


# -- what a store holds -------------------------------------------------------------------


def without_created(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k != "created"} for r in records]


def leftovers(r: Roots, driver: str) -> dict[str, list[str]]:
    """Everything a failed import could leave behind: layer directories in the driver's
    home, its short links and staging directories, tar-split files (and temporaries),
    per-layer and per-image directories, files in the graph root's tmp/."""

    def entries(path: Path, skip: Sequence[str] = ()) -> list[str]:
        if not path.exists():
            return []
        return sorted(p.name for p in path.iterdir() if p.name not in skip)

    graph = r[0]
    out: dict[str, list[str]] = {}
    if driver == "vfs":
        out["driver"] = entries(graph / "vfs" / "dir")
    else:
        home = graph / "overlay"
        out["driver"] = [n for n in entries(home, ("l", "tempdirs")) if not n.startswith(".")]
        out["links"] = entries(home / "l")
        out["staging"] = entries(home / "tempdirs")
    out["layers-dir"] = entries(graph / f"{driver}-layers", ("layers.json", "layers.lock"))
    out["images-dir"] = entries(graph / f"{driver}-images", ("images.json", "images.lock"))
    out["tmp"] = entries(graph / "tmp")
    return {k: v for k, v in out.items() if v}


# -- 1. ours and skopeo write the same ----------------------------------------------------


@pytest.mark.parametrize(
    ("transport", "tag"),
    [
        ("oci", TAG),
        ("oci-archive", TAG),
        ("docker-archive", TAG),
        ("oci", ZONE_TAG),
        ("oci", MULTI_TAG),
    ],
)
def test_import_matches_skopeo(stores: Stores, images: Images, transport: str, tag: str) -> None:
    src = images.ref(transport, tag)
    built = images.built[tag]
    sk = stores.roots("skopeo")
    stores.skopeo_import(sk, src, NAME)
    ours = stores.roots("ours")
    s = stores.open(ours)
    image = s.import_image(src, names=[NAME])
    assert image.id == built.image_id
    assert image.layer == built.layer_ids[-1]

    # Layers: same IDs, parents, digests, sizes, owners; only the creation times differ.
    want_layers = stores.go_json(sk, "layers", "-j")
    assert [x["id"] for x in want_layers] == built.layer_ids
    assert without_created([x.to_json() for x in s.layers()]) == without_created(want_layers)
    # Go reads our store the same way.
    assert without_created(stores.go_json(ours, "layers", "-j")) == without_created(want_layers)

    # Images: the same big data (keys, order and bytes), then the same records.
    (want,) = stores.go_json(sk, "images", "-j")
    assert want["id"] == built.image_id
    assert s.list_image_big_data(image.id) == want["big-data-names"]
    for key in want["big-data-names"]:
        data = stores.go(sk, "get-image-data", image.id, key).stdout
        assert s.image_big_data(image.id, key) == data, key
    assert s.image_big_data(image.id, "sha256:" + image.id) == built.config
    assert (image.digest, image.created) == (want["digest"], want["created"])
    assert [x.to_json() for x in s.images()] == [want]
    assert stores.go_json(ours, "images", "-j") == [want]
    if transport != "docker-archive":
        digest = sha256(images.multi_index) if tag == MULTI_TAG else built.manifest_digest
        assert image.digest == digest
        assert image.created == (ZONE_CREATED if tag == ZONE_TAG else CREATED)

    # Nothing is left in the graph root's tmp/ (archives are unpacked there).
    assert not list((ours[0] / "tmp").iterdir())

    # The layers hold what skopeo's hold: Go reproduces the original tars.
    for layer_id, tar in zip(built.layer_ids, built.tars, strict=True):
        assert stores.go(ours, "diff", "-u", layer_id).stdout == tar


def test_tar_split_like_skopeos(stores: Stores, images: Images) -> None:
    """The tar-split records hold what skopeo's hold, gzip-compressed as Go's are (pgzip
    BestSpeed): not several times larger."""
    sk = stores.roots("skopeo")
    stores.skopeo_import(sk, images.ref("oci"), NAME)
    ours = stores.roots("ours")
    stores.open(ours).import_image(images.ref("oci"), names=[NAME])
    for layer_id in images.test.layer_ids:
        name = f"{stores.driver}-layers/{layer_id}.tar-split.gz"
        mine, theirs = (ours[0] / name).read_bytes(), (sk[0] / name).read_bytes()
        assert tar_split_content(mine) == tar_split_content(theirs)
        ours_size, go_size, plain = len(mine), len(theirs), len(gzip.decompress(mine))
        assert ours_size <= 2 * go_size, f"{ours_size} bytes ({plain} uncompressed), Go {go_size}"


def tar_split_content(data: bytes) -> tuple[list[tuple[Any, ...]], bytes]:
    """A tar-split record as what it means: the file entries, and the raw tar bytes of all
    segments together (Go splits the end-of-archive zeros over three segments; one or three
    rebuild the same tar)."""
    files, raw = [], b""
    for line in gzip.decompress(data).splitlines():
        entry = json.loads(line)
        if entry["type"] == 1:
            files.append((entry.get("name"), entry.get("size", 0), entry.get("payload")))
        else:
            raw += base64.b64decode(entry["payload"] or "")
    return files, raw


# -- 2. reuse -----------------------------------------------------------------------------


def test_import_twice_reuses_layers(stores: Stores, images: Images) -> None:
    s = stores.open(stores.roots("ours"))
    first = s.import_image(images.ref("oci"), names=[NAME])
    layers = [x.to_json() for x in s.layers()]
    homes = {x.id: os.stat(layer_home(s, x.id)).st_ino for x in s.layers()}
    again = s.import_image(images.ref("oci"), names=["localhost/again:2"])
    # No layer was added or applied again (same records, same directories).
    assert [x.to_json() for x in s.layers()] == layers
    assert {x.id: os.stat(layer_home(s, x.id)).st_ino for x in s.layers()} == homes
    assert again.id == first.id
    assert [x.id for x in s.images()] == [first.id]
    # As skopeo does (c/image's storage destination calls SetNames(new names + old names)):
    # the new name first, the history newest first as SetNames rebuilds it.
    assert list(again.names) == ["localhost/again:2", NAME]
    assert list(again.names_history) == [NAME, "localhost/again:2"]
    sk = stores.roots("skopeo")
    stores.skopeo_import(sk, images.ref("oci"), NAME)
    stores.skopeo_import(sk, images.ref("oci"), "localhost/again:2")
    assert [x.to_json() for x in s.images()] == stores.go_json(sk, "images", "-j")


def test_second_image_reuses_shared_base(stores: Stores, images: Images) -> None:
    s = stores.open(stores.roots("ours"))
    s.import_image(images.ref("oci"), names=[NAME])
    base = s.layer(images.test.layer_ids[0]).to_json()
    other = s.import_image(images.ref("oci", OTHER_TAG), names=[OTHER_NAME])
    assert other.id == images.other.image_id
    assert images.other.layer_ids[0] == images.test.layer_ids[0]
    assert [x.id for x in s.layers()] == [*images.test.layer_ids, images.other.layer_ids[1]]
    assert s.layer(images.test.layer_ids[0]).to_json() == base
    assert s.layer(other.layer).parent == base["id"]
    # skopeo, pulling the two images in the same order, writes the same.
    sk = stores.roots("skopeo")
    stores.skopeo_import(sk, images.ref("oci"), NAME)
    stores.skopeo_import(sk, images.ref("oci", OTHER_TAG), OTHER_NAME)
    assert without_created([x.to_json() for x in s.layers()]) == without_created(
        stores.go_json(sk, "layers", "-j")
    )
    assert [x.to_json() for x in s.images()] == stores.go_json(sk, "images", "-j")


CHILD_IMPORT = (
    "import sys, containers_storage as cs; "
    "cs.Store(sys.argv[1], sys.argv[2], sys.argv[3]).import_image(sys.argv[4], names=[sys.argv[5]])"
)


@pytest.mark.parametrize("driver", ["overlay"])
def test_concurrent_import_of_the_same_image(stores: Stores, images: Images) -> None:
    """Another process imports the same image while we stage its layers (overlay stages
    without holding the store lock): both imports succeed, as two concurrent skopeo copies
    do (c/image reuses a layer whose ID turns out to exist: ErrDuplicateID)."""
    r = stores.roots("ours")
    s = stores.open(r)
    child: list[subprocess.CompletedProcess[bytes]] = []

    def progress(_p: ImageProgress) -> None:
        if not child:  # first call: we are staging; the other process imports it all now
            args = [str(r[0]), str(r[1]), "overlay", images.ref("oci"), "localhost/child:1"]
            child.append(
                subprocess.run(
                    [sys.executable, "-c", CHILD_IMPORT, *args], capture_output=True, check=False
                )
            )

    image = s.import_image(images.ref("oci"), names=[NAME], progress=progress)
    assert child[0].returncode == 0, child[0].stderr.decode()
    assert [x.id for x in s.layers()] == images.test.layer_ids
    assert [x.id for x in s.images()] == [image.id]
    assert set(s.image(image.id).names) == {NAME, "localhost/child:1"}
    assert not leftovers(r, "overlay").get("staging")


def test_name_moves_to_the_newer_image(stores: Stores, images: Images) -> None:
    """Importing another image under a name that an image holds moves the name, as skopeo
    does (c/storage SetNames takes it from the other image, which keeps its history)."""
    s = stores.open(stores.roots("ours"))
    sk = stores.roots("skopeo")
    for tag in (TAG, OTHER_TAG):
        s.import_image(images.ref("oci", tag), names=["localhost/x:latest"])
        stores.skopeo_import(sk, images.ref("oci", tag), "localhost/x:latest")
    assert [(x.id, x.names) for x in s.images()] == [
        (images.test.image_id, ()),
        (images.other.image_id, ("localhost/x:latest",)),
    ]
    assert [x.to_json() for x in s.images()] == stores.go_json(sk, "images", "-j")


#: Names as skopeo's containers-storage: destination takes them, valid or not (issue 14).
SKOPEO_NAMES = [
    "myimg",
    "quay.io/x/y",
    "localhost/x:1",
    "index.docker.io/foo",
    "localhost:5000/a/b",
    "a/b/c",
    "abc:TAG_1",
    "MyImg",
    "x/Y",
    "foo:bar:baz",
    "a" * 64,
    "myimg@foo",
    "x@sha256:abc",
]


@pytest.mark.parametrize("driver", ["vfs"])
def test_names_stored_as_skopeo_stores_them(stores: Stores, images: Images) -> None:
    """c/image's ParseNormalizedNamed + TagNameOnly: the same stored names (or the same
    refusal, in c/image's words) for each name, a digested one included."""
    sk, ours = stores.roots("skopeo"), stores.roots("ours")
    s = stores.open(ours)
    test, indented = images.test.manifest_digest, images.built[INDENTED_TAG].manifest_digest
    cases = [(TAG, n) for n in SKOPEO_NAMES] + [
        (TAG, f"myimg@{test}"),
        (INDENTED_TAG, f"other:3@{indented}"),
        (INDENTED_TAG, f"other@{test}"),  # names the other manifest: refused
        (MULTI_TAG, f"multi@{sha256(images.multi_index)}"),  # the index's digest will do
    ]
    for tag, name in cases:
        src = images.ref("oci", tag)
        p = stores.skopeo_run(sk, "copy", "--quiet", src, cs_ref(sk, stores.driver, name))
        try:
            s.import_image(src, names=[name])
        except (errors.InvalidReferenceError, errors.DigestMismatchError) as e:
            assert p.returncode != 0, (name, e)
            assert p.stderr.decode().rstrip().endswith(f"{e}".replace('"', '\\"') + '"'), name
        else:
            assert p.returncode == 0, (name, p.stderr)
        assert [x.to_json() for x in s.images()] == stores.go_json(sk, "images", "-j"), name
    (image,) = s.images()
    assert "docker.io/library/myimg:latest" in image.names
    assert f"docker.io/library/myimg@{test}" in image.names


@pytest.mark.parametrize("driver", ["vfs"])
def test_names_from_the_source_are_normalised(stores: Stores, images: Images) -> None:
    """Without names the source's tag is the name, taken as a given one would be."""
    s = stores.open(stores.roots("ours"))
    assert s.import_image(images.ref("oci")).names == ("docker.io/library/test:1",)
    assert s.import_image(images.ref("docker-archive")).names == (NAME, "docker.io/library/test:1")


def test_import_cli_under_two_manifests_matches_skopeo(
    short_dir: Path, driver: str, images: Images
) -> None:
    """``import-image --name myimg`` and skopeo into twin stores, the image twice under two
    manifests: the same names, big data, ``digest`` and metadata (c/image replaces it: only
    the last manifest's ``signatures-sizes``); podman lists ours as docker.io/library/myimg
    latest."""
    stores = Stores(short_dir, driver, images.policy)
    try:
        sk, ours = stores.roots("sk"), stores.roots("ou")
        cli = ours_argv(ours, driver, "import-image")
        for tag, name in ((TAG, "myimg"), (INDENTED_TAG, "myimg"), (INDENTED_TAG, "myimg:2")):
            src = images.ref("oci", tag)
            stores.skopeo_import(sk, src, name)
            run([*cli, "--name", name, src])
            (want,) = stores.go_json(sk, "images", "-j")
            assert stores.go_json(ours, "images", "-j") == [want], (tag, name)
            for key in want["big-data-names"]:
                theirs = stores.go(sk, "get-image-data", want["id"], key).stdout
                assert stores.go(ours, "get-image-data", want["id"], key).stdout == theirs, key
        manifest = images.built[INDENTED_TAG].manifest_digest
        assert json.loads(want["metadata"]) == {"signatures-sizes": {manifest: []}}
        assert want["digest"] == images.test.manifest_digest
        assert want["names"] == ["docker.io/library/myimg:2", "docker.io/library/myimg:latest"]
        listed = podman(ours, driver, "images", "--format", "{{.Repository}} {{.Tag}}").stdout
        assert sorted(listed.decode().splitlines()) == [
            "docker.io/library/myimg 2",
            "docker.io/library/myimg latest",
        ]
    finally:
        stores.close()


def layer_home(s: cs.Store, layer_id: str) -> Path:
    graph = Path(s.graph_root())
    if s.graph_driver_name() == "vfs":
        return graph / "vfs" / "dir" / layer_id
    return graph / "overlay" / layer_id / "diff"


# -- 3. refused: nothing left behind ------------------------------------------------------


def corrupt_layout(images: Images, dest: Path, case: str) -> str:
    """A copy of the layout with ``test:1`` broken as ``case`` says; returns its reference."""
    shutil.copytree(images.layout, dest)
    layout = Layout(dest)
    test = images.test
    if case in ("blob-digest", "archive-blob-digest"):
        # The gzip header's MTIME field: the stream still decompresses to the right tar,
        # only the blob's digest is wrong.
        path = layout.blob(sha256(test.blobs[1]))
        data = bytearray(path.read_bytes())
        data[4] ^= 0x01
        path.write_bytes(bytes(data))
    elif case == "blob-flip":
        # A byte in the middle of the base layer's deflate data (the index is kept).
        path = layout.blob(sha256(test.blobs[0]))
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0x55
        path.write_bytes(bytes(data))
    elif case == "diff-id":
        wrong = [test.diff_ids[0], sha256(b"not the upper layer")]
        layout.add_image(TAG, test.tars, diff_ids=wrong)
    elif case == "truncated":
        blobs = [test.blobs[0], test.blobs[1][: len(test.blobs[1]) // 2]]
        config = test.config
        layout.put(config)
        layout.tag(TAG, layout.put_manifest(config, blobs))
    else:
        raise AssertionError(case)
    if case.startswith("archive-"):
        tar_directory(dest, dest.with_suffix(".tar"))
        return f"oci-archive:{dest.with_suffix('.tar')}:{TAG}"
    return f"oci:{dest}:{TAG}"


@pytest.mark.parametrize(
    ("case", "error"),
    [
        ("blob-digest", errors.DigestMismatchError),
        # skopeo says "gzip: invalid checksum" here: either error is clear.
        ("blob-flip", (errors.DigestMismatchError, errors.ArchiveError)),
        ("diff-id", errors.DigestMismatchError),
        ("truncated", errors.ArchiveError),
        ("archive-blob-digest", errors.DigestMismatchError),
    ],
)
def test_refused_leaves_nothing(
    stores: Stores, images: Images, tmp_path: Path, case: str, error: Any
) -> None:
    ref = corrupt_layout(images, tmp_path / "bad", case)
    r = stores.roots("ours")
    s = stores.open(r)
    assert leftovers(r, stores.driver) == {}
    finished: set[str] = set()
    with pytest.raises(error):
        s.import_image(ref, names=[NAME], progress=lambda p: finished.update(p.finished))
    if case != "blob-flip":
        # The base layer was complete before the upper one failed: it was taken out again.
        assert sha256(images.test.blobs[0]) in finished
    assert s.layers() == []
    assert s.images() == []
    assert leftovers(r, stores.driver) == {}
    assert (stores.go_json(r, "layers", "-j") or []) == []
    assert (stores.go_json(r, "images", "-j") or []) == []
    if case != "diff-id":  # skopeo 1.9 does not check DiffIDs against the config
        sk = stores.roots("skopeo")
        with pytest.raises(AssertionError, match="failed"):
            stores.skopeo_import(sk, ref, NAME)
    # The store is still usable: the good image imports.
    s.import_image(images.ref("oci"), names=[NAME])
    assert [x.id for x in s.layers()] == images.test.layer_ids


@pytest.mark.parametrize("driver", ["vfs"])
def test_unknown_tag_and_source(stores: Stores, images: Images, tmp_path: Path) -> None:
    s = stores.open(stores.roots("ours"))
    with pytest.raises(errors.ImageUnknownError):
        s.import_image(f"oci:{images.layout}:no-such-tag")
    with pytest.raises(ValueError, match="oci:DIR"):
        s.import_image(f"dir:{images.layout}")
    # Two images in the layout and no tag: which one is meant is not guessed.
    with pytest.raises(errors.StorageError):
        s.import_image(f"oci:{images.layout}")
    assert s.layers() == [] and s.images() == []
    assert leftovers(stores.roots("ours"), "vfs") == {}


# -- 4. podman and skopeo use our image ---------------------------------------------------


def umoci(*args: str) -> subprocess.CompletedProcess[bytes]:
    require(UMOCI)
    return run([UMOCI, *args])


def test_podman_lists_ours(short_dir: Path, driver: str, images: Images) -> None:
    stores = Stores(short_dir, driver, images.policy)
    try:
        r = stores.roots("s")
        s = stores.open(r)
        image = s.import_image(images.ref("oci"), names=[NAME])
        listed = json.loads(podman(r, driver, "images", "--format", "json").stdout)
        assert [(x["Id"], x["Names"]) for x in listed] == [(image.id, [NAME])]
        assert listed[0]["Digest"] == images.test.manifest_digest
        # podman reads the config through the image (history, environment).
        history = json.loads(podman(r, driver, "history", "--format", "json", NAME).stdout)
        assert len(history) == 2
        inspected = json.loads(podman(r, driver, "image", "inspect", NAME).stdout)
        assert inspected[0]["Config"]["Env"] == ["PATH=/bin"]
        assert inspected[0]["RootFS"]["Layers"] == images.test.diff_ids
        # podman uses it: a container on the image, mounted, shows the flattened layers
        # (running one is not possible in this VM: crun's setrlimit is refused).
        podman(r, driver, "create", "--name", "c1", NAME, "/bin/sh")
        mnt = Path(podman(r, driver, "mount", "c1").stdout.decode().strip())
        try:
            assert (mnt / "etc" / "hostname").read_bytes() == b"upper\n"
            assert sorted(os.listdir(mnt / "opt" / "app")) == ["new.txt"]
            assert not (mnt / "etc" / "to-delete.txt").exists()
            assert os.getxattr(mnt / "etc" / "hostname", "user.y") == b"why"
        finally:
            podman(r, driver, "unmount", "c1")
        podman(r, driver, "rm", "c1")
        # ... and removes it: our store then holds nothing.
        podman(r, driver, "rmi", NAME)
        assert s.images() == []
        assert s.layers() == []
    finally:
        stores.close()


def test_skopeo_copies_ours_out(stores: Stores, images: Images, tmp_path: Path) -> None:
    r = stores.roots("ours")
    s = stores.open(r)
    s.import_image(images.ref("oci"), names=[NAME])
    out = tmp_path / "out"
    stores.skopeo(r, "copy", "--quiet", cs_ref(r, stores.driver, NAME), f"oci:{out}:t")
    index = json.loads((out / "index.json").read_bytes())
    (desc,) = index["manifests"]
    assert desc["annotations"][REF_NAME] == "t"
    manifest = json.loads(Layout(out).blob(desc["digest"]).read_bytes())
    config = json.loads(Layout(out).blob(manifest["config"]["digest"]).read_bytes())
    assert config["rootfs"]["diff_ids"] == images.test.diff_ids
    assert Layout(out).blob(manifest["config"]["digest"]).read_bytes() == images.test.config
    # The layers skopeo read from our store are the original tars (uncompressed or not).
    for entry, tar in zip(manifest["layers"], images.test.tars, strict=True):
        blob = Layout(out).blob(entry["digest"]).read_bytes()
        assert sha256(blob) == entry["digest"]
        assert (gzip.decompress(blob) if entry["mediaType"].endswith("gzip") else blob) == tar
    inspected = json.loads(stores.skopeo(r, "inspect", cs_ref(r, stores.driver, NAME)).stdout)
    assert inspected["Digest"] == images.test.manifest_digest
    assert inspected["Layers"] == [sha256(b) for b in images.test.blobs]


# -- 5. export and unpack -----------------------------------------------------------------


def test_export_image_read_by_umoci_and_skopeo(
    stores: Stores, images: Images, tmp_path: Path
) -> None:
    s = stores.open(stores.roots("ours"))
    s.import_image(images.ref("oci"), names=[NAME])
    out = tmp_path / "out"
    digest = s.export_image(NAME, f"oci:{out}:exported")
    listed = umoci("ls", "--layout", str(out)).stdout.decode().split()
    assert listed == ["exported"]
    inspected = json.loads(stores.skopeo(None, "inspect", f"oci:{out}:exported").stdout)
    assert inspected["Digest"] == digest
    # Uncompressed layers, reproduced byte for byte: each blob's digest is its DiffID.
    assert inspected["Layers"] == images.test.diff_ids
    layout = Layout(out)
    index = json.loads((out / "index.json").read_bytes())
    assert [(m["digest"], m["annotations"][REF_NAME]) for m in index["manifests"]] == [
        (digest, "exported")
    ]
    manifest_bytes = layout.blob(digest).read_bytes()
    assert sha256(manifest_bytes) == digest
    manifest = json.loads(manifest_bytes)
    assert manifest["mediaType"] == MANIFEST_TYPE
    assert layout.blob(manifest["config"]["digest"]).read_bytes() == images.test.config
    for entry, tar in zip(manifest["layers"], images.test.tars, strict=True):
        blob = layout.blob(entry["digest"]).read_bytes()
        assert blob == tar
        assert entry["size"] == len(tar)
    # A second tag in the same layout; skopeo imports the export as the same image.
    s.export_image(NAME, f"oci:{out}:again")
    assert sorted(umoci("ls", "--layout", str(out)).stdout.decode().split()) == [
        "again",
        "exported",
    ]
    sk = stores.roots("skopeo")
    stores.skopeo_import(sk, f"oci:{out}:again", NAME)
    (img,) = stores.go_json(sk, "images", "-j")
    assert img["id"] == images.test.image_id
    assert [x["id"] for x in stores.go_json(sk, "layers", "-j")] == images.test.layer_ids


Walk = dict[str, tuple[Any, ...]]


def walk(root: Path) -> Walk:
    """Every entry below root: type, permission bits, owner, size, content hash, link
    target, link count and user xattrs."""
    out: Walk = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            p = Path(dirpath) / name
            st = p.lstat()
            kind = stat.S_IFMT(st.st_mode)
            content = target = ""
            size = nlink = 0
            if stat.S_ISREG(st.st_mode):
                content = hashlib.sha256(p.read_bytes()).hexdigest()
                size, nlink = st.st_size, st.st_nlink
            elif stat.S_ISLNK(st.st_mode):
                target = os.readlink(p)
            xattrs = sorted(
                (k, os.getxattr(p, k, follow_symlinks=False))
                for k in os.listxattr(p, follow_symlinks=False)
                if k.startswith("user.")
            )
            out[str(p.relative_to(root))] = (
                kind,
                stat.S_IMODE(st.st_mode),
                st.st_uid,
                st.st_gid,
                size,
                content,
                target,
                nlink,
                xattrs,
            )
    return out


def test_unpack_image_matches_umoci(stores: Stores, images: Images, tmp_path: Path) -> None:
    s = stores.open(stores.roots("ours"))
    s.import_image(images.ref("oci"), names=[NAME])
    ours = tmp_path / "ours-rootfs"
    s.unpack_image(NAME, ours)
    theirs = tmp_path / "umoci-rootfs"
    umoci("raw", "unpack", "--image", f"{images.layout}:{TAG}", str(theirs))
    got, want = walk(ours), walk(theirs)
    assert got == want
    # The whiteout, the opaque directory and the upper layer's files are there.
    assert "etc/to-delete.txt" not in got
    assert sorted(k for k in got if k.startswith("opt/app/")) == ["opt/app/new.txt"]
    assert got["bin/tool"][1] == 0o4755
    assert got["home/user/notes.txt"][2:4] == (1000, 1001)
    assert got["etc/hostname"][-1] == [("user.fixture", b"second"), ("user.y", b"why")]
    assert got["srv/data.txt"][-2] == 2


# -- 6. progress --------------------------------------------------------------------------


def test_progress_reaches_total(stores: Stores, images: Images) -> None:
    s = stores.open(stores.roots("ours"))
    seen: list[tuple[int, int, dict[str, int], int, dict[str, int]]] = []

    def progress(p: ImageProgress) -> None:
        assert isinstance(p, ImageProgress)
        seen.append((p.done_bytes, p.total_bytes, dict(p.sizes), len(p.finished), dict(p.done)))

    s.import_image(images.ref("oci"), names=[NAME], progress=progress)
    sizes = {sha256(b): len(b) for b in images.test.blobs}
    total = sum(sizes.values())
    assert seen, "progress was never called"
    assert all(t == total and sz == sizes for _d, t, sz, _f, _l in seen)
    done = [x[0] for x in seen]
    assert done == sorted(done)
    # One bar per layer (bytes read of each blob) and the total, both complete at the end.
    assert done[-1] == total
    assert seen[-1][4] == sizes
    assert seen[-1][3] == len(sizes)


def test_progress_when_every_layer_is_reused(stores: Stores, images: Images) -> None:
    """Importing an image again reads no blob; the callback still hears that it is done."""
    s = stores.open(stores.roots("ours"))
    s.import_image(images.ref("oci"), names=[NAME])
    seen: list[tuple[int, int]] = []
    s.import_image(images.ref("oci"), progress=lambda p: seen.append((p.done_bytes, p.total_bytes)))
    total = sum(len(b) for b in images.test.blobs)
    assert seen, "progress was never called when every layer was reused"
    assert seen[-1] == (total, total)
