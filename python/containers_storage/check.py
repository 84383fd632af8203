"""Finding damage in a store (Go 1.48's ``Store.Check``; ``containers-storage check``).

:func:`check` reads the store under read locks, in the store's lock order (``layers.lock``
of this store then of the additional stores, ``images.lock`` likewise, ``containers.lock``,
``mountpoints.lock``), held for the whole check so that podman writing beside it waits
rather than being reported half-way. It changes nothing: the layer records are read from
``layers.json`` as they are, incomplete layers included (opening the layer store for
writing would remove those). :mod:`.repair` mends what it reports.

Each problem is an exception instance (a :class:`CheckProblem`) filed under the ID it is
about in a :class:`CheckReport`, whose fields are Go's: ``layers``, ``ro_layers``,
``images``, ``ro_images``, ``containers``. As in Go, an image carries the problems of the
layers it is made of, and a container those of its image; our additions to Go's set are
marked as such.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from . import _native, errors
from ._jsonstore import load_array
from ._mounts import mountpoints
from ._recordstore import big_data_file_name
from ._strconv import go_quote
from .digests import sha256_digest
from .layers import TAR_SPLIT_SUFFIX
from .lockfile import Lockfile
from .records import Container, Image, Layer

if TYPE_CHECKING:
    from .drivers import Driver
    from .store import Store

__all__ = [
    "CheckProblem",
    "CheckReport",
    "ContainerDataIncorrectSizeError",
    "ContainerDataMissingError",
    "ContainerImageMissingError",
    "ContainerLayerMissingError",
    "ImageDataIncorrectDigestError",
    "ImageDataIncorrectSizeError",
    "ImageDataMissingError",
    "ImageLayerMissingError",
    "LayerContentModifiedError",
    "LayerDataMissingError",
    "LayerDirectoryMissingError",
    "LayerIncompleteError",
    "LayerLinkError",
    "LayerLowerError",
    "LayerMissingError",
    "LayerMountStaleError",
    "LayerTarSplitError",
    "LayerUnaccountedError",
    "TarSplitUnaccountedError",
    "check",
]


class CheckProblem(errors.StorageError):
    """Something :func:`check` found wrong. ``removes``: repair removes the item (and what
    depends on it) rather than mending it in place."""

    removes: ClassVar[bool] = True


# -- layers (Go's ErrLayer*) -----------------------------------------------------------------


class LayerUnaccountedError(CheckProblem):
    """A driver directory no layer record knows (Go: ``ErrLayerUnaccounted``); repair
    removes the directory."""

    go_message = "layer in lower level storage driver not accounted for"
    removes = False


class LayerContentModifiedError(CheckProblem):
    """The layer's files differ from its tar-split record: a missing, extra or modified
    path (Go: ``ErrLayerContentModified``)."""

    go_message = "layer content modified"


class LayerDataMissingError(CheckProblem):
    """A big data item of the layer is missing (Go: ``ErrLayerDataMissing``)."""

    go_message = "layer data item is missing"


class LayerMissingError(CheckProblem):
    """The layer's parent is missing (Go: ``ErrLayerMissing``)."""

    go_message = "layer is missing"


class LayerDirectoryMissingError(LayerContentModifiedError):
    """The layer's driver directory is missing (ours)."""

    go_message = "layer directory is missing"


class LayerIncompleteError(LayerContentModifiedError):
    """The layer was never finished: its writer died (ours; any writer removes it)."""

    go_message = "layer is incomplete"


class LayerTarSplitError(LayerContentModifiedError):
    """The layer's tar-split record is missing or unreadable, so its diff cannot be
    rebuilt (ours)."""

    go_message = "layer tar-split record is missing or damaged"


class TarSplitUnaccountedError(CheckProblem):
    """A tar-split file no layer record knows (ours); repair removes it."""

    go_message = "tar-split file not accounted for"
    removes = False


