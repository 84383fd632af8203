"""What the layer, image and container stores share: one JSON file of records under one
lock file, indexes by ID, name and ID prefix, reload on a foreign write, atomic save.

Locking follows Go 1.43: readers hold the fcntl read lock, writers the write lock, and a
store reloads its file only when the lock's last-writer token (or the file itself) changed
since it last read it. After each save the writer puts a fresh token in the lock file so that
long-running Go processes (podman service, buildah) reload too.
"""

from __future__ import annotations

import binascii
import bisect
import contextlib
import os
import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Generic, TypeVar

from . import errors
from ._jsonstore import atomic_write, dumps, load_array
from ._strconv import go_quote
from ._struct import replace
from .lockfile import Lockfile
from .records import _Record

__all__ = ["RecordStore", "big_data_file_name", "dedupe_names", "random_id"]

R = TypeVar("R", bound=_Record)


def random_id() -> str:
    """A random 64-hex ID that does not look like a number in its short form (Go's
    ``stringid.GenerateRandomID``)."""
    while True:
        value = os.urandom(32).hex()
        if not value[:12].isdigit():
            return value


def dedupe_names(names: Iterable[str]) -> list[str]:
    """Names in order, each once (Go ``dedupeNames``)."""
    return list(dict.fromkeys(names))


def big_data_file_name(key: str) -> str:
    """The file name Go gives a big-data item (``makeBigDataBaseName``).

    The key is used as is when it is made of ``[a-z0-9.]``; otherwise it becomes ``=`` and
    its base64. Quirk kept from Go: the scan consumes the first other character before
    stopping, so a key whose only other character is its last one is kept as is.
    """
    data = key.encode("utf-8", "surrogateescape")
    for i, ch in enumerate(key):
        if ch == "." or "0" <= ch <= "9" or "a" <= ch <= "z":
            continue
        if i + 1 < len(key):
            return "=" + binascii.b2a_base64(data, newline=False).decode("ascii")
        return key
    return key


def _stamp(path: str) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_mtime_ns, st.st_ino, st.st_size)


class NeedsWriteLockError(Exception):
    """Raised by a load under the read lock that found work only a writer may do."""


