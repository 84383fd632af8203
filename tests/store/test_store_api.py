"""Behaviour of the Store API against Go containers/storage 1.43.

Every test builds tiny tars with :mod:`tarfile`, drives :class:`containers_storage.Store`
and checks the records, the files on disk and, where it matters, what Debian's Go
``containers-storage`` (``/usr/bin``) reads from the same store. Tests are written for any
driver; the few vfs-only checks look at ``driver``.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import containers_storage as cs
import pytest
from containers_storage import errors
from containers_storage.archive import ChangeKind

from tests.helpers import GO_CONTAINERS_STORAGE, Child
from tests.store.helpers import Roots, go, go_json
from tests.tars import d, f, make_tar, sha256

pytestmark = [pytest.mark.usefixtures("no_leaked_mounts"), pytest.mark.root, pytest.mark.gotools]

MAP = [(0, 100000, 65536)]
MAP_JSON = [{"container_id": 0, "host_id": 100000, "size": 65536}]


# -- helpers -------------------------------------------------------------------------------


BASE_TAR = make_tar(
    [
        d("etc/"),
        f("etc/a.txt", b"hello"),
        f("etc/keep.txt", b"keep me\n"),
        d("home/user/", uid=1000, gid=1001),
        f("home/user/notes.txt", b"notes", uid=1000, gid=1001, mode=0o600),
    ]
)
#: Regular file bytes in BASE_TAR (what put_layer returns as the size).
BASE_FILES_SIZE = 5 + 8 + 5

CHILD_TAR = make_tar(
    [
        d("etc/"),
        f("etc/.wh.a.txt"),
        f("etc/b.txt", b"1234567"),
    ]
)


def zstd(data: bytes) -> bytes:
    return subprocess.run(["zstd", "-q", "-c"], input=data, capture_output=True, check=True).stdout


def layers_dir(roots: Roots, driver: str) -> Path:
    return roots[0] / f"{driver}-layers"


def images_dir(roots: Roots, driver: str) -> Path:
    return roots[0] / f"{driver}-images"


def containers_dir(roots: Roots, driver: str) -> Path:
    return roots[0] / f"{driver}-containers"


def layers_json(roots: Roots, driver: str) -> list[dict[str, Any]]:
    return json.loads((layers_dir(roots, driver) / "layers.json").read_bytes())  # type: ignore[no-any-return]


def images_json(roots: Roots, driver: str) -> list[dict[str, Any]]:
    return json.loads((images_dir(roots, driver) / "images.json").read_bytes())  # type: ignore[no-any-return]


def containers_json(roots: Roots, driver: str) -> list[dict[str, Any]]:
    path = containers_dir(roots, driver) / "containers.json"
    if not path.exists() or not path.read_bytes().strip():
        return []
    return json.loads(path.read_bytes())  # type: ignore[no-any-return]


def mountpoints_json(roots: Roots, driver: str) -> Any:
    return json.loads((roots[1] / f"{driver}-layers" / "mountpoints.json").read_bytes())


def layer_home(roots: Roots, driver: str, layer_id: str) -> Path:
    """The driver's directory for one layer (vfs: the full root file system)."""
    if driver == "vfs":
        return roots[0] / "vfs" / "dir" / layer_id
    return roots[0] / driver / layer_id


def by_id(records: Sequence[Any], rid: str) -> Any:
    matches = [r for r in records if (r["id"] if isinstance(r, dict) else r.id) == rid]
    assert len(matches) == 1, (rid, records)
    return matches[0]


def lock_token(path: Path) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return os.pread(fd, 128, 0)
    finally:
        os.close(fd)


def read_tree(root: Path) -> dict[str, bytes | None]:
    """Relative path -> content (None for directories) of a directory tree."""
    out: dict[str, bytes | None] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        for name in dirnames:
            out[os.path.normpath(os.path.join(rel, name))] = None
        for name in filenames:
            out[os.path.normpath(os.path.join(rel, name))] = Path(dirpath, name).read_bytes()
    return out


def layer_files(store: cs.Store, layer_id: str) -> dict[str, bytes | None]:
    """The layer's root file system as seen through a mount."""
    path = store.mount(layer_id)
    try:
        return read_tree(Path(path))
    finally:
        store.unmount(layer_id)


class NoSeek:
    """A reader with nothing but ``read``."""

    def __init__(self, data: bytes) -> None:
        self._buf = io.BytesIO(data)

    def read(self, size: int = -1, /) -> bytes:
        return self._buf.read(min(size, 333) if size and size > 0 else 333)


def hexid(ch: str) -> str:
    return ch * 64


# -- put_layer ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["path", "fd", "bytesio", "reader"])
def test_put_layer_sources(
    store: cs.Store, roots: Roots, driver: str, tmp_path: Path, kind: str
) -> None:
    tar_path = tmp_path / "layer.tar"
    tar_path.write_bytes(BASE_TAR)
    fd = -1
    source: Any
    if kind == "path":
        source = str(tar_path)
    elif kind == "fd":
        fd = os.open(tar_path, os.O_RDONLY)
        source = fd
    elif kind == "bytesio":
        source = io.BytesIO(BASE_TAR)
    else:
        source = NoSeek(BASE_TAR)
    try:
        layer, size = store.put_layer(diff=source, names=[f"from-{kind}"])
    finally:
        if fd >= 0:
            os.close(fd)
    assert size == BASE_FILES_SIZE
    assert layer.names == (f"from-{kind}",)
    assert layer.diff_digest == sha256(BASE_TAR)
    assert layer.diff_size == len(BASE_TAR)
    assert layer.compressed_diff_digest == sha256(BASE_TAR)
    assert layer.compressed_size == len(BASE_TAR)
    assert layer.compression == 0
    files = layer_files(store, layer.id)
    assert files["etc/a.txt"] == b"hello"
    assert files["home/user/notes.txt"] == b"notes"
    assert go_json(roots, driver, "layers", "-j")[0]["diff-digest"] == sha256(BASE_TAR)


def test_put_layer_record_fields_uncompressed(store: cs.Store, roots: Roots, driver: str) -> None:
    tar = make_tar(
        [
            d("etc/"),
            f("etc/a", b"a", uid=0, gid=0),
            f("etc/b", b"bb", uid=1000, gid=1001),
            f("etc/c", b"ccc", uid=33, gid=7),
            # Whiteouts do not count towards the owner sets.
            f("etc/.wh.gone", uid=4242, gid=4343),
        ]
    )
    layer, size = store.put_layer(diff=io.BytesIO(tar))
    assert size == 6
    assert layer.uidset == (0, 33, 1000)
    assert layer.gidset == (0, 7, 1001)
    assert layer.compression == 0
    rec = layers_json(roots, driver)[0]
    assert rec["uidset"] == [0, 33, 1000]
    assert rec["gidset"] == [0, 7, 1001]
    assert rec["diff-digest"] == rec["compressed-diff-digest"] == sha256(tar)
    assert rec["diff-size"] == rec["compressed-size"] == len(tar)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d*[1-9])?Z", rec["created"])
    # Compression 0 is omitted, as Go's omitempty does.
    assert "compression" not in rec
    assert "flags" not in rec
    assert list(rec) == [
        "id",
        "created",
        "compressed-diff-digest",
        "compressed-size",
        "diff-digest",
        "diff-size",
        "uidset",
        "gidset",
    ]


def test_put_layer_gzip(store: cs.Store, roots: Roots, driver: str) -> None:
    blob = gzip.compress(BASE_TAR, mtime=0)
    layer, size = store.put_layer(diff=io.BytesIO(blob))
    assert size == BASE_FILES_SIZE
    assert layer.compression == 2
    assert layer.compressed_diff_digest == sha256(blob)
    assert layer.compressed_size == len(blob)
    assert layer.diff_digest == sha256(BASE_TAR)
    assert layer.diff_size == len(BASE_TAR)
    assert layer.uidset == (0, 1000)
    assert layer.gidset == (0, 1001)
    rec = layers_json(roots, driver)[0]
    assert rec["compression"] == 2
    assert rec["compressed-diff-digest"] == sha256(blob)
    assert go_json(roots, driver, "layers", "-j")[0]["compression"] == 2
    assert [x.id for x in store.layers_by_compressed_digest(sha256(blob))] == [layer.id]
    assert [x.id for x in store.layers_by_uncompressed_digest(sha256(BASE_TAR))] == [layer.id]
    with pytest.raises(errors.LayerUnknownError):
        store.layers_by_uncompressed_digest(sha256(blob))


def test_put_layer_zstd(store: cs.Store, roots: Roots, driver: str) -> None:
    blob = zstd(BASE_TAR)
    assert blob[:4] == b"\x28\xb5\x2f\xfd"
    layer, size = store.put_layer(diff=io.BytesIO(blob))
    assert size == BASE_FILES_SIZE
    assert layer.compression == 4
    assert layer.compressed_diff_digest == sha256(blob)
    assert layer.compressed_size == len(blob)
    assert layer.diff_digest == sha256(BASE_TAR)
    assert layer.diff_size == len(BASE_TAR)
    assert layers_json(roots, driver)[0]["compression"] == 4
    assert layer_files(store, layer.id)["etc/keep.txt"] == b"keep me\n"


def test_put_layer_tar_split_file(store: cs.Store, roots: Roots, driver: str) -> None:
    layer, _ = store.put_layer(diff=io.BytesIO(gzip.compress(BASE_TAR)))
    ts = layers_dir(roots, driver) / f"{layer.id}.tar-split.gz"
    assert ts.is_file()
    assert ts.stat().st_mode & 0o777 == 0o600
    lines = [json.loads(line) for line in gzip.decompress(ts.read_bytes()).splitlines()]
    names = [e["name"] for e in lines if e["type"] == 1]
    assert names == ["etc/", "etc/a.txt", "etc/keep.txt", "home/user/", "home/user/notes.txt"]
    assert [e["position"] for e in lines] == list(range(len(lines)))
    # A layer without a diff has no tar-split file.
    empty = store.create_layer()
    assert not (layers_dir(roots, driver) / f"{empty.id}.tar-split.gz").exists()


def test_layers_json_compact(store: cs.Store, roots: Roots, driver: str) -> None:
    store.put_layer(diff=io.BytesIO(BASE_TAR), names=["one", "two"])
    store.create_layer(names=["three"])
    raw = (layers_dir(roots, driver) / "layers.json").read_bytes()
    assert raw.startswith(b'[{"id":"')
    assert not raw.endswith(b"\n")
    assert b": " not in raw and b", " not in raw and b"\n" not in raw
    assert b'"flags"' not in raw
    assert (layers_dir(roots, driver) / "layers.json").stat().st_mode & 0o777 == 0o600
    recs = json.loads(raw)
    assert recs[0]["names"] == ["one", "two"]
    # A layer made without a diff has only id, names and created.
    assert set(recs[1]) == {"id", "names", "created"}