class LayerLinkError(CheckProblem):
    """overlay: the layer's ``link`` file or its ``l/`` symlink is missing, or a ``l/``
    symlink dangles (ours); repair makes the links again."""

    go_message = "layer link missing or dangling"
    removes = False


class LayerLowerError(CheckProblem):
    """overlay: the layer's ``lower`` file is missing or names a missing link (ours);
    repair writes it again from the layer's parents."""

    go_message = "layer lower file names a missing link"
    removes = False


class LayerMountStaleError(CheckProblem):
    """A mount count with no mount behind it (ours); repair resets it."""

    go_message = "layer mount count with no mount"
    removes = False


# -- images and containers ------------------------------------------------------------------


class ImageLayerMissingError(CheckProblem):
    """The image's top layer, a mapped layer or one below is missing (Go:
    ``ErrImageLayerMissing``)."""

    go_message = "image layer is missing"


class ImageDataMissingError(CheckProblem):
    """A big data item of the image is missing (Go: ``ErrImageDataMissing``)."""

    go_message = "image data item is missing"


class ImageDataIncorrectSizeError(CheckProblem):
    """A big data item's size is not the recorded one (Go: ``ErrImageDataIncorrectSize``)."""

    go_message = "image data item has incorrect size"


class ImageDataIncorrectDigestError(CheckProblem):
    """A big data item's digest is not the recorded one (ours)."""

    go_message = "image data item has incorrect digest"


class ContainerImageMissingError(CheckProblem):
    """The container's image is missing (Go: ``ErrContainerImageMissing``)."""

    go_message = "image missing"


class ContainerLayerMissingError(CheckProblem):
    """The container's layer is missing (ours)."""

    go_message = "container layer is missing"


class ContainerDataMissingError(CheckProblem):
    """A big data item of the container is missing (Go: ``ErrContainerDataMissing``)."""

    go_message = "container data item is missing"


class ContainerDataIncorrectSizeError(CheckProblem):
    """A big data item's size is not the recorded one (Go:
    ``ErrContainerDataIncorrectSize``)."""

    go_message = "container data item has incorrect size"


def _problem(cls: type[CheckProblem], what: str) -> CheckProblem:
    """``cls`` with Go's message shape: ``<what>: <go_message>``."""
    return cls(f"{what}: {cls.go_message}")


# -- the report -------------------------------------------------------------------------------


Problems = dict[str, list[CheckProblem]]


@dataclass
class CheckReport:
    """What :func:`check` found, by ID (Go ``CheckReport``); empty when the store is sound.

    ``layer_parents`` maps every layer seen to its parent (for repair's ordering).
    """

    layers: Problems = field(default_factory=dict)
    ro_layers: Problems = field(default_factory=dict)
    images: Problems = field(default_factory=dict)
    ro_images: Problems = field(default_factory=dict)
    containers: Problems = field(default_factory=dict)
    layer_parents: dict[str, str] = field(default_factory=dict, repr=False)

    def __bool__(self) -> bool:
        """True when anything was found."""
        return any((self.layers, self.ro_layers, self.images, self.ro_images, self.containers))

    def sections(self) -> Iterator[tuple[str, Problems]]:
        """``(Go field name, problems)`` in Go's output order."""
        yield "Layers", self.layers
        yield "ROLayers", self.ro_layers
        yield "Images", self.images
        yield "ROImages", self.ro_images
        yield "Containers", self.containers

    def to_json(self) -> dict[str, dict[str, list[str]]]:
        """The report as ``{"Layers": {id: [message, ...]}, ...}`` (Go's field names; Go
        encodes each error as ``{}``, we give its text)."""
        return {
            name: {k: [str(e) for e in v] for k, v in problems.items()}
            for name, problems in self.sections()
        }

    def summary(self) -> str:
        """Go's closing error line: ``N layer errors, ...``."""
        return (
            f"{len(self.layers)} layer errors, {len(self.ro_layers)} read-only layer errors, "
            f"{len(self.images)} image errors, {len(self.ro_images)} read-only image errors, "
            f"{len(self.containers)} container errors"
        )


