"""Interop with the Go tools: skopeo, Debian's containers-storage CLI and podman share stores
with our Store, in both directions.

A small OCI image (two gzip layers built here with tarfile: PAX xattrs, setuid, symlinks, a
hard link, a non-root owner, a whiteout and an opaque directory) is built once per module.
Every test makes its own store under ``tmp_path`` and leaves nothing mounted.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import hashlib
import io
import json
import os
import shutil
import stat
import subprocess
import tarfile
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import containers_storage as cs
import pytest
from containers_storage._struct import replace

from tests.helpers import HANG_GUARD, SKOPEO
from tests.store.helpers import (
    CONFIG_TYPE,
    CREATED,
    MANIFEST_TYPE,
    PODMAN,
    Layout,
    Roots,
    chain_ids,
    compact,
    cs_ref,
    go,
    go_json,
    podman,
    podman_args,
    put_blob,
    run,
    tool_env,
    write_policy,
)
from tests.tars import MTIME, Entry, d, f, gz, hard, hexpart, make_tar, sha256, sym

pytestmark = [
    pytest.mark.root,
    pytest.mark.gotools,
    pytest.mark.usefixtures("nothing_left_mounted"),
]

TAG = "test:1"
NAME = "localhost/test:1"


# -- tar building -------------------------------------------------------------------------


LAYER1 = (
    d("bin/"),
    f("bin/tool", b"#!/bin/sh\necho tool\n", mode=0o4755),
    sym("bin/sh", "tool"),
    d("etc/"),
    f("etc/hostname", b"base\n", xattrs=(("user.x", "hello"),)),
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
    d("tmp/", mode=0o1777),
)

LAYER2 = (
    d("etc/"),
    f("etc/.wh.to-delete.txt", b""),
    sym("etc/abs-link", "/etc/hostname"),
    f("etc/hostname", b"layer2\n", xattrs=(("user.x", "second"), ("user.y", "why"))),
    d("opt/"),
    d("opt/app/"),
    f("opt/app/.wh..wh..opq", b""),
    f("opt/app/new.txt", b"new\n"),
    d("srv/"),
    f("srv/data.txt", b"shared data\n"),
    hard("srv/data-hardlink.txt", "srv/data.txt"),
    sym("srv/sym-link", "data.txt"),
)


# -- expected trees and tree walks --------------------------------------------------------

Tree = dict[str, tuple[Any, ...]]


def expected_tree(*layers: Sequence[Entry]) -> Tree:
    """The root file system the layers give, OCI whiteouts applied, in :func:`walk`'s form."""
    nodes: dict[str, tuple[Entry, int]] = {}  # path -> (entry, inode group)
    groups = 0
    for entries in layers:
        lower = set(nodes)
        for e in entries:
            name = e.name.rstrip("/")
            parent, _, base = name.rpartition("/")
            if base == ".wh..wh..opq":
                for p in [p for p in nodes if p.startswith(parent + "/") and p in lower]:
                    del nodes[p]
                continue
            if base.startswith(".wh."):
                victim = (parent + "/" if parent else "") + base[4:]
                for p in [p for p in nodes if p == victim or p.startswith(victim + "/")]:
                    del nodes[p]
                continue
            lower.discard(name)
            if e.kind == "hardlink":
                nodes[name] = nodes[e.target]
            else:
                groups += 1
                nodes[name] = (e, groups)
    out: Tree = {}
    for path, (e, group) in nodes.items():
        nlink = sum(1 for _e, g in nodes.values() if g == group)
        if e.kind == "dir":
            out[path] = ("dir", e.mode, e.uid, e.gid, 0, "", 0, (), MTIME)
        elif e.kind == "symlink":
            out[path] = ("symlink", 0o777, e.uid, e.gid, 0, e.target, 0, (), MTIME)
        else:
            xattrs = tuple(sorted((k, v.encode()) for k, v in e.xattrs))
            digest = hashlib.sha256(e.data).hexdigest()
            out[path] = ("file", e.mode, e.uid, e.gid, len(e.data), digest, nlink, xattrs, MTIME)
    return out


def walk(root: str | os.PathLike[str], *, with_root: bool = False) -> Tree:
    """Relative path -> (kind, permission bits, uid, gid, size, content hash or symlink
    target, link count, user.* xattrs, mtime) of everything under ``root``."""
    base = os.fspath(root)
    out: Tree = {}
    paths = ["."] if with_root else []
    for dirpath, dirnames, filenames in os.walk(base):
        for name in dirnames + filenames:
            paths.append(os.path.relpath(os.path.join(dirpath, name), base))
    for rel in paths:
        full = os.path.join(base, rel)
        st = os.lstat(full)
        xattrs = tuple(
            sorted(
                (k, os.getxattr(full, k, follow_symlinks=False))
                for k in os.listxattr(full, follow_symlinks=False)
                if k.startswith("user.")
            )
        )
        perm = stat.S_IMODE(st.st_mode)
        mtime = st.st_mtime_ns // 1_000_000_000
        if stat.S_ISDIR(st.st_mode):
            out[rel] = ("dir", perm, st.st_uid, st.st_gid, 0, "", 0, xattrs, mtime)
        elif stat.S_ISLNK(st.st_mode):
            target = os.readlink(full)
            out[rel] = ("symlink", perm, st.st_uid, st.st_gid, 0, target, 0, xattrs, mtime)
        elif stat.S_ISREG(st.st_mode):
            digest = hashlib.sha256(Path(full).read_bytes()).hexdigest()
            out[rel] = (
                "file",
                perm,
                st.st_uid,
                st.st_gid,
                st.st_size,
                digest,
                st.st_nlink,
                xattrs,
                mtime,
            )
        else:
            out[rel] = (oct(stat.S_IFMT(st.st_mode)), perm, st.st_uid, st.st_gid, 0, "", 0)
    return out