def test_go_reads_our_records_unchanged(store: cs.Store, roots: Roots, driver: str) -> None:
    base, _ = store.put_layer(diff=io.BytesIO(gzip.compress(BASE_TAR)), names=["base"])
    store.set_metadata(base.id, "<layer & md>")
    store.set_layer_big_data(base.id, "layer-note", b"n")
    image = store.create_image(base.id, names=["img:1", "img:2"], metadata='{"a":"<b>"}')
    store.set_image_big_data(image.id, "manifest", b"{}")
    store.set_image_big_data(image.id, "custom-key", b"c")
    store.add_names(image.id, ["img:3"])
    store.create_container(image.id, names=["c1"], metadata="m", volatile=True)
    store.create_container(image.id, uid_map=MAP, gid_map=MAP)
    store.create_layer(base.id, uid_map=MAP, gid_map=MAP, names=["mapped"])
    # Go decodes our files and re-encodes them: nothing may change on the way.
    assert go_json(roots, driver, "layers", "-j") == layers_json(roots, driver)
    assert go_json(roots, driver, "images", "-j") == images_json(roots, driver)
    assert go_json(roots, driver, "containers", "-j") == containers_json(roots, driver)
    # A Go write rewrites the file; we read what it wrote.
    go(roots, driver, "set-metadata", "-m", "from go", base.id)
    assert store.layer(base.id).metadata == "from go"
    assert store.layer(base.id).big_data_names == ("layer-note",)


# -- parent and child -----------------------------------------------------------------------


def test_child_layer_contains_parent_files(store: cs.Store, driver: str, roots: Roots) -> None:
    parent, _ = store.put_layer(diff=io.BytesIO(BASE_TAR))
    child, size = store.put_layer(parent.id, io.BytesIO(make_tar([f("new.txt", b"new")])))
    assert size == 3
    assert child.parent == parent.id
    files = layer_files(store, child.id)
    assert files["etc/a.txt"] == b"hello"
    assert files["home/user/notes.txt"] == b"notes"
    assert files["new.txt"] == b"new"
    if driver == "vfs":
        home = layer_home(roots, driver, child.id)
        assert (home / "etc" / "keep.txt").read_bytes() == b"keep me\n"
        assert (home / "home" / "user").stat().st_uid == 1000
        # The parent's own directory is untouched.
        assert not (layer_home(roots, driver, parent.id) / "new.txt").exists()


def test_whiteouts_delete_parent_files(store: cs.Store) -> None:
    parent, _ = store.put_layer(diff=io.BytesIO(BASE_TAR))
    opaque = make_tar([d("home/user/"), f("home/user/.wh..wh..opq"), f("home/user/fresh", b"x")])
    mid, _ = store.put_layer(parent.id, io.BytesIO(opaque))
    child, _ = store.put_layer(mid.id, io.BytesIO(CHILD_TAR))
    files = layer_files(store, child.id)
    assert "etc/a.txt" not in files
    assert "etc/.wh.a.txt" not in files
    assert files["etc/b.txt"] == b"1234567"
    assert files["etc/keep.txt"] == b"keep me\n"
    assert "home/user/notes.txt" not in files
    assert files["home/user/fresh"] == b"x"
    assert not any(".wh." in name for name in files)
    # The parent still has the file.
    assert layer_files(store, parent.id)["etc/a.txt"] == b"hello"


@pytest.mark.parametrize("compressed", [False, True])
def test_diff_reproduces_exact_tar(
    store: cs.Store, roots: Roots, driver: str, tmp_path: Path, compressed: bool
) -> None:
    parent, _ = store.put_layer(diff=io.BytesIO(BASE_TAR))
    blob = gzip.compress(CHILD_TAR) if compressed else CHILD_TAR
    child, _ = store.put_layer(parent.id, io.BytesIO(blob))
    # Default compression: the one the layer was applied with.
    out = b"".join(store.diff(None, child.id))
    if compressed:
        assert out[:2] == b"\x1f\x8b"
        out = gzip.decompress(out)
    assert out == CHILD_TAR
    # Explicitly uncompressed, to a path, against the parent by ID.
    target = tmp_path / "out.tar"
    store.diff_to(parent.id, child.id, str(target), compression="none")
    assert target.read_bytes() == CHILD_TAR
    # To a binary file object.
    sink = io.BytesIO()
    store.diff_to(None, child.id, sink, compression="none")
    assert sink.getvalue() == CHILD_TAR
    assert sha256(CHILD_TAR) == child.diff_digest
    # The Go tool rebuilds the same bytes from our tar-split.
    assert go(roots, driver, "diff", "-u", child.id).stdout == CHILD_TAR
    # And the base layer too.
    assert b"".join(store.diff(None, parent.id, compression="none")) == BASE_TAR


def test_changes_and_diff_size(store: cs.Store, roots: Roots, driver: str) -> None:
    parent, _ = store.put_layer(diff=io.BytesIO(BASE_TAR))
    child, _ = store.put_layer(parent.id, io.BytesIO(CHILD_TAR))
    changes = store.changes(None, child.id)
    got = sorted((c.path, int(c.kind)) for c in changes)
    assert got == [
        ("/etc", int(ChangeKind.MODIFY)),
        ("/etc/a.txt", int(ChangeKind.DELETE)),
        ("/etc/b.txt", int(ChangeKind.ADD)),
    ]
    assert store.diff_size(None, child.id) == 7
    assert store.diff_size(parent.id, child.id) == 7
    go_changes = go_json(roots, driver, "changes", "-j", child.id)
    assert sorted((c["Path"], c["Kind"]) for c in go_changes) == got
    assert go(roots, driver, "diffsize", child.id).stdout.strip() == b"7"
    # A base layer's changes are every path it has.
    base = sorted(c.path for c in store.changes(None, parent.id))
    assert base == [
        "/etc",
        "/etc/a.txt",
        "/etc/keep.txt",
        "/home",
        "/home/user",
        "/home/user/notes.txt",
    ]


# -- bad archives ---------------------------------------------------------------------------


def _garbage() -> bytes:
    return bytes((i * 37 + 11) % 256 for i in range(4096))