# -- reading the store ------------------------------------------------------------------------


@dataclass
class _LayerSet:
    """One layer store's records, read as they are on disk."""

    directory: str
    read_only: bool
    layers: list[Layer]


def _read_layers(stack: ExitStack, directory: str, read_only: bool) -> _LayerSet:
    lock = Lockfile(os.path.join(directory, "layers.lock"), read_only=read_only)
    if read_only and not os.path.exists(lock.path):
        return _LayerSet(directory, read_only, [])
    stack.enter_context(lock.reading())
    raw, _st = load_array(os.path.join(directory, "layers.json"))
    return _LayerSet(directory, read_only, [Layer.from_json(o) for o in raw])


def _read_mounts(stack: ExitStack, run_dir: str) -> dict[str, tuple[str, int]]:
    lock = Lockfile(os.path.join(run_dir, "mountpoints.lock"))
    stack.enter_context(lock.reading())
    raw, _st = load_array(os.path.join(run_dir, "mountpoints.json"))
    return {
        str(o.get("id", "")): (str(o.get("path", "")), int(o.get("count", 0) or 0)) for o in raw
    }


def _file_size(path: str) -> int | None:
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return None


def _is_schema1_signed(data: bytes) -> bool:
    """A schema 1 signed manifest: its recorded digest is of the payload without the
    signatures, not of the bytes (Go's ``manifest.Digest``)."""
    return b'"signatures"' in data and b'"schemaVersion": 1' in data.replace(b'":1', b'": 1')


# -- check ------------------------------------------------------------------------------------