# -- the OCI image ------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class OciImage:
    """An OCI layout holding ``test:1`` and everything needed to check copies of it."""

    layout: Path
    policy: Path
    tars: tuple[bytes, ...]
    blobs: tuple[bytes, ...]
    config: bytes
    manifest: bytes

    @property
    def ref(self) -> str:
        return f"oci:{self.layout}:{TAG}"

    @property
    def diff_ids(self) -> list[str]:
        return [sha256(t) for t in self.tars]

    @property
    def blob_digests(self) -> list[str]:
        return [sha256(b) for b in self.blobs]

    @property
    def config_digest(self) -> str:
        return sha256(self.config)

    @property
    def manifest_digest(self) -> str:
        return sha256(self.manifest)

    @property
    def image_id(self) -> str:
        return hexpart(self.config_digest)

    @property
    def layer_ids(self) -> list[str]:
        return chain_ids(self.diff_ids)

    @property
    def big_data_names(self) -> list[str]:
        """The image big-data keys skopeo writes, in its order."""
        md = self.manifest_digest
        return [self.config_digest, f"manifest-{md}", "manifest", f"signature-{hexpart(md)}"]


def build_oci_layout(layout: Path) -> tuple[tuple[bytes, ...], tuple[bytes, ...], bytes, bytes]:
    built = Layout(layout).add_image(TAG, [make_tar(LAYER1), make_tar(LAYER2)])
    return tuple(built.tars), tuple(built.blobs), built.config, built.manifest


@pytest.fixture(scope="module")
def oci(tmp_path_factory: pytest.TempPathFactory) -> OciImage:
    base = tmp_path_factory.mktemp("oci")
    layout = base / "layout"
    tars, blobs, config, manifest = build_oci_layout(layout)
    policy = write_policy(base / "policy.json")
    return OciImage(layout, policy, tars, blobs, config, manifest)


# -- running the tools --------------------------------------------------------------------


def skopeo(
    oci: OciImage, roots: Roots, driver: str, *args: str
) -> subprocess.CompletedProcess[bytes]:
    return run([SKOPEO, "--policy", str(oci.policy), *args], tool_env(roots, driver))


def skopeo_import(oci: OciImage, roots: Roots, driver: str) -> None:
    skopeo(oci, roots, driver, "copy", "--quiet", oci.ref, cs_ref(roots, driver, NAME))


def podman_json(roots: Roots, driver: str, *args: str) -> Any:
    return json.loads(podman(roots, driver, *args, "--format", "json").stdout)


def go_text(roots: Roots, driver: str, *args: str) -> str:
    return go(roots, driver, *args).stdout.decode()


def go_bytes(roots: Roots, driver: str, *args: str) -> bytes:
    return go(roots, driver, *args).stdout


def go_mounted(roots: Roots, driver: str, ref: str) -> bool:
    """What ``containers-storage mounted REF`` says (``REF mounted`` or nothing)."""
    out = go_text(roots, driver, "mounted", ref)
    assert out in ("", f"{ref} mounted\n"), out
    return out != ""


def mount_counts(roots: Roots, driver: str) -> dict[str, int]:
    """Layer ID -> mount count from ``RUNROOT/DRV-layers/mountpoints.json``."""
    path = roots[1] / f"{driver}-layers" / "mountpoints.json"
    if not path.exists() or not path.read_bytes().strip():
        return {}
    return {m["id"]: m["count"] for m in json.loads(path.read_bytes()) or []}


@pytest.fixture
def open_store() -> Iterator[Callable[[Roots, str], cs.Store]]:
    """Open Stores on roots; each is shut down (forcing unmounts) at the end, and Go's
    ``shutdown`` then drops the driver's leftovers (the overlay home bind mount)."""
    opened: list[tuple[cs.Store, Roots, str]] = []

    def _open(r: Roots, drv: str) -> cs.Store:
        s = cs.Store(r[0], r[1], drv)
        opened.append((s, r, drv))
        return s

    yield _open
    for s, r, drv in opened:
        with contextlib.suppress(cs.StorageError):
            s.shutdown(True)
        go(r, drv, "shutdown", check=False)


def diff_bytes(s: cs.Store, layer: str, compression: str | None = "none") -> bytes:
    return b"".join(s.diff(None, layer, compression=compression))


def tar_members(data: bytes) -> list[tuple[Any, ...]]:
    """The members of a tar as (name, type, permission bits, uid, gid, size, content hash,
    link target, mtime, xattr records). Not compared: user and group names (Go looks them up
    in /etc/passwd), the file-type bits Go's tar writer puts in the mode field, and for
    whiteouts the time (when the diff was made) and the link target (Go leaves a stale one
    on a whiteout made from a kernel whiteout that shares its inode with another)."""
    out = []
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for m in tar:
            content = tar.extractfile(m) if m.isreg() else None
            whiteout = os.path.basename(m.name).startswith(".wh.")
            out.append(
                (
                    m.name,
                    m.type,
                    m.mode & 0o7777,
                    m.uid,
                    m.gid,
                    m.size,
                    hashlib.sha256(content.read()).hexdigest() if content else "",
                    None if whiteout else m.linkname,
                    None if whiteout else m.mtime,
                    sorted((k, v) for k, v in m.pax_headers.items() if k.startswith("SCHILY.")),
                )
            )
    return out


def check_big_data(s: cs.Store, roots: Roots, driver: str) -> None:
    """Every big-data item of every image, container and layer reads the same both ways."""
    for img in s.images():
        listed = go_json(roots, driver, "list-image-data", "-j", img.id) or []  # Go: null
        assert s.list_image_big_data(img.id) == listed
        for key in img.big_data_names:
            data = s.image_big_data(img.id, key)
            assert data == go_bytes(roots, driver, "get-image-data", img.id, key), key
            digest = s.image_big_data_digest(img.id, key)
            assert digest == img.big_data_digests[key]
            assert go_text(roots, driver, "get-image-data-digest", img.id, key) == digest + "\n"
            assert s.image_big_data_size(img.id, key) == len(data) == img.big_data_sizes[key]
    for ctr in s.containers():
        listed = go_json(roots, driver, "list-container-data", "-j", ctr.id) or []
        assert s.list_container_big_data(ctr.id) == listed
        for key in ctr.big_data_names:
            data = s.container_big_data(ctr.id, key)
            assert data == go_bytes(roots, driver, "get-container-data", ctr.id, key), key
            digest = s.container_big_data_digest(ctr.id, key)
            assert digest == sha256(data) == ctr.big_data_digests[key]
            assert go_text(roots, driver, "get-container-data-digest", ctr.id, key) == digest + "\n"
    for layer in s.layers():
        listed = go_json(roots, driver, "list-layer-data", "-j", layer.id) or []
        assert s.list_layer_big_data(layer.id) == list(layer.big_data_names) == listed
        for key in layer.big_data_names:
            data = s.layer_big_data(layer.id, key)
            assert data == go_bytes(roots, driver, "get-layer-data", layer.id, key), key


