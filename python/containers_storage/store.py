"""The Store: layers, images and containers on disk, shared with podman, buildah and skopeo.

Every method of Go's ``storage.Store`` (1.43) is here under its snake_case name; Go's
``(value, err)`` becomes a return value or an exception from :mod:`containers_storage.errors`.
Each store reloads its JSON only when another process wrote it since.

Lock order, for the threads of this process and the other processes alike (each lock file is
an fcntl lock plus an in-process reader/writer lock, as Go's): ``storage.lock``, ``userns.lock``,
``layers.lock`` (ours, then additional stores' read-only), ``images.lock`` (likewise),
``containers.lock``, then a layer store's load mutex and ``mountpoints.lock``, innermost. A
lock may be skipped, never taken after a later one; ``storage.lock`` is held only briefly to
get the layer stores (``_all_layer_stores``, before any record lock) and around a mount or
shutdown. The driver and the layer stores are made in ``__init__`` or under ``storage.lock``,
never under a thread lock of their own, so no thread lock is held while waiting for a file lock
(the load mutex only for ``mountpoints.lock``, which is innermost).

Example:
    >>> import containers_storage as cs
    >>> with cs.Store("/var/lib/mystore", "/run/mystore", "vfs") as store:
    ...     layer, size = store.put_layer(diff="layer.tar.gz", names=["base"])
    ...     image = store.create_image(layer.id, names=["example:latest"])
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Generator, Iterable, Sequence
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any, TypeVar

from . import _native, errors, userns
from ._jsonstore import atomic_write
from ._pipe import iter_written
from ._recordstore import R, RecordStore, random_id
from ._strconv import go_quote
from .containers import ContainerStore
from .digests import validate_digest
from .drivers import Driver, MountOptions, new_driver
from .images import ImageStore, missing_image_item
from .layers import LayerStore, StagedLayer, missing_layer_item
from .lockfile import Lockfile
from .options import StoreOptions
from .records import Container, IDMap, Image, ImageBigData, Layer, idmaps_from

if TYPE_CHECKING:  # the archive module is imported when a layer's contents are touched
    from .archive import Change, Limits, ProgressCallback, Source
    from .check import CheckReport

__all__ = ["Store", "get_store"]

MapArg = Iterable[IDMap | tuple[int, int, int]] | None

_S = TypeVar("_S", bound="RecordStore[Any]")

_stores: dict[tuple[str, str, str], Store] = {}
_stores_lock = threading.Lock()


def get_store(options: StoreOptions | None = None) -> Store:
    """The process-wide Store for these options (the same object for the same roots and
    driver, as Go's ``GetStore``); ``None`` means :meth:`StoreOptions.default`."""
    opts = options or StoreOptions.default()
    if not (
        opts.graph_root or opts.run_root or opts.graph_driver_name or opts.graph_driver_options
    ):
        opts = StoreOptions.default()
    if not opts.graph_root and not opts.run_root:
        raise errors.IncompleteOptionsError(
            "no storage runroot or graphroot specified: " + errors.IncompleteOptionsError.go_message
        )
    defaults = StoreOptions.default() if not (opts.graph_root and opts.run_root) else None
    graph = os.path.abspath(opts.graph_root or (defaults.graph_root if defaults else ""))
    run = os.path.abspath(opts.run_root or (defaults.run_root if defaults else ""))
    with _stores_lock:
        for (g, r, d), store in _stores.items():
            if (
                g == graph
                and r == run
                and (not opts.graph_driver_name or d == opts.graph_driver_name)
            ):
                return store
        store = Store(
            graph,
            run,
            opts.graph_driver_name or "",
            opts.graph_driver_options,
            uid_map=opts.uid_map,
            gid_map=opts.gid_map,
            pull_options=opts.pull_options,
            disable_volatile=opts.disable_volatile,
        )
        _stores[(graph, run, store.graph_driver_name())] = store
        return store


def _choose_driver(graph_root: str) -> str:
    """Go's driver auto-selection: a driver whose home already has layers wins, else
    overlay when the kernel has it, else vfs."""
    for name in ("overlay", "vfs"):
        if os.path.isdir(os.path.join(graph_root, f"{name}-layers")):
            return name
    try:
        with open("/proc/filesystems", encoding="ascii") as f:
            has_overlay = any(line.split()[-1:] == ["overlay"] for line in f)
    except OSError:
        has_overlay = False
    return "overlay" if has_overlay and os.geteuid() == 0 else "vfs"


class Store:
    """A containers/storage store (Go ``storage.Store``).

    Args:
        graph_root: Where layers, images and containers are kept (``--graph``).
        run_root: Where mount state and per-boot data are kept (``--run``).
        driver: ``"vfs"`` (``"overlay"`` with the overlay driver); empty to auto-select.
        driver_options: ``--storage-opt`` strings (``vfs.imagestore=/path``...).
        uid_map: Default container-to-host UID ranges for new layers.
        gid_map: Default container-to-host GID ranges for new layers.
    """

    def __init__(
        self,
        graph_root: str | os.PathLike[str],
        run_root: str | os.PathLike[str],
        driver: str = "",
        driver_options: Sequence[str] = (),
        uid_map: MapArg = None,
        gid_map: MapArg = None,
        *,
        pull_options: dict[str, str] | None = None,
        disable_volatile: bool = False,
    ) -> None:
        graph = os.path.abspath(os.fspath(graph_root))
        run = os.path.abspath(os.fspath(run_root))
        if not graph or not run:
            raise errors.IncompleteOptionsError()
        os.makedirs(run, mode=0o700, exist_ok=True)
        os.makedirs(graph, mode=0o700, exist_ok=True)
        name = {"overlay2": "overlay"}.get(driver, driver) or _choose_driver(graph)
        for sub in ("mounts", "tmp", name):
            os.makedirs(os.path.join(graph, sub), mode=0o700, exist_ok=True)
        self._graph_root = graph
        self._run_root = run
        self._driver_name = name
        self._driver_options = list(driver_options)
        self._uid_map = idmaps_from(uid_map)
        self._gid_map = idmaps_from(gid_map)
        self._pull_options = dict(pull_options or {})
        self._disable_volatile = disable_volatile
        self._graph_lock = Lockfile(os.path.join(graph, "storage.lock"))
        self._userns_lock = Lockfile(os.path.join(graph, "userns.lock"))
        self._driver: Driver | None = None
        self._layers: LayerStore | None = None
        self._ro_layers: list[LayerStore] | None = None
        self._last_loaded = time.time()
        driver_obj = self._get_driver()
        prefix = name + "-"
        self._images = ImageStore(os.path.join(graph, prefix + "images"), read_only=False)
        self._containers = ContainerStore(
            os.path.join(graph, prefix + "containers"),
            os.path.join(run, prefix + "containers"),
        )
        self._ro_images = [
            ImageStore(os.path.join(p, prefix + "images"), read_only=True)
            for p in driver_obj.image_stores
        ]
        # Go's GetStore loads the image and container records as it opens their stores: a
        # store whose records do not load (an invalid digest, say) does not open.
        loaded: list[ImageStore | ContainerStore] = [self._images, self._containers]
        for records in loaded + list(self._ro_images):
            with records.reading():
                pass
        self._digest_lock_root = os.path.join(run, prefix + "locks")
        os.makedirs(self._digest_lock_root, mode=0o700, exist_ok=True)
        # The layer store is opened (write-locked, cleaning incomplete layers) on first use,
        # as Go's LayerStore(): listing images never reads layers.json.

    # -- context manager --------------------------------------------------------------------

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object
    ) -> None:
        """Release the store as :meth:`shutdown` does, unless layers are still mounted (by
        this program or another, a running podman container say): they need the driver's
        mounts, so leaving the block leaves them be. An error while releasing is raised
        only when the block itself raised nothing."""
        try:
            self.shutdown(False)
        except errors.LayerUsedByContainerError:
            pass
        except Exception as e:
            if exc is None:
                raise
            exc.add_note(f"while leaving the store: {e}")

    def __repr__(self) -> str:
        return (
            f"Store(graph_root={self._graph_root!r}, run_root={self._run_root!r}, "
            f"driver={self._driver_name!r})"
        )

    # -- accessors --------------------------------------------------------------------------

    def run_root(self) -> str:
        """The run root (Go ``RunRoot``)."""
        return self._run_root

    def graph_root(self) -> str:
        """The graph root (Go ``GraphRoot``)."""
        return self._graph_root

    def graph_driver_name(self) -> str:
        """The driver's name (Go ``GraphDriverName``)."""
        return self._driver_name

    def graph_options(self) -> list[str]:
        """The driver options (Go ``GraphOptions``)."""
        return list(self._driver_options)

    def pull_options(self) -> dict[str, str]:
        """``pull_options`` from storage.conf (Go ``PullOptions``)."""
        return dict(self._pull_options)

    def uid_map(self) -> list[IDMap]:
        """The store's default UID map (Go ``UIDMap``)."""
        return list(self._uid_map)

    def gid_map(self) -> list[IDMap]:
        """The store's default GID map (Go ``GIDMap``)."""
        return list(self._gid_map)

    def graph_driver(self) -> Driver:
        """The driver (Go ``GraphDriver``)."""
        with self._graph_lock.writing():
            if self._graph_lock.touched_since(self._last_loaded):
                self._reset_driver()
            return self._get_driver()

    def get_digest_lock(self, digest: str) -> Lockfile:
        """A lock file for one digest, for concurrent pulls (Go ``GetDigestLock``)."""
        return Lockfile(os.path.join(self._digest_lock_root, digest))

    def free(self) -> None:
        """Release cached resources (Go ``Free``): nothing is cached beyond the records."""

    def version(self) -> list[tuple[str, str]]:
        """Go's ``Version`` returns an empty list; so does this."""
        return []

    # -- internal store access --------------------------------------------------------------

    def _get_driver(self) -> Driver:
        """The driver, made if needed: called in ``__init__`` or under storage.lock."""
        driver = self._driver
        if driver is None:
            driver = self._driver = new_driver(
                self._driver_name, self._graph_root, self._run_root, self._driver_options
            )
        return driver

    def _reset_driver(self) -> None:
        """Forget the driver and the layer store (storage.lock held): another process's
        shutdown touched storage.lock, or ours released them."""
        self._driver = None
        self._layers = None
        self._last_loaded = time.time()

    def _open_layer_store(self) -> LayerStore:
        """This store's layer store, made on first use and again after another process
        touched storage.lock (storage.lock held: Go's ``LayerStore``)."""
        if self._graph_lock.touched_since(self._last_loaded):
            self._reset_driver()
        if self._layers is None:
            prefix = self._driver_name + "-"
            store = LayerStore(
                os.path.join(self._graph_root, prefix + "layers"),
                os.path.join(self._run_root, prefix + "layers"),
                self._get_driver(),
                read_only=False,
            )
            with store.writing():
                pass
            store.ensure_mounts_file()
            self._layers = store
        return self._layers

    def _layer_store(self) -> LayerStore:
        """This store's layer store; takes storage.lock (see :meth:`_all_layer_stores`)."""
        with self._graph_lock.writing():
            return self._open_layer_store()

    def _all_layer_stores(self) -> list[LayerStore]:
        """This store's layer store, then the additional stores' (read-only) ones.

        Getting them takes ``storage.lock``: a caller that will hold ``layers.lock`` gets
        them first (Go's order is ``storage.lock``, then the layers)."""
        with self._graph_lock.writing():
            rl = self._open_layer_store()
            if self._ro_layers is None:
                driver = self._get_driver()
                prefix = self._driver_name + "-"
                self._ro_layers = [
                    LayerStore(os.path.join(p, prefix + "layers"), None, driver, read_only=True)
                    for p in driver.image_stores
                ]
            return [rl, *self._ro_layers]

    def _all_image_stores(self) -> list[ImageStore]:
        return [self._images, *self._ro_images]

    def _read_all_layers(self, stack: ExitStack) -> list[LayerStore]:
        """Every layer store, read-locked into ``stack``."""
        stores = self._all_layer_stores()
        for s in stores:
            stack.enter_context(s.reading())
        return stores

    def _find_layer(
        self,
        stack: ExitStack | None,
        ref: str,
        *,
        stores: Sequence[LayerStore] | None = None,
        write: bool = False,
        locating: bool = False,
    ) -> tuple[LayerStore, Layer]:
        """The layer ``ref`` names and the store holding it: the layer stores are locked
        one by one in order (this store's first, write-locked with ``write``), until one
        knows it, and stay locked until ``stack`` closes (Go's loop over
        ``allLayerStores``). Without a ``stack``, the caller holds the locks of ``stores``.

        Raises:
            LayerUnknownError: No store knows ``ref`` (``locating``: with Go's ``locating
                layer with ID`` prefix).
        """
        found = _first(stack, stores or self._all_layer_stores(), ref, write)
        if found is None:
            raise _unknown(errors.LayerUnknownError, "layer", ref if locating else None)
        return found

    def _find_image(
        self, stack: ExitStack, ref: str, *, write: bool = False, locating: bool = False
    ) -> tuple[ImageStore, Image]:
        """The image ``ref`` names and the store holding it, as :meth:`_find_layer`."""
        found = _first(stack, self._all_image_stores(), ref, write)
        if found is None:
            raise _unknown(errors.ImageUnknownError, "image", ref if locating else None)
        return found

    # -- layers -----------------------------------------------------------------------------

    def put_layer(
        self,
        parent: str | None = None,
        diff: Source | None = None,
        *,
        id: str = "",
        names: Sequence[str] = (),
        mount_label: str = "",
        writeable: bool = False,
        uid_map: MapArg = None,
        gid_map: MapArg = None,
        host_uid_mapping: bool = False,
        host_gid_mapping: bool = False,
        progress: ProgressCallback | None = None,
        compressed_digest: str = "",
        uncompressed_digest: str = "",
        staged: StagedLayer | None = None,
        limits: Limits | None = None,
    ) -> tuple[Layer, int]:
        """Create a layer on ``parent`` and apply ``diff`` (a path, fd or binary file) to it
        (Go ``PutLayer``). Returns the layer and the size of the files written (-1 without a
        diff).

        Raises:
            LayerUnknownError: ``parent`` is not a layer.
            ParentIsContainerError: ``parent`` is a container's layer.
            DuplicateIDError, DuplicateNameError: The ID or a name is taken.
            ArchiveError: The diff is not a valid layer (nothing is left behind).
            DigestMismatchError: ``compressed_digest`` or ``uncompressed_digest`` (Go's
                ``OriginalDigest``/``UncompressedDigest``, verified here rather than
                trusted) does not match the diff.

        ``staged`` adopts a layer applied beforehand with :meth:`stage_layer` instead of
        applying ``diff`` under the lock. ``limits`` bounds the apply (a decompression
        bomb fails with ``ArchiveError``).
        """
        stores = self._all_layer_stores()
        rl = stores[0]
        # Go asks the driver whether it can shift owners whenever a layer is made (and the
        # overlay driver caches the answer in the run root): do the same, so the run root
        # looks as Go leaves it, although layers made here never rely on it.
        rl.driver.supports_shifting()
        with ExitStack() as stack:
            stack.enter_context(rl.writing())
            stack.enter_context(self._containers.writing())
            umap = () if host_uid_mapping else idmaps_from(uid_map)
            gmap = () if host_gid_mapping else idmaps_from(gid_map)
            parent_rec: Layer | None = None
            inherit = (self._uid_map, self._gid_map)
            if parent:
                _, parent_rec = self._find_layer(stack, parent, stores=stores)
                if parent_rec.id in self._containers.by_layer:
                    raise errors.ParentIsContainerError()
                inherit = (parent_rec.uidmap, parent_rec.gidmap)
            umap, gmap = userns.new_layer_maps(
                (umap, gmap), (host_uid_mapping, host_gid_mapping), inherit
            )
            layer, size = rl.put(
                id,
                parent_rec,
                names,
                mount_label=mount_label,
                writeable=writeable,
                uid_map=umap,
                gid_map=gmap,
                diff=diff,
                progress=progress,
                expect_compressed=compressed_digest,
                expect_uncompressed=uncompressed_digest,
                staged=staged,
                limits=limits,
            )
            return rl.with_mount(layer), size

    def stage_layer(
        self,
        diff: Source,
        *,
        uid_map: MapArg = None,
        gid_map: MapArg = None,
        progress: ProgressCallback | None = None,
        limits: Limits | None = None,
    ) -> StagedLayer:
        """Apply a layer tarball outside the store, without holding any lock, to be adopted
        by :meth:`put_layer` (``staged=``). Several can run at once (overlay only: a vfs
        layer is a copy of its parent).

        Raises:
            NotSupportedError: The driver cannot stage layers (vfs).
        """
        driver = self.graph_driver()
        if not driver.supports_staging:
            raise errors.NotSupportedError(
                f"the {driver.name} driver applies layers on a copy of their parent"
            )
        rl = self._layer_store()
        # The record is written next to the layers (the same mount as its final place, so
        # adopting it is a rename); leftovers of dead processes are removed at open.
        ts_path = os.path.join(rl.directory, f".staging-{os.getpid()}-{random_id()[:12]}.tar-split")
        directory, diff_dir, ts, result = driver.stage(
            diff,
            uid_map=idmaps_from(uid_map),
            gid_map=idmaps_from(gid_map),
            progress=progress,
            tar_split_path=ts_path,
            limits=limits,
        )
        return StagedLayer(directory, diff_dir, ts, result)

    def create_layer(
        self,
        parent: str | None = None,
        *,
        id: str = "",
        names: Sequence[str] = (),
        mount_label: str = "",
        writeable: bool = False,
        uid_map: MapArg = None,
        gid_map: MapArg = None,
        host_uid_mapping: bool = False,
        host_gid_mapping: bool = False,
    ) -> Layer:
        """Create an empty layer on ``parent`` (Go ``CreateLayer``)."""
        return self.put_layer(
            parent,
            None,
            id=id,
            names=names,
            mount_label=mount_label,
            writeable=writeable,
            uid_map=uid_map,
            gid_map=gid_map,
            host_uid_mapping=host_uid_mapping,
            host_gid_mapping=host_gid_mapping,
        )[0]

    def apply_diff(self, to: str, diff: Source, *, progress: ProgressCallback | None = None) -> int:
        """Apply a layer tarball to an existing layer (Go ``ApplyDiff``); returns the size of
        the files written."""
        rl = self._layer_store()
        with rl.writing():
            if not rl.exists(to):
                raise errors.LayerUnknownError()
            return rl.apply_diff(to, diff, progress=progress)

    def layers(self) -> list[Layer]:
        """Every layer, this store's first, then those of additional stores."""
        out: list[Layer] = []
        with ExitStack() as stack:
            for s in self._all_layer_stores():
                stack.enter_context(s.reading())
                out.extend(s.with_mount(r) for r in s.records)
        return out

    def layer(self, ref: str) -> Layer:
        """One layer by ID, name or ID prefix."""
        with ExitStack() as stack:
            s, rec = self._find_layer(stack, ref)
            return s.with_mount(rec)

    def _layers_by_digest(self, digest: str, compressed: bool) -> list[Layer]:
        try:
            validate_digest(digest)
        except errors.InvalidDigestError as e:
            what = "compressed layers" if compressed else "layers"
            raise errors.InvalidDigestError(
                f"looking for {what} matching digest {go_quote(digest)}: {e}"
            ) from None
        out: list[Layer] = []
        with ExitStack() as stack:
            for s in self._all_layer_stores():
                stack.enter_context(s.reading())
                index = s.by_compressed if compressed else s.by_uncompressed
                out.extend(s.with_mount(s.by_id[i]) for i in index.get(digest, ()))
        if not out:
            raise errors.LayerUnknownError()
        return out

    def layers_by_compressed_digest(self, digest: str) -> list[Layer]:
        """Layers whose diff was applied from a blob with this digest."""
        return self._layers_by_digest(digest, compressed=True)

    def layers_by_uncompressed_digest(self, digest: str) -> list[Layer]:
        """Layers whose uncompressed diff (DiffID) has this digest."""
        return self._layers_by_digest(digest, compressed=False)

    def layer_size(self, ref: str) -> int:
        """The layer's recorded uncompressed size, -1 when no diff digest is recorded."""
        with ExitStack() as stack:
            _, rec = self._find_layer(stack, ref)
            return rec.diff_size if rec.diff_digest else -1

    def layer_parent_owners(self, ref: str) -> tuple[list[int], list[int]]:
        """Owners of the directories above an ID-mapped layer's mount point that its maps
        cannot represent (Go ``LayerParentOwners``)."""
        rl = self._layer_store()
        with rl.reading():
            rec = rl.lookup(ref)
            if rec is None:
                raise errors.LayerUnknownError()
            return rl.parent_owners(rec)

    def list_layer_big_data(self, ref: str) -> list[str]:
        """Keys of the layer's big data."""
        with ExitStack() as stack:
            _, rec = self._find_layer(stack, ref, locating=True)
            return list(rec.big_data_names)

    def layer_big_data(self, ref: str, key: str) -> bytes:
        """One big-data item of a layer.

        Raises:
            FileNotFoundError: The layer has no such item, or the key is empty (Go's text).
        """
        with ExitStack() as stack:
            s, rec = self._find_layer(stack, ref, locating=True)
            if not key:
                raise missing_layer_item(key, rec.id)
            return s.big_data(rec.id, key)

    def set_layer_big_data(self, ref: str, key: str, data: bytes | Any) -> None:
        """Store a named blob with a layer (bytes or a readable binary file)."""
        payload = data if isinstance(data, bytes | bytearray | memoryview) else data.read()
        rl = self._layer_store()
        with rl.writing():
            rl.set_big_data(ref, key, bytes(payload))

    # -- images -----------------------------------------------------------------------------

    def create_image(
        self,
        top_layer: str | None = None,
        *,
        id: str = "",
        names: Sequence[str] = (),
        metadata: str = "",
        digest: str = "",
        created: str | None = None,
        big_data: Sequence[ImageBigData] = (),
        add_names: Sequence[str] = (),
    ) -> Image:
        """Record an image whose top layer is ``top_layer`` (Go ``CreateImage``).

        ``big_data`` (the manifest, the config...) and ``add_names`` are stored with the
        record in one write (Go's later ``ImageOptions.BigData`` does the same): no other
        process ever sees the image without them, and a crash leaves all or nothing.
        ``add_names`` are given as :meth:`add_names` gives them, as skopeo and podman
        name an image they store: a name another image holds moves here, and each is
        recorded in the names history. A name in ``names`` held by another image is an
        error, as in Go.
        """
        layer_id = ""
        with ExitStack() as stack:
            if top_layer:
                layer_id = self._find_layer(stack, top_layer, write=True)[1].id
            images = self._images
            stack.enter_context(images.writing())
            with images.batch():
                rec = images.create(id, names, layer_id, metadata, created, digest)
                try:
                    for item in big_data:
                        images.set_big_data(rec.id, item.key, item.data, item.manifest_digester())
                    if add_names:
                        images.update_names(rec.id, add_names, "add")
                except BaseException:
                    images.delete(rec.id)
                    raise
                return images.get(rec.id)

    def images(self) -> list[Image]:
        """Every image, this store's first, then those of additional stores."""
        out: list[Image] = []
        with ExitStack() as stack:
            for s in self._all_image_stores():
                stack.enter_context(s.reading())
                out.extend(s.records)
        return out

    def image(self, ref: str) -> Image:
        """One image by ID, name or ID prefix.

        Raises:
            ImageUnknownError: ``locating image with ID "ref": image not known`` (Go's text).
        """
        with ExitStack() as stack:
            return self._find_image(stack, ref, locating=True)[1]

    def images_by_top_layer(self, ref: str) -> list[Image]:
        """Images whose top layer (or an ID-mapped copy of it) is the layer."""
        layer = self.layer(ref)
        out = []
        for img in self.images():
            if img.layer == layer.id or layer.id in img.mapped_layers:
                out.append(img)
        return out

    def images_by_digest(self, digest: str) -> list[Image]:
        """Images whose digest or a manifest's digest is ``digest`` (empty when none)."""
        out: list[Image] = []
        with ExitStack() as stack:
            for s in self._all_image_stores():
                stack.enter_context(s.reading())
                out.extend(s.by_id[i] for i in s.by_digest.get(digest, ()))
        return out

    def list_image_big_data(self, ref: str) -> list[str]:
        """Keys of the image's big data, in the order they were first set."""
        with ExitStack() as stack:
            return list(self._find_image(stack, ref, locating=True)[1].big_data_names)

    def image_big_data(self, ref: str, key: str) -> bytes:
        """One big-data item of an image.

        Raises:
            FileNotFoundError: The image has no such item, or the key is empty (Go's text).
        """
        with ExitStack() as stack:
            s, rec = self._find_image(stack, ref, locating=True)
            if not key:
                raise missing_image_item(key, rec.id)
            return s.big_data(rec.id, key)

    def image_big_data_size(self, ref: str, key: str) -> int:
        """The size of one big-data item of an image.

        Raises:
            SizeUnknownError: No such image or item, or an empty key (Go says only that).
        """
        with ExitStack() as stack:
            try:
                s, rec = self._find_image(stack, ref)
                return s.big_data_size(rec.id, key)
            except (errors.ImageUnknownError, errors.InvalidBigDataNameError):
                raise errors.SizeUnknownError() from None

    def image_big_data_digest(self, ref: str, key: str) -> str:
        """The digest of one big-data item of an image.

        Raises:
            DigestUnknownError: No such image or item, or an empty key (Go says only that).
        """
        with ExitStack() as stack:
            try:
                s, rec = self._find_image(stack, ref)
                return s.big_data_digest(rec.id, key)
            except (errors.ImageUnknownError, errors.InvalidBigDataNameError):
                raise errors.DigestUnknownError() from None

    def set_image_big_data(
        self,
        ref: str,
        key: str,
        data: bytes,
        digest_manifest: Callable[[bytes], str] | None = None,
    ) -> None:
        """Store a named blob with an image; ``manifest*`` keys are digested with
        ``digest_manifest`` (default sha256) and become lookup digests."""
        with self._images.writing():
            self._images.set_big_data(ref, key, bytes(data), digest_manifest)

    def image_size(self, ref: str) -> int:
        """Bytes of the image's layers (each once) plus its big data (Go ``ImageSize``)."""
        with ExitStack() as stack:
            lstores = self._read_all_layers(stack)
            istore, img = self._find_image(stack, ref, locating=True)
            queue = [x for x in (img.layer, *img.mapped_layers) if x]
            seen: set[str] = set()
            size = 0
            while queue:
                layer_id = queue.pop()
                if layer_id in seen:
                    continue
                seen.add(layer_id)
                s, rec = self._find_layer(None, layer_id, stores=lstores, locating=True)
                if rec.diff_digest:
                    size += rec.diff_size
                else:
                    size += s.changes(None, rec.id)[1]
                if rec.parent:
                    queue.append(rec.parent)
            for name in img.big_data_names:
                size += istore.big_data_size(img.id, name)
            return size

    # -- containers -------------------------------------------------------------------------

    def create_container(
        self,
        image: str | None = None,
        *,
        id: str = "",
        names: Sequence[str] = (),
        layer: str = "",
        metadata: str = "",
        uid_map: MapArg = None,
        gid_map: MapArg = None,
        host_uid_mapping: bool = False,
        host_gid_mapping: bool = False,
        volatile: bool = False,
        mount_opts: Sequence[str] | None = None,
        flags: dict[str, Any] | None = None,
        mount_label: str = "",
        process_label: str = "",
    ) -> Container:
        """Create a container from ``image`` (or from nothing): a new read-write layer on
        the image's top layer, or on an ID-mapped copy of it when the maps differ (Go
        ``CreateContainer``)."""
        umap = () if host_uid_mapping else idmaps_from(uid_map)
        gmap = () if host_gid_mapping else idmaps_from(gid_map)
        stores = self._all_layer_stores()
        rl = stores[0]
        with ExitStack() as stack:
            if umap or gmap:
                stack.enter_context(self._userns_lock.writing())
            stack.enter_context(rl.writing())
            image_rec: Image | None = None
            home: ImageStore | None = None
            if image:
                # The additional layer stores before any image store (the lock order).
                for s in stores[1:]:
                    stack.enter_context(s.reading())
                home, image_rec = self._find_image(stack, image, write=True, locating=True)
            top: Layer | None = None
            inherit = (self._uid_map, self._gid_map)
            if image_rec is not None and image_rec.layer:
                top = self._top_layer_for_mapping(
                    stores,
                    image_rec,
                    home is self._images,
                    umap,
                    gmap,
                    host_uid_mapping,
                    host_gid_mapping,
                )
                inherit = (top.uidmap, top.gidmap)
            elif image_rec is not None:
                inherit = ((), ())  # an image without layers
            layer_umap, layer_gmap = userns.new_layer_maps(
                (umap, gmap), (host_uid_mapping, host_gid_mapping), inherit
            )
            ctr_flags: dict[str, Any] = dict(flags or {})
            plabel = str(ctr_flags.get("ProcessLabel", process_label) or "")
            mlabel = str(ctr_flags.get("MountLabel", mount_label) or "")
            if bool(plabel) != bool(mlabel):
                raise ValueError(
                    "ProcessLabel and Mountlabel must either not be specified or both specified"
                )
            ctr_flags["ProcessLabel"] = plabel
            ctr_flags["MountLabel"] = mlabel
            if mount_opts is not None:
                ctr_flags["MountOpts"] = list(mount_opts)
            if volatile:
                ctr_flags["Volatile"] = True
            clayer, _ = rl.put(
                layer,
                top,
                (),
                mount_label=mlabel,
                writeable=True,
                uid_map=layer_umap,
                gid_map=layer_gmap,
            )
            try:
                stack.enter_context(self._containers.writing())
                return self._containers.create(
                    id,
                    names,
                    image_rec.id if image_rec else "",
                    clayer.id,
                    metadata,
                    ctr_flags,
                    umap,
                    gmap,
                )
            except BaseException:
                with contextlib.suppress(Exception):
                    rl.delete(clayer.id)
                raise

    def _top_layer_for_mapping(
        self,
        stores: Sequence[LayerStore],
        image: Image,
        image_is_ours: bool,
        umap: tuple[IDMap, ...],
        gmap: tuple[IDMap, ...],
        host_uid: bool,
        host_gid: bool,
    ) -> Layer:
        """The layer a container with these maps is made on: the image's top layer or an
        ID-mapped copy of it that fits, else a new copy (recorded with the image), else
        (for an image or layer of an additional store) the top layer as it is. ``stores``
        are locked by the caller, this store's for writing."""
        rl = stores[0]
        first: tuple[LayerStore, Layer, Layer | None] | None = None
        for s in stores:
            for candidate in (image.layer, *image.mapped_layers):
                rec = s.lookup(candidate)
                if rec is None:
                    continue
                parent_rec = None
                if rec.parent:
                    # A top layer's parent may live in a later additional store.
                    found = _first(None, stores, rec.parent)
                    if found is None:
                        continue
                    parent_rec = found[1]
                if userns.layer_fits(rec, umap, gmap, host_uid, host_gid):
                    return rec
                if first is None:
                    first = (s, rec, parent_rec)
        if first is None:
            raise errors.LayerUnknownError()
        s, layer, parent_rec = first
        if s is not rl or not image_is_ours:
            return layer
        mapped, _ = rl.put(
            "",
            parent_rec,
            (),
            mount_label=layer.mountlabel,
            uid_map=umap,
            gid_map=gmap,
            template=layer,
        )
        try:
            self._images.add_mapped_layer(image.id, mapped.id)
        except BaseException:
            with contextlib.suppress(Exception):
                rl.delete(mapped.id)
            raise
        return mapped

    def containers(self) -> list[Container]:
        """Every container."""
        with self._containers.reading():
            return list(self._containers.records)

    def container(self, ref: str) -> Container:
        """One container by ID, name, ID prefix or layer ID."""
        with self._containers.reading():
            return self._containers.get(ref)

    def container_layer_id(self, ref: str) -> str:
        """The container's layer ID."""
        return self.container(ref).layer

    def container_by_layer(self, ref: str) -> Container:
        """The container whose layer is ``ref``."""
        layer = self.layer(ref)
        with self._containers.reading():
            rec = self._containers.by_layer.get(layer.id)
        if rec is None:
            raise errors.ContainerUnknownError()
        return rec

    def list_container_big_data(self, ref: str) -> list[str]:
        """Keys of the container's big data."""
        return list(self.container(ref).big_data_names)

    def container_big_data(self, ref: str, key: str) -> bytes:
        """One big-data item of a container."""
        with self._containers.reading():
            return self._containers.big_data(ref, key)

    def container_big_data_size(self, ref: str, key: str) -> int:
        """The size of one big-data item of a container."""
        with self._containers.writing():
            return self._containers.big_data_size(ref, key)

    def container_big_data_digest(self, ref: str, key: str) -> str:
        """The digest of one big-data item of a container."""
        with self._containers.writing():
            return self._containers.big_data_digest(ref, key)

    def set_container_big_data(self, ref: str, key: str, data: bytes) -> None:
        """Store a named blob with a container."""
        with self._containers.writing():
            self._containers.set_big_data(ref, key, bytes(data))

    def container_size(self, ref: str) -> int:
        """The container layer's diff size, its big data and both userdata directories."""
        with ExitStack() as stack:
            lstores = self._read_all_layers(stack)
            stack.enter_context(self._containers.reading())
            ctr = self._containers.get(ref)
            s, _ = self._find_layer(None, ctr.layer, stores=lstores, locating=True)
            size = s.changes(None, ctr.layer)[1]
            for name in ctr.big_data_names:
                size += self._containers.big_data_size(ctr.id, name)
            size += _native.dir_size(self._containers.userdata_dir(ctr.id))
            size += _native.dir_size(self._containers.run_userdata_dir(ctr.id))
            return size

    def container_directory(self, ref: str) -> str:
        """``GRAPHROOT/<drv>-containers/<id>/userdata``, created if missing."""
        ctr = self.container(ref)
        path = self._containers.userdata_dir(ctr.id)
        os.makedirs(path, mode=0o700, exist_ok=True)
        return path

    def container_run_directory(self, ref: str) -> str:
        """``RUNROOT/<drv>-containers/<id>/userdata``, created if missing."""
        ctr = self.container(ref)
        path = self._containers.run_userdata_dir(ctr.id)
        os.makedirs(path, mode=0o700, exist_ok=True)
        return path

    def set_container_directory_file(self, ref: str, file: str, data: bytes) -> None:
        """Atomically write ``file`` in the container's directory."""
        path = os.path.join(self.container_directory(ref), file)
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        atomic_write(path, bytes(data))

    def from_container_directory(self, ref: str, file: str) -> bytes:
        """Read ``file`` from the container's directory."""
        with open(os.path.join(self.container_directory(ref), file), "rb") as f:
            return f.read()

    def set_container_run_directory_file(self, ref: str, file: str, data: bytes) -> None:
        """Atomically write ``file`` in the container's run directory."""
        path = os.path.join(self.container_run_directory(ref), file)
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        atomic_write(path, bytes(data))

    def from_container_run_directory(self, ref: str, file: str) -> bytes:
        """Read ``file`` from the container's run directory."""
        with open(os.path.join(self.container_run_directory(ref), file), "rb") as f:
            return f.read()

    def container_parent_owners(self, ref: str) -> tuple[list[int], list[int]]:
        """:meth:`layer_parent_owners` of the container's layer."""
        rl = self._layer_store()
        with rl.reading(), self._containers.reading():
            ctr = self._containers.get(ref)
            rec = rl.lookup(ctr.layer)
            if rec is None:
                raise errors.LayerUnknownError()
            return rl.parent_owners(rec)

    # -- across kinds -----------------------------------------------------------------------

    def _find_any(self, ref: str) -> Layer | Image | Container | None:
        """The layer, else image, else container that ``ref`` names (Go's search order),
        each store read under its lock."""
        ambiguous: list[errors.AmbiguousPrefixError] = []
        with ExitStack() as stack:
            in_layers = _first(stack, self._all_layer_stores(), ref, ambiguous=ambiguous)
            if in_layers is not None:
                layer: Layer = in_layers[1]
                return layer
            in_images = _first(stack, self._all_image_stores(), ref, ambiguous=ambiguous)
            if in_images is not None:
                image: Image = in_images[1]
                return image
            stack.enter_context(self._containers.reading())
            ctr = _lookup(self._containers, ref, ambiguous)
        if ctr is None and ambiguous:
            raise ambiguous[0]
        return ctr

    def metadata(self, ref: str) -> str:
        """The metadata of a layer, image or container (searched in that order)."""
        rec = self._find_any(ref)
        if rec is None:
            raise errors.NotAnIDError()
        return rec.metadata

    def set_metadata(self, ref: str, metadata: str) -> None:
        """Set the metadata of a layer, image or container."""
        rl = self._layer_store()
        ambiguous: list[errors.AmbiguousPrefixError] = []
        with rl.writing():
            rec = _lookup(rl, ref, ambiguous)
            if rec is not None:
                rl.set_metadata(rec.id, metadata)
                return
        with self._images.writing():
            img = _lookup(self._images, ref, ambiguous)
            if img is not None:
                self._images.set_metadata(img.id, metadata)
                return
        with self._containers.writing():
            ctr = _lookup(self._containers, ref, ambiguous)
            if ctr is not None:
                self._containers.set_metadata(ctr.id, metadata)
                return
        if ambiguous:
            raise ambiguous[0]
        raise errors.NotAnIDError()

    def exists(self, ref: str) -> bool:
        """Whether a layer, image or container is known by that ID, name or prefix."""
        try:
            return self._find_any(ref) is not None
        except errors.AmbiguousPrefixError:
            return False

    def lookup(self, name: str) -> str:
        """The ID of the layer, image or container (in that order) named ``name``."""
        rec = self._find_any(name)
        if rec is None:
            raise errors.LayerUnknownError()
        return rec.id

    def names(self, ref: str) -> list[str]:
        """The names of a layer, image or container."""
        rec = self._find_any(ref)
        if rec is None:
            raise errors.LayerUnknownError()
        return list(rec.names)

    def _update_names(self, ref: str, names: Sequence[str], op: str) -> None:
        rl = self._layer_store()
        names = list(dict.fromkeys(names))
        ambiguous: list[errors.AmbiguousPrefixError] = []
        with rl.writing():
            layer = _lookup(rl, ref, ambiguous)
            if layer is not None:
                rl.update_names(layer.id, names, op)
                return
        with ExitStack() as stack:
            stack.enter_context(self._images.writing())
            image = _lookup(self._images, ref, ambiguous)
            if image is not None:
                self._images.update_names(image.id, names, op)
                return
            for ro in self._ro_images:
                stack.enter_context(ro.reading())
                img = _lookup(ro, ref, ambiguous)
                if img is not None:
                    # Copy the record into our store, which may name it.
                    keep = names[1:] if len(names) > 1 else names
                    self._images.create(
                        img.id, keep, img.layer, img.metadata, img.created, img.digest
                    )
                    return
        with self._containers.writing():
            ctr = _lookup(self._containers, ref, ambiguous)
            if ctr is not None:
                self._containers.update_names(ctr.id, names, op)
                return
        if ambiguous:
            raise ambiguous[0]
        raise errors.LayerUnknownError()

    def set_names(self, ref: str, names: Sequence[str]) -> None:
        """Replace all names of a layer, image or container; a name another item of the same
        kind holds moves here."""
        self._update_names(ref, names, "set")

    def add_names(self, ref: str, names: Sequence[str]) -> None:
        """Add names to a layer, image or container."""
        self._update_names(ref, names, "add")

    def remove_names(self, ref: str, names: Sequence[str]) -> None:
        """Remove names from a layer, image or container."""
        self._update_names(ref, names, "remove")

    # -- deletion ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def _write_all(self) -> Generator[LayerStore, None, None]:
        rl = self._layer_store()
        with rl.writing(), self._images.writing(), self._containers.writing():
            yield rl

    def delete_layer(self, ref: str) -> None:
        """Delete a layer nothing depends on (Go ``DeleteLayer``).

        Raises:
            LayerHasChildrenError, LayerUsedByImageError, LayerUsedByContainerError: Something
                uses it.
            NotALayerError: ``ref`` is not a layer.
        """
        with self._write_all() as rl:
            rec = rl.lookup(ref)
            if rec is None:
                raise errors.NotALayerError()
            for other in rl.records:
                if other.parent == rec.id:
                    raise errors.LayerHasChildrenError(
                        f"used by layer {other.id}: {errors.LayerHasChildrenError.go_message}"
                    )
            for img in self._images.records:
                if img.layer == rec.id:
                    raise errors.LayerUsedByImageError(
                        f"layer {rec.id} used by image {img.id}: "
                        + errors.LayerUsedByImageError.go_message
                    )
            ctr = self._containers.by_layer.get(rec.id)
            if ctr is not None:
                raise errors.LayerUsedByContainerError(
                    f"layer {rec.id} used by container {ctr.id}: "
                    + errors.LayerUsedByContainerError.go_message
                )
            rl.delete(rec.id)
            for img in list(self._images.records):
                if rec.id in img.mapped_layers:
                    self._images.remove_mapped_layer(img.id, rec.id)

    def delete_image(self, ref: str, commit: bool = True) -> list[str]:
        """Delete an image and the layers only it used, top first; with ``commit=False``
        only report which layers would go (Go ``DeleteImage``).

        Raises:
            ImageUsedByContainerError: A container was made from it.
            NotAnImageError: ``ref`` is not an image.
        """
        with self._write_all() as rl:
            img = self._images.lookup(ref)
            if img is None:
                raise errors.NotAnImageError()
            # Go names the last such container (its map of image to container keeps the last).
            for ctr in reversed(self._containers.records):
                if ctr.image == img.id:
                    raise errors.ImageUsedByContainerError(
                        f"image used by {ctr.id}: {errors.ImageUsedByContainerError.go_message}"
                    )
            children: dict[str, list[str]] = {}
            for layer in rl.records:
                children.setdefault(layer.parent, []).append(layer.id)
            others: set[str] = set()
            for other in self._images.records:
                if other.id != img.id:
                    others.add(other.layer)
                    others.update(other.mapped_layers)
            if commit:
                self._images.delete(img.id)
            to_remove = list(img.mapped_layers)
            removing = set(to_remove)
            layer_id = img.layer
            while layer_id:
                if self._containers.lookup(layer_id) is not None:
                    break
                if layer_id in others:
                    break
                rec = rl.lookup(layer_id)
                parent = rec.parent if rec is not None else ""
                check = [layer_id, *(img.mapped_layers if layer_id == img.layer else ())]
                if any(c not in removing for x in check for c in children.get(x, ())):
                    break
                to_remove.append(layer_id)
                removing.add(layer_id)
                layer_id = parent
            if commit:
                for layer_id in to_remove:
                    rl.delete(layer_id)
            return to_remove

    def delete_container(self, ref: str) -> None:
        """Delete a container, its layer and its directories (Go ``DeleteContainer``)."""
        with self._write_all() as rl:
            ctr = self._containers.lookup(ref)
            if ctr is None:
                raise errors.NotAContainerError()
            # Directories first (unmounting podman's shm and any other mount in them): what
            # fails there leaves the container and its layer as they were, for a retry.
            self._containers.remove_directories(ctr.id)
            if rl.lookup(ctr.layer) is not None:
                rl.delete(ctr.layer)
            self._containers.delete(ctr.id)

    def delete(self, ref: str) -> None:
        """Delete a container, image or layer, without Go's safety checks (Go ``Delete``)."""
        ambiguous: list[errors.AmbiguousPrefixError] = []
        with self._write_all() as rl:
            ctr = _lookup(self._containers, ref, ambiguous)
            if ctr is not None:
                if rl.lookup(ctr.layer) is None:
                    raise errors.NotALayerError()
                rl.delete(ctr.layer)
                self._containers.delete(ctr.id)
                return
            image = _lookup(self._images, ref, ambiguous)
            if image is not None:
                self._images.delete(image.id)
                return
            layer = _lookup(rl, ref, ambiguous)
            if layer is not None:
                rl.delete(layer.id)
                return
        if ambiguous:
            raise ambiguous[0]
        raise errors.LayerUnknownError()

    def wipe(self) -> None:
        """Delete every container, then every image, then every layer."""
        with self._write_all() as rl:
            self._containers.wipe()
            self._images.wipe()
            rl.wipe()

    # -- mounting ---------------------------------------------------------------------------

    def _mount(self, layer_ref: str, options: MountOptions) -> str:
        rl = self._layer_store()
        with self._graph_lock.writing(), rl.writing():
            if rl.lookup(layer_ref) is None:
                raise errors.LayerUnknownError()
            return rl.mount(layer_ref, options)

    def mount(self, ref: str, mount_label: str = "") -> str:
        """Mount a container's or a layer's file system and return its path (counted: the
        last :meth:`unmount` undoes it)."""
        options = MountOptions(mount_label=mount_label)
        with self._containers.reading():
            ctr = self._containers.lookup(ref)
        if ctr is not None:
            ref = ctr.layer
            # Shift owners at mount time only for a container whose layer does not already
            # carry its maps: one made by Go 1.43 on a kernel with idmapped mounts (its layer
            # is unmapped). Ours are created with the layer's owners already mapped.
            try:
                layer_maps = self.layer(ctr.layer)
                unmapped = (layer_maps.uidmap, layer_maps.gidmap) != (ctr.uidmap, ctr.gidmap)
            except errors.LayerUnknownError:
                unmapped = False
            # The layer store's driver, got under storage.lock: another thread may be
            # replacing the store's own (see _open_layer_store).
            shift = unmapped and userns.can_use_shifting(
                self._layer_store().driver.supports_shifting(), ctr.uidmap, ctr.gidmap
            )
            options = MountOptions(
                mount_label=mount_label,
                uid_map=ctr.uidmap,
                gid_map=ctr.gidmap,
                options=ctr.mount_opts,
                volatile=ctr.volatile and not self._disable_volatile,
                disable_shifting=not shift or userns.shifting_disabled_by_test_hook(),
            )
        return self._mount(ref, options)

    def mount_image(
        self, ref: str, mount_options: Sequence[str] = (), mount_label: str = ""
    ) -> str:
        """Mount an image's top layer read-only (Go ``MountImage``)."""
        img = self.image(ref)
        for opt in mount_options:
            if opt not in ("nodev", "noexec", "nosuid", "ro", "rw", "dev", "exec", "suid"):
                raise ValueError(f"invalid mount option {opt!r}")
        return self._mount(
            img.layer, MountOptions(mount_label=mount_label, options=(*mount_options, "ro"))
        )

    def unmount(self, ref: str, force: bool = False) -> bool:
        """Undo one :meth:`mount` (all with ``force``); returns whether still mounted."""
        with self._containers.reading():
            ctr = self._containers.lookup(ref)
        if ctr is not None:
            ref = ctr.layer
        rl = self._layer_store()
        with rl.writing():
            if rl.lookup(ref) is None:
                # Go also accepts a mount path.
                clean = os.path.normpath(ref)
                if not any(p == clean for p, _c in rl.mounts.values()):
                    raise errors.LayerUnknownError()
            return rl.unmount(ref, force)

    def unmount_image(self, ref: str, force: bool = False) -> bool:
        """Unmount an image's top layer."""
        return self.unmount(self.image(ref).layer, force)

    def mounted(self, ref: str) -> int:
        """How many times a container's or layer's file system is mounted."""
        with self._containers.reading():
            ctr = self._containers.lookup(ref)
        if ctr is not None:
            ref = ctr.layer
        rl = self._layer_store()
        with rl.reading():
            return rl.mounted(ref)

    # -- contents ---------------------------------------------------------------------------

    def changes(self, from_layer: str | None, to_layer: str) -> list[Change]:
        """What changed in ``to_layer`` against ``from_layer`` (default: its parent)."""
        with ExitStack() as stack:
            return self._find_layer(stack, to_layer)[0].changes(from_layer, to_layer)[0]

    def diff_size(self, from_layer: str | None, to_layer: str) -> int:
        """The size of those changes (Go ``DiffSize``)."""
        with ExitStack() as stack:
            return self._find_layer(stack, to_layer)[0].changes(from_layer, to_layer)[1]

    def diff_to(
        self,
        from_layer: str | None,
        to_layer: str,
        out: Any,
        compression: str | None = None,
    ) -> None:
        """Write the layer's diff into ``out`` (a path, fd or binary file): the exact tar
        it was applied from when diffing against its parent, else a generated one;
        ``compression`` defaults to what the layer was applied with."""
        with ExitStack() as stack:
            self._find_layer(stack, to_layer)[0].diff(from_layer, to_layer, out, compression)

    def diff(
        self,
        from_layer: str | None,
        to_layer: str,
        compression: str | None = None,
        chunk_size: int = 1 << 20,
    ) -> Generator[bytes, None, None]:
        """:meth:`diff_to` as an iterator of chunks (the layer store stays read-locked
        until the iterator is exhausted or closed, as Go's ``Diff`` reader: the loop that
        consumes it must not call the store, which would wait for storage.lock under
        layers.lock, against the lock order)."""
        with ExitStack() as stack:
            home, _ = self._find_layer(stack, to_layer)

            def write(fd: int) -> None:
                with os.fdopen(fd, "wb", buffering=0) as w:
                    home.diff(from_layer, to_layer, w, compression)

            yield from iter_written(write, chunk_size, name="cs-diff")

    # -- store-wide -------------------------------------------------------------------------

    def status(self) -> list[tuple[str, str]]:
        """The driver's status pairs (vfs: none)."""
        return self.graph_driver().status()

    def shutdown(self, force: bool = False) -> list[str]:
        """Release the store: unmount the driver's own mounts (overlay's home) and make
        other processes reload. Returns the layers that were mounted (Go ``Shutdown``).

        With ``force``, every mounted layer is unmounted first (Go 1.43 means this but
        loops forever on a mounted layer); without, a mounted layer stops the shutdown.

        Raises:
            LayerUsedByContainerError: Without ``force``, layers are mounted (``a layer is
                mounted``); nothing is released.
        """
        try:
            rl = self._layer_store()
        except errors.LoadError:
            # The layers cannot be read (a corrupt layers.json): nothing can be counted as
            # mounted, but the driver's own state (overlay's home mount) is still released.
            with self._graph_lock.writing():
                self._get_driver().cleanup()
                self._reset_driver()
            raise
        mounted: list[str] = []
        err: BaseException | None = None
        with self._graph_lock.writing(), rl.writing():
            for rec in list(rl.records):
                if rl.mounts.get(rec.id, ("", 0))[1] <= 0:
                    continue
                mounted.append(rec.id)
                if force:
                    try:
                        rl.unmount(rec.id, True)
                    except errors.StorageError as e:
                        err = err or e
            if mounted and not force:
                err = errors.LayerUsedByContainerError(
                    f"a layer is mounted: {errors.LayerUsedByContainerError.go_message}"
                )
            if err is None:
                self._get_driver().cleanup()
                self._graph_lock.touch()
                # Go touches layers.lock too, so that other processes reload the layers.
                rl.touch()
                self._reset_driver()
        if err is not None:
            raise err
        return mounted

    # -- images from and to OCI --------------------------------------------------------------

    def import_image(
        self,
        source: str,
        names: Sequence[str] = (),
        progress: Callable[[Any], object] | None = None,
    ) -> Image:
        """Import ``oci:DIR[:TAG]``, ``oci-archive:FILE[:TAG]``, ``docker-archive:FILE`` or
        an image of another store (``containers-storage:[DRIVER@GRAPHROOT+RUNROOT]NAME``,
        :mod:`containers_storage.storeref`) or ``docker://REF`` as skopeo would (see
        :mod:`containers_storage.oci`)."""
        from . import oci

        return oci.import_image(self, source, names, progress)

    def pull_image(
        self,
        ref: str,
        *,
        names: Sequence[str] | None = None,
        platform: str | None = None,
        creds: str | None = None,
        authfile: str | None = None,
        tls_verify: bool | None = None,
        progress: Callable[[Any], object] | None = None,
        limits: Limits | None = None,
    ) -> Image:
        """Pull ``[docker://]REF`` from its registry as podman would (see
        :mod:`containers_storage.pull`)."""
        from . import pull

        return pull.pull_image(
            self, ref, names=names, platform=platform, creds=creds, authfile=authfile,
            tls_verify=tls_verify, progress=progress, limits=limits,
        )  # fmt: skip

    def export_image(self, image: str, dest: str) -> str:
        """Write the image to ``oci:DIR[:TAG]``, copy it into another store
        (``containers-storage:[DRIVER@GRAPHROOT+RUNROOT]NAME``) or push it to ``docker://REF``
        (as :meth:`push_image` with its defaults); returns the manifest digest."""
        if dest.startswith("docker://"):
            return self.push_image(image, dest)
        from . import oci

        return oci.export_image(self, image, dest)

    def push_image(
        self,
        image: str,
        ref: str,
        *,
        compression: str = "gzip",
        compression_level: int | None = None,
        creds: str | Any = None,
        authfile: str | None = None,
        tls_verify: bool | None = None,
        progress: Callable[[Any], object] | None = None,
    ) -> str:
        """Push ``image`` to the registry reference ``ref`` (``[docker://]REF``) as
        ``skopeo copy containers-storage:IMAGE docker://REF`` does; returns the pushed
        manifest's digest (see :mod:`containers_storage.registry.push`).

        Args:
            image: A name or ID of an image in this store.
            ref: Where to push it.
            compression: ``gzip`` (default), ``zstd`` or ``none``.
            compression_level: The gzip level, 1-9 (default ``registry.push.GZIP_LEVEL``).
            creds: ``USER[:PASSWORD]`` (or a ``registry.auth.Credentials``), else the auth
                files are searched.
            authfile: The auth file searched first (default ``$REGISTRY_AUTH_FILE``...).
            tls_verify: False allows plain HTTP and unverified TLS; None follows
                registries.conf ``insecure``.
            progress: Called with an ``oci.ImageProgress`` (bytes sent per layer DiffID).
        """
        from .registry import push

        return push.push_image(
            self,
            image,
            ref,
            compression=compression,
            compression_level=compression_level,
            creds=creds,
            authfile=authfile,
            tls_verify=tls_verify,
            progress=progress,
        )

    def unpack_image(self, image: str, target_dir: str | os.PathLike[str]) -> None:
        """Flatten the image into a plain directory."""
        from . import oci

        oci.unpack_image(self, image, os.fspath(target_dir))

    # -- not supported here -----------------------------------------------------------------

    def apply_diff_with_differ(self, *args: object, **kwargs: object) -> None:
        """Partial pulls (zstd:chunked, eStargz) are not supported."""
        raise errors.NotSupportedError()

    def apply_diff_from_staging_directory(self, *args: object, **kwargs: object) -> None:
        """Partial pulls are not supported."""
        raise errors.NotSupportedError()

    def cleanup_staging_directory(self, *args: object, **kwargs: object) -> None:
        """Partial pulls are not supported."""
        raise errors.NotSupportedError()

    def differ_target(self, *args: object, **kwargs: object) -> str:
        """Partial pulls are not supported."""
        raise errors.NotSupportedError()

    def lookup_additional_layer(self, digest: str, image_ref: str = "") -> None:
        """No additional layer stores are configured: always ``layer not known``."""
        raise errors.LayerUnknownError()

    # -- check and repair (Go 1.48) ---------------------------------------------------------

    def check(self, *, quick: bool = False) -> CheckReport:
        """Look for damage in the store and its additional stores, changing nothing; see
        :mod:`containers_storage.check`. ``quick`` skips reading layer file contents."""
        from .check import check

        return check(self, quick=quick)

    def repair(self, report: CheckReport, *, remove_containers: bool = False) -> list[Exception]:
        """Mend what :meth:`check` reported (containers only with ``remove_containers``);
        returns what could not be done. See :mod:`containers_storage.repair`."""
        from .repair import repair

        return repair(self, report, remove_containers=remove_containers)