def _truncated_gzip() -> bytes:
    big = make_tar([f("big", os.urandom(64 * 1024))])
    blob = gzip.compress(big)
    return blob[: len(blob) // 2]


def _truncated_tar() -> bytes:
    big = make_tar([f("big", b"z" * 8192)])
    return big[:2048]


@pytest.mark.parametrize(
    "blob", [_garbage(), _truncated_gzip(), _truncated_tar()], ids=["garbage", "gzip", "tar"]
)
def test_corrupt_tar_leaves_nothing(
    store: cs.Store, roots: Roots, driver: str, blob: bytes
) -> None:
    keep = store.create_layer(names=["keep"])
    lid = hexid("e")
    with pytest.raises(errors.ArchiveError):
        store.put_layer(diff=io.BytesIO(blob), id=lid, names=["broken"])
    assert [r["id"] for r in layers_json(roots, driver)] == [keep.id]
    assert [x.id for x in store.layers()] == [keep.id]
    assert not layer_home(roots, driver, lid).exists()
    assert not (layers_dir(roots, driver) / f"{lid}.tar-split.gz").exists()
    leftovers = [p.name for p in layers_dir(roots, driver).iterdir() if lid in p.name]
    assert leftovers == []
    assert not store.exists("broken")
    # The ID and name are free again.
    again, _ = store.put_layer(diff=io.BytesIO(BASE_TAR), id=lid, names=["broken"])
    assert again.id == lid


# -- IDs, names, lookups --------------------------------------------------------------------


def test_explicit_ids_and_names(store: cs.Store, roots: Roots, driver: str) -> None:
    layer = store.create_layer(id=hexid("1"), names=["l-one", "l-two"])
    image = store.create_image(layer.id, id=hexid("2"), names=["img:1"], metadata="im")
    ctr = store.create_container(image.id, id=hexid("3"), names=["ctr"], metadata="cm")
    assert (layer.id, image.id, ctr.id) == (hexid("1"), hexid("2"), hexid("3"))
    assert store.layer("l-two").id == layer.id
    assert store.image("img:1").layer == layer.id
    assert store.container("ctr").image == image.id
    assert images_json(roots, driver)[0]["names"] == ["img:1"]
    crec = containers_json(roots, driver)[0]
    assert crec["id"] == hexid("3") and crec["names"] == ["ctr"] and crec["image"] == hexid("2")
    assert store.lookup("l-one") == layer.id
    assert store.lookup("img:1") == image.id
    assert store.lookup("ctr") == ctr.id
    assert go(roots, driver, "exists", "-c", "ctr").returncode == 0


def test_duplicate_ids(store: cs.Store, roots: Roots, driver: str) -> None:
    layer = store.create_layer(id=hexid("a"))
    with pytest.raises(errors.DuplicateIDError):
        store.create_layer(id=hexid("a"))
    image = store.create_image(layer.id, id=hexid("b"))
    with pytest.raises(errors.DuplicateIDError):
        store.create_image(layer.id, id=hexid("b"))
    store.create_container(image.id, id=hexid("c"))
    n_layers = len(store.layers())
    with pytest.raises(errors.DuplicateIDError):
        store.create_container(image.id, id=hexid("c"))
    # The layer made for the refused container is gone again.
    assert len(store.layers()) == n_layers
    assert len(layers_json(roots, driver)) == n_layers
    assert len(store.images()) == 1 and len(store.containers()) == 1


def test_duplicate_names(store: cs.Store) -> None:
    layer = store.create_layer(names=["lname"])
    with pytest.raises(errors.DuplicateNameError):
        store.create_layer(names=["lname"])
    image = store.create_image(layer.id, names=["iname"])
    with pytest.raises(errors.DuplicateNameError):
        store.create_image(layer.id, names=["iname"])
    store.create_container(image.id, names=["cname"])
    n_layers = len(store.layers())
    with pytest.raises(errors.DuplicateNameError):
        store.create_container(image.id, names=["cname"])
    assert len(store.layers()) == n_layers
    # Names of different kinds do not clash.
    store.create_image(layer.id, names=["lname"])


def test_lookup_by_id_name_and_prefix(store: cs.Store) -> None:
    layer = store.create_layer(id="0123456789" + "a" * 54, names=["lay"])
    image = store.create_image(layer.id, id="4567" + "b" * 60, names=["im"])
    ctr = store.create_container(image.id, id="89ab" + "c" * 60, names=["co"])
    for ref in (layer.id, "lay", "0123456"):
        assert store.layer(ref).id == layer.id
    for ref in (image.id, "im", "4567b"):
        assert store.image(ref).id == image.id
    for ref in (ctr.id, "co", "89ab"):
        assert store.container(ref).id == ctr.id
    assert store.exists("01234") and store.exists("4567") and store.exists("89ab")
    assert store.metadata("4567") == ""


def test_ambiguous_prefix(store: cs.Store) -> None:
    one = store.create_layer(id="abcd1" + "0" * 59)
    two = store.create_layer(id="abcd2" + "0" * 59)
    with pytest.raises(errors.AmbiguousPrefixError):
        store.layer("abcd")
    assert store.layer("abcd1").id == one.id
    assert store.layer("abcd2").id == two.id
    i1 = store.create_image(id="fe01" + "1" * 60)
    store.create_image(id="fe02" + "1" * 60)
    with pytest.raises(errors.AmbiguousPrefixError):
        store.image("fe0")
    assert store.image("fe01").id == i1.id
    c1 = store.create_container(id="dd01" + "2" * 60)
    store.create_container(id="dd02" + "2" * 60)
    with pytest.raises(errors.AmbiguousPrefixError):
        store.container("dd0")
    assert store.container("dd01").id == c1.id


def test_prefix_ambiguous_in_one_kind_names_another(store: cs.Store) -> None:
    """As Go's store-by-store search: a prefix two layers start with is no layer, so it
    names the one image it starts (tests/cli/test_prefix_lookup.py checks it against Go's
    CLI); only when no kind knows it is the ambiguity raised."""
    base = store.create_layer(id="ab01" + "0" * 60)
    store.create_layer(base.id, id="ab02" + "0" * 60)
    image = store.create_image(base.id, id="ab03" + "0" * 60)
    store.add_names("ab0", ["by-prefix"])
    store.set_metadata("ab0", "m")
    assert (store.image(image.id).names, store.metadata("ab0")) == (("by-prefix",), "m")
    assert store.lookup("ab0") == image.id and store.exists("ab0")
    store.create_image(base.id, id="ab04" + "0" * 60)
    for call in (
        lambda: store.set_names("ab0", ["x"]),
        lambda: store.set_metadata("ab0", "x"),
        lambda: store.metadata("ab0"),
        lambda: store.delete("ab0"),
    ):
        with pytest.raises(errors.AmbiguousPrefixError):
            call()
    assert not store.exists("ab0")
    store.delete("ab03")
    assert store.lookup("ab0") == "ab04" + "0" * 60


def test_unknown_items(store: cs.Store) -> None:
    store.create_layer()
    with pytest.raises(errors.LayerUnknownError):
        store.layer("no-such-layer")
    with pytest.raises(errors.LayerUnknownError):
        store.layer("f" * 64)
    with pytest.raises(errors.ImageUnknownError):
        store.image("no-such-image")
    with pytest.raises(errors.ContainerUnknownError):
        store.container("no-such-container")
    with pytest.raises(errors.LayerUnknownError):
        store.put_layer("no-such-parent")
    with pytest.raises(errors.LayerUnknownError):
        store.create_image("no-such-layer")
    with pytest.raises(errors.ImageUnknownError):
        store.create_container("no-such-image")
    assert not store.exists("nothing")
    assert str(errors.LayerUnknownError()) == "layer not known"


# -- names ----------------------------------------------------------------------------------


def test_layer_names(store: cs.Store, roots: Roots, driver: str) -> None:
    a = store.create_layer(names=["a1"])
    b = store.create_layer(names=["b1", "b2"])
    store.add_names(a.id, ["a2", "a3"])
    assert store.names(a.id) == ["a1", "a2", "a3"]
    store.remove_names(a.id, ["a2"])
    assert store.layer(a.id).names == ("a1", "a3")
    store.set_names(a.id, ["x", "y", "x"])
    assert store.names(a.id) == ["x", "y"]
    # A name held by another layer moves.
    store.add_names(a.id, ["b1"])
    assert store.names(a.id) == ["x", "y", "b1"]
    assert store.names(b.id) == ["b2"]
    assert store.layer("b1").id == a.id
    recs = layers_json(roots, driver)
    assert by_id(recs, a.id)["names"] == ["x", "y", "b1"]
    assert by_id(recs, b.id)["names"] == ["b2"]
    store.set_names(b.id, [])
    assert "names" not in by_id(layers_json(roots, driver), b.id)
    assert go_json(roots, driver, "get-names", "-j", a.id) == ["x", "y", "b1"]


def test_container_names(store: cs.Store, roots: Roots, driver: str) -> None:
    c1 = store.create_container(names=["c1"])
    c2 = store.create_container(names=["c2"])
    store.add_names(c1.id, ["c1-alias"])
    assert store.container(c1.id).names == ("c1", "c1-alias")
    store.set_names(c2.id, ["c1-alias", "c2b"])
    assert store.names(c1.id) == ["c1"]
    assert store.names(c2.id) == ["c1-alias", "c2b"]
    store.remove_names(c2.id, ["c2b"])
    assert store.container("c1-alias").id == c2.id
    assert by_id(containers_json(roots, driver), c2.id)["names"] == ["c1-alias"]
    assert go_json(roots, driver, "get-names", "-j", c2.id) == ["c1-alias"]


def _strip(img: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in img.items() if k in ("names", "names-history")}


def test_image_names_history_matches_go(
    store: cs.Store, roots: Roots, driver: str, tmp_path: Path
) -> None:
    go_roots = (tmp_path / "go-root", tmp_path / "go-run")
    gid = go(go_roots, driver, "create-image", "-n", "A", "-n", "B", "").stdout.split()[0].decode()
    ours = store.create_image(names=["A", "B"])
    steps: list[tuple[list[str], Any]] = [([], None)]
    steps.append((["add-names", "-n", "C"], lambda: store.add_names(ours.id, ["C"])))
    steps.append(
        (["set-names", "-n", "D", "-n", "A"], lambda: store.set_names(ours.id, ["D", "A"]))
    )
    for go_cmd, py_step in steps:
        if go_cmd:
            go(go_roots, driver, *go_cmd, gid)
            py_step()
        want = _strip(go_json(go_roots, driver, "images", "-j")[0])
        got = _strip(images_json(roots, driver)[0])
        assert got == want, go_cmd
        assert list(store.image(ours.id).names_history) == want.get("names-history", [])
    # The states Go produced, spelled out.
    img = store.image(ours.id)
    assert img.names == ("D", "A")
    assert img.names_history == ("A", "D", "C", "B")


def test_image_names_history_after_create(store: cs.Store, roots: Roots, driver: str) -> None:
    # Go's CreateImage records no history; AddNames then records every name, newest first.
    img = store.create_image(names=["A", "B"])
    assert img.names == ("A", "B")
    assert "names-history" not in images_json(roots, driver)[0]
    assert store.image(img.id).names_history == ()
    store.add_names(img.id, ["C"])
    img = store.image(img.id)
    assert img.names == ("A", "B", "C")
    assert img.names_history == ("C", "B", "A")
    rec = images_json(roots, driver)[0]
    assert rec["names"] == ["A", "B", "C"]
    assert rec["names-history"] == ["C", "B", "A"]


def test_image_name_moves(store: cs.Store, roots: Roots, driver: str) -> None:
    one = store.create_image(names=["shared", "one"])
    two = store.create_image(names=["two"])
    store.add_names(two.id, ["shared"])
    assert store.image(one.id).names == ("one",)
    assert store.image(two.id).names == ("two", "shared")
    assert store.image("shared").id == two.id
    store.remove_names(two.id, ["two"])
    assert store.image(two.id).names == ("shared",)
    # History keeps removed names.
    assert "two" in store.image(two.id).names_history
    recs = images_json(roots, driver)
    assert by_id(recs, one.id)["names"] == ["one"]
    assert go_json(roots, driver, "get-names", "-j", one.id) == ["one"]


# -- metadata -------------------------------------------------------------------------------


def test_metadata_all_kinds(store: cs.Store, roots: Roots, driver: str) -> None:
    layer = store.create_layer()
    image = store.create_image(layer.id, metadata='{"a":1}')
    ctr = store.create_container(image.id, metadata="ctr-md")
    assert store.metadata(layer.id) == ""
    assert store.metadata(image.id) == '{"a":1}'
    assert store.metadata(ctr.id) == "ctr-md"
    store.set_metadata(layer.id, "layer <md>")
    store.set_metadata(image.id, "image md")
    store.set_metadata(ctr.id, "ctr md 2")
    assert store.layer(layer.id).metadata == "layer <md>"
    assert store.image(image.id).metadata == "image md"
    assert store.container(ctr.id).metadata == "ctr md 2"
    raw = (layers_dir(roots, driver) / "layers.json").read_bytes()
    assert b'"metadata":"layer \\u003cmd\\u003e"' in raw
    assert go_json(roots, driver, "metadata", "-j", image.id, ctr.id, layer.id) == {
        image.id: "image md",
        ctr.id: "ctr md 2",
        layer.id: "layer <md>",
    }


def test_metadata_unknown(store: cs.Store) -> None:
    with pytest.raises(errors.NotAnIDError):
        store.metadata("nope")
    with pytest.raises(errors.NotAnIDError):
        store.set_metadata("nope", "x")


# -- image big data -------------------------------------------------------------------------


def test_image_big_data(store: cs.Store, roots: Roots, driver: str) -> None:
    img = store.create_image()
    assert store.list_image_big_data(img.id) == []
    assert not (images_dir(roots, driver) / img.id).exists()
    store.set_image_big_data(img.id, "config", b"0123456789")
    store.set_image_big_data(img.id, "custom-key", b"x" * 50)
    store.set_image_big_data(img.id, "config", b"abc")
    assert store.list_image_big_data(img.id) == ["config", "custom-key"]
    assert store.image_big_data(img.id, "config") == b"abc"
    assert store.image_big_data_size(img.id, "config") == 3
    assert store.image_big_data_digest(img.id, "config") == sha256(b"abc")
    assert store.image_big_data_size(img.id, "custom-key") == 50
    rec = images_json(roots, driver)[0]
    assert rec["big-data-names"] == ["config", "custom-key"]
    assert rec["big-data-sizes"] == {"config": 3, "custom-key": 50}
    assert rec["big-data-digests"]["custom-key"] == sha256(b"x" * 50)
    assert go(roots, driver, "get-image-data", img.id, "custom-key").stdout == b"x" * 50
    assert go(roots, driver, "get-image-data-size", img.id, "config").stdout == b"3\n"
    assert "digest" not in rec  # only manifest keys set an image digest


@pytest.mark.parametrize(
    ("key", "file_name"),
    [
        ("manifest", "manifest"),
        ("config.json", "config.json"),
        ("custom-key", "=Y3VzdG9tLWtleQ=="),
        ("Key/With:Odd+Chars", "=S2V5L1dpdGg6T2RkK0NoYXJz"),
        ("foo-", "foo-"),  # Go's quirk: only the last character is odd
    ],
)
def test_big_data_file_names(
    store: cs.Store, roots: Roots, driver: str, key: str, file_name: str
) -> None:
    img = store.create_image()
    store.set_image_big_data(img.id, key, b"data")
    path = images_dir(roots, driver) / img.id / file_name
    assert path.read_bytes() == b"data"
    assert path.stat().st_mode & 0o777 == 0o600
    assert (images_dir(roots, driver) / img.id).stat().st_mode & 0o777 == 0o700
    assert go(roots, driver, "get-image-data", img.id, key).stdout == b"data"


def test_manifest_sets_digest(store: cs.Store, roots: Roots, driver: str) -> None:
    img = store.create_image(names=["m"])
    manifest = b'{"schemaVersion":2}'
    store.set_image_big_data(img.id, "manifest", manifest)
    got = store.image(img.id)
    assert got.digest == sha256(manifest)
    assert got.digests == (sha256(manifest),)
    assert [i.id for i in store.images_by_digest(sha256(manifest))] == [img.id]
    # Other manifest-prefixed keys add digests.
    store.set_image_big_data(img.id, "manifest-sha256:x", b"other")
    got = store.image(img.id)
    assert got.digest == sha256(manifest)
    assert set(got.digests) == {sha256(manifest), sha256(b"other")}
    assert [i.id for i in store.images_by_digest(sha256(b"other"))] == [img.id]
    # A custom digest callback is used for manifest keys only.
    store.set_image_big_data(img.id, "manifest-2", b"m2", lambda data: sha256(b"custom" + data))
    assert store.image_big_data_digest(img.id, "manifest-2") == sha256(b"customm2")
    assert [i.id for i in store.images_by_digest(sha256(b"customm2"))] == [img.id]
    store.set_image_big_data(img.id, "notmanifest", b"q", lambda data: sha256(b"no"))
    assert store.image_big_data_digest(img.id, "notmanifest") == sha256(b"q")
    assert store.images_by_digest(sha256(b"unrelated")) == []
    # Go finds the image by each digest too.
    for digest in (sha256(manifest), sha256(b"other")):
        out = go(roots, driver, "images-by-digest", "-q", digest).stdout.decode().split()
        assert out == [img.id]
    # An explicit digest at creation.
    other = store.create_image(digest=sha256(b"given"))
    assert store.image(other.id).digest == sha256(b"given")
    assert [i.id for i in store.images_by_digest(sha256(b"given"))] == [other.id]


def test_image_big_data_missing_key(store: cs.Store) -> None:
    img = store.create_image()
    with pytest.raises(FileNotFoundError, match="file does not exist"):
        store.image_big_data(img.id, "nope")
    with pytest.raises(errors.ImageUnknownError, match="image not known"):
        store.image_big_data("no-image", "manifest")


def test_big_data_errors_are_gos(store: cs.Store) -> None:
    """Go's texts, with its %q quoting, for unknown images and items and empty keys; Go's
    store reports any failure of a size or digest lookup as ErrSizeUnknown/ErrDigestUnknown."""
    layer = store.create_layer()
    img = store.create_image()

    def text(call: Any, *args: str) -> str:
        with pytest.raises((errors.StorageError, FileNotFoundError)) as info:
            call(*args)
        return str(info.value)

    assert text(store.image, 'no"such\t') == (
        'locating image with ID "no\\"such\\t": image not known'
    )
    assert text(store.image_big_data, img.id, "") == (
        f'locating item named "" for image with ID "{img.id}" (consider removing the image to '
        "resolve the issue): file does not exist"
    )
    assert text(store.layer_big_data, layer.id, "k\x01") == (
        f'locating item named "k\\x01" for layer with ID "{layer.id}": file does not exist'
    )
    assert text(store.layer_big_data, layer.id, "") == (
        f'locating item named "" for layer with ID "{layer.id}": file does not exist'
    )
    for ref, key in ((img.id, ""), (img.id, "nope"), ("nosuch", "k")):
        with pytest.raises(errors.SizeUnknownError, match=r"^size is not known$"):
            store.image_big_data_size(ref, key)
        with pytest.raises(errors.DigestUnknownError, match=r"^could not compute digest of item$"):
            store.image_big_data_digest(ref, key)


def test_image_big_data_empty_key(store: cs.Store) -> None:
    img = store.create_image()
    with pytest.raises(errors.InvalidBigDataNameError):
        store.set_image_big_data(img.id, "", b"x")
    with pytest.raises(errors.InvalidBigDataNameError):
        store.set_container_big_data(store.create_container().id, "", b"x")
    with pytest.raises(errors.InvalidBigDataNameError):
        store.set_layer_big_data(store.create_layer().id, "", b"x")


def test_container_big_data(store: cs.Store, roots: Roots, driver: str) -> None:
    ctr = store.create_container(names=["bd"])
    assert store.list_container_big_data(ctr.id) == []
    store.set_container_big_data(ctr.id, "config.json", b'{"x":1}')
    store.set_container_big_data(ctr.id, "custom-key", b"y" * 7)
    assert store.list_container_big_data("bd") == ["config.json", "custom-key"]
    assert store.container_big_data(ctr.id, "config.json") == b'{"x":1}'
    assert store.container_big_data_size(ctr.id, "custom-key") == 7
    assert store.container_big_data_digest(ctr.id, "custom-key") == sha256(b"y" * 7)
    cdir = containers_dir(roots, driver) / ctr.id
    assert (cdir / "config.json").read_bytes() == b'{"x":1}'
    assert (cdir / "=Y3VzdG9tLWtleQ==").read_bytes() == b"y" * 7
    rec = containers_json(roots, driver)[0]
    assert rec["big-data-sizes"] == {"config.json": 7, "custom-key": 7}
    assert go(roots, driver, "get-container-data", ctr.id, "custom-key").stdout == b"y" * 7
    # Go returns os.ReadFile's error as it is.
    with pytest.raises(FileNotFoundError, match=f"^open {cdir}/nope: no such file or directory$"):
        store.container_big_data(ctr.id, "nope")
    with pytest.raises(errors.ContainerUnknownError):
        store.container_big_data("no-ctr", "config.json")


def test_layer_big_data(store: cs.Store, roots: Roots, driver: str) -> None:
    layer = store.create_layer()
    assert store.list_layer_big_data(layer.id) == []
    store.set_layer_big_data(layer.id, "layer-note", b"note")
    store.set_layer_big_data(layer.id, "plain", io.BytesIO(b"from a file"))
    assert store.list_layer_big_data(layer.id) == ["layer-note", "plain"]
    assert store.layer_big_data(layer.id, "layer-note") == b"note"
    assert store.layer_big_data(layer.id, "plain") == b"from a file"
    assert (layers_dir(roots, driver) / layer.id / "=bGF5ZXItbm90ZQ==").read_bytes() == b"note"
    assert by_id(layers_json(roots, driver), layer.id)["big-data-names"] == ["layer-note", "plain"]
    assert go(roots, driver, "get-layer-data", layer.id, "layer-note").stdout == b"note"
    with pytest.raises(errors.LayerUnknownError):
        store.layer_big_data("no-layer", "plain")
    # Deleting the layer removes its big data.
    store.delete_layer(layer.id)
    assert not (layers_dir(roots, driver) / layer.id).exists()


def test_layer_big_data_missing_key(store: cs.Store) -> None:
    # Go: `locating item named "nope" for layer with ID "<id>": file does not exist`.
    layer = store.create_layer()
    with pytest.raises(FileNotFoundError, match="file does not exist"):
        store.layer_big_data(layer.id, "nope")


# -- containers -----------------------------------------------------------------------------


def test_create_container_layer(store: cs.Store, roots: Roots, driver: str) -> None:
    base, _ = store.put_layer(diff=io.BytesIO(BASE_TAR))
    image = store.create_image(base.id, names=["img"])
    ctr = store.create_container("img", names=["c"])
    clayer = store.layer(ctr.layer)
    assert clayer.parent == base.id
    assert clayer.names == ()
    assert clayer.diff_digest == ""
    assert ctr.image == image.id
    rec = by_id(layers_json(roots, driver), ctr.layer)
    assert set(rec) == {"id", "parent", "created"}
    assert layer_files(store, ctr.id)["etc/a.txt"] == b"hello"
    crec = containers_json(roots, driver)[0]
    assert crec["layer"] == ctr.layer and crec["image"] == image.id
    assert crec["flags"] == {"MountLabel": "", "ProcessLabel": ""}
    # A container from nothing has an empty image and a parentless layer.
    bare = store.create_container()
    assert bare.image == ""
    assert store.layer(bare.layer).parent == ""
    assert by_id(containers_json(roots, driver), bare.id)["image"] == ""


def test_container_directories(store: cs.Store, roots: Roots, driver: str) -> None:
    ctr = store.create_container()
    graph_ud = containers_dir(roots, driver) / ctr.id / "userdata"
    run_ud = roots[1] / f"{driver}-containers" / ctr.id / "userdata"
    # As Go: creating a container makes no directories; asking for them does.
    assert not graph_ud.parent.exists() and not run_ud.parent.exists()
    assert store.container_directory(ctr.id) == str(graph_ud)
    assert store.container_run_directory(ctr.id) == str(run_ud)
    assert graph_ud.is_dir() and run_ud.is_dir()
    assert graph_ud.stat().st_mode & 0o777 == 0o700
    assert run_ud.stat().st_mode & 0o777 == 0o700
    assert go(roots, driver, "get-container-dir", ctr.id).stdout.decode().strip() == str(graph_ud)
    run_dir = go(roots, driver, "get-container-run-dir", ctr.id).stdout.decode().strip()
    assert run_dir == str(run_ud)
    store.set_container_directory_file(ctr.id, "state.json", b"graph")
    store.set_container_run_directory_file(ctr.id, "sub/pid", b"123")
    assert (graph_ud / "state.json").read_bytes() == b"graph"
    assert (run_ud / "sub" / "pid").read_bytes() == b"123"
    assert store.from_container_directory(ctr.id, "state.json") == b"graph"
    assert store.from_container_run_directory(ctr.id, "sub/pid") == b"123"
    store.set_container_directory_file(ctr.id, "state.json", b"graph2")
    assert store.from_container_directory(ctr.id, "state.json") == b"graph2"
    assert sorted(os.listdir(graph_ud)) == ["state.json"]  # no temp files left


def test_container_labels_and_flags(store: cs.Store, roots: Roots, driver: str) -> None:
    mlabel = "system_u:object_r:container_file_t:s0:c1,c2"
    plabel = "system_u:system_r:container_t:s0:c1,c2"
    ctr = store.create_container(mount_label=mlabel, process_label=plabel)
    assert ctr.mount_label == mlabel and ctr.process_label == plabel
    crec = containers_json(roots, driver)[0]
    assert crec["flags"] == {"MountLabel": mlabel, "ProcessLabel": plabel}
    assert by_id(layers_json(roots, driver), ctr.layer)["mountlabel"] == mlabel
    with pytest.raises(ValueError, match="ProcessLabel and Mountlabel"):
        store.create_container(mount_label=mlabel)


def test_volatile_container(store: cs.Store, roots: Roots, driver: str) -> None:
    ctr = store.create_container(volatile=True)
    assert ctr.volatile
    plain = store.create_container()
    recs = containers_json(roots, driver)
    assert by_id(recs, ctr.id)["flags"] == {"MountLabel": "", "ProcessLabel": "", "Volatile": True}
    assert "Volatile" not in by_id(recs, plain.id)["flags"]
    # No volatile-containers.json in 1.43.
    assert not (containers_dir(roots, driver) / "volatile-containers.json").exists()
    assert store.container(ctr.id).volatile


def test_container_by_layer(store: cs.Store) -> None:
    layer = store.create_layer()
    image = store.create_image(layer.id)
    ctr = store.create_container(image.id, names=["cbl"])
    assert store.container_by_layer(ctr.layer).id == ctr.id
    assert store.container(ctr.layer).id == ctr.id
    assert store.container_layer_id("cbl") == ctr.layer
    with pytest.raises(errors.ContainerUnknownError):
        store.container_by_layer(layer.id)
    with pytest.raises(errors.LayerUnknownError):
        store.container_by_layer("no-layer")


# -- deletion -------------------------------------------------------------------------------


def test_delete_layer_with_children(store: cs.Store, roots: Roots, driver: str) -> None:
    parent = store.create_layer()
    child = store.create_layer(parent.id)
    with pytest.raises(errors.LayerHasChildrenError) as exc:
        store.delete_layer(parent.id)
    assert str(exc.value).startswith(f"used by layer {child.id}")
    assert str(exc.value).endswith("layer has children")
    store.delete_layer(child.id)
    store.delete_layer(parent.id)
    assert store.layers() == []
    assert layers_json(roots, driver) == []
    assert not layer_home(roots, driver, parent.id).exists()


def test_delete_layer_in_use(store: cs.Store) -> None:
    top = store.create_layer()
    image = store.create_image(top.id)
    with pytest.raises(errors.LayerUsedByImageError, match="layer is in use by an image"):
        store.delete_layer(top.id)
    ctr = store.create_container(image.id)
    with pytest.raises(errors.LayerUsedByContainerError, match="in use by a container"):
        store.delete_layer(ctr.layer)
    with pytest.raises(errors.NotALayerError):
        store.delete_layer(image.id)
    with pytest.raises(errors.NotALayerError):
        store.delete_layer("nothing")
    assert store.exists(top.id) and store.exists(ctr.layer)


def test_delete_image_used_by_container(store: cs.Store) -> None:
    image = store.create_image(store.create_layer().id)
    ctr = store.create_container(image.id)
    with pytest.raises(errors.ImageUsedByContainerError) as exc:
        store.delete_image(image.id)
    assert str(exc.value) == f"image used by {ctr.id}: image is in use by a container"
    with pytest.raises(errors.NotAnImageError):
        store.delete_image("nothing")
    with pytest.raises(errors.NotAnImageError):
        store.delete_image(ctr.id)


def test_delete_image_removes_its_layers(store: cs.Store, roots: Roots, driver: str) -> None:
    unrelated = store.create_layer(names=["unrelated"])
    l1, _ = store.put_layer(diff=io.BytesIO(BASE_TAR), names=["l1"])
    l2, _ = store.put_layer(l1.id, io.BytesIO(CHILD_TAR))
    l3 = store.create_layer(l2.id)
    image = store.create_image(l3.id)
    store.set_image_big_data(image.id, "manifest", b"{}")
    assert store.delete_image(image.id) == [l3.id, l2.id, l1.id]
    assert [x.id for x in store.layers()] == [unrelated.id]
    assert store.images() == []
    assert not (images_dir(roots, driver) / image.id).exists()
    for lid in (l1.id, l2.id, l3.id):
        assert not layer_home(roots, driver, lid).exists()
        assert not (layers_dir(roots, driver) / f"{lid}.tar-split.gz").exists()
    assert images_json(roots, driver) == []


def test_delete_image_keeps_shared_layers(store: cs.Store) -> None:
    base = store.create_layer()
    mid = store.create_layer(base.id)
    top1 = store.create_layer(mid.id)
    top2 = store.create_layer(mid.id)
    img1 = store.create_image(top1.id)
    img2 = store.create_image(top2.id)
    img3 = store.create_image(mid.id)
    assert store.delete_image(img1.id) == [top1.id]
    assert {x.id for x in store.layers()} == {base.id, mid.id, top2.id}
    # mid is img3's top layer: only top2 goes.
    assert store.delete_image(img2.id) == [top2.id]
    assert store.delete_image(img3.id) == [mid.id, base.id]
    assert store.layers() == []


def test_delete_image_dry_run(store: cs.Store, roots: Roots, driver: str) -> None:
    base = store.create_layer()
    top = store.create_layer(base.id)
    image = store.create_image(top.id)
    before_layers = (layers_dir(roots, driver) / "layers.json").read_bytes()
    before_images = (images_dir(roots, driver) / "images.json").read_bytes()
    assert store.delete_image(image.id, commit=False) == [top.id, base.id]
    assert (layers_dir(roots, driver) / "layers.json").read_bytes() == before_layers
    assert (images_dir(roots, driver) / "images.json").read_bytes() == before_images
    assert store.image(image.id).id == image.id
    assert len(store.layers()) == 2


def test_delete_container(store: cs.Store, roots: Roots, driver: str) -> None:
    image = store.create_image(store.create_layer().id)
    ctr = store.create_container(image.id, names=["gone"])
    store.set_container_big_data(ctr.id, "config.json", b"{}")
    store.mount(ctr.id)
    store.delete_container("gone")
    assert store.containers() == []
    assert containers_json(roots, driver) == []
    assert not store.exists(ctr.layer)
    assert not layer_home(roots, driver, ctr.layer).exists()
    assert not (containers_dir(roots, driver) / ctr.id).exists()
    assert not (roots[1] / f"{driver}-containers" / ctr.id).exists()
    assert mountpoints_json(roots, driver) == []
    with pytest.raises(errors.NotAContainerError):
        store.delete_container(ctr.id)
    # The image can go now.
    assert len(store.delete_image(image.id)) == 1


def test_delete_any(store: cs.Store, roots: Roots, driver: str) -> None:
    layer = store.create_layer()
    image = store.create_image(layer.id)
    ctr = store.create_container(image.id)
    store.delete(ctr.id)
    assert not store.exists(ctr.id) and not store.exists(ctr.layer)
    assert not (containers_dir(roots, driver) / ctr.id).exists()
    # Delete skips Go's safety checks: the image goes, its layer stays.
    store.delete(image.id)
    assert store.images() == []
    assert store.layer(layer.id).id == layer.id
    store.delete(layer.id)
    assert store.layers() == []
    with pytest.raises(errors.LayerUnknownError):
        store.delete("nothing")


def test_wipe(store: cs.Store, roots: Roots, driver: str) -> None:
    base, _ = store.put_layer(diff=io.BytesIO(BASE_TAR))
    image = store.create_image(base.id)
    store.create_container(image.id)
    store.create_container(image.id)
    store.create_layer(base.id)
    store.wipe()
    assert store.layers() == [] and store.images() == [] and store.containers() == []
    assert layers_json(roots, driver) == []
    assert images_json(roots, driver) == []
    assert containers_json(roots, driver) == []
    assert (containers_dir(roots, driver) / "containers.json").read_bytes() == b"[]"
    if driver == "vfs":
        assert os.listdir(roots[0] / "vfs" / "dir") == []
    assert go_json(roots, driver, "layers", "-j") == []


# -- mounting -------------------------------------------------------------------------------


def test_mount_counting_container(store: cs.Store, roots: Roots, driver: str) -> None:
    image = store.create_image(store.put_layer(diff=io.BytesIO(BASE_TAR))[0].id)
    ctr = store.create_container(image.id)
    assert store.mounted(ctr.id) == 0
    assert mountpoints_json(roots, driver) == []
    path = store.mount(ctr.id)
    if driver == "vfs":
        assert path == str(layer_home(roots, driver, ctr.layer))
    assert Path(path, "etc", "a.txt").read_bytes() == b"hello"
    assert store.mount(ctr.id) == path
    assert store.mounted(ctr.id) == 2
    assert store.mounted(ctr.layer) == 2
    assert store.layer(ctr.layer).mount_count == 2
    assert store.layer(ctr.layer).mount_point == path
    raw = (roots[1] / f"{driver}-layers" / "mountpoints.json").read_bytes()
    want = [{"id": ctr.layer, "path": path, "count": 2}]
    assert raw == json.dumps(want, separators=(",", ":")).encode()
    assert go(roots, driver, "mounted", ctr.id).stdout.decode().strip() == f"{ctr.id} mounted"
    assert store.unmount(ctr.id) is True
    assert store.mounted(ctr.id) == 1
    assert mountpoints_json(roots, driver)[0]["count"] == 1
    assert store.unmount(ctr.id) is False
    assert store.mounted(ctr.id) == 0
    assert (roots[1] / f"{driver}-layers" / "mountpoints.json").read_bytes() == b"[]"
    assert go(roots, driver, "mounted", ctr.id).stdout == b""


def test_mount_counting_layer_and_force(store: cs.Store, roots: Roots, driver: str) -> None:
    layer = store.create_layer()
    for _ in range(3):
        path = store.mount(layer.id)
    assert store.mounted(layer.id) == 3
    assert mountpoints_json(roots, driver) == [{"id": layer.id, "path": path, "count": 3}]
    # A mount made by Go is counted too.
    go(roots, driver, "mount", layer.id)
    assert store.mounted(layer.id) == 4
    assert store.unmount(layer.id) is True
    assert store.unmount(layer.id, force=True) is False
    assert store.mounted(layer.id) == 0
    assert mountpoints_json(roots, driver) == []
    assert go(roots, driver, "mounted", layer.id).stdout == b""
    # Unmount by mount path.
    path = store.mount(layer.id)
    assert store.unmount(path) is False
    with pytest.raises(errors.LayerUnknownError):
        store.mount("no-layer")


# -- crash leftovers and foreign JSON -------------------------------------------------------


def test_incomplete_layer_removed_on_open(store: cs.Store, roots: Roots, driver: str) -> None:
    layer, _ = store.put_layer(diff=io.BytesIO(BASE_TAR))
    assert layer_home(roots, driver, layer.id).exists()
    path = layers_dir(roots, driver) / "layers.json"
    text = path.read_text()
    assert text.count('"id":') == 1
    path.write_text(text.replace('"id":', '"flags":{"incomplete":true},"id":'))
    fresh = cs.Store(roots[0], roots[1], driver)
    try:
        assert fresh.layers() == []
    finally:
        fresh.shutdown()
    assert not layer_home(roots, driver, layer.id).exists()
    assert not (layers_dir(roots, driver) / f"{layer.id}.tar-split.gz").exists()
    assert layers_json(roots, driver) == []
    assert go_json(roots, driver, "layers", "-j") == []


def test_truncated_layers_json_is_a_load_error(roots: Roots, driver: str) -> None:
    s = cs.Store(roots[0], roots[1], driver)
    s.create_layer(names=["x"])
    s.create_layer(names=["y"])
    s.shutdown()
    path = layers_dir(roots, driver) / "layers.json"
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) - 20])
    # Go would silently read a partial list; we refuse (deliberately).
    with pytest.raises(errors.LoadError):
        s2 = cs.Store(roots[0], roots[1], driver)
        s2.layers()
    assert path.read_bytes() == raw[: len(raw) - 20]  # not rewritten


