"""Layer archives: apply a layer tarball onto a directory, fast and confined to it.

The work happens in Rust with the GIL released, in one pass over the input: compression is
detected from the stream (gzip, bzip2, xz, zstd or none), both digests are computed, the tar
is parsed and each member is written through directory file descriptors that cannot leave
``target_dir`` (``openat2(RESOLVE_IN_ROOT)``: the target acts as a chroot, as it does for
containers/storage's ``chrootarchive``).

Example:
    >>> from containers_storage.archive import apply_layer
    >>> result = apply_layer("layer.tar.gz", "/tmp/rootfs")
    >>> result.uncompressed_digest
    'sha256:...'
"""

from __future__ import annotations

import enum
import io
import os
import threading
from collections.abc import Callable, Generator, Iterable
from typing import BinaryIO, Literal, Protocol

from . import _native
from ._pipe import iter_written
from ._struct import asdict, struct

__all__ = [
    "ApplyResult",
    "Change",
    "ChangeKind",
    "IDMapTuples",
    "Limits",
    "Sink",
    "Source",
    "apply_layer",
    "changes",
    "diff",
    "diff_size",
    "iter_diff",
    "iter_reassemble",
    "reassemble_layer",
]

#: A UID or GID map as ``(container ID, host ID, size)`` tuples: the plain form of
#: :class:`~containers_storage.records.IDMap` ranges that the native functions take.
IDMapTuples = Iterable[tuple[int, int, int]]

#: How whiteouts are written: deletions (vfs), overlayfs markers, or kept as files (aufs).
WhiteoutFormat = Literal["vfs", "overlay", "aufs"]

#: ``progress(done_bytes, total_bytes_or_None)``.
ProgressCallback = Callable[[int, "int | None"], object]


class _Readable(Protocol):
    def read(self, size: int = ..., /) -> bytes: ...


#: A path, an open file descriptor, or a binary file object (with or without ``fileno()``).
Source = str | os.PathLike[str] | int | BinaryIO | _Readable

_PUMP_CHUNK = 1 << 20


@struct(frozen=True)
class Limits:
    """Bounds on what a layer may make the extractor do; any ``None`` keeps the default.

    Attributes:
        max_header_size: Largest PAX extended header, GNU long name or sparse map (1 MiB).
        max_path_length: Longest member name in bytes (4096).
        max_depth: Most path components in a member name (512).
        max_entries: Most members (10,000,000).
        max_total_bytes: Most file content bytes written (1 TiB).
        max_uncompressed_bytes: Largest decompressed stream (2 TiB).
        zstd_window_log_max: Largest zstd window as a power of two (27: 128 MiB).
    """

    max_header_size: int | None = None
    max_path_length: int | None = None
    max_depth: int | None = None
    max_entries: int | None = None
    max_total_bytes: int | None = None
    max_uncompressed_bytes: int | None = None
    zstd_window_log_max: int | None = None


@struct(frozen=True)
class ApplyResult:
    """What one pass over a layer measured.

    Attributes:
        compressed_digest: ``sha256:<hex>`` of the input as given.
        compressed_size: Bytes of the input as given.
        uncompressed_digest: ``sha256:<hex>`` of the tar: the layer's DiffID.
        uncompressed_size: Bytes of the tar.
        compression: ``"none"``, ``"gzip"``, ``"bzip2"``, ``"xz"`` or ``"zstd"``.
        uid_set: Sorted unique owners in the archive before mapping (whiteouts excluded).
        gid_set: Sorted unique groups in the archive before mapping (whiteouts excluded).
        entries: Number of members (extension headers not counted).
        size: Sum of the regular files' sizes (the size Go's ApplyDiff reports).
        tar_split: The tar-split NDJSON of the stream (uncompressed), or None when it was
            written to ``tar_split_path`` or not kept.
    """

    compressed_digest: str
    compressed_size: int
    uncompressed_digest: str
    uncompressed_size: int
    compression: str
    uid_set: list[int]
    gid_set: list[int]
    entries: int
    size: int
    tar_split: bytes | None


