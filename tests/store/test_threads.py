"""Threads sharing one Store (issue 14): a program serving requests from threads makes,
names, mounts and deletes images on one Store object without deadlocking, and ends with
exactly the images it kept, as the Go CLI sees them too."""

from __future__ import annotations

import io
import os
import random
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

import containers_storage as cs
import pytest
from containers_storage.lockfile import Lockfile

from tests.helpers import HANG_GUARD
from tests.store.helpers import Roots, go_json, mounted_under
from tests.tars import f, make_tar

pytestmark = [pytest.mark.root, pytest.mark.gotools]

THREADS = 8
OPERATIONS = 60
# More seeded runs per driver: CS_THREAD_SEEDS=20.


@dataclass
class _Kept:
    """The images one thread made and did not delete: ID -> names."""

    images: dict[str, set[str]] = field(default_factory=dict)
    serial: int = 0


class _Progress:
    """Operations done by all threads, for the hang detector."""

    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()

    def step(self) -> None:
        with self._lock:
            self.count += 1


def _operate(store: cs.Store, me: int, rng: random.Random, kept: _Kept) -> None:
    """One random operation of thread ``me`` on its own images."""
    op = rng.choice(["image", "image", "name", "container", "delete", "list", "lookup", "foreign"])
    if op == "image" or not kept.images:
        kept.serial += 1
        tag = f"t{me}-{kept.serial}"
        parent = None
        if kept.images and rng.random() < 0.5:
            parent = store.image(rng.choice(sorted(kept.images))).layer
        diff = make_tar([f(f"{tag}.txt", tag.encode())])
        layer, _ = store.put_layer(parent, io.BytesIO(diff))
        image = store.create_image(layer.id, names=[f"localhost/{tag}:latest"])
        kept.images[image.id] = set(image.names)
    elif op == "name":
        image_id = rng.choice(sorted(kept.images))
        kept.serial += 1
        name = f"localhost/t{me}-alias-{kept.serial}:latest"
        store.add_names(image_id, [name])
        kept.images[image_id].add(name)
    elif op == "container":
        image_id = rng.choice(sorted(kept.images))
        ctr = store.create_container(image_id, names=[f"t{me}-ctr-{kept.serial}"])
        path = store.mount(ctr.id)
        with open(f"{path}/written-by-{me}", "w", encoding="ascii") as out:
            out.write(ctr.id)
        assert not store.unmount(ctr.id)
        store.delete_container(ctr.id)
    elif op == "delete":
        image_id = rng.choice(sorted(kept.images))
        store.delete_image(image_id)
        del kept.images[image_id]
    elif op == "foreign":
        # podman ends every command with Go's Shutdown(false), which touches storage.lock
        # when nothing is mounted: the store drops its driver and layer store and makes
        # them again, under the other threads' feet.
        with Lockfile(f"{store.graph_root()}/storage.lock").writing() as lock:
            lock.touch()
        store.status()
    elif op == "list":
        store.layers()
        store.images()
        store.containers()
    else:
        image_id = rng.choice(sorted(kept.images))
        name = rng.choice(sorted(kept.images[image_id]))
        assert store.image(name).id == image_id
        assert set(store.names(image_id)) == kept.images[image_id]


def _stacks() -> str:
    """Every thread's Python stack."""
    names = {t.ident: t.name for t in threading.enumerate()}
    out = []
    for ident, frame in sys._current_frames().items():
        out.append(f"--- {names.get(ident, ident)}\n" + "".join(traceback.format_stack(frame)))
    return "\n".join(out)


def _run_threads(store: cs.Store, seed: int) -> list[_Kept]:
    """THREADS threads doing OPERATIONS operations each; fails the test, with every
    thread's stack, when no operation completes for HANG_GUARD seconds (a deadlock)."""
    kept = [_Kept() for _ in range(THREADS)]
    errors: list[BaseException] = []
    progress = _Progress()

    def work(me: int) -> None:
        rng = random.Random(seed * 1000 + me)
        try:
            for _ in range(OPERATIONS):
                _operate(store, me, rng, kept[me])
                progress.step()
        except BaseException as e:
            errors.append(e)

    threads = [
        threading.Thread(target=work, args=(i,), name=f"worker-{i}", daemon=True)
        for i in range(THREADS)
    ]
    for t in threads:
        t.start()
    seen, since = -1, time.monotonic()
    while any(t.is_alive() for t in threads):
        threads[0].join(0.5)
        if progress.count != seen:
            seen, since = progress.count, time.monotonic()
        elif time.monotonic() - since > HANG_GUARD:
            pytest.fail(f"no progress after {seen} operations: deadlocked?\n{_stacks()}")
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    assert progress.count == THREADS * OPERATIONS
    return kept