def test_truncated_layers_json_while_open(store: cs.Store, roots: Roots, driver: str) -> None:
    store.create_layer()
    path = layers_dir(roots, driver) / "layers.json"
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(errors.LoadError):
        store.layers()


def test_unknown_keys_survive(store: cs.Store, roots: Roots, driver: str) -> None:
    a = store.create_layer()
    b = store.create_layer()
    path = layers_dir(roots, driver) / "layers.json"
    text = path.read_text()
    needle = f'"id":"{a.id}"'
    path.write_text(text.replace(needle, needle + ',"x-unknown-field":123'))
    store.set_metadata(b.id, "touch")
    recs = layers_json(roots, driver)
    assert by_id(recs, a.id)["x-unknown-field"] == 123
    assert by_id(recs, b.id)["metadata"] == "touch"
    store.set_metadata(a.id, "also")
    rec = by_id(layers_json(roots, driver), a.id)
    assert rec["x-unknown-field"] == 123 and rec["metadata"] == "also"
    # Images too.
    img = store.create_image()
    ipath = images_dir(roots, driver) / "images.json"
    ipath.write_text(ipath.read_text().replace(f'"id":"{img.id}"', f'"id":"{img.id}","x-i":[1]'))
    store.create_image()
    assert by_id(images_json(roots, driver), img.id)["x-i"] == [1]