class _Checker:
    def __init__(self, store: Store, quick: bool) -> None:
        self.store = store
        self.quick = quick
        self.driver: Driver = store._get_driver()
        self.overlay = store.graph_driver_name() == "overlay"
        self.report = CheckReport()
        # Layer ID -> (record, its store's directory, read-only); the read-write store wins.
        self.known: dict[str, tuple[Layer, str, bool]] = {}

    def add(self, section: Problems, key: str, problem: CheckProblem) -> None:
        section.setdefault(key, []).append(problem)

    def layer_section(self, read_only: bool) -> Problems:
        return self.report.ro_layers if read_only else self.report.layers

    # -- layers ----------------------------------------------------------------------------

    def check_layer_sets(self, sets: Sequence[_LayerSet]) -> None:
        for s in sets:
            for layer in s.layers:
                if layer.id not in self.known:
                    self.known[layer.id] = (layer, s.directory, s.read_only)
                    self.report.layer_parents[layer.id] = layer.parent
        to_verify: list[tuple[Layer, bool, list[str], str]] = []
        for layer, directory, read_only in self.known.values():
            section = self.layer_section(read_only)
            desc = ("read-only " if read_only else "") + f"layer {layer.id}"
            if layer.incomplete:
                self.add(section, layer.id, _problem(LayerIncompleteError, desc))
                continue
            if layer.parent and layer.parent not in self.known:
                self.add(
                    self.report.layers,
                    layer.id,
                    _problem(LayerMissingError, f"{desc}: parent {layer.parent}"),
                )
            for key in layer.big_data_names:
                path = os.path.join(directory, layer.id, big_data_file_name(key))
                if not os.path.exists(path):
                    self.add(
                        section,
                        layer.id,
                        _problem(LayerDataMissingError, f"{desc}: data item {go_quote(key)}"),
                    )
            content = self.content_dir(layer.id)
            if content is None:
                self.add(section, layer.id, _problem(LayerDirectoryMissingError, desc))
                continue
            chain = self.tar_split_chain(layer, section, desc)
            if chain is not None:
                to_verify.append((layer, read_only, chain, content))
        self.verify(to_verify)

    def content_dir(self, layer_id: str) -> str | None:
        """The directory holding the layer's files, None when it is missing."""
        path = self.driver.layer_dir(layer_id)
        return path if os.path.isdir(path) else None

    def tar_split_chain(self, layer: Layer, section: Problems, desc: str) -> list[str] | None:
        """The tar-split records to compare the layer's directory with (see
        ``_native.verify_layer``), None when it has none to compare with."""
        if not layer.diff_digest:
            return None  # a container's layer, or one made empty: nothing records it
        own = os.path.join(self.known[layer.id][1], layer.id + TAR_SPLIT_SUFFIX)
        if not os.path.exists(own):
            self.add(section, layer.id, _problem(LayerTarSplitError, f"{desc}: {own}"))
            return None
        if self.overlay:
            if os.path.isdir(self.driver.layer_dir(layer.id) + "1"):
                return None  # an ID-mapped copy keeps the merged tree in diff1
            return [own]
        chain = [own]
        parent = layer.parent
        while parent:
            found = self.known.get(parent)
            if found is None or not found[0].diff_digest:
                return None
            path = os.path.join(found[1], parent + TAR_SPLIT_SUFFIX)
            if not os.path.exists(path):
                return None  # the parent's own problem, reported there
            chain.append(path)
            parent = found[0].parent
        chain.reverse()
        return chain

    def verify(self, jobs: list[tuple[Layer, bool, list[str], str]]) -> None:
        def one(job: tuple[Layer, bool, list[str], str]) -> list[tuple[str, str, str]] | str:
            _layer, _ro, chain, content = job
            try:
                return _native.verify_layer(chain, content, overlay=self.overlay, quick=self.quick)
            except (errors.ArchiveError, OSError) as e:
                return str(e)

        workers = min(4, os.cpu_count() or 1, max(1, len(jobs)))
        with ThreadPoolExecutor(workers) as pool:
            results = list(pool.map(one, jobs))
        for (layer, read_only, _chain, _content), result in zip(jobs, results, strict=True):
            section = self.layer_section(read_only)
            desc = ("read-only " if read_only else "") + f"layer {layer.id}"
            if isinstance(result, str):
                self.add(section, layer.id, _problem(LayerTarSplitError, f"{desc}: {result}"))
                continue
            for kind, path, detail in result:
                what = f"{desc}: {kind} {go_quote(path)}" + (f" ({detail})" if detail else "")
                self.add(section, layer.id, _problem(LayerContentModifiedError, what))

    # -- driver and layer-store directories -----------------------------------------------------

    def check_orphans(self, rw: _LayerSet) -> None:
        ids = {layer.id for layer in rw.layers}
        home = self.driver.home
        if self.overlay:
            skip = {"l", "tempdirs", "staging"}
            names = [n for n in _listdir(home) if n not in skip]
            dirs = [n for n in names if os.path.isdir(os.path.join(home, n))]
        else:
            dirs = _listdir(os.path.join(home, "dir"))
        for name in sorted(dirs):
            if name not in ids:
                self.add(self.report.layers, name, _problem(LayerUnaccountedError, f"layer {name}"))
        for name in sorted(_listdir(rw.directory)):
            if name.endswith(TAR_SPLIT_SUFFIX) and not name.startswith("."):
                layer_id = name[: -len(TAR_SPLIT_SUFFIX)]
                if layer_id not in ids:
                    self.add(
                        self.report.layers,
                        layer_id,
                        _problem(TarSplitUnaccountedError, f"layer {layer_id}: {name}"),
                    )

    def check_links(self, rw: _LayerSet) -> None:
        """overlay: each layer's ``link`` file and ``l/`` symlink, and its ``lower`` file."""
        home = self.driver.home
        link_dir = os.path.join(home, "l")
        targets: dict[str, str] = {}  # link name -> layer ID it points to
        for name in _listdir(link_dir):
            try:
                target = os.readlink(os.path.join(link_dir, name))
            except OSError:
                target = ""
            parts = target.split("/")
            layer_id = parts[1] if len(parts) == 3 and parts[0] == ".." else ""
            if not layer_id or not os.path.isdir(os.path.join(home, layer_id, "diff")):
                key = layer_id or name
                self.add(
                    self.report.layers,
                    key,
                    _problem(LayerLinkError, f"layer {key}: link {go_quote('l/' + name)} dangles"),
                )
                continue
            targets[name] = layer_id
        for layer in rw.layers:
            d = os.path.join(home, layer.id)
            if layer.incomplete or not os.path.isdir(d):
                continue
            link = (_read_text(os.path.join(d, "link")) or "").strip()
            desc = f"layer {layer.id}"
            if not link:
                self.add(
                    self.report.layers,
                    layer.id,
                    _problem(LayerLinkError, f"{desc}: link file missing"),
                )
            elif targets.get(link) != layer.id:
                self.add(
                    self.report.layers,
                    layer.id,
                    _problem(LayerLinkError, f"{desc}: link {go_quote('l/' + link)} missing"),
                )
            if not layer.parent:
                continue
            lower = _read_text(os.path.join(d, "lower"))
            missing = [
                e for e in (lower or "").split(":") if e and not self.lower_entry_exists(e, targets)
            ]
            if lower is None or missing:
                what = "lower file missing" if lower is None else f"lower names {missing[0]}"
                self.add(self.report.layers, layer.id, _problem(LayerLowerError, f"{desc}: {what}"))

    def lower_entry_exists(self, entry: str, targets: dict[str, str]) -> bool:
        if entry.startswith("l/") and entry[2:] in targets:
            return True
        return any(
            os.path.isdir(os.path.join(s, "overlay", entry)) for s in self.driver.image_stores
        )

    def check_mounts(self, rw: _LayerSet, mounts: dict[str, tuple[str, int]]) -> None:
        if not self.overlay:
            return  # a vfs mount is the directory itself: nothing can go stale
        mounted = mountpoints()
        ids = {layer.id for layer in rw.layers}
        for layer_id, (path, count) in mounts.items():
            if count > 0 and layer_id in ids and os.path.normpath(path) not in mounted:
                self.add(
                    self.report.layers,
                    layer_id,
                    _problem(
                        LayerMountStaleError,
                        f"layer {layer_id}: mount count {count} at {go_quote(path)}",
                    ),
                )

    # -- images -----------------------------------------------------------------------------

    def check_images(self, images: list[Image], read_only: bool, directory: str) -> None:
        section = self.report.ro_images if read_only else self.report.images
        desc0 = "read-only image" if read_only else "image"
        for image in images:
            desc = f"{desc0} {image.id}"
            for key in image.big_data_names:
                path = os.path.join(directory, image.id, big_data_file_name(key))
                try:
                    with open(path, "rb") as f:
                        data = f.read()
                except FileNotFoundError:
                    self.add(
                        section,
                        image.id,
                        _problem(ImageDataMissingError, f"{desc}: data item {go_quote(key)}"),
                    )
                    continue
                if key in image.big_data_sizes and len(data) != image.big_data_sizes[key]:
                    self.add(
                        section,
                        image.id,
                        _problem(ImageDataIncorrectSizeError, f"{desc}: data item {go_quote(key)}"),
                    )
                    continue
                recorded = image.big_data_digests.get(key, "")
                if (
                    recorded.startswith("sha256:")
                    and sha256_digest(data) != recorded
                    and not (key.startswith("manifest") and _is_schema1_signed(data))
                ):
                    self.add(
                        section,
                        image.id,
                        _problem(
                            ImageDataIncorrectDigestError, f"{desc}: data item {go_quote(key)}"
                        ),
                    )
            seen: set[str] = set()
            for top in (image.layer, *image.mapped_layers):
                layer_id = top
                while layer_id and layer_id not in seen:
                    seen.add(layer_id)
                    if layer_id not in self.known:
                        self.add(
                            section,
                            image.id,
                            _problem(ImageLayerMissingError, f"{desc}: layer {layer_id}"),
                        )
                        break
                    for p in self.damage_of_layer(layer_id):
                        self.add(section, image.id, p)
                    layer_id = self.known[layer_id][0].parent

    def damage_of_layer(self, layer_id: str) -> list[CheckProblem]:
        """The problems of a layer that repair would remove it for."""
        return [
            p
            for p in (
                *self.report.layers.get(layer_id, ()),
                *self.report.ro_layers.get(layer_id, ()),
            )
            if p.removes
        ]

    # -- containers -------------------------------------------------------------------------

    def check_containers(self, containers: list[Container], images: dict[str, Image]) -> None:
        section = self.report.containers
        ctr_store = self.store._containers
        for ctr in containers:
            desc = f"container {ctr.id}"
            for key in ctr.big_data_names:
                size = _file_size(ctr_store.data_path(ctr.id, key))
                if size is None:
                    self.add(
                        section,
                        ctr.id,
                        _problem(ContainerDataMissingError, f"{desc}: data item {go_quote(key)}"),
                    )
                elif key in ctr.big_data_sizes and size != ctr.big_data_sizes[key]:
                    self.add(
                        section,
                        ctr.id,
                        _problem(
                            ContainerDataIncorrectSizeError, f"{desc}: data item {go_quote(key)}"
                        ),
                    )
            if ctr.image:
                if ctr.image not in images:
                    self.add(
                        section,
                        ctr.id,
                        _problem(ContainerImageMissingError, f"{desc}: image {ctr.image}"),
                    )
                for p in (
                    *self.report.images.get(ctr.image, ()),
                    *self.report.ro_images.get(ctr.image, ()),
                ):
                    if p.removes:
                        self.add(section, ctr.id, p)
            if ctr.layer:
                if ctr.layer not in self.known:
                    self.add(
                        section,
                        ctr.id,
                        _problem(ContainerLayerMissingError, f"{desc}: layer {ctr.layer}"),
                    )
                else:
                    for p in self.damage_of_layer(ctr.layer):
                        if p not in section.get(ctr.id, ()):
                            self.add(section, ctr.id, p)


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except (FileNotFoundError, NotADirectoryError):
        return []