class RecordStore(Generic[R]):
    """One JSON file of records of type ``R`` under one lock file.

    Subclasses set ``record_type``, ``kind`` (for messages) and the unknown-item error, and
    may extend ``_index``/``_after_load``.
    """

    record_type: type[R]
    kind = "item"
    unknown_error: type[errors.StorageError] = errors.StorageError
    duplicate_names_error: type[errors.StorageError] = errors.StorageError

    def __init__(self, directory: str, file_name: str, lock_name: str, read_only: bool) -> None:
        self.directory = directory
        self.path = os.path.join(directory, file_name)
        self.read_only = read_only
        if not read_only:
            os.makedirs(directory, mode=0o700, exist_ok=True)
        self.lock = Lockfile(os.path.join(directory, lock_name), read_only=read_only)
        self.records: list[R] = []
        self.by_id: dict[str, R] = {}
        self.by_name: dict[str, R] = {}
        self._sorted_ids: list[str] = []
        self._seen: tuple[bytes, tuple[int, int, int] | None] | None = None
        self._load_mutex = threading.RLock()
        self._dirty = False
        self._batching = 0
        self._encoded: dict[str, tuple[R, bytes]] = {}

    # -- locking and reloading --------------------------------------------------------------

    def _token(self) -> bytes:
        # Through the lock's own descriptor: opening and closing the lock file here would
        # drop the fcntl lock this process holds on it.
        return self.lock.token()

    def _changed(self) -> bool:
        return self._seen != (self._token(), _stamp(self.path))

    def _reload_if_changed(self, write_locked: bool) -> None:
        with self._load_mutex:
            if self._changed():
                self.load(write_locked)

    @contextlib.contextmanager
    def reading(self) -> Iterator[RecordStore[R]]:
        """Hold the read lock, with the records fresh, for a ``with`` block."""
        if self.lock.held() == "write":
            with self.lock.writing():
                self._reload_if_changed(True)
                yield self
            return
        while True:
            self.lock.rlock()
            try:
                self._reload_if_changed(False)
            except NeedsWriteLockError:
                self.lock.unlock()
                with self.lock.writing():
                    self._reload_if_changed(True)
                continue
            except BaseException:
                self.lock.unlock()
                raise
            break
        try:
            yield self
        finally:
            self.lock.unlock()

    def writing(self) -> _Writing[R]:
        """Hold the write lock, with the records fresh, for a ``with`` block; the file is
        saved at the end of the block if anything was changed (even when it raises, so a
        partial change that was already applied to disk is recorded)."""
        return _Writing(self)

    def require_writable(self, what: str) -> None:
        if self.read_only:
            raise errors.StoreIsReadOnlyError(
                f"not allowed to {what} at {go_quote(self.path)}: "
                + errors.StoreIsReadOnlyError.go_message
            )

    # -- load and save ----------------------------------------------------------------------

    def load(self, write_locked: bool) -> None:
        """Read the file afresh (the caller holds the lock)."""
        raw, st = load_array(self.path)
        token = self._token()
        records = [self.record_type.from_json(obj) for obj in raw]
        records = self._prepare(records)
        repaired = self._set_records(records)
        self._seen = (token, None if st is None else (st.st_mtime_ns, st.st_ino, st.st_size))
        if repaired:
            if self.read_only:
                raise self.duplicate_names_error()
            if not write_locked:
                raise NeedsWriteLockError()
            self._dirty = True
        self._after_load(write_locked)
        if self._dirty and write_locked:
            self.save()

    def _prepare(self, records: list[R]) -> list[R]:
        """Hook: adjust records right after decoding (read-only flags, digests)."""
        return records

    def _after_load(self, write_locked: bool) -> None:
        """Hook: work to do once loaded (incomplete layers, mounts)."""

    def _set_records(self, records: list[R]) -> bool:
        """Install ``records`` and rebuild indexes; returns True when duplicate names had to
        be taken from earlier records (the later one keeps the name, as in Go)."""
        repaired = False
        by_name: dict[str, int] = {}
        for i, rec in enumerate(records):
            for name in rec.names:  # type: ignore[attr-defined]
                j = by_name.get(name)
                if j is not None:
                    old = records[j]
                    records[j] = _without_name(old, name)
                    repaired = True
                by_name[name] = i
        self.records = records
        self._reindex()
        return repaired

    def _reindex(self) -> None:
        self.by_id = {r.id: r for r in self.records}
        self.by_name = {}
        for r in self.records:
            for name in r.names:  # type: ignore[attr-defined]
                self.by_name[name] = r
        self._sorted_ids = sorted(self.by_id)
        self._index_extra()

    def _index_extra(self) -> None:
        """Hook: rebuild more indexes (digests, layers) from ``self.records``."""

    def _index_add(self, rec: R) -> None:
        self.by_id[rec.id] = rec
        for name in rec.names:  # type: ignore[attr-defined]
            self.by_name[name] = rec
        bisect.insort(self._sorted_ids, rec.id)
        self._extra_add(rec)

    def _index_drop(self, rec: R) -> None:
        if self.by_id.get(rec.id) is rec:
            del self.by_id[rec.id]
        for name in rec.names:  # type: ignore[attr-defined]
            if self.by_name.get(name) is rec:
                del self.by_name[name]
        i = bisect.bisect_left(self._sorted_ids, rec.id)
        if i < len(self._sorted_ids) and self._sorted_ids[i] == rec.id:
            del self._sorted_ids[i]
        self._extra_drop(rec)

    def _extra_add(self, rec: R) -> None:
        """Hook: add one record to the extra indexes."""

    def _extra_drop(self, rec: R) -> None:
        """Hook: drop one record from the extra indexes."""

    def save(self, *, sync_dir: bool = True) -> None:
        """Write the file atomically and put a fresh token in the lock (write lock held).

        ``sync_dir=False`` leaves the directory unsynced: only for a save that the same
        operation follows with another one of this file before it returns.
        """
        if self.read_only:
            self.require_writable(f"modify the {self.kind} store")
        if self.lock.held() != "write":
            raise errors.LockNotHeldError(f"{self.kind} store is not locked for writing")
        if self._batching:
            self._dirty = True
            return
        st = atomic_write(self.path, self._encode(), sync_dir=sync_dir)
        token = self.lock.touch()
        self._dirty = False
        self._seen = (bytes(token), (st.st_mtime_ns, st.st_ino, st.st_size))

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Several changes written as one (write lock held): the file is saved once, when
        the outermost block ends without an error, so no reader of the file, in this
        process or after a crash, sees the changes half made. A block that raises must
        undo what it changed before it ends."""
        self._batching += 1
        try:
            yield
        finally:
            self._batching -= 1
        if not self._batching and self._dirty:
            self.save()

    def _encode(self) -> bytes:
        """The file's bytes; each record's JSON is cached (records are immutable)."""
        cache = self._encoded
        parts = []
        fresh: dict[str, tuple[R, bytes]] = {}
        for r in self.records:
            hit = cache.get(r.id)
            if hit is None or hit[0] is not r:
                hit = (r, dumps(r.to_json()))
            fresh[r.id] = hit
            parts.append(hit[1])
        self._encoded = fresh
        return b"[" + b",".join(parts) + b"]"

    def touch(self) -> None:
        """Write a fresh last-writer token (write lock held) without changing the file."""
        token = self.lock.touch()
        self._seen = (bytes(token), _stamp(self.path))

    # -- lookups ----------------------------------------------------------------------------

    def lookup(self, ref: str) -> R | None:
        """The record whose ID or name is ``ref``, or whose ID alone starts with it.

        Raises:
            AmbiguousPrefixError: Several IDs start with ``ref``.
        """
        rec = self.by_id.get(ref)
        if rec is not None:
            return rec
        rec = self.by_name.get(ref)
        if rec is not None:
            return rec
        rec = self._lookup_extra(ref)
        if rec is not None:
            return rec
        if not ref or any(c not in "0123456789abcdef" for c in ref):
            return None
        i = bisect.bisect_left(self._sorted_ids, ref)
        ids = self._sorted_ids
        if i < len(ids) and ids[i].startswith(ref):
            if i + 1 < len(ids) and ids[i + 1].startswith(ref):
                raise errors.AmbiguousPrefixError(
                    f"{errors.AmbiguousPrefixError.go_message}: {ref}"
                )
            return self.by_id[ids[i]]
        return None

    def _lookup_extra(self, ref: str) -> R | None:
        return None

    def get(self, ref: str) -> R:
        """Like :meth:`lookup`, raising the store's unknown-item error when missing."""
        rec = self.lookup(ref)
        if rec is None:
            raise self.unknown_error()
        return rec

    def _locate(self, ref: str) -> R:
        """Hook: the record a change names, or the error Go's store gives for it there
        (images say which ID they were locating)."""
        return self.get(ref)

    def exists(self, ref: str) -> bool:
        try:
            return self.lookup(ref) is not None
        except errors.AmbiguousPrefixError:
            return False

    # -- changes (write lock held) ----------------------------------------------------------

    def add(self, rec: R) -> None:
        self.records.append(rec)
        self._index_add(rec)
        self._dirty = True

    def put_record(self, rec: R) -> R:
        """Store ``rec`` in place of the record with its ID (write lock held); returns it."""
        old = self.by_id[rec.id]
        for i, candidate in enumerate(self.records):
            if candidate is old:
                self.records[i] = rec
                break
        self._index_drop(old)
        self._index_add(rec)
        self._dirty = True
        return rec

    def remove(self, rec_id: str) -> None:
        old = self.by_id.get(rec_id)
        if old is None:
            return
        self.records = [r for r in self.records if r is not old]
        self._index_drop(old)
        self._dirty = True

    def new_id(self) -> str:
        while True:
            value = random_id()
            if value not in self.by_id:
                return value

    def set_metadata(self, ref: str, metadata: str) -> R:
        """Replace the record's metadata and save (write lock held), as Go's
        ``SetMetadata`` of each store; returns the updated record.

        Raises:
            StoreIsReadOnlyError: The store is read-only (``not allowed to modify layer
                metadata at "PATH": ...``).
            LayerUnknownError, ImageUnknownError, ContainerUnknownError: No such record.
        """
        self.require_writable(f"modify {self.kind} metadata")
        updated = self.put_record(replace(self._locate(ref), metadata=metadata))
        self.save()
        return updated

    def update_names(self, ref: str, names: Sequence[str], op: str) -> R:
        """``set``, ``add`` or ``remove`` names; a name held by another record moves here."""
        self.require_writable(f"change {self.kind} name assignments")
        rec = self.get(ref)
        old = list(rec.names)  # type: ignore[attr-defined]
        if op == "set":
            new = dedupe_names(names)
        elif op == "add":
            new = dedupe_names([*old, *names])
        elif op == "remove":
            drop = set(names)
            new = [n for n in old if n not in drop]
        else:
            raise ValueError("invalid update name operation")
        for name in new:
            other = self.by_name.get(name)
            if other is not None and other.id != rec.id:
                self.put_record(_without_name(other, name))
        updated = self._renamed(rec, new)
        self.put_record(updated)
        self.save()
        return updated

    def _renamed(self, rec: R, names: list[str]) -> R:
        """Hook: ``rec`` with its new ``names`` (images also update their history)."""
        return replace(rec, names=tuple(names))


def _without_name(rec: Any, name: str) -> Any:
    return replace(rec, names=tuple(n for n in rec.names if n != name))


class _Writing(Generic[R]):
    """What :meth:`RecordStore.writing` returns (a class: it runs several times for every
    store operation, and a generator-based context manager costs more)."""

    __slots__ = ("_store",)

    def __init__(self, store: RecordStore[R]) -> None:
        self._store = store

    def __enter__(self) -> RecordStore[R]:
        store = self._store
        if store.read_only:
            store.require_writable(f"modify the {store.kind} store")
        store.lock.lock()
        try:
            store._reload_if_changed(True)
        except BaseException:
            store.lock.unlock()
            raise
        return store

    def __exit__(self, *exc: object) -> None:
        store = self._store
        try:
            if store._dirty:
                store.save()
        finally:
            store.lock.unlock()