def check_records(s: cs.Store, roots: Roots, driver: str) -> None:
    """Our records are, object by object, what Go's ``-j`` listings print."""
    assert [x.to_json() for x in s.layers()] == go_json(roots, driver, "layers", "-j")
    assert [x.to_json() for x in s.images()] == go_json(roots, driver, "images", "-j")
    ctrs = go_json(roots, driver, "containers", "-j") or []  # Go: null without containers
    assert [x.to_json() for x in s.containers()] == ctrs
    for kind, records in (("layer", s.layers()), ("image", s.images())):
        for rec in records:
            assert go_json(roots, driver, kind, "-j", rec.id) == [rec.to_json()]
    for ctr in s.containers():
        assert go_json(roots, driver, "container", "-j", ctr.id) == [ctr.to_json()]


def check_names_and_metadata(s: cs.Store, roots: Roots, driver: str) -> None:
    every: list[Any] = [*s.layers(), *s.images(), *s.containers()]
    for rec in every:
        listed = go_json(roots, driver, "get-names", "-j", rec.id) or []  # Go: null
        assert s.names(rec.id) == list(rec.names) == listed
        assert s.metadata(rec.id) == rec.metadata
        assert go_text(roots, driver, "metadata", "-q", rec.id) == rec.metadata + "\n"
        for name in rec.names:
            assert go_text(roots, driver, "exists", name) == f"{name}: true\n"
            assert s.exists(name)


# -- 1. skopeo -> ours --------------------------------------------------------------------


@pytest.mark.skopeo
def test_skopeo_import_read_by_us(
    oci: OciImage,
    roots: Roots,
    driver: str,
    open_store: Callable[[Roots, str], cs.Store],
) -> None:
    skopeo_import(oci, roots, driver)
    s = open_store(roots, driver)

    # Layers: Go's listing, object for object, and what c/image must have written.
    layers = s.layers()
    assert [x.to_json() for x in layers] == go_json(roots, driver, "layers", "-j")
    assert [x.id for x in layers] == oci.layer_ids
    assert [x.parent for x in layers] == ["", oci.layer_ids[0]]
    assert [x.compressed_diff_digest for x in layers] == oci.blob_digests
    assert [x.compressed_size for x in layers] == [len(b) for b in oci.blobs]
    assert [x.diff_digest for x in layers] == oci.diff_ids
    assert [x.diff_size for x in layers] == [len(t) for t in oci.tars]
    assert [x.compression for x in layers] == [2, 2]
    assert [x.uidset for x in layers] == [(0, 1000), (0,)]
    assert [x.gidset for x in layers] == [(0, 1001), (0,)]
    assert [x.names for x in layers] == [(), ()]
    assert s.layers_by_uncompressed_digest(oci.diff_ids[1]) == [layers[1]]
    assert s.layers_by_compressed_digest(oci.blob_digests[0]) == [layers[0]]

    # The image.
    images = s.images()
    assert [x.to_json() for x in images] == go_json(roots, driver, "images", "-j")
    (img,) = images
    assert img.id == oci.image_id
    assert img.digest == oci.manifest_digest
    assert img.digests == (oci.manifest_digest,)
    assert img.names == img.names_history == (NAME,)
    assert img.layer == oci.layer_ids[-1]
    assert json.loads(img.metadata) == {"signatures-sizes": {oci.manifest_digest: []}}
    assert list(img.big_data_names) == oci.big_data_names
    assert img.created == CREATED
    assert s.image(NAME) == img
    assert [x.id for x in s.images_by_digest(oci.manifest_digest)] == [img.id]
    assert go_text(roots, driver, "images-by-digest", "-q", oci.manifest_digest) == img.id + "\n"
    check_big_data(s, roots, driver)
    assert s.image_big_data(img.id, oci.config_digest) == oci.config
    assert s.image_big_data(img.id, "manifest") == oci.manifest
    assert s.image_big_data(img.id, f"manifest-{oci.manifest_digest}") == oci.manifest
    size_line = go_text(roots, driver, "image", img.id).splitlines()[-1]
    assert size_line == f"Size: {s.image_size(img.id)}"

    # Diffs: the exact tars back (from tar-split), by default gzip as applied, and Go agrees.
    for layer, tar in zip(layers, oci.tars, strict=True):
        ours = diff_bytes(s, layer.id)
        assert sha256(ours) == layer.diff_digest
        assert ours == tar
        assert gzip.decompress(diff_bytes(s, layer.id, None)) == tar
        assert go_bytes(roots, driver, "diff", "-u", layer.id) == ours
        assert s.diff_size(None, layer.id) == int(go_text(roots, driver, "diffsize", layer.id))

    # Mounts: Go and we mount each layer, counts are shared, the trees are the same.
    for layer, want in zip(
        layers, (expected_tree(LAYER1), expected_tree(LAYER1, LAYER2)), strict=True
    ):
        go_path = go_text(roots, driver, "mount", layer.id).strip()
        try:
            our_path = s.mount(layer.id)
            try:
                assert our_path == go_path
                assert s.mounted(layer.id) == 2
                assert s.layer(layer.id).mount_count == 2
                assert mount_counts(roots, driver) == {layer.id: 2}
                assert go_mounted(roots, driver, layer.id)
                tree = walk(our_path, with_root=True)
                assert tree == walk(go_path, with_root=True)
                del tree["."]
                assert tree == want
            finally:
                assert s.unmount(layer.id) is True
        finally:
            go(roots, driver, "unmount", layer.id)
        assert s.mounted(layer.id) == 0
        assert not go_mounted(roots, driver, layer.id)
        assert mount_counts(roots, driver) == {}


# -- 2. Go CLI -> ours --------------------------------------------------------------------

TAR_A = (
    d("a/"),
    f("a/one.txt", b"one\n"),
    f("a/two.txt", b"two\n", mode=0o600, uid=7, gid=8),
    f("tool", b"#!/bin/sh\n", mode=0o2755, xattrs=(("user.a", "alpha"),)),
)
TAR_B = (
    d("a/"),
    f("a/.wh.one.txt", b""),
    d("b/", uid=1234, gid=5678),
    f("b/new.txt", b"new\n", uid=1234, gid=5678),
    sym("b/link", "../a/two.txt"),
)