# -- lock tokens and other processes --------------------------------------------------------


def test_lock_tokens_change_on_write(store: cs.Store, roots: Roots, driver: str) -> None:
    llock = layers_dir(roots, driver) / "layers.lock"
    ilock = images_dir(roots, driver) / "images.lock"
    clock = containers_dir(roots, driver) / "containers.lock"
    mlock = roots[1] / f"{driver}-layers" / "mountpoints.lock"
    seen: dict[Path, set[bytes]] = {p: set() for p in (llock, ilock, clock, mlock)}
    # containers.lock stays empty until the first container write.
    assert clock.stat().st_size == 0

    def check(*changed: Path) -> None:
        for p in changed:
            token = lock_token(p)
            assert len(token) == 64, p
            assert token not in seen[p], p
            seen[p].add(token)

    layer = store.create_layer()
    check(llock)
    store.set_metadata(layer.id, "m")
    check(llock)
    image = store.create_image(layer.id)
    check(ilock)
    store.set_image_big_data(image.id, "k", b"v")
    check(ilock)
    ctr = store.create_container(image.id)
    check(llock, clock)
    store.set_metadata(ctr.id, "c")
    check(clock)
    store.mount(ctr.id)
    check(mlock)
    store.unmount(ctr.id)
    check(mlock)
    # Token layout: nanoseconds, counter, our PID.
    token = lock_token(llock)
    assert int.from_bytes(token[16:20], "little") == os.getpid()
    # Reads do not touch the token.
    before = lock_token(llock)
    store.layers()
    store.layer(layer.id)
    assert lock_token(llock) == before


