"""Records in the Python ecosystem: the dataclasses functions, copy and pickle, a readable
repr, and ``to_json()`` encoding to the bytes Go writes."""

from __future__ import annotations

import copy
import dataclasses
import pickle
from pathlib import Path

import containers_storage as cs
import pytest
from containers_storage import _jsonstore
from containers_storage.records import IDMap

from tests.helpers import GO_CONTAINERS_STORAGE
from tests.store.helpers import Roots, go, require
from tests.tars import f, make_tar


@pytest.mark.parametrize("cls", [cs.Layer, cs.Image, cs.Container, cs.IDMap])
def test_record_classes_are_dataclasses(cls: type) -> None:
    assert dataclasses.is_dataclass(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    assert names[0] in ("id", "container_id")
    assert len(names) == len(set(names))
    # Same fields, defaults and options as the record class declares.
    for spec in dataclasses.fields(cls):
        assert spec.type is not None
        if spec.name == "extra":
            assert (spec.repr, spec.compare) == (False, False)


def test_dataclass_functions_on_store_records(store: cs.Store, tmp_path: Path) -> None:
    tar = tmp_path / "l.tar"
    tar.write_bytes(make_tar([f("etc/hosts", b"x")]))
    layer, _size = store.put_layer(None, str(tar))
    image = store.create_image(layer.id, names=["localhost/app:1"])
    ctr = store.create_container(image.id, names=["web"])
    for rec in (store.layer(layer.id), store.image(image.id), store.container(ctr.id)):
        assert dataclasses.is_dataclass(rec) and not isinstance(rec, type)
        as_dict = dataclasses.asdict(rec)
        assert list(as_dict) == [x.name for x in dataclasses.fields(rec)]
        assert as_dict["id"] == rec.id and as_dict["names"] == rec.names
        assert dataclasses.astuple(rec)[0] == rec.id
        renamed = dataclasses.replace(rec, names=("other",))
        assert type(renamed) is type(rec) and renamed.names == ("other",) != rec.names
        assert copy.deepcopy(rec) == rec == pickle.loads(pickle.dumps(rec))
        # Frozen: an AttributeError, as dataclasses.FrozenInstanceError is.
        with pytest.raises(AttributeError, match="cannot assign to field 'id'"):
            rec.id = "x"  # type: ignore[misc]
    # The empty mappings decoded records share refuse changes too.
    decoded = cs.Layer.from_json({"id": "abc"})
    with pytest.raises(TypeError, match="read-only"):
        decoded.flags["k"] = 1  # type: ignore[index]
    assert dataclasses.asdict(decoded)["flags"] == {} and decoded.flags == {}


def test_asdict_recurses_into_id_maps() -> None:
    layer = cs.Layer("abc", uidmap=(IDMap(0, 100000, 65536),))
    assert dataclasses.asdict(layer)["uidmap"] == (
        {"container_id": 0, "host_id": 100000, "size": 65536},
    )


def test_repr_shows_what_is_set() -> None:
    layer = cs.Layer("abc", names=("base",), diff_size=12)
    assert repr(layer) == "Layer(id='abc', names=('base',), diff_size=12)"
    assert repr(cs.Container.from_json({"id": "c", "image": "i", "layer": "l"})) == (
        "Container(id='c', image='i', layer='l')"
    )
    assert eval(repr(layer), {"Layer": cs.Layer}) == layer


@pytest.mark.root
@pytest.mark.gotools
def test_to_json_gives_gos_bytes(roots: Roots, tmp_path: Path) -> None:
    """Records Go's CLI wrote, read by us and encoded again: the bytes of Go's files."""
    require(GO_CONTAINERS_STORAGE)
    tar = tmp_path / "l.tar"
    tar.write_bytes(make_tar([f("etc/hosts", b"x")]))
    out = go(roots, "vfs", "import-layer", "-f", str(tar), "-n", "base").stdout
    layer = out.decode().split()[0]
    go(roots, "vfs", "create-image", "-n", "app:<1>&", layer)
    go(roots, "vfs", "create-container", "-n", "web", "app:<1>&")
    files = {
        "layers": roots[0] / "vfs-layers" / "layers.json",
        "images": roots[0] / "vfs-images" / "images.json",
        "containers": roots[0] / "vfs-containers" / "containers.json",
    }
    with cs.Store(roots[0], roots[1], "vfs") as store:
        for kind, path in files.items():
            records = getattr(store, kind)()
            assert _jsonstore.dumps([r.to_json() for r in records]) == path.read_bytes(), kind
