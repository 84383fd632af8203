"""The layer store: ``<drv>-layers/layers.json``, tar-split files, layer big data, and the
mount counts in the run root's ``mountpoints.json``.

Creating a layer follows Go's crash protocol: the record is saved with
``flags.incomplete = true`` before the driver touches the disk and the flag is cleared only
once the layer is complete; whoever next loads the store for writing removes a layer still
flagged (a crash mid-way leaves nothing half-made behind).
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from . import _native, errors
from ._jsonstore import atomic_write, dumps, loads, now
from ._recordstore import NeedsWriteLockError, RecordStore, big_data_file_name, dedupe_names
from ._strconv import go_quote
from ._struct import replace, struct
from .drivers import Driver, MountOptions
from .lockfile import Lockfile
from .records import IDMap, Layer

if TYPE_CHECKING:
    from .archive import ApplyResult, Change, Limits, ProgressCallback, Sink, Source

__all__ = ["LayerStore"]

_COMPRESSION = {"none": 0, "bzip2": 1, "gzip": 2, "xz": 3, "zstd": 4}
_COMPRESSION_NAMES = {v: k for k, v in _COMPRESSION.items()}
TAR_SPLIT_SUFFIX = ".tar-split.gz"


def compression_name(number: int) -> str:
    """Go's ``archive.Compression`` number as our name (``"gzip"``...)."""
    return _COMPRESSION_NAMES.get(number, "none")


