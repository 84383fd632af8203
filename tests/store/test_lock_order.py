"""Go's lock order: storage.lock is never waited for while a layer, image or container lock is
held (a mount in another process holds storage.lock and then waits for layers.lock; taking
them the other way round deadlocks the two processes)."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from typing import Any

import containers_storage as cs
import pytest

from tests.tars import f, make_tar

pytestmark = [pytest.mark.root, pytest.mark.usefixtures("no_leaked_mounts")]

LAYER = make_tar([f("f", b"x")])


class _GraphLockSpy:
    """Stands in for the store's storage.lock and fails when it is taken while this thread
    holds one of the record stores' locks."""

    def __init__(self, real: Any, held: list[Any]) -> None:
        self.real = real
        self.held = held
        self.taken = 0

    @contextlib.contextmanager
    def writing(self) -> Iterator[Any]:
        holding = [lock.path for lock in self.held if lock.held() is not None]
        assert not holding, f"storage.lock taken while holding {holding}"
        self.taken += 1
        with self.real.writing() as lock:
            yield lock

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def test_storage_lock_never_taken_under_a_record_lock(store: cs.Store) -> None:
    rl = store._layer_store()
    spy = _GraphLockSpy(store._graph_lock, [rl.lock, store._images.lock, store._containers.lock])
    store._graph_lock = spy  # type: ignore[assignment]
    base, _ = store.put_layer(diff=io.BytesIO(LAYER), names=["base"])
    top = store.create_layer(base.id, names=["top"])
    image = store.create_image(top.id, names=["img"])
    store.create_container(image.id)
    contiguous = [(0, 100000, 65536)]
    store.create_container(image.id, uid_map=contiguous, gid_map=contiguous)
    detached = [(0, 100000, 65536), (65536, 300000, 1)]
    store.create_container(image.id, uid_map=detached, gid_map=detached)
    store.put_layer(top.id, io.BytesIO(LAYER), uid_map=contiguous, gid_map=contiguous)
    path = store.mount(top.id)
    assert path
    store.unmount(top.id)
    store.add_names(image.id, ["again"])
    spare = store.create_image(top.id)
    assert store.delete_image(spare.id, commit=False) == []
    assert spy.taken > 0