def test_go_cli_store_read_by_us(
    tmp_path: Path,
    roots: Roots,
    driver: str,
    open_store: Callable[[Roots, str], cs.Store],
) -> None:
    la, lb, img, c1, c2 = "a1" * 32, "b2" * 32, "e5" * 32, "0a" * 32, "0b" * 32
    tar_a, tar_b = make_tar(TAR_A), make_tar(TAR_B)
    files = {
        "a.tar": tar_a,
        "b.tar.gz": gz(tar_b),
        "note": b"layer note\n",
        "custom": b'{"custom":"data"}\n',
        "odd": b"odd key data",
        "manifest": b'{"schemaVersion":2}',
        "config": b'{"ociVersion":"1.0.2"}',
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)

    def g(*args: str) -> str:
        return go_text(roots, driver, *args)

    assert g("create-layer", "--id", la, "-n", "layer-a") == f"{la}\n\tlayer-a\n"
    assert g("applydiff", "-f", str(tmp_path / "a.tar"), la) == ""
    g("import-layer", "--id", lb, "-n", "layer-b", "-f", str(tmp_path / "b.tar.gz"), la)
    g("set-metadata", "-m", "layer-a metadata", la)
    g("set-layer-data", "-f", str(tmp_path / "note"), lb, "layer-note")
    g("create-image", "--id", img, "-n", "localhost/cli:1", "-m", '{"origin":"cli"}', lb)
    g("set-image-data", "-f", str(tmp_path / "custom"), img, "custom-key")
    g("set-image-data", "-f", str(tmp_path / "odd"), img, "Key/With:Odd+Chars")
    g("set-image-data", "-f", str(tmp_path / "manifest"), img, "manifest")
    g("add-names", "-n", "cli-extra-name", "-n", "localhost/cli:latest", img)
    g("create-container", "--id", c1, "-n", "ctr1", "--volatile", "-m", "ctr meta", img)
    g("create-container", "--id", c2, "-n", "ctr2", img)
    g("set-container-data", "-f", str(tmp_path / "config"), c1, "config.json")
    g("set-names", "-n", "ctr1", "-n", "ctr1-alias", c1)
    g("set-names", "-n", "layer-b", "-n", "layer-b-renamed", lb)
    g("set-metadata", "-m", '{"ctr":"meta2"}', c1)
    c1_path = g("mount", c1).strip()
    g("mount", c1)
    la_path = g("mount", la).strip()
    try:
        s = open_store(roots, driver)
        check_records(s, roots, driver)
        check_names_and_metadata(s, roots, driver)
        check_big_data(s, roots, driver)

        # What the Go commands set, as we see it.
        assert s.layer("layer-b-renamed").id == lb
        assert s.names(lb) == ["layer-b", "layer-b-renamed"]
        assert s.metadata("layer-a") == "layer-a metadata"
        assert s.layer_big_data(lb, "layer-note") == files["note"]
        a, b = s.layer(la), s.layer(lb)
        assert (a.diff_digest, a.compressed_diff_digest, a.compression) == (
            sha256(tar_a),
            sha256(tar_a),
            0,
        )
        assert (b.diff_digest, b.compressed_diff_digest, b.compression) == (
            sha256(tar_b),
            sha256(files["b.tar.gz"]),
            2,
        )
        assert (a.uidset, a.gidset, b.uidset, b.gidset) == ((0, 7), (0, 8), (0, 1234), (0, 5678))
        image = s.image("localhost/cli:latest")
        assert image.id == img
        assert image.names == ("localhost/cli:1", "cli-extra-name", "localhost/cli:latest")
        assert image.names_history == ("localhost/cli:latest", "cli-extra-name", "localhost/cli:1")
        assert image.digest == sha256(files["manifest"])
        assert s.image_big_data(img, "Key/With:Odd+Chars") == files["odd"]
        ctr = s.container("ctr1-alias")
        assert ctr.id == c1 and ctr.volatile and ctr.image == img
        assert ctr.metadata == '{"ctr":"meta2"}'
        assert s.container_big_data(c1, "config.json") == files["config"]
        assert not s.container(c2).volatile
        assert s.layer(ctr.layer).parent == lb

        # Mount state written by Go.
        assert mount_counts(roots, driver) == {ctr.layer: 2, la: 1}
        assert (s.mounted(c1), s.mounted(ctr.layer), s.mounted(la), s.mounted(lb)) == (2, 2, 1, 0)
        assert s.layer(ctr.layer).mount_point == c1_path
        assert s.layer(la).mount_point == la_path
        assert (go_mounted(roots, driver, c1), go_mounted(roots, driver, lb)) == (True, False)

        # Diffs of Go-applied layers: the exact tars back.
        assert diff_bytes(s, la) == tar_a
        assert diff_bytes(s, lb) == tar_b
        assert gzip.decompress(diff_bytes(s, lb, None)) == tar_b
        assert {(c.path, int(c.kind)) for c in s.changes(None, lb)} == {
            (c["Path"], c["Kind"]) for c in go_json(roots, driver, "changes", "-j", lb)
        }
        want = expected_tree(TAR_A, TAR_B)
        assert walk(c1_path) == want

        # We undo Go's mounts.
        assert s.unmount(c1) is True
        assert go_mounted(roots, driver, c1)
        assert s.unmount(c1) is False
        assert s.unmount(la) is False
        assert mount_counts(roots, driver) == {}
        assert not go_mounted(roots, driver, c1)
        assert not go_mounted(roots, driver, la)
    finally:
        if mount_counts(roots, driver):
            go(roots, driver, "unmount", "-f", c1, check=False)
            go(roots, driver, "unmount", "-f", la, check=False)


# -- 3. ours -> Go CLI --------------------------------------------------------------------