CHILD_SCRIPT = r"""
import json, sys
import containers_storage as cs

s = cs.Store(sys.argv[1], sys.argv[2], sys.argv[3])
print("ready", flush=True)
for line in sys.stdin:
    cmd, _, arg = line.strip().partition(" ")
    if cmd == "layers":
        out = sorted(x.id for x in s.layers())
    elif cmd == "images":
        out = sorted(x.id for x in s.images())
    elif cmd == "metadata":
        out = s.metadata(arg)
    elif cmd == "create-layer":
        out = s.create_layer(names=[arg]).id
    elif cmd == "create-image":
        out = s.create_image(names=[arg]).id
    elif cmd == "set-metadata":
        ref, _, md = arg.partition(" ")
        s.set_metadata(ref, md)
        out = "ok"
    elif cmd == "quit":
        s.shutdown()
        print(json.dumps("bye"), flush=True)
        break
    print(json.dumps(out), flush=True)
"""


def _ask(child: Child, line: str) -> Any:
    child.send(line)
    assert child.proc.stdout is not None
    answer = child.proc.stdout.readline()
    if not answer:
        _rc, _out, err = child.finish()
        pytest.fail(f"child died on {line!r}: {err}")
    return json.loads(answer)


def test_other_process_sees_changes(
    store: cs.Store, roots: Roots, driver: str, children: list[Child]
) -> None:
    first = store.create_layer(names=["first"])
    child = Child(CHILD_SCRIPT, str(roots[0]), str(roots[1]), driver)
    children.append(child)
    child.expect("ready")
    assert _ask(child, "layers") == [first.id]
    # Our writes reach the long-lived child without a restart.
    second = store.create_layer(names=["second"])
    assert _ask(child, "layers") == sorted([first.id, second.id])
    store.set_metadata(first.id, "from-parent")
    assert _ask(child, f"metadata {first.id}") == "from-parent"
    img = store.create_image(names=["parent-img"])
    assert _ask(child, "images") == [img.id]
    # And the child's writes reach this Store object.
    third = _ask(child, "create-layer third")
    assert sorted(x.id for x in store.layers()) == sorted([first.id, second.id, third])
    assert store.layer("third").id == third
    _ask(child, f"set-metadata {second.id} from-child")
    assert store.metadata(second.id) == "from-child"
    cimg = _ask(child, "create-image child-img")
    assert store.image("child-img").id == cimg
    assert _ask(child, "quit") == "bye"
    rc, _out, err = child.finish()
    assert rc == 0, err


# -- ID maps --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Maps:
    """The ID maps the tests below use. vfs cannot shift owners at mount time, so it takes
    Go's ID-mapped-copy path for any map. overlay shifts contiguous maps with idmapped
    mounts (tested in test_overlay.py); to test the copy path there too, it gets a map that
    idmapped mounts cannot express (a second, detached range), identical for IDs below
    65536."""

    uid: list[tuple[int, int, int]]
    gid2: list[tuple[int, int, int]]

    @property
    def uid_ids(self) -> tuple[cs.IDMap, ...]:
        return tuple(cs.IDMap(*m) for m in self.uid)

    @property
    def gid2_ids(self) -> tuple[cs.IDMap, ...]:
        return tuple(cs.IDMap(*m) for m in self.gid2)

    @property
    def uid_json(self) -> list[dict[str, int]]:
        return [{"container_id": c, "host_id": h, "size": n} for c, h, n in self.uid]

    @property
    def gid2_json(self) -> list[dict[str, int]]:
        return [{"container_id": c, "host_id": h, "size": n} for c, h, n in self.gid2]


@pytest.fixture
def maps(driver: str) -> Maps:
    if driver == "vfs":
        return Maps(uid=MAP, gid2=[(0, 200000, 65536)])
    return Maps(uid=[*MAP, (65536, 300000, 1)], gid2=[(0, 200000, 65536), (65536, 300000, 1)])


def test_create_layer_with_maps(store: cs.Store, roots: Roots, driver: str, maps: Maps) -> None:
    layer = store.create_layer(uid_map=maps.uid, gid_map=maps.gid2)
    assert layer.uidmap == maps.uid_ids
    assert layer.gidmap == maps.gid2_ids
    rec = by_id(layers_json(roots, driver), layer.id)
    assert rec["uidmap"] == maps.uid_json
    assert rec["gidmap"] == maps.gid2_json
    path = Path(store.mount(layer.id))
    try:
        st = path.stat()
        assert (st.st_uid, st.st_gid) == (100000, 200000)
    finally:
        store.unmount(layer.id)
    if driver == "vfs":
        assert layer_home(roots, driver, layer.id).stat().st_mode & 0o777 == 0o555
    # A child inherits the parent's maps.
    child = store.create_layer(layer.id)
    assert child.uidmap == layer.uidmap and child.gidmap == layer.gidmap
    assert go_json(roots, driver, "layer", "-j", layer.id)[0]["uidmap"] == maps.uid_json


def test_put_layer_with_maps_chowns(store: cs.Store, roots: Roots, driver: str, maps: Maps) -> None:
    layer, _ = store.put_layer(diff=io.BytesIO(BASE_TAR), uid_map=maps.uid, gid_map=maps.uid)
    # The owner sets are the archive's (container) IDs.
    assert layer.uidset == (0, 1000)
    assert layer.gidset == (0, 1001)
    path = Path(store.mount(layer.id))
    try:
        a = (path / "etc" / "a.txt").stat()
        notes = (path / "home" / "user" / "notes.txt").stat()
        assert (a.st_uid, a.st_gid) == (100000, 100000)
        assert (notes.st_uid, notes.st_gid) == (101000, 101001)
        assert path.stat().st_uid == 100000
    finally:
        store.unmount(layer.id)
    # The diff maps the owners back.
    out = b"".join(store.diff(None, layer.id, compression="none"))
    assert out == BASE_TAR
    with tarfile.open(fileobj=io.BytesIO(out)) as t:
        assert t.getmember("home/user/notes.txt").uid == 1000
    assert by_id(layers_json(roots, driver), layer.id)["uidmap"] == maps.uid_json


def test_create_container_with_maps_makes_mapped_copy(
    store: cs.Store, roots: Roots, driver: str, maps: Maps
) -> None:
    top, _ = store.put_layer(diff=io.BytesIO(BASE_TAR))
    image = store.create_image(top.id, names=["unmapped"])
    ctr = store.create_container(image.id, uid_map=maps.uid, gid_map=maps.uid)
    img = store.image(image.id)
    assert len(img.mapped_layers) == 1
    mapped = store.layer(img.mapped_layers[0])
    assert mapped.id != top.id
    assert mapped.parent == top.parent == ""
    assert mapped.uidmap == maps.uid_ids
    assert mapped.diff_digest == top.diff_digest
    clayer = store.layer(ctr.layer)
    assert clayer.parent == mapped.id
    assert clayer.uidmap == mapped.uidmap
    assert store.container(ctr.id).uidmap == maps.uid_ids
    crec = containers_json(roots, driver)[0]
    assert crec["uidmap"] == maps.uid_json and crec["gidmap"] == maps.uid_json
    assert images_json(roots, driver)[0]["mapped-layers"] == [mapped.id]
    path = Path(store.mount(ctr.id))
    try:
        assert (path / "etc" / "a.txt").stat().st_uid == 100000
        assert (path / "home" / "user" / "notes.txt").stat().st_gid == 101001
    finally:
        store.unmount(ctr.id)
    # The unmapped top layer keeps its owners.
    assert layer_files(store, top.id)["etc/a.txt"] == b"hello"
    if driver == "vfs":
        assert (layer_home(roots, driver, top.id) / "etc" / "a.txt").stat().st_uid == 0
    # A second container with the same maps reuses the copy.
    ctr2 = store.create_container(image.id, uid_map=maps.uid, gid_map=maps.uid)
    assert store.layer(ctr2.layer).parent == mapped.id
    assert store.image(image.id).mapped_layers == (mapped.id,)
    assert [i.id for i in store.images_by_top_layer(mapped.id)] == [image.id]
    # Deleting the image removes the mapped copy first.
    store.delete_container(ctr.id)
    store.delete_container(ctr2.id)
    assert store.delete_image(image.id) == [mapped.id, top.id]
    assert store.layers() == []


def test_delete_mapped_top_layer(store: cs.Store, maps: Maps) -> None:
    top = store.create_layer()
    image = store.create_image(top.id)
    ctr = store.create_container(image.id, uid_map=maps.uid, gid_map=maps.uid)
    mapped = store.image(image.id).mapped_layers[0]
    with pytest.raises(errors.LayerHasChildrenError):
        store.delete_layer(mapped)
    store.delete_container(ctr.id)
    # A mapped copy may go; the image forgets it (Go: removeMappedTopLayer).
    store.delete_layer(mapped)
    assert store.image(image.id).mapped_layers == ()
    assert [x.id for x in store.layers()] == [top.id]


