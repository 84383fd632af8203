"""Type stub for the Rust extension ``containers_storage._native`` (hand-written)."""

from collections.abc import Callable
from os import PathLike
from typing import Any, Literal, final

__all__ = [
    "LAST_WRITE_SIZE",
    "LockFile",
    "__version__",
    "apply_layer",
    "bind_mount",
    "chown_tree",
    "copy_tree",
    "deflate_block",
    "dir_size",
    "fs_magic",
    "idmapped_mount",
    "is_rootless",
    "layer_changes",
    "layer_diff",
    "make_private",
    "overlay_mount",
    "reassemble_layer",
    "remove_tree",
    "sync_fs",
    "unmount",
    "verify_layer",
]

__version__: str
LAST_WRITE_SIZE: int

@final
class LockFile:
    """A containers/storage lock file (fcntl record lock + in-process reader/writer lock)."""

    def __new__(cls, path: str | PathLike[str], read_only: bool = False) -> LockFile: ...
    @property
    def path(self) -> str: ...
    def lock(self) -> None: ...
    def rlock(self) -> None: ...
    def unlock(self) -> None: ...
    def touch(self) -> bytes: ...
    def modified(self) -> bool: ...
    def token(self) -> bytes: ...
    def touched_since(self, when: float) -> bool: ...
    def locked(self) -> bool: ...
    def held(self) -> Literal["read", "write"] | None: ...
    def is_read_write(self) -> bool: ...

def apply_layer(
    fd: int,
    target: str | PathLike[str],
    *,
    whiteouts: str = "vfs",
    uid_map: list[tuple[int, int, int]] | None = None,
    gid_map: list[tuple[int, int, int]] | None = None,
    ignore_chown_errors: bool = False,
    limits: dict[str, int | None] | None = None,
    tar_split_path: str | PathLike[str] | None = None,
    keep_tar_split: bool = False,
    progress: Callable[[int, int | None], object] | None = None,
    workers: int | None = None,
) -> dict[str, Any]: ...
def reassemble_layer(
    tar_split: bytes | str | PathLike[str],
    layer_dir: str | PathLike[str],
    fd: int,
    *,
    compression: str = "none",
) -> tuple[int, int]: ...
def deflate_block(data: bytes, dictionary: bytes, level: int = 6) -> bytes: ...
def verify_layer(
    chain: list[str] | list[PathLike[str]],
    layer_dir: str | PathLike[str],
    *,
    overlay: bool,
    quick: bool = False,
) -> list[tuple[str, str, str]]: ...
def layer_changes(
    layer_dir: str | PathLike[str],
    parent_dir: str | PathLike[str] | None = None,
    *,
    lowers: list[str] | None = None,
    uid_map: list[tuple[int, int, int]] | None = None,
    gid_map: list[tuple[int, int, int]] | None = None,
    parent_uid_map: list[tuple[int, int, int]] | None = None,
    parent_gid_map: list[tuple[int, int, int]] | None = None,
) -> tuple[list[tuple[bytes, int]], int]: ...
def layer_diff(
    layer_dir: str | PathLike[str],
    fd: int,
    parent_dir: str | PathLike[str] | None = None,
    *,
    overlay: bool = False,
    compression: str = "none",
    uid_map: list[tuple[int, int, int]] | None = None,
    gid_map: list[tuple[int, int, int]] | None = None,
    parent_uid_map: list[tuple[int, int, int]] | None = None,
    parent_gid_map: list[tuple[int, int, int]] | None = None,
    lowers: list[str] | None = None,
) -> None: ...

_Ranges = list[tuple[int, int, int]] | None

def copy_tree(
    src: str,
    dst: str,
    *,
    uid_from: _Ranges = None,
    gid_from: _Ranges = None,
    uid_to: _Ranges = None,
    gid_to: _Ranges = None,
) -> tuple[int, int, int]: ...
def chown_tree(
    root: str,
    *,
    uid_from: _Ranges = None,
    gid_from: _Ranges = None,
    uid_to: _Ranges = None,
    gid_to: _Ranges = None,
) -> int: ...
def remove_tree(path: str) -> None: ...
def sync_fs(path: str) -> None: ...
def dir_size(path: str) -> int: ...
def fs_magic(path: str) -> int: ...
def is_rootless() -> bool: ...
def overlay_mount(
    target: str,
    lowers: list[str],
    *,
    upper: str | None = None,
    work: str | None = None,
    options: list[str] = ...,
) -> bool: ...
def unmount(target: str) -> None: ...
def make_private(path: str, is_mountpoint: bool) -> None: ...
def bind_mount(source: str, target: str, read_only: bool = False) -> None: ...
def idmapped_mount(source: str, target: str, userns_fd: int) -> None: ...
