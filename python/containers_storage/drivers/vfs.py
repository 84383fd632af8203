"""The vfs driver: every layer is a complete copy of its parent with its diff applied.

``GRAPHROOT/vfs/dir/<id>/`` holds the layer's whole root file system. Creating a layer
copies the parent's tree in Rust (``FICLONE`` where the file system shares extents, else
``copy_file_range``), keeping owners, modes, times, xattrs, hard links and devices. Whiteouts
in applied diffs become deletions; diffs are computed by comparing with the parent's tree.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .. import _native
from .._mounts import remove_all
from .._strconv import parse_bool
from ..errors import LayerUnknownError
from ..records import IDMap, idmaps_to_tuples
from .base import Driver, MountOptions, root_pair

if TYPE_CHECKING:
    from ..archive import ApplyResult, Change, Limits, ProgressCallback, Sink, Source

__all__ = ["VfsDriver"]

_DEFAULT_PERMS = 0o555


class VfsDriver(Driver):
    """containers/storage's ``vfs`` driver on the same layout."""

    name = "vfs"

    def __init__(self, graph_root: str, run_root: str, options: Sequence[str] = ()) -> None:
        super().__init__(graph_root, run_root, options)
        stores: list[str] = []
        for option in options:
            key, sep, value = option.partition("=")
            if not sep:
                raise ValueError(f"unable to parse key/value option: {option}")
            key = key.strip().lower()
            if key in (".imagestore", "vfs.imagestore"):
                stores.extend(p for p in value.split(",") if p)
            elif key in (".mountopt", "vfs.mountopt"):
                raise ValueError("vfs driver does not support mount options")
            elif key in (".ignore_chown_errors", "vfs.ignore_chown_errors"):
                self.ignore_chown_errors = parse_bool(value)
            else:
                raise ValueError(f"vfs driver does not support {key} options")
        self.image_stores = tuple(stores)
        os.makedirs(os.path.join(self.home, "dir"), mode=0o700, exist_ok=True)

    def _own_dir(self, layer_id: str) -> str:
        return os.path.join(self.home, "dir", os.path.basename(layer_id))

    def layer_dir(self, layer_id: str) -> str:
        own = self._own_dir(layer_id)
        if os.path.isdir(own):
            return own
        for store in self.image_stores:
            candidate = os.path.join(store, self.name, "dir", os.path.basename(layer_id))
            if os.path.isdir(candidate):
                return candidate
        return own

    def exists(self, layer_id: str) -> bool:
        return os.path.isdir(self.layer_dir(layer_id))

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
        target = self._own_dir(layer_id)
        source = template or parent
        uid, gid = root_pair(uid_map, gid_map)
        os.mkdir(target, 0o700)
        try:
            if source:
                _native.copy_tree(
                    self.layer_dir(source),
                    target,
                    uid_from=idmaps_to_tuples(from_uid_map),
                    gid_from=idmaps_to_tuples(from_gid_map),
                    uid_to=idmaps_to_tuples(uid_map),
                    gid_to=idmaps_to_tuples(gid_map),
                )
            else:
                os.chown(target, uid, gid)
                os.chmod(target, _DEFAULT_PERMS)
        except BaseException:
            _native.remove_tree(target)
            raise

    def remove(self, layer_id: str) -> None:
        remove_all(self._own_dir(layer_id))

    def get(self, layer_id: str, options: MountOptions) -> str:
        path = self.layer_dir(layer_id)
        if not os.path.isdir(path):
            raise LayerUnknownError(f"{path}: {LayerUnknownError.go_message}")
        return path

    def _contents(self, layer_id: str) -> str:
        """The layer's directory, for reading its contents: Go's naive diff gets it with
        ``Get``, which fails with ``os.Stat``'s error."""
        path = self.layer_dir(layer_id)
        if not os.path.isdir(path):
            raise FileNotFoundError(f"stat {path}: no such file or directory")
        return path

    def put(self, layer_id: str) -> None:
        # Nothing is mounted; Go's vfs Put is a no-op too.
        return None

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
        return self._apply_into(
            self._own_dir(layer_id), "vfs", source, uid_map, gid_map, tar_split_path, progress,
            limits,
        )  # fmt: skip

    def changes(
        self,
        layer_id: str,
        parent: str | None,
        uid_map: Sequence[IDMap],
        gid_map: Sequence[IDMap],
        parent_uid_map: Sequence[IDMap],
        parent_gid_map: Sequence[IDMap],
    ) -> tuple[list[Change], int]:
        from .. import archive  # on first use of layer contents

        return archive._changes_and_size(
            self._contents(layer_id),
            None if not parent else self._contents(parent),
            None,
            idmaps_to_tuples(uid_map) or None,
            idmaps_to_tuples(gid_map) or None,
            idmaps_to_tuples(parent_uid_map) or None,
            idmaps_to_tuples(parent_gid_map) or None,
        )

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
        from .. import archive  # on first use of layer contents

        archive.diff(
            self._contents(layer_id),
            out,
            None if not parent else self._contents(parent),
            compression=compression,  # type: ignore[arg-type]
            uid_map=idmaps_to_tuples(uid_map) or None,
            gid_map=idmaps_to_tuples(gid_map) or None,
            parent_uid_map=idmaps_to_tuples(parent_uid_map) or None,
            parent_gid_map=idmaps_to_tuples(parent_gid_map) or None,
        )