def test_layer_parent_owners(store: cs.Store, roots: Roots, driver: str, maps: Maps) -> None:
    plain = store.create_layer()
    mapped = store.create_layer(uid_map=maps.uid, gid_map=maps.uid)
    assert store.layer_parent_owners(plain.id) == ([], [])
    with pytest.raises(errors.LayerNotMountedError):
        store.layer_parent_owners(mapped.id)
    store.mount(mapped.id)
    try:
        uids, gids = store.layer_parent_owners(mapped.id)
        # Every directory above the mount point is root's, which the map cannot express.
        assert (uids, gids) == ([0], [0])
        out = go_json(roots, driver, "layer-parent-owners", "-j", mapped.id)
        assert (out["UIDs"] or [], out["GIDs"] or []) == (uids, gids)
    finally:
        store.unmount(mapped.id)
    image = store.create_image(plain.id)
    ctr = store.create_container(image.id, uid_map=maps.uid, gid_map=maps.uid)
    store.mount(ctr.id)
    try:
        assert store.container_parent_owners(ctr.id) == ([0], [0])
        out = go_json(roots, driver, "container-parent-owners", "-j", ctr.id)
        assert (out["UIDs"], out["GIDs"]) == ([0], [0])
    finally:
        store.unmount(ctr.id)


# -- additional read-only image stores ------------------------------------------------------


BUILD_RO_SCRIPT = r"""
import json, sys
import containers_storage as cs

graph, run, drv, base_tar, child_tar = sys.argv[1:6]
s = cs.Store(graph, run, drv)
base, _ = s.put_layer(diff=base_tar, names=["ro-base"])
top, _ = s.put_layer(base.id, child_tar, names=["ro-top"])
img = s.create_image(top.id, names=["ro-image"], metadata="ro-md")
s.set_image_big_data(img.id, "manifest", b'{"ro":true}')
s.shutdown()
print(json.dumps({"base": base.id, "top": top.id, "image": img.id}))
"""


@dataclass
class ROSetup:
    a_roots: Roots
    b_roots: Roots
    ids: dict[str, str]
    store: cs.Store
    a_files: dict[str, bytes] = field(default_factory=dict)


@pytest.fixture
def ro_setup(tmp_path: Path, driver: str) -> Iterator[ROSetup]:
    a_roots = (tmp_path / "a-root", tmp_path / "a-run")
    b_roots = (tmp_path / "b-root", tmp_path / "b-run")
    (tmp_path / "base.tar").write_bytes(BASE_TAR)
    (tmp_path / "child.tar").write_bytes(CHILD_TAR)
    # Store A is built by another process: a store is either read-write or read-only
    # within one process (its lock files are opened one way).
    args = [str(a_roots[0]), str(a_roots[1]), driver]
    args += [str(tmp_path / "base.tar"), str(tmp_path / "child.tar")]
    p = subprocess.run(
        [sys.executable, "-c", BUILD_RO_SCRIPT, *args], capture_output=True, text=True, check=False
    )
    assert p.returncode == 0, p.stderr
    ids = json.loads(p.stdout)
    a_files = {
        name: (a_roots[0] / sub / name).read_bytes()
        for sub, name in ((f"{driver}-layers", "layers.json"), (f"{driver}-images", "images.json"))
    }
    b = cs.Store(
        b_roots[0], b_roots[1], driver, driver_options=[f"{driver}.imagestore={a_roots[0]}"]
    )
    setup = ROSetup(a_roots, b_roots, ids, b, a_files)
    yield setup
    try:
        b.shutdown(True)
    except cs.StorageError:
        pass


def _a_unchanged(setup: ROSetup, driver: str) -> None:
    for sub, name in ((f"{driver}-layers", "layers.json"), (f"{driver}-images", "images.json")):
        assert (setup.a_roots[0] / sub / name).read_bytes() == setup.a_files[name]


def test_ro_store_lists_read_only_items(ro_setup: ROSetup, driver: str) -> None:
    b, ids = ro_setup.store, ro_setup.ids
    own = b.create_layer(names=["b-own"])
    layers = b.layers()
    assert [x.id for x in layers] == [own.id, ids["base"], ids["top"]]
    assert [x.read_only for x in layers] == [False, True, True]
    assert b.layer("ro-top").read_only
    images = b.images()
    assert [i.id for i in images] == [ids["image"]]
    assert images[0].read_only and images[0].names == ("ro-image",)
    assert b.image("ro-image").metadata == "ro-md"
    assert b.metadata("ro-image") == "ro-md"
    assert b.image_big_data("ro-image", "manifest") == b'{"ro":true}'
    assert [i.id for i in b.images_by_digest(sha256(b'{"ro":true}'))] == [ids["image"]]
    assert b.exists(ids["base"]) and b.exists("ro-image")
    assert b.layer_size(ids["top"]) == len(CHILD_TAR)
    assert b.image_size(ids["image"]) == len(BASE_TAR) + len(CHILD_TAR) + len(b'{"ro":true}')
    go_args = ("--storage-opt", f"{driver}.imagestore={ro_setup.a_roots[0]}")
    out = go(ro_setup.b_roots, driver, *go_args, "layer", ids["top"]).stdout.decode()
    assert "Read Only: true" in out
    _a_unchanged(ro_setup, driver)


def test_ro_layer_as_parent(ro_setup: ROSetup, driver: str) -> None:
    b, ids = ro_setup.store, ro_setup.ids
    child, size = b.put_layer("ro-top", io.BytesIO(make_tar([f("in-b.txt", b"b")])))
    assert size == 1
    assert child.parent == ids["top"]
    assert not child.read_only
    files = layer_files(b, child.id)
    assert files["in-b.txt"] == b"b"
    assert files["etc/b.txt"] == b"1234567"
    assert "etc/a.txt" not in files
    assert b.layers()[0].id == child.id
    grandchild = b.create_layer(child.id)
    assert layer_files(b, grandchild.id)["etc/keep.txt"] == b"keep me\n"
    _a_unchanged(ro_setup, driver)


def test_ro_parent_diff(ro_setup: ROSetup, driver: str) -> None:
    # The parent lives in the additional store. Go's findParentAndLayer keeps the parent's
    # ID even when its own store does not know it, so changes, sizes and diffs are still
    # against the parent (and the diff is the applied tar, rebuilt from the tar-split).
    b = ro_setup.store
    tar = make_tar([f("in-b.txt", b"b")])
    child, _ = b.put_layer("ro-top", io.BytesIO(tar))
    go_args = ("--storage-opt", f"{driver}.imagestore={ro_setup.a_roots[0]}")
    assert go(ro_setup.b_roots, driver, *go_args, "diffsize", child.id).stdout == b"1\n"
    assert go(ro_setup.b_roots, driver, *go_args, "diff", "-u", child.id).stdout == tar
    assert go_json(ro_setup.b_roots, driver, *go_args, "changes", "-j", child.id) == [
        {"Path": "/in-b.txt", "Kind": 1}
    ]
    assert [(c.path, int(c.kind)) for c in b.changes(None, child.id)] == [("/in-b.txt", 1)]
    assert b.diff_size(None, child.id) == 1
    assert b"".join(b.diff(None, child.id)) == tar


def test_ro_image_container(ro_setup: ROSetup, driver: str) -> None:
    b, ids = ro_setup.store, ro_setup.ids
    ctr = b.create_container("ro-image", names=["on-ro"])
    assert ctr.image == ids["image"]
    assert b.layer(ctr.layer).parent == ids["top"]
    files = layer_files(b, ctr.id)
    assert files["etc/b.txt"] == b"1234567"
    assert files["etc/keep.txt"] == b"keep me\n"
    # Go's DeleteImage only looks in the read-write image store.
    with pytest.raises(errors.NotAnImageError):
        b.delete_image("ro-image")
    b.delete_container(ctr.id)
    assert [x.id for x in b.layers()] == [ids["base"], ids["top"]]
    _a_unchanged(ro_setup, driver)


def test_ro_image_container_size(ro_setup: ROSetup, driver: str) -> None:
    # Same root cause as test_ro_parent_diff: the container layer's parent (the image's
    # top layer) is in the additional store; Go measures against it (Size: 0).
    b = ro_setup.store
    ctr = b.create_container("ro-image")
    go_args = ("--storage-opt", f"{driver}.imagestore={ro_setup.a_roots[0]}")
    out = go(ro_setup.b_roots, driver, *go_args, "container", ctr.id).stdout.decode()
    assert "Size: 0" in out.splitlines()
    assert b.container_size(ctr.id) == 0


def test_ro_image_set_names_copies_record(ro_setup: ROSetup, driver: str) -> None:
    b, ids = ro_setup.store, ro_setup.ids
    b.set_names("ro-image", ["renamed"])
    recs = images_json(ro_setup.b_roots, driver)
    assert [r["id"] for r in recs] == [ids["image"]]
    assert recs[0]["names"] == ["renamed"]
    assert recs[0]["layer"] == ids["top"]
    assert recs[0]["metadata"] == "ro-md"
    # Our copy comes first and wins lookups; A is untouched.
    assert b.image("renamed").id == ids["image"]
    assert not b.image("renamed").read_only
    _a_unchanged(ro_setup, driver)
    # Go keeps all but the first of several names in the copy.
    b2 = ro_setup.b_roots
    other = (b2[0].parent / "b2-root", b2[1].parent / "b2-run")
    c = cs.Store(
        other[0], other[1], driver, driver_options=[f"{driver}.imagestore={ro_setup.a_roots[0]}"]
    )
    try:
        c.set_names(ids["image"], ["first", "second"])
        assert images_json(other, driver)[0]["names"] == ["second"]
    finally:
        c.shutdown()


def test_ro_store_refuses_writes(ro_setup: ROSetup, driver: str) -> None:
    # Go 1.43 only looks in the read-write stores for these writes, so an item of an
    # additional store is "not known" to them.
    b, ids = ro_setup.store, ro_setup.ids
    with pytest.raises(errors.NotAnIDError):
        b.set_metadata(ids["top"], "x")
    with pytest.raises(errors.NotAnIDError):
        b.set_metadata(ids["image"], "x")
    with pytest.raises(errors.ImageUnknownError):
        b.set_image_big_data(ids["image"], "k", b"v")
    with pytest.raises(errors.LayerUnknownError):
        b.set_layer_big_data(ids["top"], "k", b"v")
    with pytest.raises(errors.NotALayerError):
        b.delete_layer(ids["top"])
    with pytest.raises(errors.NotAnImageError):
        b.delete_image(ids["image"])
    with pytest.raises(errors.LayerUnknownError):
        b.delete(ids["top"])
    with pytest.raises(errors.LayerUnknownError):
        b.mount(ids["top"])
    with pytest.raises(errors.LayerUnknownError):
        b.set_names(ids["top"], ["n"])
    with pytest.raises(errors.LayerUnknownError):
        b.apply_diff(ids["top"], io.BytesIO(make_tar([f("x", b"x")])))
    # The record stores of A themselves refuse writes.
    ro_layers = b._all_layer_stores()[1]
    with pytest.raises(errors.StoreIsReadOnlyError):
        ro_layers.set_big_data(ids["top"], "k", b"v")
    with pytest.raises(errors.StoreIsReadOnlyError):
        b._ro_images[0].set_metadata(ids["image"], "x")
    _a_unchanged(ro_setup, driver)
    assert not (ro_setup.a_roots[0] / f"{driver}-layers" / ids["top"]).exists()