def test_our_store_read_by_go(
    tmp_path: Path,
    roots: Roots,
    driver: str,
    open_store: Callable[[Roots, str], cs.Store],
) -> None:
    s = open_store(roots, driver)
    tar_a, tar_b = make_tar(TAR_A), make_tar(TAR_B)
    blob_a = gz(tar_a)
    config = b'{"rootfs":{"type":"layers"}}'
    manifest = b'{"schemaVersion":2,"mediaType":"' + MANIFEST_TYPE.encode() + b'"}'
    config_key = sha256(config)
    files = {
        "a.tar.gz": blob_a,
        "b.tar": tar_b,
        "note": b"a note\n",
        "config": config,
        "manifest": manifest,
        "odd": b"odd",
        "ctr-config": b'{"ociVersion":"1.0.2"}',
        "ctr-odd": b"",
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    layer_meta, image_meta = "our layer metadata \u2713 <&>", '{"ours":"<&>"}'
    image_data = [(config_key, "config"), ("manifest", "manifest"), ("Key/With:Odd+Chars", "odd")]
    ctr_data = [("config.json", "ctr-config"), ("Odd/Key:1", "ctr-odd")]

    la, size_a = s.put_layer(diff=io.BytesIO(blob_a), names=["ours-base"])
    assert size_a == sum(len(e.data) for e in TAR_A)
    lb, _ = s.put_layer(la.id, tmp_path / "b.tar", id="b2" * 32)
    s.set_metadata(la.id, layer_meta)
    s.add_names(la.id, ["ours-base-alias"])
    s.set_layer_big_data(lb.id, "layer-note", files["note"])
    img = s.create_image(
        lb.id,
        names=["localhost/ours:1", "ours-alias"],
        metadata=image_meta,
        created="2023-03-04T05:06:07Z",
    )
    for key, file in image_data:
        s.set_image_big_data(img.id, key, files[file])
    s.add_names(img.id, ["localhost/ours:latest"])
    ctr = s.create_container(img.id, names=["ours-ctr"], volatile=True, metadata="ctr meta")
    for key, file in ctr_data:
        s.set_container_big_data(ctr.id, key, files[file])
    plain = s.create_container(img.id, id="0c" * 32, names=["ours-plain"])

    # The same steps through the Go CLI, on a reference store with the same IDs, give the
    # same records (apart from creation times and the container layers' random IDs).
    ref = (tmp_path / "ref-root", tmp_path / "ref-run")

    def g(*args: str) -> str:
        return go_text(ref, driver, *args)

    g("import-layer", "--id", la.id, "-n", "ours-base", "-f", str(tmp_path / "a.tar.gz"))
    g("import-layer", "--id", lb.id, "-f", str(tmp_path / "b.tar"), la.id)
    g("set-metadata", "-m", layer_meta, la.id)
    g("add-names", "-n", "ours-base-alias", la.id)
    g("set-layer-data", "-f", str(tmp_path / "note"), lb.id, "layer-note")
    g(
        "create-image",
        "--id",
        img.id,
        "-n",
        "localhost/ours:1",
        "-n",
        "ours-alias",
        "-m",
        image_meta,
        lb.id,
    )
    for key, file in image_data:
        g("set-image-data", "-f", str(tmp_path / file), img.id, key)
    g("add-names", "-n", "localhost/ours:latest", img.id)
    g("create-container", "--id", ctr.id, "-n", "ours-ctr", "--volatile", "-m", "ctr meta", img.id)
    for key, file in ctr_data:
        g("set-container-data", "-f", str(tmp_path / file), ctr.id, key)
    g("create-container", "--id", plain.id, "-n", "ours-plain", img.id)

    def comparable(kind: str, objs: list[dict[str, Any]], ctr_layers: set[str]) -> list[Any]:
        out = []
        for obj in objs:
            obj = {k: v for k, v in obj.items() if k != "created"}
            if kind == "layers" and obj["id"] in ctr_layers:
                obj["id"] = "<container layer>"
            if kind == "containers":
                obj["layer"] = "<container layer>"
            out.append(obj)
        return out

    ours_ctr_layers = {c.layer for c in s.containers()}
    ref_ctr_layers = {c["layer"] for c in go_json(ref, driver, "containers", "-j")}
    ours_now = {
        "layers": [x.to_json() for x in s.layers()],
        "images": [x.to_json() for x in s.images()],
        "containers": [x.to_json() for x in s.containers()],
    }
    for kind, objs in ours_now.items():
        assert comparable(kind, objs, ours_ctr_layers) == comparable(
            kind, go_json(ref, driver, kind, "-j"), ref_ctr_layers
        ), kind
    go(ref, driver, "shutdown")

    path = s.mount(ctr.id)
    try:
        la, lb, img, ctr = s.layer(la.id), s.layer(lb.id), s.image(img.id), s.container(ctr.id)
        assert (la.compression, la.compressed_diff_digest, la.diff_digest) == (
            2,
            sha256(blob_a),
            sha256(tar_a),
        )
        assert (lb.compression, lb.compressed_diff_digest) == (0, sha256(tar_b))
        assert img.digest == sha256(manifest)
        assert img.names == ("localhost/ours:1", "ours-alias", "localhost/ours:latest")
        assert img.names_history == ("localhost/ours:latest", "ours-alias", "localhost/ours:1")
        assert ctr.flags == {"MountLabel": "", "ProcessLabel": "", "Volatile": True}

        check_records(s, roots, driver)
        check_names_and_metadata(s, roots, driver)
        check_big_data(s, roots, driver)
        assert go_json(roots, driver, "get-names", "-j", "ours-base") == [
            "ours-base",
            "ours-base-alias",
        ]
        assert go_text(roots, driver, "metadata", "-q", "ours-base") == layer_meta + "\n"
        assert go_bytes(roots, driver, "get-layer-data", lb.id, "layer-note") == b"a note\n"
        assert go_bytes(roots, driver, "get-container-data", "ours-ctr", "Odd/Key:1") == b""
        assert go_json(roots, driver, "list-image-data", "-j", img.id) == [
            config_key,
            "manifest",
            "Key/With:Odd+Chars",
        ]
        assert go_bytes(roots, driver, "get-image-data", "ours-alias", config_key) == config
        assert go_text(roots, driver, "get-image-data-digest", img.id, "manifest") == (
            sha256(manifest) + "\n"
        )
        by_digest = go_text(roots, driver, "images-by-digest", "-q", sha256(manifest))
        assert by_digest == img.id + "\n"
        assert [x.id for x in s.images_by_digest(sha256(manifest))] == [img.id]

        # The text views.
        assert go_text(roots, driver, "image", img.id) == "".join(
            [
                f"ID: {img.id}\n",
                *(f"Name: {n}\n" for n in img.names),
                f"Top Layer: {lb.id}\n",
                f"Digest: {img.digest}\n",
                *(f"Data: {k}\n" for k in img.big_data_names),
                f"Size: {s.image_size(img.id)}\n",
            ]
        )
        assert go_text(roots, driver, "container", ctr.id) == "".join(
            [
                f"ID: {ctr.id}\n",
                *(f"Name: {n}\n" for n in ctr.names),
                f"Image: {img.id}\n",
                *(f"Image name: {n}\n" for n in img.names),
                f"Size: {s.container_size(ctr.id)}\n",
                f"Layer: {ctr.layer}\n",
                *(f"Data: {k}\n" for k in ctr.big_data_names),
            ]
        )
        assert go_text(roots, driver, "layer", la.id) == "".join(
            [f"ID: {la.id}\n", *(f"Name: {n}\n" for n in la.names)]
        )

        # exists, for every kind and for nothing.
        for name in ("ours-base", lb.id, "localhost/ours:latest", "ours-ctr", plain.id):
            assert go_text(roots, driver, "exists", name) == f"{name}: true\n"
        p = go(roots, driver, "exists", "no-such-thing", check=False)
        assert (p.returncode, p.stdout) == (1, b"no-such-thing: false\n")
        assert not s.exists("no-such-thing")

        # Our mount, as Go sees it.
        assert mount_counts(roots, driver) == {ctr.layer: 1}
        assert go_mounted(roots, driver, ctr.id)
        assert go_mounted(roots, driver, "ours-ctr")
        assert not go_mounted(roots, driver, plain.id)
        assert go_text(roots, driver, "mount", ctr.id).strip() == path
        assert s.mounted(ctr.id) == 2
        go(roots, driver, "unmount", ctr.id)
        assert s.mounted(ctr.id) == 1
        assert walk(path) == expected_tree(TAR_A, TAR_B)

        # Changes made through the mount: Go and we find the same changes and generate
        # the same diff (member for member; whiteouts carry the time they were made).
        mp = Path(path)
        (mp / "new-file").write_bytes(b"hello\n")
        os.setxattr(mp / "new-file", "user.k", b"v")
        os.link(mp / "new-file", mp / "new-hardlink")
        (mp / "a" / "two.txt").write_bytes(b"changed\n")
        (mp / "tool").unlink()
        (mp / "newdir" / "sub").mkdir(parents=True)
        (mp / "newdir" / "l").symlink_to("../a/two.txt")
        os.chown(mp / "newdir", 5, 6)
        shutil.rmtree(mp / "b")
        want_changes = {
            ("/a/two.txt", 0),
            ("/b", 2),
            ("/new-file", 1),
            ("/new-hardlink", 1),
            ("/newdir", 1),
            ("/newdir/l", 1),
            ("/newdir/sub", 1),
            ("/tool", 2),
        }
        if driver == "vfs":
            # The naive (tree-comparing) diff also reports the changed parent directory;
            # overlay's upper-directory scan does not.
            want_changes.add(("/a", 0))
        go_changes = go_json(roots, driver, "changes", "-j", ctr.layer)
        assert {(c["Path"], c["Kind"]) for c in go_changes} == want_changes
        assert {(c.path, int(c.kind)) for c in s.changes(None, ctr.layer)} == want_changes
        assert s.diff_size(None, ctr.layer) == int(go_text(roots, driver, "diffsize", ctr.layer))
        if driver == "vfs":
            # Go's naive DiffSize counts hard-linked content once and symlinks by their
            # target's length (overlay sizes its upper directory instead).
            want_size = len(b"hello\n" + b"changed\n" + b"../a/two.txt")
            assert s.diff_size(None, ctr.layer) == want_size
        go_members = tar_members(go_bytes(roots, driver, "diff", "-u", ctr.layer))
        assert tar_members(diff_bytes(s, ctr.layer)) == go_members
        assert [m[0] for m in go_members] == [
            "a",
            "a/two.txt",
            ".wh.b",
            "new-file",
            "new-hardlink",
            "newdir",
            "newdir/l",
            "newdir/sub",
            ".wh.tool",
        ]

        # Go rebuilds our tars byte for byte, and agrees on changes and sizes.
        for layer, tar in ((la, tar_a), (lb, tar_b)):
            out = go_bytes(roots, driver, "diff", "-u", layer.id)
            assert sha256(out) == layer.diff_digest
            assert out == tar
            go_changes = go_json(roots, driver, "changes", "-j", layer.id)
            assert {(c.path, int(c.kind)) for c in s.changes(None, layer.id)} == {
                (c["Path"], c["Kind"]) for c in go_changes
            }
            assert int(go_text(roots, driver, "diffsize", layer.id)) == s.diff_size(None, layer.id)
        assert gzip.decompress(go_bytes(roots, driver, "diff", "-c", la.id)) == tar_a

        # Go rewrites each JSON file from what it read of ours and loses nothing.
        before = {
            "layers": [x.to_json() for x in s.layers()],
            "images": [x.to_json() for x in s.images()],
            "containers": [x.to_json() for x in s.containers()],
        }
        go(roots, driver, "set-metadata", "-m", "go meta", lb.id)
        go(roots, driver, "set-metadata", "-m", "go image meta", img.id)
        go(roots, driver, "set-metadata", "-m", "go ctr meta", plain.id)
        before["layers"][1]["metadata"] = "go meta"
        before["images"][0]["metadata"] = "go image meta"
        before["containers"][1]["metadata"] = "go ctr meta"
        after = {
            "layers": [x.to_json() for x in s.layers()],
            "images": [x.to_json() for x in s.images()],
            "containers": [x.to_json() for x in s.containers()],
        }
        assert after == before
        check_records(s, roots, driver)
    finally:
        while s.mounted(ctr.id):
            s.unmount(ctr.id)
    assert not go_mounted(roots, driver, ctr.id)
    assert mount_counts(roots, driver) == {}


# -- 4. Go writes while our Store stays open ----------------------------------------------


def _lock_token(path: Path) -> bytes:
    return path.read_bytes()


def test_go_and_open_store_see_each_other(
    tmp_path: Path,
    roots: Roots,
    driver: str,
    open_store: Callable[[Roots, str], cs.Store],
) -> None:
    s = open_store(roots, driver)
    assert s.layers() == []
    layers_lock = roots[0] / f"{driver}-layers" / "layers.lock"

    # A layer Go creates after we opened, then deletes.
    go_layer = "9f" * 32
    go(roots, driver, "create-layer", "--id", go_layer, "-n", "go-made")
    assert [x.id for x in s.layers()] == [go_layer]
    assert s.layer("go-made").id == go_layer
    assert s.exists("go-made")
    go(roots, driver, "delete-layer", go_layer)
    assert s.layers() == []
    assert not s.exists(go_layer)

    # Our writes leave a new 64-byte token (our PID at bytes 16-20) and Go sees them.
    before = _lock_token(layers_lock)
    tar = make_tar(TAR_A)
    base, _ = s.put_layer(diff=io.BytesIO(tar), names=["ours-base"])
    top, _ = s.put_layer(base.id, io.BytesIO(gz(make_tar(TAR_B))))
    token = _lock_token(layers_lock)
    assert token != before and len(token) == 64
    assert int.from_bytes(token[16:20], "little") == os.getpid()
    assert [x["id"] for x in go_json(roots, driver, "layers", "-j")] == [base.id, top.id]
    img = s.create_image(top.id, names=["localhost/ours:1"])
    assert go_json(roots, driver, "images", "-j") == [s.image(img.id).to_json()]

    # Go writes right before ours, with no read of ours in between: nothing is lost.
    go(roots, driver, "create-layer", "--id", go_layer, "-n", "go-made")
    extra, _ = s.put_layer(diff=io.BytesIO(tar))
    assert [x["id"] for x in go_json(roots, driver, "layers", "-j")] == [
        base.id,
        top.id,
        go_layer,
        extra.id,
    ]
    go(roots, driver, "add-names", "-n", "go-name", img.id)
    s.set_metadata(img.id, "ours after go")
    (listed,) = go_json(roots, driver, "images", "-j")
    assert (listed["names"], listed["metadata"]) == (
        ["localhost/ours:1", "go-name"],
        "ours after go",
    )
    s.delete_layer(extra.id)
    go(roots, driver, "delete-layer", go_layer)
    assert [x.id for x in s.layers()] == [base.id, top.id]

    # A container Go makes from our image, seen by us, deleted by Go.
    ctr_id = go_text(roots, driver, "create-container", "-n", "go-ctr", img.id).split()[0]
    (ctr,) = s.containers()
    assert (ctr.id, ctr.names, ctr.image) == (ctr_id, ("go-ctr",), img.id)
    assert s.layer(ctr.layer).parent == top.id
    go(roots, driver, "delete-container", ctr_id)
    assert s.containers() == []
    assert not s.exists(ctr.layer)

    # Mount counts are shared through mountpoints.json.
    go_path = go_text(roots, driver, "mount", base.id).strip()
    assert s.mount(base.id) == go_path
    assert mount_counts(roots, driver) == {base.id: 2}
    assert s.mounted(base.id) == 2
    assert s.layer(base.id).mount_point == go_path
    assert s.unmount(base.id) is True
    assert go_mounted(roots, driver, base.id)
    assert s.unmount(base.id) is False
    assert not go_mounted(roots, driver, base.id)
    assert s.mounted(base.id) == 0
    s.mount(top.id)
    go(roots, driver, "unmount", top.id)
    assert s.mounted(top.id) == 0
    assert mount_counts(roots, driver) == {}

    # Go's delete-image removes the image and the layers we made for it.
    p = go(roots, driver, "delete-image", img.id)
    # The Debian CLI reports the removed layers on stderr.
    assert p.stderr.decode() == f"{img.id}: {top.id}\n{img.id}: {base.id}\n"
    assert s.images() == []
    assert s.layers() == []
    assert go_json(roots, driver, "layers", "-j") == []
    assert not (roots[0] / f"{driver}-layers" / f"{base.id}.tar-split.gz").exists()

    # And Go sees what we do after that.
    again, _ = s.put_layer(diff=io.BytesIO(tar), id=base.id)
    assert go_json(roots, driver, "layers", "-j") == [again.to_json()]
    assert go_bytes(roots, driver, "diff", "-u", base.id) == tar


# -- 5. podman and skopeo on a store we copied --------------------------------------------


@pytest.mark.skopeo
def test_podman_and_skopeo_use_our_copy(
    tmp_path: Path,
    short_dir: Path,
    oci: OciImage,
    driver: str,
    open_store: Callable[[Roots, str], cs.Store],
) -> None:
    src_roots = (short_dir / "src-root", short_dir / "src-run")
    dst_roots = (short_dir / "dst-root", short_dir / "dst-run")
    skopeo_import(oci, src_roots, driver)
    (listed,) = podman_json(src_roots, driver, "images")
    assert listed["Id"] == oci.image_id
    assert listed["Names"] == [NAME]
    assert listed["Digest"] == oci.manifest_digest
    assert listed["CreatedAt"] == CREATED

    # Copy the image with our API: same layer IDs, the tars from the skopeo store (the base
    # layer as the gzip blob skopeo applied, so that its record must match skopeo's).
    src = open_store(src_roots, driver)
    dst = open_store(dst_roots, driver)
    src_img = src.image(NAME)
    parent = ""
    for i, layer in enumerate(src.layers()):
        source = oci.blobs[0] if i == 0 else diff_bytes(src, layer.id)
        copied, _ = dst.put_layer(parent or None, io.BytesIO(source), id=layer.id)
        assert (copied.diff_digest, copied.diff_size) == (layer.diff_digest, layer.diff_size)
        assert (copied.uidset, copied.gidset) == (layer.uidset, layer.gidset)
        if i == 0:
            assert replace(copied, created="") == replace(layer, created="")
        else:
            assert (copied.compressed_diff_digest, copied.compression) == (layer.diff_digest, 0)
        parent = copied.id
    assert parent == src_img.layer
    # As c/image does: create the image without names, then add the name (Go's CreateImage
    # records no names-history; adding names does).
    img = dst.create_image(
        parent,
        id=src_img.id,
        metadata=src_img.metadata,
        digest=src_img.digest,
        created=src_img.created,
    )
    dst.add_names(img.id, list(src_img.names))
    for key in src.list_image_big_data(src_img.id):
        dst.set_image_big_data(img.id, key, src.image_big_data(src_img.id, key))
    copy = dst.image(img.id)
    attrs = ("id", "digest", "names", "names_history", "layer", "metadata", "big_data_names")
    for attr in (*attrs, "created"):
        assert getattr(copy, attr) == getattr(src_img, attr), attr
    assert copy.big_data_digests == src_img.big_data_digests
    assert copy.big_data_sizes == src_img.big_data_sizes
    assert dst.image_size(img.id) == src.image_size(src_img.id)

    # podman lists our copy exactly as it lists skopeo's.
    assert podman_json(dst_roots, driver, "images") == [listed]
    assert listed["Size"] == dst.image_size(img.id)

    # skopeo reads it back through c/storage.
    inspected = json.loads(
        skopeo(oci, dst_roots, driver, "inspect", cs_ref(dst_roots, driver, NAME)).stdout
    )
    assert inspected["Digest"] == oci.manifest_digest
    assert inspected["Layers"] == oci.blob_digests
    assert inspected["Created"] == CREATED
    out = tmp_path / "out"
    skopeo(
        oci, dst_roots, driver, "copy", "--quiet", cs_ref(dst_roots, driver, NAME), f"oci:{out}:x"
    )
    index = json.loads((out / "index.json").read_bytes())
    (desc,) = index["manifests"]
    assert desc["annotations"]["org.opencontainers.image.ref.name"] == "x"

    def blob(digest: str) -> bytes:
        data = (out / "blobs" / "sha256" / hexpart(digest)).read_bytes()
        assert sha256(data) == digest
        return data

    manifest = json.loads(blob(desc["digest"]))
    config = json.loads(blob(manifest["config"]["digest"]))
    assert config["rootfs"]["diff_ids"] == oci.diff_ids
    assert config["created"] == CREATED
    exported = [blob(x["digest"]) for x in manifest["layers"]]
    assert [gzip.decompress(b) for b in exported] == list(oci.tars)

    # skopeo pulls the image again under another name into our open store: it reuses our
    # layers (found by their diff digests) and our image (by its ID), adding the name.
    layer_ids = [x.id for x in dst.layers()]
    skopeo(
        oci,
        dst_roots,
        driver,
        "copy",
        "--quiet",
        oci.ref,
        cs_ref(dst_roots, driver, "localhost/test:2"),
    )
    assert [x.id for x in dst.layers()] == layer_ids
    (again,) = dst.images()
    assert again.id == img.id
    assert again.names == ("localhost/test:2", NAME)
    check_records(dst, dst_roots, driver)

    # podman sees a container we create as an external (storage) container, and removes it
    # and the untagged name from our store.
    ctr = dst.create_container(img.id, names=["ours-ctr"])
    (listed_ctr,) = podman_json(dst_roots, driver, "ps", "-a", "--external")
    assert (listed_ctr["Id"], listed_ctr["Names"], listed_ctr["ImageID"], listed_ctr["State"]) == (
        ctr.id,
        ["ours-ctr"],
        img.id,
        "storage",
    )
    assert podman(dst_roots, driver, "rm", "ours-ctr").stdout == b"ours-ctr\n"
    assert dst.containers() == []
    assert not dst.exists(ctr.layer)
    podman(dst_roots, driver, "rmi", NAME)
    assert dst.image(img.id).names == ("localhost/test:2",)
    assert [x.id for x in dst.layers()] == layer_ids


def _variant(oci: OciImage, layout: Path, n: int) -> str:
    """A copy of the test layout whose config (so image ID) differs by ``n``: the same
    layers, another image."""
    shutil.copytree(oci.layout, layout)

    def put(blob: bytes) -> str:
        return put_blob(layout, blob)

    config = json.loads(oci.config)
    config["config"]["Env"].append(f"VARIANT={n}")
    config_blob = compact(config)
    manifest = json.loads(oci.manifest)
    manifest["config"] = {
        "mediaType": CONFIG_TYPE,
        "digest": put(config_blob),
        "size": len(config_blob),
    }
    manifest_blob = compact(manifest)
    index = json.loads((layout / "index.json").read_bytes())
    index["manifests"][0].update(digest=put(manifest_blob), size=len(manifest_blob))
    (layout / "index.json").write_bytes(compact(index))
    return f"oci:{layout}:{TAG}"


def test_podman_never_sees_a_half_made_image(
    tmp_path: Path,
    short_dir: Path,
    oci: OciImage,
    driver: str,
    open_store: Callable[[Roots, str], cs.Store],
) -> None:
    """podman lists the store again and again while we import images into it: it never
    finds an image without its manifest or names (issue 14, item 2). To keep the store
    small, the images are deleted, but only between two listings: podman's listing is not
    one read, and it fails on an image deleted meanwhile, beside ``podman rmi`` too."""
    roots = (short_dir / "root", short_dir / "run")
    s = open_store(roots, driver)
    s.import_image(oci.ref, names=["localhost/base:1"])  # keeps the layers in the store
    podman(roots, driver, "images")  # podman's own first-run setup, before the race
    done = threading.Event()
    started = threading.Semaphore(0)
    listing = threading.Lock()
    polls: list[int] = []
    anomalies: list[str] = []

    def poll() -> None:
        argv = ["images", "--format", "json"]
        while not done.is_set():
            with listing:
                started.release()
                p = subprocess.run(
                    [PODMAN, *podman_args(roots), f"--storage-driver={driver}", *argv],
                    capture_output=True,
                    env=tool_env(roots, driver),
                    check=False,
                )
            polls.append(p.returncode)
            if p.returncode != 0:
                anomalies.append(p.stderr.decode())
                continue
            for listed in json.loads(p.stdout):
                if not listed["Names"] or listed["Digest"] == "":
                    anomalies.append(f"half-made: {listed}")

    poller = threading.Thread(target=poll)
    poller.start()
    made: list[str] = []
    n = 0
    try:
        # Four imports from the start of each listing on, for 30 listings (a count, not a
        # time); between two listings, the images made before are deleted.
        while len(polls) < 30:
            assert started.acquire(timeout=HANG_GUARD)
            for _ in range(4):
                ref = _variant(oci, tmp_path / f"v{n}", n)
                img = s.import_image(ref, names=[f"localhost/v:{n}"])
                assert img.names == (f"localhost/v:{n}",)
                shutil.rmtree(tmp_path / f"v{n}")
                made.append(img.id)
                n += 1
            with listing:
                while len(made) > 1:
                    s.delete_image(made.pop(0))
    finally:
        done.set()
        poller.join()
    assert anomalies == []
    assert len(polls) >= 30
    listed = {x["Names"][0] for x in podman_json(roots, driver, "images")}
    assert listed == {
        "localhost/base:1",
        *(f"localhost/v:{n - len(made) + i}" for i in range(len(made))),
    }
