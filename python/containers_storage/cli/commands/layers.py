"""Layer commands: create-layer, import-layer, layers, layer, layer-parent-owners."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

from ...errors import InvalidMappingsError
from ..idmaps import id_mapping
from ..output import (
    emit_json,
    error_text,
    nil_if_empty,
    os_error_text,
    print_created,
    record,
    stderr,
    stdout,
)

if TYPE_CHECKING:
    from ..context import Context

__all__ = ["create_layer", "import_layer", "layer", "layer_parent_owners", "layers"]


def create_layer(ctx: Context) -> int:
    """Create an empty layer (on the parent given, if any); print its ID and names."""
    try:
        maps = id_mapping(ctx)
    except (InvalidMappingsError, OSError) as e:
        stderr(error_text(e))
        return 1
    layer = ctx.store.create_layer(
        ctx.args[0] if ctx.args else None,
        id=ctx.text("id"),
        names=ctx.items("name"),
        mount_label=ctx.text("label"),
        writeable=not ctx.flag("readonly"),
        uid_map=maps.uid_map,
        gid_map=maps.gid_map,
        host_uid_mapping=maps.host_uid_mapping,
        host_gid_mapping=maps.host_gid_mapping,
    )
    print_created(ctx.json, layer)
    return 0


def import_layer(ctx: Context) -> int:
    """Create a layer and apply a tarball from --file or stdin to it, with a progress bar
    on a terminal."""
    from ..progress import ProgressBar

    path = ctx.text("file")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC) if path else sys.stdin.fileno()
    except OSError as e:
        stderr(os_error_text(e))
        return 1
    try:
        try:
            maps = id_mapping(ctx)
        except (InvalidMappingsError, OSError) as e:
            stderr(error_text(e))
            return 1
        bar = ProgressBar("importing", enabled=not ctx.json)
        try:
            layer, _size = ctx.store.put_layer(
                ctx.args[0] if ctx.args else None,
                fd,
                id=ctx.text("id"),
                names=ctx.items("name"),
                mount_label=ctx.text("label"),
                writeable=not ctx.flag("readonly"),
                uid_map=maps.uid_map,
                gid_map=maps.gid_map,
                host_uid_mapping=maps.host_uid_mapping,
                host_gid_mapping=maps.host_gid_mapping,
                progress=bar,
            )
        finally:
            bar.close()
    finally:
        if path:
            os.close(fd)
    print_created(ctx.json, layer)
    return 0


def layers(ctx: Context) -> int:
    """List layers, with the images and containers that use them (or as a tree)."""
    store = ctx.store
    all_layers = store.layers()
    if ctx.json:
        emit_json([record(x) for x in all_layers])
        return 0
    images_by_layer: dict[str, list[tuple[str, tuple[str, ...]]]] = {}
    try:
        for image in store.images():
            for layer_id in (image.layer, *image.mapped_layers):
                images_by_layer.setdefault(layer_id, []).append((image.id, image.names))
    except Exception:  # Go ignores a failure to list images here
        images_by_layer = {}
    containers_by_layer: dict[str, tuple[str, tuple[str, ...]]] = {}
    try:
        for ctr in store.containers():
            containers_by_layer[ctr.layer] = (ctr.id, ctr.names)
    except Exception:
        containers_by_layer = {}
    if ctx.flag("tree"):
        from .tree import TreeNode, print_tree

        nodes = []
        for x in all_layers:
            notes = [f"name: {n}" for n in x.names]
            if x.mount_point:
                notes.append(f"mount: {x.mount_point}")
            for image_id, image_names in images_by_layer.get(x.id, ()):
                notes.append(f"image: {image_id}")
                notes.extend(f"image name: {n}" for n in image_names)
            if x.id in containers_by_layer:
                ctr_id, ctr_names = containers_by_layer[x.id]
                notes.append(f"container: {ctr_id}")
                notes.extend(f"container name: {n}" for n in ctr_names)
            nodes.append(TreeNode(x.parent or "(base)", x.id, notes))
        print_tree(nodes)
        return 0
    for x in all_layers:
        stdout(x.id)
        for name in x.names:
            stdout(f"\tname: {name}")
        for image_id, image_names in images_by_layer.get(x.id, ()):
            stdout(f"\timage: {image_id}")
            for name in image_names:
                stdout(f"\t\tname: {name}")
        if x.id in containers_by_layer:
            ctr_id, ctr_names = containers_by_layer[x.id]
            stdout(f"\tcontainer: {ctr_id}")
            for name in ctr_names:
                stdout(f"\t\tname: {name}")
    return 0


def layer(ctx: Context) -> int:
    """Describe layers; exit 1 if any argument is not a layer."""
    matched = ctx.lookup_args(ctx.store.layer)
    if ctx.json:
        emit_json([record(x) for x in matched])
    else:
        for x in matched:
            stdout(f"ID: {x.id}")
            for m in x.uidmap:
                stdout(
                    f"UID mapping: (container={m.container_id}, host={m.host_id}, size={m.size})"
                )
            for m in x.gidmap:
                stdout(
                    f"GID mapping: (container={m.container_id}, host={m.host_id}, size={m.size})"
                )
            if x.parent:
                stdout(f"Parent: {x.parent}")
            for name in x.names:
                stdout(f"Name: {name}")
            if x.read_only:
                stdout("Read Only: true")
    return 0 if len(matched) == len(ctx.args) else 1


def layer_parent_owners(ctx: Context) -> int:
    """The host IDs owning the directories above mapped layers' mount points that their
    maps cannot express."""
    from ..flags import go_list

    matched = ctx.lookup_args(ctx.store.layer)
    for x in matched:
        try:
            uids, gids = ctx.store.layer_parent_owners(x.id)
        except Exception as e:
            stderr(f"LayerParentOwner: {error_text(e)}")
            return 1
        if ctx.json:
            emit_json({"ID": x.id, "UIDs": nil_if_empty(uids), "GIDs": nil_if_empty(gids)})
        else:
            stdout(f"ID: {x.id}")
            if uids:
                stdout(f"UIDs: {go_list(uids)}")
            if gids:
                stdout(f"GIDs: {go_list(gids)}")
    return 0 if len(matched) == len(ctx.args) else 1