# -- sizes ----------------------------------------------------------------------------------


def test_image_size(store: cs.Store, roots: Roots, driver: str) -> None:
    base, _ = store.put_layer(diff=io.BytesIO(BASE_TAR))
    top, _ = store.put_layer(base.id, io.BytesIO(gzip.compress(CHILD_TAR)))
    image = store.create_image(top.id)
    store.set_image_big_data(image.id, "manifest", b"m" * 100)
    store.set_image_big_data(image.id, "config", b"c" * 23)
    want = len(BASE_TAR) + len(CHILD_TAR) + 123
    assert store.image_size(image.id) == want
    assert f"Size: {want}" in go(roots, driver, "image", image.id).stdout.decode()


def test_layerless_image_size(store: cs.Store, roots: Roots, driver: str) -> None:
    image = store.create_image()
    assert store.image_size(image.id) == 0
    store.set_image_big_data(image.id, "blob", os.urandom(512))
    assert store.image_size(image.id) == 512
    assert "Size: 512" in go(roots, driver, "image", image.id).stdout.decode()


def test_layer_size(store: cs.Store) -> None:
    empty = store.create_layer()
    assert store.layer_size(empty.id) == -1
    full, _ = store.put_layer(diff=io.BytesIO(gzip.compress(BASE_TAR)))
    assert store.layer_size(full.id) == len(BASE_TAR)
    with pytest.raises(errors.LayerUnknownError):
        store.layer_size("nothing")


def test_container_size(store: cs.Store, roots: Roots, driver: str) -> None:
    image = store.create_image(store.put_layer(diff=io.BytesIO(BASE_TAR))[0].id)
    ctr = store.create_container(image.id)
    assert store.container_size(ctr.id) == 0
    path = Path(store.mount(ctr.id))
    (path / "written.bin").write_bytes(b"w" * 1000)
    store.unmount(ctr.id)
    store.set_container_big_data(ctr.id, "config.json", b"b" * 100)
    store.set_container_directory_file(ctr.id, "f", b"d" * 10)
    store.set_container_run_directory_file(ctr.id, "r", b"r" * 20)
    assert store.container_size(ctr.id) == 1130
    assert "Size: 1130" in go(roots, driver, "container", ctr.id).stdout.decode()


# -- store options --------------------------------------------------------------------------


def test_get_store_same_object(tmp_path: Path, driver: str) -> None:
    opts = cs.StoreOptions(
        graph_root=str(tmp_path / "g"), run_root=str(tmp_path / "r"), graph_driver_name=driver
    )
    one = cs.get_store(opts)
    try:
        two = cs.get_store(
            cs.StoreOptions(
                graph_root=str(tmp_path / "g"),
                run_root=str(tmp_path / "r"),
                graph_driver_name=driver,
            )
        )
        assert one is two
        assert one.graph_root() == str(tmp_path / "g")
        assert one.run_root() == str(tmp_path / "r")
        assert one.graph_driver_name() == driver
        other = cs.get_store(
            cs.StoreOptions(
                graph_root=str(tmp_path / "g2"),
                run_root=str(tmp_path / "r"),
                graph_driver_name=driver,
            )
        )
        assert other is not one
        other.shutdown()
    finally:
        one.shutdown()


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("STORAGE_DRIVER", "STORAGE_OPTS", "_CONTAINERS_ROOTLESS_UID", "XDG_CONFIG_HOME"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def _conf(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "storage.conf"
    path.write_text(body)
    return path


def _go_status(tmp_path: Path) -> dict[str, str]:
    """Go's ``status -j`` with the current environment (its default store options)."""
    p = subprocess.run(
        [GO_CONTAINERS_STORAGE, "status", "-j"], capture_output=True, check=True, cwd=tmp_path
    )
    return dict(json.loads(p.stdout))


def test_store_options_from_conf(tmp_path: Path, clean_env: pytest.MonkeyPatch) -> None:
    conf = _conf(
        tmp_path,
        f"""
[storage]
driver = "vfs"
graphroot = "{tmp_path}/graph"
runroot = "{tmp_path}/run"

[storage.options]
additionalimagestores = ["{tmp_path}/ro1", "{tmp_path}/ro2"]

[storage.options.vfs]
ignore_chown_errors = "true"
""",
    )
    clean_env.setenv("CONTAINERS_STORAGE_CONF", str(conf))
    opts = cs.StoreOptions.default()
    assert opts.graph_driver_name == "vfs"
    assert opts.graph_root == f"{tmp_path}/graph"
    assert opts.run_root == f"{tmp_path}/run"
    assert opts.graph_driver_options == [
        f"vfs.imagestore={tmp_path}/ro1",
        f"vfs.imagestore={tmp_path}/ro2",
        "vfs.ignore_chown_errors=true",
    ]
    # Go reads the same file the same way.
    status = _go_status(tmp_path)
    assert status["Driver Options"] == "[" + " ".join(opts.graph_driver_options) + "]"
    assert status["Root"] == opts.graph_root


def test_store_options_unknown_key_warns(tmp_path: Path, clean_env: pytest.MonkeyPatch) -> None:
    conf = _conf(
        tmp_path,
        f"""
[storage]
driver = "vfs"
graphroot = "{tmp_path}/graph"
runroot = "{tmp_path}/run"
no_such_key = 1

[storage.options.vfs]
bogus_vfs_key = "x"
""",
    )
    clean_env.setenv("CONTAINERS_STORAGE_CONF", str(conf))
    with pytest.warns(UserWarning, match="Failed to decode the keys") as record:
        opts = cs.StoreOptions.default()
    assert [str(w.message) for w in record] == [
        'Failed to decode the keys ["storage.no_such_key" "storage.options.vfs.bogus_vfs_key"] '
        f'from "{conf}"'
    ]
    assert opts.graph_root == f"{tmp_path}/graph"


def test_store_options_env_override(tmp_path: Path, clean_env: pytest.MonkeyPatch) -> None:
    conf = _conf(
        tmp_path,
        f"""
[storage]
driver = "overlay"
graphroot = "{tmp_path}/graph"
runroot = "{tmp_path}/run"

[storage.options]
additionalimagestores = ["{tmp_path}/ro"]

[storage.options.vfs]
ignore_chown_errors = "true"
""",
    )
    clean_env.setenv("CONTAINERS_STORAGE_CONF", str(conf))
    clean_env.setenv("STORAGE_DRIVER", "vfs")
    want = [f"vfs.imagestore={tmp_path}/ro", "vfs.ignore_chown_errors=true"]
    # Go applies STORAGE_DRIVER before it builds the option list.
    assert _go_status(tmp_path)["Driver Options"] == "[" + " ".join(want) + "]"
    opts = cs.StoreOptions.default()
    assert opts.graph_driver_name == "vfs"
    assert opts.graph_driver_options == want
    clean_env.setenv("STORAGE_OPTS", "vfs.ignore_chown_errors=false,vfs.imagestore=/x")
    opts = cs.StoreOptions.default()
    assert opts.graph_driver_options == ["vfs.ignore_chown_errors=false", "vfs.imagestore=/x"]


def test_store_options_empty_storage_opts(tmp_path: Path, clean_env: pytest.MonkeyPatch) -> None:
    conf = _conf(
        tmp_path,
        f"""
[storage]
driver = "vfs"
graphroot = "{tmp_path}/graph"
runroot = "{tmp_path}/run"

[storage.options]
additionalimagestores = ["{tmp_path}/ro"]
""",
    )
    clean_env.setenv("CONTAINERS_STORAGE_CONF", str(conf))
    clean_env.setenv("STORAGE_OPTS", "")
    # Go: a set but empty STORAGE_OPTS replaces the list with nothing.
    assert _go_status(tmp_path)["Driver Options"] == "[]"
    assert cs.StoreOptions.default().graph_driver_options == []


# -- shutdown -------------------------------------------------------------------------------


def test_shutdown_while_mounted(store: cs.Store, roots: Roots, driver: str) -> None:
    layer = store.create_layer()
    store.mount(layer.id)
    store.mount(layer.id)
    with pytest.raises(errors.LayerUsedByContainerError, match="a layer is mounted"):
        store.shutdown()
    assert store.mounted(layer.id) == 2
    assert (roots[0] / "storage.lock").stat().st_size == 0
    # With force everything is unmounted and the store shut down (what Go 1.43 means; it
    # loops forever there): the layers that were mounted are returned.
    assert store.shutdown(force=True) == [layer.id]
    assert store.mounted(layer.id) == 0
    assert mountpoints_json(roots, driver) == []
    assert store.shutdown() == []


def test_shutdown_clean_touches_storage_lock(store: cs.Store, roots: Roots, driver: str) -> None:
    store.create_layer()
    lock = roots[0] / "storage.lock"
    assert lock.stat().st_size == 0
    assert store.shutdown() == []
    first = lock_token(lock)
    assert len(first) == 64
    # The store is usable after a shutdown, and a second one writes a new token.
    store.create_layer()
    assert len(store.layers()) == 2
    store.shutdown()
    assert lock_token(lock) != first
    assert go(roots, driver, "shutdown").returncode == 0


def test_shutdown_touches_layers_lock(store: cs.Store, roots: Roots, driver: str) -> None:
    # Go's Shutdown ends with rlstore.Touch() once it cleaned up (checked with the CLI:
    # `shutdown` changes layers.lock), so long-running readers reload the layers.
    store.create_layer()
    lock = layers_dir(roots, driver) / "layers.lock"
    before = lock_token(lock)
    store.layers()
    assert lock_token(lock) == before
    store.shutdown()
    after = lock_token(lock)
    assert len(after) == 64 and after != before


def test_delete_image_names_its_last_container(store: cs.Store) -> None:
    """Go's DeleteImage maps each image to its containers in list order, the last one
    winning, and names that one."""
    img = store.create_image(store.create_layer().id, id="a" * 64)
    store.create_container(img.id, id="c" * 64)
    store.create_container(img.id, id="d" * 64)
    with pytest.raises(errors.ImageUsedByContainerError, match=f"^image used by {'d' * 64}: "):
        store.delete_image(img.id)


def test_vfs_changes_of_a_layer_without_its_parent_directory(roots: Roots) -> None:
    """Go's naive diff gets the parent with the driver's Get, which fails with os.Stat's
    error (a layer orphaned by ``delete``, which does not check children, can get here)."""
    store = cs.Store(roots[0], roots[1], "vfs")
    try:
        parent = store.create_layer()
        child = store.create_layer(parent.id)
        shutil.rmtree(roots[0] / "vfs" / "dir" / parent.id)
        with pytest.raises(FileNotFoundError) as info:
            store.changes(None, child.id)
        assert str(info.value) == (
            f"stat {roots[0]}/vfs/dir/{parent.id}: no such file or directory"
        )
    finally:
        store.shutdown(True)
