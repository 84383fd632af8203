"""Metadata of layers, images and containers: one ``RecordStore.set_metadata`` for the three
kinds, with Go's texts, and the Go CLI reading what we set and the other way round."""

from __future__ import annotations

from typing import Any

import containers_storage as cs
import pytest
from containers_storage import errors
from containers_storage._recordstore import RecordStore

from tests.store.helpers import Roots, go

pytestmark = [pytest.mark.root, pytest.mark.gotools]


def test_set_metadata_each_kind_as_go(store: cs.Store, roots: Roots, driver: str) -> None:
    layer = store.create_layer()
    image = store.create_image(layer.id, names=["meta-image"])
    ctr = store.create_container(image.id, names=["meta-ctr"])
    refs = {"layer": layer.id, "image": "meta-image", "container": ctr.id[:12]}
    for kind, ref in refs.items():
        store.set_metadata(ref, f'ours {kind}\n"quoted"')
    store.shutdown(False)
    for kind, ref in refs.items():
        assert (
            go(roots, driver, "metadata", "-q", ref).stdout == f'ours {kind}\n"quoted"\n'.encode()
        )
        go(roots, driver, "set-metadata", "-m", f"go {kind}", ref)
    for kind, ref in refs.items():
        assert store.metadata(ref) == f"go {kind}"
    # A reference that names nothing: the same error as Go's.
    p = go(roots, driver, "set-metadata", "-m", "x", "0123abc", check=False)
    with pytest.raises(errors.NotAnIDError) as exc:
        store.set_metadata("0123abc", "x")
    assert p.returncode == 1
    assert p.stderr == f"{exc.value}\n".encode()


def test_record_stores_share_set_metadata(store: cs.Store) -> None:
    """Each kind's store sets metadata by the same method; an unknown ID is each store's
    error in Go's words (``layerStore``, ``imageStore`` and ``containerStore.SetMetadata``)."""
    layer = store.create_layer()
    image = store.create_image(layer.id)
    ctr = store.create_container(image.id)
    kinds: list[tuple[RecordStore[Any], str, type[Exception], str]] = [
        (store._layer_store(), layer.id, errors.LayerUnknownError, "layer not known"),
        (
            store._images,
            image.id,
            errors.ImageUnknownError,
            'locating image with ID "feed": image not known',
        ),
        (store._containers, ctr.id, errors.ContainerUnknownError, "container not known"),
    ]
    for records, rec_id, unknown, text in kinds:
        with records.writing():
            updated = records.set_metadata(rec_id[:10], f"{records.kind} metadata")
            assert updated.id == rec_id
            with pytest.raises(unknown) as exc:
                records.set_metadata("feed", "x")
            assert str(exc.value) == text
    assert store.metadata(layer.id) == "layer metadata"
    assert store.metadata(image.id) == "image metadata"
    assert store.metadata(ctr.id) == "container metadata"