def _read_text(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except (FileNotFoundError, NotADirectoryError, UnicodeDecodeError):
        return None


def check(store: Store, *, quick: bool = False) -> CheckReport:
    """Look for damage in ``store`` and its read-only additional stores (see the module
    docstring); ``quick`` compares layer files by type, mode and size without reading them."""
    checker = _Checker(store, quick)
    driver_name = store.graph_driver_name()
    graph = store.graph_root()
    with ExitStack() as stack:
        rw = _read_layers(stack, os.path.join(graph, driver_name + "-layers"), False)
        ro = [
            _read_layers(stack, os.path.join(p, driver_name + "-layers"), True)
            for p in checker.driver.image_stores
        ]
        image_sets: list[tuple[Any, list[Image]]] = []
        for image_store in store._all_image_stores():
            stack.enter_context(image_store.reading())
            image_sets.append((image_store, list(image_store.records)))
        stack.enter_context(store._containers.reading())
        containers = list(store._containers.records)
        mounts = _read_mounts(stack, os.path.join(store.run_root(), driver_name + "-layers"))

        checker.check_layer_sets([rw, *ro])
        checker.check_orphans(rw)
        if checker.overlay:
            checker.check_links(rw)
        checker.check_mounts(rw, mounts)
        all_images: dict[str, Image] = {}
        for image_store, images in image_sets:
            fresh = [i for i in images if i.id not in all_images]
            for i in fresh:
                all_images[i.id] = i
            checker.check_images(fresh, image_store.read_only, image_store.directory)
        checker.check_containers(containers, all_images)
    return checker.report
