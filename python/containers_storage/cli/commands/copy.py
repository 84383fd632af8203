"""``copy``: copy files or directories into a layer, possibly from another layer.

As Go's ``chrootarchive.CopyWithTar``: the source is archived with its owners read back to
container IDs through the source layer's ID maps (or set by ``--chown``), and unpacked into
the target through the target layer's maps, confined to the target directory. A file lands
at the target path (inside it when the path ends with ``/``); a directory's contents are
copied into the target directory, created owned by the target's root.
"""

from __future__ import annotations

import os
import stat
import tarfile
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..._strconv import go_quote
from ..output import error_text, stderr

if TYPE_CHECKING:
    from ...records import IDMap
    from ..context import Context

__all__ = ["copy_content", "copy_with_tar"]

Maps = tuple[Sequence["IDMap"], Sequence["IDMap"]]


class CopyError(Exception):
    """A copy failed (the message says why)."""


def _to_container(maps: Sequence[IDMap], host: int, what: str) -> int:
    if not maps:
        return host
    for m in maps:
        if m.host_id <= host < m.host_id + m.size:
            return m.container_id + host - m.host_id
    raise CopyError(f"{what} {host} cannot be mapped to a container ID")


def _to_host(maps: Sequence[IDMap], container: int) -> int:
    if not maps:
        return container
    for m in maps:
        if m.container_id <= container < m.container_id + m.size:
            return m.host_id + container - m.container_id
    raise CopyError(f"container ID {container} cannot be mapped to a host ID")


def _tuples(maps: Sequence[IDMap]) -> list[tuple[int, int, int]] | None:
    return [(m.container_id, m.host_id, m.size) for m in maps] or None


def _write_tar(
    fd: int,
    entries: list[tuple[str, str]],
    single: bool,
    src_maps: Maps,
    chown: tuple[int, int] | None,
    failure: list[BaseException],
) -> None:
    def owner(info: tarfile.TarInfo) -> tarfile.TarInfo:
        if chown is not None:
            info.uid, info.gid = chown
        else:
            info.uid = _to_container(src_maps[0], info.uid, "host UID")
            info.gid = _to_container(src_maps[1], info.gid, "host GID")
        info.uname = info.gname = ""
        return info

    try:
        with (
            os.fdopen(fd, "wb") as pipe,
            tarfile.open(fileobj=pipe, mode="w|", format=tarfile.PAX_FORMAT) as tar,
        ):
            for path, name in entries:
                if single:
                    with open(path, "rb") as f:
                        info = tar.gettarinfo(arcname=name, fileobj=f)
                        info.mtime = int(info.mtime)
                        tar.addfile(owner(info), f)
                else:
                    tar.add(path, arcname=name, filter=owner)
    except BrokenPipeError:
        pass  # the reader failed; its error is the one reported
    except BaseException as e:
        failure.append(e)


def copy_with_tar(
    source: str, target: str, src_maps: Maps, chown: tuple[int, int] | None, dst_maps: Maps
) -> None:
    """Copy ``source`` (file or directory) to ``target`` as Go's ``CopyWithTar`` does.

    Raises:
        CopyError, OSError, ArchiveError: The copy failed.
    """
    from ...archive import apply_layer

    st = os.stat(source)
    if stat.S_ISDIR(st.st_mode):
        root_uid, root_gid = _to_host(dst_maps[0], 0), _to_host(dst_maps[1], 0)
        missing = []
        d = os.path.abspath(target)
        while not os.path.exists(d):
            missing.append(d)
            d = os.path.dirname(d)
        for d in reversed(missing):
            os.mkdir(d, 0o755)
            os.chown(d, root_uid, root_gid)
        entries = [(os.path.join(source, n), n) for n in sorted(os.listdir(source))]
        into, single = target, False
    else:
        if target.endswith("/"):
            target = os.path.join(target, os.path.basename(source))
        into = os.path.dirname(target) or "."
        os.makedirs(into, 0o700, exist_ok=True)
        entries, single = [(source, os.path.basename(target))], True
    read_fd, write_fd = os.pipe()
    failure: list[BaseException] = []
    writer = threading.Thread(
        target=_write_tar,
        args=(write_fd, entries, single, src_maps, chown, failure),
        name="cs-copy",
        daemon=True,
    )
    writer.start()
    try:
        apply_layer(
            read_fd,
            into,
            whiteouts="aufs",
            uid_map=_tuples(dst_maps[0]),
            gid_map=_tuples(dst_maps[1]),
            keep_tar_split=False,
        )
    except BaseException:
        os.close(read_fd)
        writer.join()
        if failure:
            raise failure[0] from None
        raise
    os.close(read_fd)
    writer.join()
    if failure:
        raise failure[0]


def _parse_chown(spec: str) -> tuple[int, int] | str:
    parts = spec.split(":", 1)
    if len(parts) == 1:
        parts.append(parts[0])
    ids = []
    for part, what in zip(parts, ("UID", "GID"), strict=True):
        if not part.isdigit() or int(part) > 0xFFFFFFFF:
            reason = "value out of range" if part.isdigit() else "invalid syntax"
            return (
                f"error {go_quote(part)} as a numeric {what}: strconv.ParseUint: parsing "
                f"{go_quote(part)}: {reason}"
            )
        ids.append(int(part))
    return ids[0], ids[1]


def copy_content(ctx: Context) -> int:
    """Copy each source (a host path or ``layer:/path``) to the target ``layer:/path``."""
    store = ctx.store
    chown: tuple[int, int] | None = None
    if ctx.text("chown"):
        parsed = _parse_chown(ctx.text("chown"))
        if isinstance(parsed, str):
            stderr(parsed)
            return 1
        chown = parsed
    mounted: list[str] = []

    def locate(spec: str, role: str) -> tuple[str, Maps] | None:
        if ":" not in spec:
            return spec, ((), ())
        ref, inner = spec.split(":", 1)
        try:
            layer = store.layer(ref)
        except Exception as e:
            stderr(f"error finding layer {go_quote(ref)}: {error_text(e)}")
            return None
        try:
            root = store.mount(layer.id, layer.mountlabel)
        except Exception as e:
            stderr(f"error mounting layer {go_quote(layer.id)}: {error_text(e)}")
            return None
        mounted.append(layer.id)
        path = os.path.normpath(os.path.join(root, inner.lstrip("/")))
        if path != root and not path.startswith(root.rstrip("/") + "/"):
            stderr(f"error parsing {role} location {go_quote(spec)}: it leaves the layer")
            return None
        return path, (layer.uidmap, layer.gidmap)

    try:
        target = locate(ctx.args[-1], "target")
        if target is None:
            return 1
        for spec in ctx.args[:-1]:
            source = locate(spec, "source")
            if source is None:
                return 1
            try:
                copy_with_tar(source[0], target[0], source[1], chown, target[1])
            except Exception as e:
                stderr(
                    f"error copying {go_quote(source[0])} to {go_quote(target[0])}: {error_text(e)}"
                )
                return 1
        return 0
    finally:
        for layer_id in reversed(mounted):
            try:
                store.unmount(layer_id, False)
            except Exception as e:
                stderr(f"error unmounting layer {go_quote(layer_id)}: {error_text(e)}")
