"""The driver interface shared by vfs and overlay."""

from __future__ import annotations

import abc
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .._struct import field, struct
from ..records import IDMap

if TYPE_CHECKING:
    from ..archive import ApplyResult, Change, Limits, ProgressCallback, Sink, Source

__all__ = ["Driver", "MountOptions"]


@struct(frozen=True)
class MountOptions:
    """How to mount a layer (Go ``drivers.MountOpts``)."""

    mount_label: str = ""
    uid_map: tuple[IDMap, ...] = ()
    gid_map: tuple[IDMap, ...] = ()
    options: tuple[str, ...] = ()
    volatile: bool = False
    disable_shifting: bool = False
    extra: dict[str, str] = field(default_factory=dict)


def root_pair(uid_map: Sequence[IDMap], gid_map: Sequence[IDMap]) -> tuple[int, int]:
    """The host IDs of container root under the maps (0, 0 without maps; Go's
    ``GetRootUIDGID``)."""

    def host(maps: Sequence[IDMap]) -> int:
        for m in maps:
            if m.container_id <= 0 < m.container_id + m.size:
                return m.host_id - m.container_id
        if maps:
            raise ValueError("container ID 0 is not mapped")
        return 0

    return host(uid_map), host(gid_map)


class Driver(abc.ABC):
    """A graph driver. Paths are absolute; IDs are full layer IDs."""

    name: str
    home: str
    graph_root: str
    run_root: str
    #: Root directories of read-only additional image stores (``<drv>.imagestore=``).
    image_stores: tuple[str, ...]
    ignore_chown_errors: bool

    def __init__(self, graph_root: str, run_root: str, options: Sequence[str]) -> None:
        self.graph_root = graph_root
        self.run_root = run_root
        self.home = os.path.join(graph_root, self.name)
        self.image_stores = ()
        # A rootless namespace that maps only the user's own IDs cannot give files other
        # owners: chown errors are ignored there (the option can still turn it off).
        from ..unshare import single_mapping

        self.ignore_chown_errors = single_mapping()
        self.options = tuple(options)

    @abc.abstractmethod
    def create(
        self,
        layer_id: str,
        parent: str | None,
        *,
        template: str | None = None,
        read_write: bool = False,
        mount_label: str = "",
        uid_map: Sequence[IDMap] = (),
        gid_map: Sequence[IDMap] = (),
        from_uid_map: Sequence[IDMap] = (),
        from_gid_map: Sequence[IDMap] = (),
    ) -> None:
        """Make the layer's directory: a copy of ``template`` or of ``parent`` (vfs), or an
        empty upper directory over them (overlay), owned through ``uid_map``/``gid_map``
        (the copied files' owners are read through ``from_*``)."""

    @abc.abstractmethod
    def remove(self, layer_id: str) -> None:
        """Remove the layer's files (a missing layer is not an error)."""

    @abc.abstractmethod
    def exists(self, layer_id: str) -> bool:
        """Whether the layer's directory exists (here or in an additional store)."""

    @abc.abstractmethod
    def get(self, layer_id: str, options: MountOptions) -> str:
        """Mount (or locate) the layer and return its root path."""

    @abc.abstractmethod
    def put(self, layer_id: str) -> None:
        """Undo :meth:`get`."""

    @abc.abstractmethod
    def layer_dir(self, layer_id: str) -> str:
        """Where the layer's own files are (vfs: its tree; overlay: its ``diff``)."""

    def content_dir(self, layer_id: str) -> str:
        """Where the files a layer's tar-split names are (for exact reproduction)."""
        return self.layer_dir(layer_id)

    @abc.abstractmethod
    def apply_diff(
        self,
        layer_id: str,
        parent: str | None,
        source: Source,
        *,
        uid_map: Sequence[IDMap] = (),
        gid_map: Sequence[IDMap] = (),
        tar_split_path: str | None = None,
        progress: ProgressCallback | None = None,
        limits: Limits | None = None,
    ) -> ApplyResult:
        """Apply a layer tarball onto the layer (within the apply ``limits``)."""

    @abc.abstractmethod
    def changes(
        self,
        layer_id: str,
        parent: str | None,
        uid_map: Sequence[IDMap],
        gid_map: Sequence[IDMap],
        parent_uid_map: Sequence[IDMap],
        parent_gid_map: Sequence[IDMap],
    ) -> tuple[list[Change], int]:
        """The layer's changes against ``parent`` and their size (Go ``Changes``,
        ``DiffSize``)."""

    @abc.abstractmethod
    def diff(
        self,
        layer_id: str,
        parent: str | None,
        out: Sink,
        compression: str,
        uid_map: Sequence[IDMap],
        gid_map: Sequence[IDMap],
        parent_uid_map: Sequence[IDMap],
        parent_gid_map: Sequence[IDMap],
    ) -> None:
        """Write the layer's changes against ``parent`` as a tar."""

    def _apply_into(
        self,
        target: str,
        whiteouts: str,
        source: Source,
        uid_map: Sequence[IDMap],
        gid_map: Sequence[IDMap],
        tar_split_path: str | None,
        progress: ProgressCallback | None,
        limits: Limits | None = None,
    ) -> ApplyResult:
        """Apply a layer tarball onto ``target`` with the driver's options, then flush the
        file system once (``syncfs``) before the layer is recorded complete."""
        from .. import _native, archive
        from ..records import idmaps_to_tuples

        result = archive.apply_layer(
            source,
            target,
            whiteouts=whiteouts,  # type: ignore[arg-type]
            uid_map=idmaps_to_tuples(uid_map) or None,
            gid_map=idmaps_to_tuples(gid_map) or None,
            ignore_chown_errors=self.ignore_chown_errors,
            tar_split_path=tar_split_path,
            keep_tar_split=False,
            progress=progress,
            limits=limits,
        )
        _native.sync_fs(target)
        return result

    def update_id_map(
        self,
        layer_id: str,
        from_uid_map: Sequence[IDMap],
        from_gid_map: Sequence[IDMap],
        uid_map: Sequence[IDMap],
        gid_map: Sequence[IDMap],
    ) -> None:
        """Re-own the layer's files from one mapping to another (Go ``UpdateLayerIDMap``)."""
        from .. import _native
        from ..records import idmaps_to_tuples as t

        _native.chown_tree(
            self.layer_dir(layer_id),
            uid_from=t(from_uid_map),
            gid_from=t(from_gid_map),
            uid_to=t(uid_map),
            gid_to=t(gid_map),
        )

    #: Whether layers can be applied apart from their parents (in a staging directory, in
    #: parallel) and adopted afterwards: true for overlay, false for vfs (a vfs layer is a
    #: copy of its parent, so the parent must be complete first).
    supports_staging = False

    def stage(
        self,
        source: Source,
        *,
        uid_map: Sequence[IDMap] = (),
        gid_map: Sequence[IDMap] = (),
        progress: ProgressCallback | None = None,
        tar_split_path: str | None = None,
        limits: Limits | None = None,
    ) -> tuple[str, str, str, ApplyResult]:
        """Apply a layer into a new staging directory; returns ``(directory, diff_dir,
        tar_split_path, result)`` (the record goes to ``tar_split_path`` when given)."""
        raise NotImplementedError(f"the {self.name} driver cannot stage layers")

    def adopt_staged(self, layer_id: str, diff_dir: str) -> None:
        """Make a staged ``diff_dir`` the contents of the (new, empty) layer."""
        raise NotImplementedError(f"the {self.name} driver cannot stage layers")

    def supports_shifting(self) -> bool:
        """Whether the driver can show a layer with other owners at mount time (overlay:
        ID-mapped lower layers) instead of needing an ID-mapped copy (Go
        ``SupportsShifting``)."""
        return False

    def status(self) -> list[tuple[str, str]]:
        """Driver-specific status pairs (vfs: none)."""
        return []

    def cleanup(self) -> None:
        """Release what the driver holds (overlay: the private bind mount of its home)."""
        return None