class LayerStore(RecordStore[Layer]):
    """The layers of one store (read-write) or of an additional image store (read-only)."""

    record_type = Layer
    kind = "layer"
    unknown_error = errors.LayerUnknownError
    duplicate_names_error = errors.DuplicateLayerNamesError

    def __init__(self, graph_dir: str, run_dir: str | None, driver: Driver, read_only: bool):
        super().__init__(graph_dir, "layers.json", "layers.lock", read_only)
        self.driver = driver
        self.run_dir = run_dir
        self.mounts_path = None if run_dir is None else os.path.join(run_dir, "mountpoints.json")
        self.mounts_lock = (
            None if run_dir is None else Lockfile(os.path.join(run_dir, "mountpoints.lock"))
        )
        if run_dir is not None and not read_only:
            os.makedirs(run_dir, mode=0o700, exist_ok=True)
        self.mounts: dict[str, tuple[str, int]] = {}
        self._mounts_seen: bytes | None = None
        self.by_compressed: dict[str, list[str]] = {}
        self.by_uncompressed: dict[str, list[str]] = {}

    # -- load hooks -------------------------------------------------------------------------

    def _prepare(self, records: list[Layer]) -> list[Layer]:
        if self.read_only:
            return [replace(r, read_only=True) for r in records]
        return records

    def _index_extra(self) -> None:
        comp: dict[str, list[str]] = {}
        uncomp: dict[str, list[str]] = {}
        for r in self.records:
            if r.compressed_diff_digest:
                comp.setdefault(r.compressed_diff_digest, []).append(r.id)
            if r.diff_digest:
                uncomp.setdefault(r.diff_digest, []).append(r.id)
        self.by_compressed = comp
        self.by_uncompressed = uncomp

    def _extra_add(self, rec: Layer) -> None:
        if rec.compressed_diff_digest:
            self.by_compressed.setdefault(rec.compressed_diff_digest, []).append(rec.id)
        if rec.diff_digest:
            self.by_uncompressed.setdefault(rec.diff_digest, []).append(rec.id)

    def _extra_drop(self, rec: Layer) -> None:
        for index, key in (
            (self.by_compressed, rec.compressed_diff_digest),
            (self.by_uncompressed, rec.diff_digest),
        ):
            ids = index.get(key)
            if ids and rec.id in ids:
                ids.remove(rec.id)
                if not ids:
                    del index[key]

    def _after_load(self, write_locked: bool) -> None:
        if self.read_only:
            return
        if write_locked:
            self._clean_staging_records()
        with self._mounts_reading():
            self._load_mounts()
        incomplete = [r.id for r in self.records if r.incomplete]
        if not incomplete:
            return
        if not write_locked:
            raise NeedsWriteLockError()
        for layer_id in incomplete:
            self._delete_files(layer_id)
            self.remove(layer_id)

    def _reload_if_changed(self, write_locked: bool) -> None:
        # Go's layerStore.ReloadIfChanged: the mount counts have their own lock, which
        # another process's mount or unmount touches without touching layers.lock.
        super()._reload_if_changed(write_locked)
        if not self.read_only and self.mounts_lock is not None:
            with self._mounts_reading():
                self._reload_mounts_if_changed()

    def _clean_staging_records(self) -> None:
        """Remove ``.staging-<pid>-*`` tar-split records of processes that are gone."""
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return
        for name in names:
            if name.startswith(".staging-"):
                pid = name.split("-")[1]
                if pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(os.path.join(self.directory, name))

    # -- mount bookkeeping ------------------------------------------------------------------

    @contextlib.contextmanager
    def _mounts_reading(self) -> Iterator[None]:
        assert self.mounts_lock is not None
        if self.mounts_lock.held() is not None:
            yield
            return
        with self.mounts_lock.reading():
            yield

    def _load_mounts(self) -> None:
        assert self.mounts_path is not None and self.mounts_lock is not None
        try:
            with open(self.mounts_path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            data = b""
        mounts: dict[str, tuple[str, int]] = {}
        if data.strip():
            try:
                entries = loads(data)
            except ValueError as e:
                raise errors.LoadError(
                    f"{errors.LoadError.go_message}: parsing {self.mounts_path}: {e}"
                ) from e
            for entry in entries or ():
                path = entry.get("path", "")
                count = int(entry.get("count", 0) or 0)
                layer_id = entry.get("id", "")
                if path and layer_id in self.by_id:
                    mounts[layer_id] = (path, count)
        self.mounts = mounts
        self._mounts_seen = self._mounts_token()

    def _mounts_token(self) -> bytes:
        assert self.mounts_lock is not None
        try:
            st = os.stat(self.mounts_path) if self.mounts_path else None
        except FileNotFoundError:
            st = None
        tail = b"" if st is None else f"{st.st_mtime_ns}:{st.st_ino}".encode()
        # Through the lock's descriptor (held by the caller): see RecordStore._token.
        return self.mounts_lock.token() + tail

    def _reload_mounts_if_changed(self) -> None:
        if self._mounts_seen != self._mounts_token():
            self._load_mounts()

    def _save_mounts(self) -> None:
        assert self.mounts_path is not None and self.mounts_lock is not None
        entries = [
            {"id": r.id, "path": self.mounts[r.id][0], "count": self.mounts[r.id][1]}
            for r in self.records
            if r.id in self.mounts and self.mounts[r.id][1] > 0 and self.mounts[r.id][0]
        ]
        atomic_write(self.mounts_path, dumps(entries))
        self.mounts_lock.touch()
        self._mounts_seen = self._mounts_token()

    def ensure_mounts_file(self) -> None:
        """Write ``mountpoints.json`` if missing (Go writes it on the first read-write open)."""
        if self.read_only or self.mounts_lock is None or self.mounts_path is None:
            return
        if os.path.exists(self.mounts_path):
            return
        with self.mounts_lock.writing():
            self._reload_mounts_if_changed()
            if not os.path.exists(self.mounts_path):
                self._save_mounts()

    def with_mount(self, rec: Layer) -> Layer:
        """``rec`` with its mount point and count filled in."""
        m = self.mounts.get(rec.id)
        if m is None or m[1] <= 0:
            return rec
        return replace(rec, mount_point=m[0], mount_count=m[1])

    def mounted(self, layer_id: str) -> int:
        """The layer's mount count."""
        self.require_writable_mounts()
        assert self.mounts_lock is not None
        with self.mounts_lock.reading():
            self._reload_mounts_if_changed()
            rec = self.get(layer_id)
            return self.mounts.get(rec.id, ("", 0))[1]

    def parent_owners(self, rec: Layer) -> tuple[list[int], list[int]]:
        """Owners of the directories above an ID-mapped layer's mount point that its maps
        cannot represent (Go ``layerStore.ParentOwners``); empty for an unmapped layer.

        Raises:
            LayerNotMountedError: The layer is ID-mapped and not mounted.
        """
        self.require_writable_mounts()
        assert self.mounts_lock is not None
        with self.mounts_lock.reading():
            self._reload_mounts_if_changed()
            mount_point = self.mounts.get(rec.id, ("", 0))[0]
        if not rec.uidmap and not rec.gidmap:
            return [], []
        if not mount_point:
            raise errors.LayerNotMountedError()

        def representable(maps: tuple[IDMap, ...], host: int) -> bool:
            return not maps or any(m.host_id <= host < m.host_id + m.size for m in maps)

        uids: set[int] = set()
        gids: set[int] = set()
        d = os.path.dirname(mount_point)
        while d and d != "/":
            for st in (os.stat(d), os.lstat(d)):
                if not representable(rec.uidmap, st.st_uid):
                    uids.add(st.st_uid)
                if not representable(rec.gidmap, st.st_gid):
                    gids.add(st.st_gid)
            d = os.path.dirname(d)
        return sorted(uids), sorted(gids)

    def require_writable_mounts(self) -> None:
        if self.read_only or self.mounts_lock is None:
            raise errors.StoreIsReadOnlyError(
                f"no mount information for layers at {go_quote(self.mounts_path or self.path)}: "
                f"{errors.StoreIsReadOnlyError.go_message}"
            )

    def mount(self, layer_id: str, options: MountOptions) -> str:
        """Mount the layer (count + 1) and return its path (Go ``layerStore.Mount``)."""
        if self.read_only and "ro" not in options.options:
            raise errors.StoreIsReadOnlyError(
                "not allowed to update mount locations for layers at "
                f"{go_quote(self.mounts_path or self.path)}: "
                f"{errors.StoreIsReadOnlyError.go_message}"
            )
        self.require_writable_mounts()
        assert self.mounts_lock is not None
        with self.mounts_lock.writing():
            self._reload_mounts_if_changed()
            rec = self.get(layer_id)
            path, count = self.mounts.get(rec.id, ("", 0))
            if count > 0 and self.driver_still_mounted(rec.id, path):
                self.mounts[rec.id] = (path, count + 1)
                self._save_mounts()
                return path
            if (options.uid_map or options.gid_map) and not self.driver.supports_shifting():
                if tuple(options.uid_map) != rec.uidmap or tuple(options.gid_map) != rec.gidmap:
                    raise errors.StorageError(f"cannot mount layer {rec.id}: shifting not enabled")
            if not options.mount_label and rec.mountlabel:
                options = replace(options, mount_label=rec.mountlabel)
            mountpoint = self.driver.get(rec.id, options)
            self.mounts[rec.id] = (os.path.normpath(mountpoint), count + 1 if count > 0 else 1)
            self._save_mounts()
            return mountpoint

    def driver_still_mounted(self, layer_id: str, path: str) -> bool:
        """Whether a counted mount is still there (vfs: the directory exists)."""
        checker = getattr(self.driver, "is_mounted", None)
        if checker is not None:
            return bool(checker(layer_id, path))
        return os.path.isdir(path)

    def unmount(self, ref: str, force: bool) -> bool:
        """Count one unmount (all with ``force``); unmount for real at zero. Returns whether
        the layer is still mounted."""
        self.require_writable_mounts()
        assert self.mounts_lock is not None
        with self.mounts_lock.writing():
            self._reload_mounts_if_changed()
            rec = self.lookup(ref)
            if rec is None:
                clean = os.path.normpath(ref)
                for layer_id, (path, _count) in self.mounts.items():
                    if path == clean:
                        rec = self.by_id.get(layer_id)
                        break
            if rec is None:
                raise errors.LayerUnknownError()
            path, count = self.mounts.get(rec.id, ("", 0))
            if force:
                count = 1
            if count > 1:
                self.mounts[rec.id] = (path, count - 1)
                self._save_mounts()
                return True
            try:
                self.driver.put(rec.id)
            except FileNotFoundError:
                pass
            self.mounts.pop(rec.id, None)
            self._save_mounts()
            return False

    # -- paths ------------------------------------------------------------------------------

    def tar_split_path(self, layer_id: str) -> str:
        return os.path.join(self.directory, layer_id + TAR_SPLIT_SUFFIX)

    def data_dir(self, layer_id: str) -> str:
        return os.path.join(self.directory, layer_id)

    def data_path(self, layer_id: str, key: str) -> str:
        return os.path.join(self.data_dir(layer_id), big_data_file_name(key))

    # -- create, apply, delete (write lock held) --------------------------------------------

    def put(
        self,
        layer_id: str,
        parent: Layer | None,
        names: Sequence[str],
        *,
        mount_label: str = "",
        writeable: bool = False,
        uid_map: Sequence[IDMap] = (),
        gid_map: Sequence[IDMap] = (),
        flags: dict[str, Any] | None = None,
        template: Layer | None = None,
        diff: Source | None = None,
        progress: ProgressCallback | None = None,
        expect_compressed: str = "",
        expect_uncompressed: str = "",
        staged: StagedLayer | None = None,
        limits: Limits | None = None,
    ) -> tuple[Layer, int]:
        """Create a layer and apply ``diff`` to it (Go ``layerStore.Put``), or adopt a layer
        applied beforehand in a staging directory (``staged``).

        ``expect_compressed``/``expect_uncompressed`` are digests the diff must have; on a
        mismatch the layer is removed before anyone can use it and
        :class:`~containers_storage.errors.DigestMismatchError` is raised.
        """
        self.require_writable("create new layers")
        if not layer_id:
            layer_id = self.new_id()
        if layer_id in self.by_id:
            raise errors.DuplicateIDError()
        names = dedupe_names(names)
        for name in names:
            if name in self.by_name:
                raise errors.DuplicateNameError()
        base: dict[str, Any] = {}
        ts_data: bytes | None = None
        if template is not None:
            base = {
                "metadata": template.metadata,
                "compressed_diff_digest": template.compressed_diff_digest,
                "compressed_size": template.compressed_size,
                "diff_digest": template.diff_digest,
                "diff_size": template.diff_size,
                "compression": template.compression,
                "uidset": template.uidset,
                "gidset": template.gidset,
            }
            try:
                with open(self.tar_split_path(template.id), "rb") as f:
                    ts_data = f.read()
            except FileNotFoundError:
                ts_data = None
        layer_flags = dict(flags or {})
        layer_flags["incomplete"] = True
        rec = Layer(
            id=layer_id,
            names=tuple(names),
            parent=parent.id if parent else "",
            mountlabel=mount_label,
            created=now(),
            flags=layer_flags,
            uidmap=tuple(uid_map),
            gidmap=tuple(gid_map),
            **base,
        )
        self.add(rec)
        # The flagged record's bytes are on disk before the driver writes anything, so a
        # crash leaves a record that the next writable open removes with its directories.
        # The rename needs no directory sync of its own: the final save below syncs the
        # directory before returning, and a journalling file system commits this rename no
        # later than the driver's directories made after it (Go never syncs directories).
        self.save(sync_dir=False)
        size = -1
        try:
            if template is not None:
                from_uid, from_gid = template.uidmap, template.gidmap
            elif parent is not None:
                from_uid, from_gid = parent.uidmap, parent.gidmap
            else:
                from_uid, from_gid = (), ()
            self.driver.create(
                layer_id,
                parent.id if parent else None,
                template=template.id if template else None,
                read_write=writeable,
                mount_label=mount_label,
                uid_map=uid_map,
                gid_map=gid_map,
                from_uid_map=from_uid,
                from_gid_map=from_gid,
            )
            if ts_data is not None:
                atomic_write(self.tar_split_path(layer_id), ts_data)
            if staged is not None:
                size = self._adopt(layer_id, staged, expect_compressed, expect_uncompressed)
            elif diff is not None:
                size = self.apply_diff(
                    layer_id,
                    diff,
                    progress=progress,
                    save=False,
                    expect_compressed=expect_compressed,
                    expect_uncompressed=expect_uncompressed,
                    limits=limits,
                )
            rec = self.by_id[layer_id]
            done_flags = {k: v for k, v in rec.flags.items() if k != "incomplete"}
            rec = self.put_record(replace(rec, flags=done_flags))
            self.save()
        except BaseException:
            with contextlib.suppress(Exception):
                self.delete(layer_id)
            raise
        finally:
            if staged is not None:
                staged.discard()
        return rec, size

    def apply_diff(
        self,
        ref: str,
        source: Source,
        *,
        progress: ProgressCallback | None = None,
        save: bool = True,
        expect_compressed: str = "",
        expect_uncompressed: str = "",
        limits: Limits | None = None,
    ) -> int:
        """Apply a tarball to an existing layer and record its digests, sizes, owners and
        tar-split (Go ``ApplyDiff``); returns the size of the files written."""
        self.require_writable("modify layer contents")
        rec = self.get(ref)
        ts_path = self.tar_split_path(rec.id)
        tmp_ts = ts_path + ".tmp"
        result: ApplyResult = self.driver.apply_diff(
            rec.id,
            rec.parent or None,
            source,
            uid_map=rec.uidmap,
            gid_map=rec.gidmap,
            tar_split_path=tmp_ts,
            progress=progress,
            limits=limits,
        )
        _check_digests(result, expect_compressed, expect_uncompressed)
        os.chmod(tmp_ts, 0o600)
        os.rename(tmp_ts, ts_path)
        self._record_result(rec, result)
        if save:
            self.save()
        return result.size

    def _adopt(
        self, layer_id: str, staged: StagedLayer, expect_compressed: str, expect_uncompressed: str
    ) -> int:
        """Move a staged diff into the new layer and record what its apply measured."""
        _check_digests(staged.result, expect_compressed, expect_uncompressed)
        self.driver.adopt_staged(layer_id, staged.diff_dir)
        target = self.tar_split_path(layer_id)
        os.chmod(staged.tar_split_path, 0o600)
        try:
            os.rename(staged.tar_split_path, target)
        except OSError as e:
            if e.errno != errno.EXDEV:
                raise
            # Staged elsewhere (another mount): copy, then replace atomically.
            import shutil

            shutil.copyfile(staged.tar_split_path, target + ".tmp")
            os.rename(target + ".tmp", target)
        self._record_result(self.by_id[layer_id], staged.result)
        return staged.result.size

    def _record_result(self, rec: Layer, result: ApplyResult) -> None:
        self.put_record(
            replace(
                rec,
                compressed_diff_digest=result.compressed_digest,
                compressed_size=result.compressed_size,
                diff_digest=result.uncompressed_digest,
                diff_size=result.uncompressed_size,
                compression=_COMPRESSION.get(result.compression, 0),
                uidset=tuple(result.uid_set),
                gidset=tuple(result.gid_set),
            )
        )

    def _delete_files(self, layer_id: str) -> None:
        self.driver.remove(layer_id)
        for path in (self.tar_split_path(layer_id), self.tar_split_path(layer_id) + ".tmp"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        _native.remove_tree(self.data_dir(layer_id))

    def delete(self, ref: str) -> None:
        """Unmount, then remove the layer's files and record (Go ``layerStore.Delete``)."""
        self.require_writable("delete layers")
        rec = self.get(ref)
        if not self.read_only and self.mounts_lock is not None:
            while self.mounted(rec.id) > 0:
                self.unmount(rec.id, False)
        if not rec.incomplete:
            flags = dict(rec.flags)
            flags["incomplete"] = True
            rec = self.put_record(replace(rec, flags=flags))
            self.save()
        self._delete_files(rec.id)
        self.remove(rec.id)
        if self.mounts.pop(rec.id, None) is not None and self.mounts_lock is not None:
            with self.mounts_lock.writing():
                self._save_mounts()
        self.save()

    def wipe(self) -> None:
        """Delete every layer, newest first."""
        for rec in sorted(self.records, key=lambda r: r.created_ns, reverse=True):
            if rec.id in self.by_id:
                self.delete(rec.id)

    # -- big data ---------------------------------------------------------------------------

    def set_big_data(self, ref: str, key: str, data: bytes) -> None:
        if not key:
            raise errors.InvalidBigDataNameError(
                "can't set empty name for layer big data item: "
                + errors.InvalidBigDataNameError.go_message
            )
        self.require_writable("save data items associated with layers")
        rec = self.lookup(ref)
        if rec is None:
            raise errors.LayerUnknownError(
                f"locating layer with ID {go_quote(ref)} to write bigdata: "
                + errors.LayerUnknownError.go_message
            )
        os.makedirs(self.data_dir(rec.id), mode=0o700, exist_ok=True)
        atomic_write(self.data_path(rec.id, key), data)
        if key not in rec.big_data_names:
            self.put_record(replace(rec, big_data_names=(*rec.big_data_names, key)))
            self.save()

    def big_data(self, ref: str, key: str) -> bytes:
        if not key:
            raise errors.InvalidBigDataNameError(
                "can't retrieve layer big data value for empty name: "
                + errors.InvalidBigDataNameError.go_message
            )
        rec = self.lookup(ref)
        if rec is None:
            raise errors.LayerUnknownError(
                f"locating layer with ID {go_quote(ref)}: " + errors.LayerUnknownError.go_message
            )
        path = self.data_path(rec.id, key)
        try:
            with open(path, "rb") as f:
                return f.read()
        except FileNotFoundError:
            raise missing_layer_item(key, rec.id) from None

    # -- contents ---------------------------------------------------------------------------

    def parent_and_layer(
        self, from_ref: str | None, to_ref: str
    ) -> tuple[str, Layer | None, Layer]:
        """Go's ``findParentAndLayer``: ``from`` defaults to the parent; an unknown ``from``
        falls back to the parent; a parent this store does not hold (one in an additional
        store) is kept by ID, without its record."""
        to = self.get(to_ref)
        frm = from_ref or to.parent
        parent: Layer | None = None
        if frm:
            parent = self.lookup(frm)
            if parent is None and to.parent:
                parent = self.lookup(to.parent)
            if parent is not None:
                frm = parent.id
        return frm or "", parent, to

    def changes(self, from_ref: str | None, to_ref: str) -> tuple[list[Change], int]:
        parent_id, parent, to = self.parent_and_layer(from_ref, to_ref)
        return self.driver.changes(
            to.id,
            parent_id or None,
            to.uidmap,
            to.gidmap,
            parent.uidmap if parent else (),
            parent.gidmap if parent else (),
        )

    def diff(self, from_ref: str | None, to_ref: str, out: Sink, compression: str | None) -> None:
        """Write the layer's diff: the exact applied tar when diffing against the parent and
        a tar-split exists, else the driver's diff."""
        from . import archive

        parent_id, parent, to = self.parent_and_layer(from_ref, to_ref)
        comp = compression if compression is not None else compression_name(to.compression)
        if comp in ("bzip2", "xz"):
            raise errors.ArchiveError(f"unsupported compression format {_EXT[comp]}")
        ts = self.tar_split_path(to.id)
        if parent_id == to.parent and os.path.exists(ts):
            archive.reassemble_layer(
                ts,
                self.driver.content_dir(to.id),
                out,
                compression=comp,  # type: ignore[arg-type]
            )
            return
        self.driver.diff(
            to.id,
            parent_id or None,
            out,
            comp,
            to.uidmap,
            to.gidmap,
            parent.uidmap if parent else (),
            parent.gidmap if parent else (),
        )


_EXT = {"bzip2": "tar.bz2", "xz": "tar.xz"}


@struct(frozen=True)
class StagedLayer:
    """A layer applied outside the store, waiting to be adopted by :meth:`LayerStore.put`.

    Attributes:
        directory: The staging directory (removed by :meth:`discard`).
        diff_dir: The applied tree (overlay: becomes the layer's ``diff``).
        tar_split_path: Its tar-split record (gzip).
        result: What the apply measured.
    """

    directory: str
    diff_dir: str
    tar_split_path: str
    result: ApplyResult

    def discard(self) -> None:
        """Remove what is left of the staging directory and record."""
        _native.remove_tree(self.directory)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.tar_split_path)


def _check_digests(result: ApplyResult, compressed: str, uncompressed: str) -> None:
    if compressed and result.compressed_digest != compressed:
        raise errors.DigestMismatchError(
            f"Digest did not match, expected {compressed}, got {result.compressed_digest}"
        )
    if uncompressed and result.uncompressed_digest != uncompressed:
        raise errors.DigestMismatchError(
            f"Digest did not match, expected {uncompressed}, got {result.uncompressed_digest}"
            " (the layer's DiffID)"
        )


def missing_layer_item(key: str, layer_id: str) -> FileNotFoundError:
    """Go's ``LayerBigData`` error for a layer without the item (or with an empty key)."""
    return FileNotFoundError(
        f"locating item named {go_quote(key)} for layer with ID {go_quote(layer_id)}: "
        "file does not exist"
    )