def _first(
    stack: ExitStack | None,
    stores: Sequence[_S],
    ref: str,
    write: bool = False,
    ambiguous: list[errors.AmbiguousPrefixError] | None = None,
) -> tuple[_S, Any] | None:
    """The first of ``stores`` that knows ``ref``, and its record. With a ``stack``, each
    store is read-locked (the first write-locked with ``write``) into it before it is
    asked; without one, the caller holds their locks already.

    A store where ``ref`` is an ambiguous ID prefix does not know it (:func:`_lookup`).
    When none knows it, the ambiguity is raised; with ``ambiguous``, it is added there
    instead, for a caller that searches other kinds next.

    Raises:
        AmbiguousPrefixError: No store knows ``ref``, and it is an ambiguous prefix in one.
    """
    seen: list[errors.AmbiguousPrefixError] = [] if ambiguous is None else ambiguous
    for i, s in enumerate(stores):
        if stack is not None:
            stack.enter_context(s.writing() if write and i == 0 else s.reading())
        rec = _lookup(s, ref, seen)
        if rec is not None:
            return s, rec
    if ambiguous is None and seen:
        raise seen[0]
    return None


def _lookup(s: RecordStore[R], ref: str, ambiguous: list[errors.AmbiguousPrefixError]) -> R | None:
    """``s.lookup(ref)``, an ambiguous ID prefix counting as a miss, as in Go: its stores'
    ``lookup`` takes truncindex's ``ErrAmbiguousPrefix`` for "not here", so that the
    store-by-store search goes on (a prefix ambiguous among layers names the one image it
    starts). The error is added to ``ambiguous``, for the caller to raise when nothing
    knows ``ref`` (where Go reports it unknown)."""
    try:
        return s.lookup(ref)
    except errors.AmbiguousPrefixError as e:
        ambiguous.append(e)
        return None


def _unknown(error: type[errors.StorageError], kind: str, ref: str | None) -> errors.StorageError:
    """``error`` with Go's plain text, or with its ``locating KIND with ID %q`` prefix."""
    if ref is None:
        return error()
    return error(f"locating {kind} with ID {go_quote(ref)}: {error.go_message}")