class _LockOrder:
    """Lock-order recorder (Linux's lockdep in small): an edge A -> B each time a thread
    waits for lock B while it holds lock A, for file locks and thread locks alike, with the
    stack that first took it. Two threads taking locks against one order can deadlock in
    some interleaving even when this run's did not."""

    def __init__(self, roots: Roots) -> None:
        self.roots = roots
        self.edges: dict[tuple[str, str], str] = {}
        self._local = threading.local()
        self._mutex = threading.Lock()

    def name(self, path: str) -> str:
        for label, root in (("graph", self.roots[0]), ("run", self.roots[1])):
            if path.startswith(f"{root}/"):
                return f"{label}:{path[len(str(root)) + 1 :]}"
        return path

    def _held(self) -> list[str]:
        held: list[str] | None = getattr(self._local, "held", None)
        if held is None:
            held = self._local.held = []
        return held

    def waiting(self, lock: str) -> None:
        held = self._held()
        if lock in held:
            return  # taken again by its holder: no wait
        for h in dict.fromkeys(held):
            if (h, lock) not in self.edges:
                stack = "".join(traceback.format_stack(limit=12)[:-2])
                with self._mutex:
                    self.edges.setdefault((h, lock), stack)

    def taken(self, lock: str) -> None:
        self._held().append(lock)

    def released(self, lock: str) -> None:
        held = self._held()
        del held[len(held) - 1 - held[::-1].index(lock)]

    def out_of_order(self) -> list[str]:
        """Each edge that goes against the store's lock order, with its stack."""
        bad = []
        for (a, b), stack in sorted(self.edges.items()):
            ra, rb = _rank(a), _rank(b)
            if ra is None or rb is None or ra >= rb:
                bad.append(f"{b} taken while holding {a} at:\n{stack}")
        return bad


#: The store's lock order (store.py's docstring), outermost first, by how names end.
LOCK_ORDER = (
    "storage.lock",
    "userns.lock",
    "-layers/layers.lock",
    "-images/images.lock",
    "-containers/containers.lock",
    ".json (load mutex)",
    "/mountpoints.lock",
)


def _rank(lock: str) -> int | None:
    """The lock's place in :data:`LOCK_ORDER`; None for a lock that is not in it (a thread
    lock held while waiting for a file lock, say)."""
    return next((i for i, end in enumerate(LOCK_ORDER) if lock.endswith(end)), None)


class _RecordedFileLock:
    """A native lock file that tells a :class:`_LockOrder` what it waits for and holds."""

    def __init__(self, order: _LockOrder, real: Any) -> None:
        self._order = order
        self._real = real
        self._name = order.name(real.path)

    def lock(self) -> None:
        self._order.waiting(self._name)
        self._real.lock()
        self._order.taken(self._name)

    def rlock(self) -> None:
        self._order.waiting(self._name)
        self._real.rlock()
        self._order.taken(self._name)

    def unlock(self) -> None:
        self._real.unlock()
        self._order.released(self._name)

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._real, attr)


class _RecordedThreadLock:
    """A thread lock that tells a :class:`_LockOrder` what it waits for and holds."""

    def __init__(self, order: _LockOrder, real: Any, name: str) -> None:
        self._order = order
        self._real = real
        self._name = name

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        self._order.waiting(self._name)
        got = bool(self._real.acquire(blocking, timeout))
        if got:
            self._order.taken(self._name)
        return got

    def release(self) -> None:
        self._real.release()
        self._order.released(self._name)

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


@pytest.fixture
def lock_order(roots: Roots, monkeypatch: pytest.MonkeyPatch) -> _LockOrder:
    """Records the order of every lock the stores made from now on take."""
    from containers_storage import _native as native
    from containers_storage import _recordstore, lockfile

    order = _LockOrder(roots)

    class _Native:
        def __getattr__(self, attr: str) -> Any:
            return getattr(native, attr)

        @staticmethod
        def LockFile(path: str, read_only: bool) -> Any:  # noqa: N802 (the native name)
            return _RecordedFileLock(order, native.LockFile(path, read_only))

    monkeypatch.setattr(lockfile, "_native", _Native())
    init = _recordstore.RecordStore.__init__

    def recorded_init(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        name = f"{order.name(self.path)} (load mutex)"
        self._load_mutex = _RecordedThreadLock(order, self._load_mutex, name)

    monkeypatch.setattr(_recordstore.RecordStore, "__init__", recorded_init)
    return order


def _record_thread_locks(order: _LockOrder, store: cs.Store) -> None:
    """Make the store's own thread locks report to ``order``."""
    kinds = (type(threading.Lock()), type(threading.RLock()))
    for attr, value in list(vars(store).items()):
        if isinstance(value, kinds):
            setattr(store, attr, _RecordedThreadLock(order, value, f"Store.{attr}"))


def _chain(store: cs.Store, layer_id: str) -> set[str]:
    """The layer and its ancestors."""
    out: set[str] = set()
    while layer_id:
        out.add(layer_id)
        layer_id = store.layer(layer_id).parent
    return out


@pytest.mark.parametrize("seed", range(1, 1 + int(os.environ.get("CS_THREAD_SEEDS", "3"))))
def test_threads_share_a_store(
    roots: Roots, driver: str, seed: int, lock_order: _LockOrder, no_leaked_mounts: None
) -> None:
    """8 threads x 60 seeded random operations on one Store: no deadlock, every lock taken
    in the store's one order, and at the end exactly the images the threads kept (IDs and
    names, here and in Go's CLI), their layers and nothing else, nothing mounted."""
    store = cs.Store(*roots, driver)
    _record_thread_locks(lock_order, store)
    kept = _run_threads(store, seed)
    bad = lock_order.out_of_order()
    assert not bad, "\n\n".join(bad)
    want = {i: names for k in kept for i, names in k.images.items()}
    assert {i.id: set(i.names) for i in store.images()} == want
    layers = set().union(*(_chain(store, i.layer) for i in store.images()))
    assert {layer.id for layer in store.layers()} == layers
    assert [layer.id for layer in store.layers() if layer.mount_count] == []
    assert store.containers() == []
    assert store.shutdown(False) == []
    assert mounted_under(roots[0].parent) == []
    listed = go_json(roots, driver, "images", "--json")
    assert {i["id"]: set(i.get("names") or ()) for i in listed} == want
    assert {layer["id"] for layer in go_json(roots, driver, "layers", "--json")} == layers
