"""Lock files shared with podman, buildah and skopeo (Go ``pkg/lockfile``).

A :class:`Lockfile` is an ``fcntl(F_SETLKW)`` record lock on a whole file plus an in-process
reader/writer lock, so that processes (ours and the Go tools) and the threads of one process
exclude each other. Waiting happens in Rust with the GIL released.

Example:
    >>> lock = Lockfile("/var/lib/containers/storage/overlay-layers/layers.lock")
    >>> with lock.writing():
    ...     if lock.modified():
    ...         reload()
    ...     save()
    ...     lock.touch()

There is one object per path per process (as Go's ``GetLockfile``): record locks belong to the
process, and closing any descriptor of the file drops them, so never ``open()`` a lock file
yourself while it is held.
"""

from __future__ import annotations

import os
import threading
from types import TracebackType
from typing import TYPE_CHECKING, ClassVar, Literal

from . import _native
from .errors import LockReadOnlyError, StorageError

if TYPE_CHECKING:
    from datetime import datetime

__all__ = ["Lockfile"]


class _Held:
    """Context manager returned by :meth:`Lockfile.writing` and :meth:`Lockfile.reading`."""

    __slots__ = ("_lockfile", "_write")

    def __init__(self, lockfile: Lockfile, write: bool) -> None:
        self._lockfile = lockfile
        self._write = write

    def __enter__(self) -> Lockfile:
        native = self._lockfile._native
        if self._write:
            native.lock()
        else:
            native.rlock()
        return self._lockfile

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._lockfile._native.unlock()


class Lockfile:
    """A containers/storage lock file; one instance per path per process.

    ``Lockfile(path, read_only=False)``: ``path`` is the lock file, created (mode 0644, with
    missing parent directories) unless ``read_only``; a read-only lock file must exist.
    ``read_only`` opens it for reading only, as Go does for additional image stores; such a
    lock can only be taken for reading.

    Raises:
        FileNotFoundError: ``read_only`` and the file does not exist.
        LockReadOnlyError: The path is already open read-only in this process and a
            read-write lock was asked for.
        StorageError: The path is already open read-write and a read-only lock was asked for.
    """

    _cache: ClassVar[dict[str, Lockfile]] = {}
    _cache_lock: ClassVar[threading.Lock] = threading.Lock()

    _native: _native.LockFile
    _writing: _Held
    _reading: _Held
    path: str

    def __new__(cls, path: str | os.PathLike[str], read_only: bool = False) -> Lockfile:
        key = os.path.abspath(os.fspath(path))
        with cls._cache_lock:
            existing = cls._cache.get(key)
            if existing is not None:
                # Go: getLockfile refuses to mix modes on one path.
                if read_only and existing.is_read_write():
                    raise StorageError(f'lock "{key}" is not a read-only lock')
                if not read_only and not existing.is_read_write():
                    raise LockReadOnlyError(f'lock "{key}" is not a read-write lock')
                return existing
            self = super().__new__(cls)
            self._native = _native.LockFile(key, read_only)
            self.path = key
            # The context managers hold no state of their own: make them once.
            self._writing = _Held(self, True)
            self._reading = _Held(self, False)
            cls._cache[key] = self
            return self

    def __repr__(self) -> str:
        return f"Lockfile({self.path!r}, read_only={not self.is_read_write()})"

    # -- context managers -------------------------------------------------------------------

    def writing(self) -> _Held:
        """Hold the write lock for a ``with`` block (Go: ``Lock``/``Unlock``).

        A thread that holds the write lock may enter ``writing()`` or ``reading()`` again
        (Go's ``RecursiveLock``).

        Raises:
            LockReadOnlyError: The lock is read-only.
            LockUpgradeError: This thread holds only the read lock.
        """
        return self._writing

    def reading(self) -> _Held:
        """Hold the read lock for a ``with`` block (Go: ``RLock``/``Unlock``).

        Readers in other threads and processes share it; writers wait.
        """
        return self._reading

    # -- Go's Locker interface --------------------------------------------------------------

    def lock(self) -> None:
        """Take the write lock, waiting (GIL released) as long as needed."""
        self._native.lock()

    def rlock(self) -> None:
        """Take the read lock, waiting (GIL released) as long as needed."""
        self._native.rlock()

    def recursive_lock(self) -> None:
        """Take the write lock, or the read lock on a read-only lock (Go: ``RecursiveLock``)."""
        if self.is_read_write():
            self._native.lock()
        else:
            self._native.rlock()

    def unlock(self) -> None:
        """Release one take of the lock by this thread.

        Raises:
            LockNotHeldError: This thread does not hold the lock.
        """
        self._native.unlock()

    def touch(self) -> bytes:
        """Write a fresh 64-byte last-writer token at offset 0 and return it (Go: ``Touch``).

        Raises:
            LockNotHeldError: This thread does not hold the write lock.
            LockReadOnlyError: The lock is read-only.
        """
        return self._native.touch()

    def modified(self) -> bool:
        """Whether another writer touched the file since this object last looked.

        Remembers the token it read, so one foreign ``touch()`` is seen exactly once. A file
        never touched counts as modified (Go: ``Modified``).

        Raises:
            LockNotHeldError: This thread holds neither the read nor the write lock.
        """
        return self._native.modified()

    def token(self) -> bytes:
        """The last-writer token now in the file (empty when never touched), read through
        the descriptor holding the lock.

        Never open and close the lock file yourself while holding the lock: closing any
        descriptor of a file drops every fcntl lock this process has on it.

        Raises:
            LockNotHeldError: This thread holds neither the read nor the write lock.
        """
        return self._native.token()

    def touched_since(self, when: datetime | float) -> bool:
        """Whether the file's mtime is after ``when`` (a datetime or epoch seconds)."""
        seconds = float(when) if isinstance(when, (int, float)) else when.timestamp()
        return self._native.touched_since(seconds)

    def locked(self) -> bool:
        """Whether some thread of this process holds the write lock (Go: ``Locked``)."""
        return self._native.locked()

    def held(self) -> Literal["read", "write"] | None:
        """What the calling thread holds: ``"read"``, ``"write"`` or None."""
        return self._native.held()

    def is_read_write(self) -> bool:
        """False for a read-only lock (Go: ``IsReadWrite``)."""
        return self._native.is_read_write()
