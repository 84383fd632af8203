"""Container commands: create-container, containers, container, get-container-dir,
get-container-run-dir, container-parent-owners."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from ...errors import InvalidMappingsError
from ..idmaps import id_mapping
from ..output import emit_json, error_text, nil_if_empty, record, stderr, stdout

if TYPE_CHECKING:
    from ..context import Context

__all__ = [
    "container",
    "container_parent_owners",
    "containers",
    "create_container",
    "get_container_dir",
    "get_container_run_dir",
]


def create_container(ctx: Context) -> int:
    """Create a container from an image (``""`` for none); print its ID and names."""
    metadata = ctx.metadata()
    if metadata is None:
        return 1
    try:
        maps = id_mapping(ctx)
    except (InvalidMappingsError, OSError) as e:
        stderr(error_text(e))
        return 1
    ctr = ctx.store.create_container(
        ctx.args[0] or None,
        id=ctx.text("id"),
        names=ctx.items("name"),
        metadata=metadata,
        uid_map=maps.uid_map,
        gid_map=maps.gid_map,
        host_uid_mapping=maps.host_uid_mapping,
        host_gid_mapping=maps.host_gid_mapping,
        volatile=ctx.flag("volatile"),
    )
    if ctx.json:
        emit_json(record(ctr))
    else:
        # Go prints the names without a final newline.
        sys.stdout.write(ctr.id + "\n" + "".join(f"\t{n}" for n in ctr.names))
    return 0


def containers(ctx: Context) -> int:
    """List containers."""
    found = ctx.store.containers()
    if ctx.json:
        emit_json([record(x) for x in found])
        return 0
    for x in found:
        stdout(x.id)
        for name in x.names:
            stdout(f"\tname: {name}")
        for name in x.big_data_names:
            stdout(f"\tdata: {name}")
    return 0


def container(ctx: Context) -> int:
    """Describe containers, with their sizes; exit 1 if any argument is not a container."""
    store = ctx.store
    names_of = {img.id: img.names for img in store.images()}
    matched = ctx.lookup_args(store.container)
    if ctx.json:
        emit_json([record(x) for x in matched])
    else:
        for x in matched:
            stdout(f"ID: {x.id}")
            for name in x.names:
                stdout(f"Name: {name}")
            stdout(f"Image: {x.image}")
            for name in names_of.get(x.image, ()):
                stdout(f"Image name: {name}")
            try:
                stdout(f"Size: {store.container_size(x.id)}")
            except Exception as e:
                stdout(f"Size unknown: {error_text(e)}")
            stdout(f"Layer: {x.layer}")
            for name in x.big_data_names:
                stdout(f"Data: {name}")
    return 0 if len(matched) == len(ctx.args) else 1


def get_container_dir(ctx: Context) -> int:
    """Print the container's data directory."""
    stdout(ctx.store.container_directory(ctx.args[0]))
    return 0


def get_container_run_dir(ctx: Context) -> int:
    """Print the container's runtime directory."""
    stdout(ctx.store.container_run_directory(ctx.args[0]))
    return 0


def container_parent_owners(ctx: Context) -> int:
    """The host IDs owning the directories above mapped containers' mount points that
    their maps cannot express."""
    from ..flags import go_list

    matched = ctx.lookup_args(ctx.store.container)
    for x in matched:
        try:
            uids, gids = ctx.store.container_parent_owners(x.id)
        except Exception as e:
            stderr(f"ContainerParentOwner: {error_text(e)}")
            return 1
        if ctx.json:
            emit_json({"ID": x.id, "UIDs": nil_if_empty(uids), "GIDs": nil_if_empty(gids)})
        else:
            stdout(f"ID: {x.id}")
            stdout(f"UIDs: {go_list(uids)}")
            stdout(f"GIDs: {go_list(gids)}")
    return 0 if len(matched) == len(ctx.args) else 1