class _Pump(threading.Thread):
    """Copies a file object into a pipe, for sources without a file descriptor.

    A read error is kept in ``error``: the pipe then just ends, so the caller must check it
    (a stream cut at a member boundary would otherwise look complete).
    """

    def __init__(self, src: _Readable, write_fd: int) -> None:
        super().__init__(daemon=True, name="cs-pump")
        self.src = src
        self.write_fd = write_fd
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while True:
                chunk = self.src.read(_PUMP_CHUNK)
                if not chunk:
                    break
                view = memoryview(chunk)
                while view:
                    written = os.write(self.write_fd, view)
                    view = view[written:]
        except BrokenPipeError:
            pass  # the extractor stopped early; it reports why
        except BaseException as e:  # re-raised by apply_layer
            self.error = e
        finally:
            os.close(self.write_fd)


def _own_fd(obj: object, *, write: bool) -> int | None:
    """A descriptor the native code may own (and close) for a path, an fd or a file object
    with a working ``fileno()``; ``None`` for objects without one (they need a pipe)."""
    if isinstance(obj, int):
        return os.dup(obj)
    if isinstance(obj, str | os.PathLike):
        if write:
            return os.open(obj, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        return os.open(obj, os.O_RDONLY | os.O_CLOEXEC)
    fileno = getattr(obj, "fileno", None)
    if fileno is None:
        return None
    try:
        fd = os.dup(fileno())
    except (OSError, io.UnsupportedOperation, ValueError):
        return None
    if write:
        # What the object buffered must land before what we write.
        flush = getattr(obj, "flush", None)
        if flush is not None:
            flush()
    else:
        # A buffered reader may have read ahead of its position: start where it says.
        seekable = getattr(obj, "seekable", None)
        tell = getattr(obj, "tell", None)
        if seekable is not None and tell is not None and seekable():
            os.lseek(fd, tell(), os.SEEK_SET)
    return fd


def _source_fd(source: Source) -> tuple[int, _Pump | None]:
    """A file descriptor the native code may own, and the pump thread feeding it, if any."""
    fd = _own_fd(source, write=False)
    if fd is not None:
        return fd, None
    assert not isinstance(source, int | str | os.PathLike)  # those always have an fd
    read_fd, write_fd = os.pipe()
    pump = _Pump(source, write_fd)
    pump.start()
    return read_fd, pump


def _make_dirs(path: str) -> None:
    """Create directory ``path`` and its missing parents, each with mode 0755 (less the
    umask), as Go's ``MkdirAll(dest, 0755)`` does for an extraction target."""
    if os.path.isdir(path):
        return
    parent = os.path.dirname(path.rstrip("/"))
    if parent and parent != path and not os.path.lexists(parent):
        _make_dirs(parent)
    try:
        os.mkdir(path, 0o755)
    except FileExistsError:
        if not os.path.isdir(path):
            raise


def apply_layer(
    source: Source,
    target_dir: str | os.PathLike[str],
    *,
    whiteouts: WhiteoutFormat = "vfs",
    uid_map: IDMapTuples | None = None,
    gid_map: IDMapTuples | None = None,
    ignore_chown_errors: bool = False,
    limits: Limits | None = None,
    progress: ProgressCallback | None = None,
    tar_split_path: str | os.PathLike[str] | None = None,
    keep_tar_split: bool = False,
    workers: int | None = None,
) -> ApplyResult:
    """Apply a layer tarball onto ``target_dir``, confined to it.

    Args:
        source: A path, an open file descriptor (not closed), or a binary file object. A
            file object without ``fileno()`` is pumped through a pipe by a thread.
        target_dir: The directory to fill: empty for a base layer, or a copy of the parent
            layer (vfs), or an overlay ``diff`` directory. Created with its missing parents
            (mode 0755, less the umask) when it does not exist.
        whiteouts: ``"vfs"`` deletes what whiteouts name; ``"overlay"`` writes overlayfs
            whiteouts (0:0 character devices, ``trusted.overlay.opaque``) and, as Go's
            overlay driver, leaves the target's own metadata alone when the tar has a
            ``./`` entry; ``"aufs"`` keeps ``.wh.`` files.
        uid_map: Container-to-host UID ranges; IDs in the tar are mapped to the host.
        gid_map: Container-to-host GID ranges.
        ignore_chown_errors: Do not fail when an owner cannot be set or mapped.
        limits: Bounds on header sizes, names, member count and bytes written.
        progress: Called as ``progress(done_bytes, total_bytes_or_None)`` about ten times a
            second and once at the end; raising from it abandons the apply. Pending signals
            are checked as often, so Ctrl-C (``KeyboardInterrupt``) stops the apply within
            about 100 ms, leaving part of the layer in ``target_dir``.
        tar_split_path: Write the tar-split record (what :func:`reassemble_layer` needs to
            give back the exact tar) here, gzip-compressed as the store's
            ``<id>.tar-split.gz``. It streams to the file: memory stays flat, and the gzip
            costs a few percent of the apply's time.
        keep_tar_split: Return the record, uncompressed, as ``ApplyResult.tar_split``
            (ignored with ``tar_split_path``). It is held in memory until the end, and
            copied once more into the bytes object: about 1 KiB per member plus every
            header's bytes (hundreds of MB for a large layer), and 20-50% more time. Off by
            default: with neither option no record is made, and the apply stays within a
            few tens of MB whatever the layer's size.
        workers: Threads that create small files while the stream is read (into
            directories this apply creates): ``None`` for one per core up to four, ``0`` to
            write everything from one thread.

    Returns:
        The digests, sizes, owners and tar-split record of the layer.

    Raises:
        ArchiveError: The stream is malformed, truncated, corrupt or over a limit; the
            message names the member and the reason (``invalid tar header``,
            ``unexpected EOF``, ...).
        UnsafePathError: A member would land or act outside ``target_dir``.
        OSError: The source or the target cannot be read or written.
    """
    _make_dirs(os.fspath(target_dir))
    fd, pump = _source_fd(source)
    limit_args = None if limits is None else asdict(limits)
    try:
        raw = _native.apply_layer(
            fd,
            os.fspath(target_dir),
            whiteouts=whiteouts,
            uid_map=None if uid_map is None else [(c, h, n) for c, h, n in uid_map],
            gid_map=None if gid_map is None else [(c, h, n) for c, h, n in gid_map],
            ignore_chown_errors=ignore_chown_errors,
            limits=limit_args,
            tar_split_path=None if tar_split_path is None else os.fspath(tar_split_path),
            keep_tar_split=keep_tar_split,
            progress=progress,
            workers=workers,
        )
    except BaseException as e:
        if pump is not None:
            # A source that can be told to stop (a network stream) must not leave the pump
            # blocked in a read.
            abort = getattr(source, "abort", None)
            if abort is not None and pump.error is None:
                abort()
            pump.join()
            if pump.error is not None:
                # The source failed first; the archive error is its consequence.
                raise pump.error from e
        raise
    if pump is not None:
        pump.join()
        if pump.error is not None:
            raise pump.error
    result = ApplyResult(**raw)
    if progress is not None:
        progress(result.compressed_size, result.compressed_size)
    return result


class _Writable(Protocol):
    def write(self, data: bytes, /) -> object: ...


#: Where a tar goes: a path, an open file descriptor (not closed), or a binary file object.
Sink = str | os.PathLike[str] | int | BinaryIO | _Writable

#: Output compression: Go's ``diff`` writes none, gzip or zstd.
OutputCompression = Literal["none", "gzip", "zstd", "bzip2", "xz"]


class _Drain(threading.Thread):
    """Copies a pipe's read end into a file object (for sinks without a descriptor)."""

    def __init__(self, read_fd: int, dst: _Writable) -> None:
        super().__init__(daemon=True, name="cs-drain")
        self.read_fd = read_fd
        self.dst = dst
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while chunk := os.read(self.read_fd, _PUMP_CHUNK):
                self.dst.write(chunk)
        except BaseException as e:  # re-raised by the caller
            self.error = e
            # Keep reading so the writer never blocks on a full pipe.
            while os.read(self.read_fd, _PUMP_CHUNK):
                pass
        finally:
            os.close(self.read_fd)


def _sink_fd(sink: Sink) -> tuple[int, _Drain | None]:
    """A descriptor the native code may own (and close), and the drain feeding ``sink``."""
    fd = _own_fd(sink, write=True)
    if fd is not None:
        return fd, None
    assert not isinstance(sink, int | str | os.PathLike)  # those always have an fd
    read_fd, write_fd = os.pipe()
    drain = _Drain(read_fd, sink)
    drain.start()
    return write_fd, drain


def reassemble_layer(
    tar_split: bytes | str | os.PathLike[str],
    layer_dir: str | os.PathLike[str],
    out: Sink,
    *,
    compression: OutputCompression = "none",
) -> int:
    """Rebuild the exact tar a layer was applied from, from its tar-split and its files.

    The output's sha256 equals the layer's DiffID. Each file's size and CRC-64 are checked
    against the record while streaming; files are read relative to ``layer_dir`` and never
    outside it.

    Args:
        tar_split: The record: NDJSON bytes, or the path of a ``.tar-split.gz`` (or plain)
            file as containers/storage keeps them.
        layer_dir: The layer's directory (vfs: the layer's tree; overlay: its ``diff``).
        out: Where the tar goes: a path, a file descriptor or a binary file object.
        compression: ``"none"``, ``"gzip"`` or ``"zstd"``; ``"bzip2"`` and ``"xz"`` are
            refused as Go refuses them.

    Returns:
        The number of uncompressed bytes written.

    Raises:
        ArchiveError: The record is malformed, or a file is missing, short or changed
            ("the layer was modified"), or the compression is unsupported.
    """
    record: bytes | str = tar_split if isinstance(tar_split, bytes) else os.fspath(tar_split)
    fd, drain = _sink_fd(out)
    try:
        written, _files = _native.reassemble_layer(
            record, os.fspath(layer_dir), fd, compression=compression
        )
    except BaseException:
        if drain is not None:
            drain.join()
        raise
    if drain is not None:
        drain.join()
        if drain.error is not None:
            raise drain.error
    return written


class ChangeKind(enum.IntEnum):
    """What happened to a path (Go's ``archive.ChangeKind``, same numbers)."""

    MODIFY = 0
    ADD = 1
    DELETE = 2

    def __str__(self) -> str:
        # Go's String(): "C", "A", "D" (what ``containers-storage changes`` prints).
        return {0: "C", 1: "A", 2: "D"}[self.value]


@struct(frozen=True)
class Change:
    """One change in a layer: a ``/``-rooted path and its kind (Go ``archive.Change``)."""

    path: str
    kind: ChangeKind


def _maps(m: IDMapTuples | None) -> list[tuple[int, int, int]] | None:
    return None if m is None else [(c, h, n) for c, h, n in m]


def _changes_and_size(
    layer_dir: str | os.PathLike[str],
    parent_dir: str | os.PathLike[str] | None,
    lowers: Iterable[str | os.PathLike[str]] | None,
    uid_map: IDMapTuples | None,
    gid_map: IDMapTuples | None,
    parent_uid_map: IDMapTuples | None,
    parent_gid_map: IDMapTuples | None,
) -> tuple[list[Change], int]:
    raw, size = _native.layer_changes(
        os.fspath(layer_dir),
        None if parent_dir is None else os.fspath(parent_dir),
        lowers=None if lowers is None else [os.fspath(p) for p in lowers],
        uid_map=_maps(uid_map),
        gid_map=_maps(gid_map),
        parent_uid_map=_maps(parent_uid_map),
        parent_gid_map=_maps(parent_gid_map),
    )
    changes = [Change(os.fsdecode(p), ChangeKind(k)) for p, k in raw]
    return changes, size


def changes(
    layer_dir: str | os.PathLike[str],
    parent_dir: str | os.PathLike[str] | None = None,
    *,
    lowers: Iterable[str | os.PathLike[str]] | None = None,
    uid_map: IDMapTuples | None = None,
    gid_map: IDMapTuples | None = None,
    parent_uid_map: IDMapTuples | None = None,
    parent_gid_map: IDMapTuples | None = None,
) -> list[Change]:
    """What changed in a layer, as Go's ``Changes`` reports it.

    Naive mode (vfs): compares the tree ``layer_dir`` with ``parent_dir`` (``None``: every
    path is added). Overlay mode (``lowers`` given): reads ``layer_dir`` as an overlay upper
    directory over the lower directories, 0:0 character devices and opaque directories being
    deletions. Owners are compared as container IDs through the maps.

    Returns:
        Changes in tree order (a directory before its contents, names sorted).
    """
    return _changes_and_size(
        layer_dir, parent_dir, lowers, uid_map, gid_map, parent_uid_map, parent_gid_map
    )[0]


def diff_size(
    layer_dir: str | os.PathLike[str],
    parent_dir: str | os.PathLike[str] | None = None,
    *,
    lowers: Iterable[str | os.PathLike[str]] | None = None,
    uid_map: IDMapTuples | None = None,
    gid_map: IDMapTuples | None = None,
    parent_uid_map: IDMapTuples | None = None,
    parent_gid_map: IDMapTuples | None = None,
) -> int:
    """The size Go's ``DiffSize`` reports: the added and modified files' sizes (naive), or
    the size of everything in the upper directory (overlay), hard links counted once."""
    return _changes_and_size(
        layer_dir, parent_dir, lowers, uid_map, gid_map, parent_uid_map, parent_gid_map
    )[1]


def diff(
    layer_dir: str | os.PathLike[str],
    out: Sink,
    parent_dir: str | os.PathLike[str] | None = None,
    *,
    overlay: bool = False,
    lowers: Iterable[str | os.PathLike[str]] | None = None,
    compression: OutputCompression = "none",
    uid_map: IDMapTuples | None = None,
    gid_map: IDMapTuples | None = None,
    parent_uid_map: IDMapTuples | None = None,
    parent_gid_map: IDMapTuples | None = None,
) -> None:
    """Write a layer's changes as a tar (Go's naive ``Diff``, or the overlay native diff).

    Naive: the changes of ``layer_dir`` against ``parent_dir``, deletions as ``.wh.`` files.
    Overlay (``overlay=True``): the whole upper directory ``layer_dir``, its 0:0 character
    devices as ``.wh.NAME`` and opaque directories followed by ``.wh..wh..opq``. Owners are
    written as container IDs. For a layer applied from a tarball, prefer
    :func:`reassemble_layer`, which gives back the exact original bytes.

    Args:
        layer_dir: The layer's tree (vfs) or upper directory (overlay).
        out: A path, file descriptor or binary file object.
        parent_dir: The parent layer's tree (naive mode).
        overlay: Read ``layer_dir`` as an overlay upper directory.
        lowers: The lower layers' directories (overlay mode), nearest first: an opaque
            directory gets its ``.wh..wh..opq`` marker only when one of them has it (none
            given: no marker, as Go writes a layer without lower layers).
        compression: ``"none"``, ``"gzip"`` or ``"zstd"``; bzip2 and xz are refused.
        uid_map: Container-to-host UID ranges of the layer.
        gid_map: Container-to-host GID ranges of the layer.
        parent_uid_map: UID ranges of the parent.
        parent_gid_map: GID ranges of the parent.
    """
    fd, drain = _sink_fd(out)
    try:
        _native.layer_diff(
            os.fspath(layer_dir),
            fd,
            None if parent_dir is None else os.fspath(parent_dir),
            overlay=overlay,
            compression=compression,
            uid_map=_maps(uid_map),
            gid_map=_maps(gid_map),
            parent_uid_map=_maps(parent_uid_map),
            parent_gid_map=_maps(parent_gid_map),
            lowers=None if lowers is None else [os.fspath(p) for p in lowers],
        )
    finally:
        if drain is not None:
            drain.join()
    if drain is not None and drain.error is not None:
        raise drain.error


def iter_reassemble(
    tar_split: bytes | str | os.PathLike[str],
    layer_dir: str | os.PathLike[str],
    *,
    compression: OutputCompression = "none",
    chunk_size: int = 1 << 20,
) -> Generator[bytes, None, None]:
    """:func:`reassemble_layer` as an iterator of chunks (for streaming to a socket or an
    HTTP response)."""
    record: bytes | str = tar_split if isinstance(tar_split, bytes) else os.fspath(tar_split)
    return iter_written(
        lambda fd: _native.reassemble_layer(
            record, os.fspath(layer_dir), fd, compression=compression
        ),
        chunk_size,
    )


def iter_diff(
    layer_dir: str | os.PathLike[str],
    parent_dir: str | os.PathLike[str] | None = None,
    *,
    overlay: bool = False,
    compression: OutputCompression = "none",
    chunk_size: int = 1 << 20,
) -> Generator[bytes, None, None]:
    """:func:`diff` as an iterator of chunks."""
    return iter_written(
        lambda fd: _native.layer_diff(
            os.fspath(layer_dir),
            fd,
            None if parent_dir is None else os.fspath(parent_dir),
            overlay=overlay,
            compression=compression,
        ),
        chunk_size,
    )
