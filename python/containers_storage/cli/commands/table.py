"""The command table: every command's names, arguments, flags, help and handler.

This module is data only, so that ``--help``, shell completion and argument checks never
import a handler (nor the store). A handler is named ``"module:function"`` within this
package and imported when its command runs. Names, usage strings, argument counts and flags
are those of the Go 1.43 CLI (``cmd/containers-storage``), in its order; ``apply-layer``,
``unshare`` and ``completion`` are ours.
"""

from __future__ import annotations

from typing import NamedTuple

from ..flags import FlagKind, FlagSpec

__all__ = ["COMMANDS", "GLOBAL_FLAGS", "TOP_FLAGS", "Command", "find"]


class Command(NamedTuple):
    """One command: ``names[0]`` is listed, the rest are aliases."""

    names: tuple[str, ...]
    usage: str
    handler: str
    options_help: str = ""
    min_args: int = 0
    #: 0 means unlimited, as in Go.
    max_args: int = 0
    flags: tuple[FlagSpec, ...] = ()
    #: Go opens the store before every command; ours that need none skip it.
    needs_store: bool = True
    #: More help than Go's one line, shown by ``--help``.
    details: str = ""
    #: What the positional arguments are, for shell completion: ``layer``, ``image``,
    #: ``container``, ``any`` (any of the three), ``file`` or ``""``.
    completes: str = "any"


def _f(names: tuple[str, ...], dest: str, kind: FlagKind, usage: str) -> FlagSpec:
    return FlagSpec(names, dest, kind, usage)


GLOBAL_FLAGS: tuple[FlagSpec, ...] = (
    _f(("-run", "R"), "run", "string", "Root of the runtime state tree"),
    _f(("-graph", "g"), "graph", "string", "Root of the storage tree"),
    _f(
        ("-storage-driver", "s"),
        "storage_driver",
        "string",
        "Storage driver to use ($STORAGE_DRIVER)",
    ),
    _f(("-storage-opt",), "storage_opt", "list", "Set storage driver options ($STORAGE_OPTS)"),
    _f(("-debug", "D"), "debug", "bool", "Print debugging information"),
)

#: Flags only the program (not a command) takes.
TOP_FLAGS: tuple[FlagSpec, ...] = (
    _f(("#help", "-help"), "help", "bool", "Print usage"),
    _f(("-version",), "version", "bool", "Print the version and exit"),
)

JSON = _f(("-json", "j"), "json", "bool", "Prefer JSON output")
_MAPS = (
    _f(("-hostuidmap",), "hostuidmap", "bool", "Force host UID map"),
    _f(("-hostgidmap",), "hostgidmap", "bool", "Force host GID map"),
    _f(("-uidmap",), "uidmap", "string", "UID map"),
    _f(("-gidmap",), "gidmap", "string", "GID map"),
    _f(("-subuidmap",), "subuidmap", "string", "subuid UID map for a user"),
    _f(("-subgidmap",), "subgidmap", "string", "subgid GID map for a group"),
)
_MAPS_HELP = (
    "ID maps: --uidmap/--gidmap take container:host:size[:container:host:size...]; "
    "--subuidmap/--subgidmap take a user or group from /etc/subuid or /etc/subgid; "
    "--hostuidmap/--hostgidmap use the host's IDs."
)


def _layer_flags(name_usage: str) -> tuple[FlagSpec, ...]:
    return (
        _f(("-label", "l"), "label", "string", "Mount Label"),
        _f(("-name", "n"), "name", "list", name_usage),
        _f(("-id", "i"), "id", "string", "Layer ID"),
        _f(("-readonly", "r"), "readonly", "bool", "Mark as read-only"),
        JSON,
    )


def _data_commands(kind: str, article: str, what: str) -> list[Command]:
    """The list/get/get-size/get-digest/set big-data commands of images or containers."""
    ref = f"{kind}NameOrID"
    return [
        Command(
            (f"list-{kind}-data", f"list{kind}data"),
            f"List data items that are attached to {article} {kind}",
            f"bigdata:list_{kind}_data",
            f"[options [...]] {ref}",
            min_args=1,
            max_args=1,
            flags=(JSON,),
            completes=kind,
        ),
        Command(
            (f"get-{kind}-data", f"get{kind}data"),
            f"Get data that is attached to {article} {kind}",
            f"bigdata:get_{kind}_data",
            f"[options [...]] {ref} dataName",
            min_args=2,
            flags=(_f(("-file", "f"), "file", "string", "Write data to file"),),
            completes=kind,
        ),
        Command(
            (f"get-{kind}-data-size", f"get{kind}datasize"),
            f"Get size of data that is attached to {article} {kind}",
            f"bigdata:get_{kind}_data_size",
            f"[options [...]] {ref} dataName",
            min_args=2,
            completes=kind,
        ),
        Command(
            (f"get-{kind}-data-digest", f"get{kind}datadigest"),
            f"Get digest of data that is attached to {article} {kind}",
            f"bigdata:get_{kind}_data_digest",
            f"[options [...]] {ref} dataName",
            min_args=2,
            completes=kind,
        ),
        Command(
            (f"set-{kind}-data", f"set{kind}data"),
            f"Set data that is attached to {article} {kind}"
            + (" (with sometimes wrong digest)" if kind == "image" else ""),
            f"bigdata:set_{kind}_data",
            f"[options [...]] {ref} dataName",
            min_args=2,
            flags=(_f(("-file", "f"), "file", "string", "Read data from file"),),
            details=f"Reads the data from --file, or from standard input. {what}",
            completes=kind,
        ),
    ]


COMMANDS: tuple[Command, ...] = (
    # container.go
    Command(
        ("container",),
        "Examine a container",
        "containers:container",
        "[options [...]] containerNameOrID [...]",
        min_args=1,
        flags=(JSON,),
        completes="container",
    ),
    *_data_commands("container", "an", ""),
    Command(
        ("get-container-dir", "getcontainerdir"),
        "Find the container's associated data directory",
        "containers:get_container_dir",
        "[options [...]] containerNameOrID",
        min_args=1,
        completes="container",
    ),
    Command(
        ("get-container-run-dir", "getcontainerrundir"),
        "Find the container's associated runtime directory",
        "containers:get_container_run_dir",
        "[options [...]] containerNameOrID",
        min_args=1,
        completes="container",
    ),
    Command(
        ("container-parent-owners",),
        "Compute the set of unmapped parent UIDs and GIDs of the container",
        "containers:container_parent_owners",
        "[options [...]] containerNameOrID [...]",
        min_args=1,
        flags=(JSON,),
        completes="container",
    ),
    # containers.go
    Command(
        ("containers",),
        "List containers",
        "containers:containers",
        "[options [...]]",
        flags=(JSON,),
        completes="",
    ),
    # copy.go
    Command(
        ("copy",),
        "Copy files or directories into a layer, possibly from another layer",
        "copy:copy_content",
        "[options [...]] [sourceLayerNameOrID:]/path [...] targetLayerNameOrID:/path",
        min_args=2,
        flags=(_f(("-chown", ""), "chown", "string", "Set owner on new copies"), JSON),
        details=(
            "Owners are read through the source layer's ID maps and written through the "
            "target layer's; --chown UID[:GID] sets the owner (in the target's terms)."
        ),
        completes="file",
    ),
    # create.go
    Command(
        ("create-layer", "createlayer"),
        "Create a new layer",
        "layers:create_layer",
        "[options [...]] [parentLayerNameOrID]",
        max_args=1,
        flags=(*_layer_flags("Layer name"), *_MAPS),
        details=_MAPS_HELP,
        completes="layer",
    ),
    Command(
        ("import-layer", "importlayer"),
        "Import a new layer",
        "layers:import_layer",
        "[options [...]] [parentLayerNameOrID]",
        max_args=1,
        flags=(
            *_layer_flags("Layer name"),
            _f(("-file", "f"), "file", "string", "Read from file instead of stdin"),
            *_MAPS,
        ),
        details=(
            "Creates a layer and applies a layer tarball (plain, gzip, bzip2, xz or zstd) "
            "from --file or standard input; shows progress on a terminal. " + _MAPS_HELP
        ),
        completes="layer",
    ),
    Command(
        ("create-image", "createimage"),
        "Create a new image using layers",
        "images:create_image",
        "[options [...]] topLayerNameOrID",
        max_args=1,
        flags=(
            _f(("-name", "n"), "name", "list", "Image name"),
            _f(("-id", "i"), "id", "string", "Image ID"),
            _f(("-digest", "d"), "digest", "string", "Image Digest"),
            _f(("-metadata", "m"), "metadata", "string", "Metadata"),
            _f(("-metadata-file", "f"), "metadata_file", "string", "Metadata File"),
            JSON,
        ),
        completes="layer",
    ),
    Command(
        ("create-container", "createcontainer"),
        "Create a new container from an image",
        "containers:create_container",
        "[options [...]] parentImageNameOrID",
        min_args=1,
        max_args=1,
        flags=(
            _f(("-name", "n"), "name", "list", "Container name"),
            _f(("-volatile",), "volatile", "bool", "Mark as volatile"),
            _f(("-id", "i"), "id", "string", "Container ID"),
            _f(("-metadata", "m"), "metadata", "string", "Metadata"),
            _f(("-metadata-file", "f"), "metadata_file", "string", "Metadata File"),
            JSON,
            *_MAPS,
        ),
        details='An empty image name ("") creates a container with no image. ' + _MAPS_HELP,
        completes="image",
    ),
    # delete.go
    Command(
        ("delete",),
        "Delete a layer or image or container, with no safety checks",
        "delete:delete_thing",
        "[LayerOrImageOrContainerNameOrID [...]]",
        min_args=1,
        flags=(JSON,),
    ),
    Command(
        ("delete-layer", "deletelayer"),
        "Delete a layer, with safety checks",
        "delete:delete_layer",
        "[LayerNameOrID [...]]",
        min_args=1,
        flags=(JSON,),
        completes="layer",
    ),
    Command(
        ("delete-image", "deleteimage"),
        "Delete an image, with safety checks",
        "delete:delete_image",
        "[ImageNameOrID [...]]",
        min_args=1,
        flags=(_f(("-test", "t"), "test", "bool", "Only test removal"), JSON),
        details="Also deletes the layers only this image uses; each is reported on stderr.",
        completes="image",
    ),
    Command(
        ("delete-container", "deletecontainer"),
        "Delete a container, with safety checks",
        "delete:delete_container",
        "[ContainerNameOrID [...]]",
        min_args=1,
        flags=(JSON,),
        completes="container",
    ),
    # diff.go
    Command(
        ("changes",),
        "Compare two layers",
        "diff:changes",
        "[options [...]] layerNameOrID [referenceLayerNameOrID]",
        min_args=1,
        max_args=2,
        flags=(JSON,),
        details="Lists what the layer adds, modifies and deletes (against its parent by default).",
        completes="layer",
    ),
    Command(
        ("diffsize", "diff-size"),
        "Compare two layers",
        "diff:diff_size",
        "[options [...]] layerNameOrID [referenceLayerNameOrID]",
        min_args=1,
        max_args=2,
        details="Prints the size of the layer's changes (against its parent by default).",
        completes="layer",
    ),
    Command(
        ("diff",),
        "Compare two layers",
        "diff:diff",
        "[options [...]] layerNameOrID [referenceLayerNameOrID]",
        min_args=1,
        max_args=2,
        flags=(
            _f(("-file", "f"), "file", "string", "Write to file instead of stdout"),
            _f(("-uncompressed", "u"), "uncompressed", "bool", "Use no compression"),
            _f(("-gzip", "c"), "gzip", "bool", "Compress using gzip"),
            _f(
                ("-bzip2", "-bz2", "b"),
                "bzip2",
                "bool",
                "Compress using bzip2 (not currently supported)",
            ),
            _f(("-xz", "x"), "xz", "bool", "Compress using xz (not currently supported)"),
        ),
        details=(
            "Writes the layer's changes as a tarball (against its parent by default: the "
            "tarball it was applied from, byte for byte), compressed as it was applied unless "
            "a compression flag is given."
        ),
        completes="layer",
    ),
    Command(
        ("applydiff", "apply-diff"),
        "Apply a diff to a layer",
        "diff:apply_diff",
        "[options [...]] layerNameOrID [referenceLayerNameOrID]",
        min_args=1,
        max_args=1,
        flags=(_f(("-file", "f"), "file", "string", "Read from file instead of stdin"),),
        details=(
            "Applies a layer tarball (plain, gzip, bzip2, xz or zstd) from --file or standard "
            "input; shows progress on a terminal."
        ),
        completes="layer",
    ),
    # exists.go
    Command(
        ("exists",),
        "Check if a layer or image or container exists",
        "exists:exists",
        "[LayerOrImageOrContainerNameOrID [...]]",
        min_args=1,
        flags=(
            _f(("-quiet", "q"), "quiet", "bool", "Don't print names"),
            _f(("-layer", "l"), "layer", "bool", "Only succeed if the match is a layer"),
            _f(("-image", "i"), "image", "bool", "Only succeed if the match is an image"),
            _f(
                ("-container", "c"), "container", "bool", "Only succeed if the match is a container"
            ),
            JSON,
        ),
    ),
    # image.go
    Command(
        ("image",),
        "Examine an image",
        "images:image",
        "[options [...]] imageNameOrID [...]",
        min_args=1,
        flags=(JSON,),
        completes="image",
    ),
    *_data_commands(
        "image",
        "an",
        "Keys starting with 'manifest' are digested and found by images-by-digest.",
    ),
    # images.go
    Command(
        ("images",),
        "List images",
        "images:images",
        "[options [...]]",
        flags=(JSON, _f(("-quiet", "q"), "quiet", "bool", "Only print IDs")),
        completes="",
    ),
    Command(
        ("images-by-digest",),
        "List images by digest",
        "images:images_by_digest",
        "[options [...]] DIGEST",
        min_args=1,
        max_args=1,
        flags=(JSON, _f(("-quiet", "q"), "quiet", "bool", "Only print IDs")),
        completes="",
    ),
    # layer.go
    Command(
        ("layer",),
        "Examine a layer",
        "layers:layer",
        "[options [...]] layerNameOrID [...]",
        min_args=1,
        flags=(JSON,),
        completes="layer",
    ),
    Command(
        ("layer-parent-owners",),
        "Compute the set of unmapped parent UIDs and GIDs of the layer",
        "layers:layer_parent_owners",
        "[options [...]] layerNameOrID [...]",
        min_args=1,
        flags=(JSON,),
        completes="layer",
    ),
    Command(
        ("list-layer-data", "listlayerdata"),
        "List data items that are attached to a layer",
        "bigdata:list_layer_data",
        "[options [...]] layerNameOrID",
        min_args=1,
        max_args=1,
        flags=(JSON,),
        completes="layer",
    ),
    Command(
        ("get-layer-data", "getlayerdata"),
        "Get data that is attached to a layer",
        "bigdata:get_layer_data",
        "[options [...]] layerID dataName",
        min_args=2,
        flags=(_f(("-file", "f"), "file", "string", "Write data to file"),),
        completes="layer",
    ),
    Command(
        ("set-layer-data", "setlayerdata"),
        "Set data that is attached to a layer",
        "bigdata:set_layer_data",
        "[options [...]] layerID dataName",
        min_args=2,
        flags=(_f(("-file", "f"), "file", "string", "Read data from file"),),
        details="Reads the data from --file, or from standard input.",
        completes="layer",
    ),
    # layers.go
    Command(
        ("layers",),
        "List layers",
        "layers:layers",
        "[options [...]]",
        flags=(_f(("-tree", "t"), "tree", "bool", "Use a tree"), JSON),
        completes="",
    ),
    # metadata.go
    Command(
        ("metadata",),
        "Retrieve layer, image, or container metadata",
        "names:metadata",
        "[LayerOrImageOrContainerNameOrID [...]]",
        min_args=1,
        flags=(_f(("-quiet", "q"), "quiet", "bool", "Omit names and IDs"), JSON),
    ),
    Command(
        ("set-metadata", "setmetadata"),
        "Set layer, image, or container metadata",
        "names:set_metadata",
        "[options [...]] layerOrImageOrContainerNameOrID",
        min_args=1,
        max_args=1,
        flags=(
            _f(("-metadata", "m"), "metadata", "string", "Metadata"),
            _f(("-metadata-file", "f"), "metadata_file", "string", "Metadata File"),
        ),
    ),
    # mount.go
    Command(
        ("mount",),
        "Mount a layer or container",
        "mount:mount",
        "[options [...]] LayerOrContainerNameOrID",
        min_args=1,
        flags=(
            _f(("-opt", "o"), "opt", "string", "Mount Options"),
            _f(("-label", "l"), "label", "string", "Mount Label"),
            _f(("-ro", "r"), "ro", "bool", "Mount image readonly"),
            JSON,
        ),
        details="Prints each mount point; mounts are counted, unmount undoes one.",
    ),
    Command(
        ("unmount", "umount"),
        "Unmount an image, layer or container",
        "mount:unmount",
        "LayerOrContainerNameOrID",
        min_args=1,
        flags=(JSON, _f(("-force", "f"), "force", "bool", "Force the umount")),
    ),
    Command(
        ("mounted",),
        "Check if a file system is mounted",
        "mount:mounted",
        "LayerOrContainerNameOrID",
        min_args=1,
        flags=(JSON,),
    ),
    # name.go
    Command(
        ("get-names", "getnames"),
        "Get layer, image, or container name or names",
        "names:get_names",
        "[options [...]] imageOrContainerNameOrID",
        min_args=1,
        flags=(JSON,),
    ),
    Command(
        ("add-names", "addnames"),
        "Add layer, image, or container name or names",
        "names:add_names",
        "[options [...]] imageOrContainerNameOrID",
        min_args=1,
        flags=(_f(("-name", "n"), "name", "list", "New name"), JSON),
    ),
    Command(
        ("set-names", "setnames"),
        "Set layer, image, or container name or names",
        "names:set_names",
        "[options [...]] imageOrContainerNameOrID",
        min_args=1,
        flags=(_f(("-name", "n"), "name", "list", "New name"), JSON),
    ),
    # shutdown.go, status.go, version.go, wipe.go
    Command(
        ("shutdown",),
        "Shut down layer storage",
        "store:shutdown",
        flags=(JSON, _f(("-force", "f"), "force", "bool", "Unmount mounted layers first")),
        completes="",
    ),
    Command(
        ("status",),
        "Check on graph driver status",
        "store:status",
        flags=(JSON,),
        details="Prints the roots, the driver and its options and state (on stderr).",
        completes="",
    ),
    Command(
        ("version",),
        "Return containers-storage version information",
        "store:version",
        flags=(JSON,),
        details="As in Go, prints nothing (the store has no version pairs); see --version.",
        completes="",
    ),
    Command(
        ("wipe",),
        "Wipe all layers, images, and containers",
        "store:wipe",
        flags=(JSON,),
        completes="",
    ),
    # Ours.
    Command(
        ("check",),
        "Check storage consistency",
        "check:run",
        flags=(
            JSON,
            _f(("-repair", "r"), "repair", "bool", "Remove damaged images and layers"),
            _f(("-force", "f"), "force", "bool", "Remove damaged containers"),
            _f(("-quick", "q"), "quick", "bool", "Perform only quick checks"),
        ),
        details=(
            "Go 1.48's check: layers whose files differ from their tar-split record (by "
            "size and CRC-64; --quick: types, modes and sizes), missing or incomplete "
            "layers and parents, images with missing layers or damaged big data, containers "
            "with a missing image or layer, orphan driver directories and tar-split files, "
            "overlay links and lower files, stale mount counts. --repair removes what is "
            "damaged (containers only with --force) and mends the rest; the exit status is "
            "1 while damage remains."
        ),
        completes="",
    ),
    Command(
        ("import-image",),
        "Import an OCI image (oci:DIR[:TAG], oci-archive:FILE[:TAG], docker-archive:FILE)",
        "oci:import_image",
        "[options [...]] SOURCE",
        min_args=1,
        max_args=1,
        flags=(_f(("-name", "n"), "name", "list", "Image name"), JSON),
        details=(
            "Writes what skopeo copy writes for the same image: layer IDs chained from the "
            "DiffIDs, the config digest as image ID, manifest and config big data. Every blob "
            "is checked against its digest and nothing is kept when one does not match; "
            "layers already in the store are reused. With overlay, layers are applied in "
            "parallel."
        ),
        completes="file",
    ),
    Command(
        ("pull",),
        "Pull an image from a registry ([docker://]NAME[:TAG|@DIGEST])",
        "pull:pull",
        "[options [...]] [docker://]REF",
        min_args=1,
        max_args=1,
        flags=(
            _f(("-authfile",), "authfile", "string", "Path of the authentication file"),
            _f(("-creds",), "creds", "string", "Credentials (USER[:PASSWORD]) for the registry"),
            _f(
                ("-tls-verify",),
                "tls_verify",
                "optbool",
                "Require HTTPS and verify certificates (default: registries.conf)",
            ),
            _f(("-platform",), "platform", "string", "Image platform OS/ARCH[/VARIANT]"),
            _f(("-name", "n"), "name", "list", "Image name (instead of the pulled name)"),
            JSON,
        ),
        details=(
            "Writes what podman pull writes: layer IDs chained from the DiffIDs, the config "
            "digest as image ID, manifest and config big data, the resolved name. Layers "
            "already in the store are not downloaded; each blob streams from the registry "
            "through its digest check into the apply, several at once with overlay. Prints "
            "the image ID; a bar per layer and a total on a terminal."
        ),
        completes="",
    ),
    Command(
        ("export-image",),
        "Write an image as an OCI layout (oci:DIR[:TAG])",
        "oci:export_image",
        "[options [...]] imageNameOrID oci:DIR[:TAG]",
        min_args=2,
        max_args=2,
        flags=(JSON,),
        details=(
            "Layers are written uncompressed, reproduced byte for byte from their tar-split "
            "record (so each blob's digest is the layer's DiffID); prints the manifest digest."
        ),
        completes="image",
    ),
    Command(
        ("push",),
        "Push an image to a registry",
        "registry:push",
        "[options [...]] imageNameOrID [docker://]REF",
        min_args=2,
        max_args=2,
        flags=(
            _f(("-compression",), "compression", "string", "Layer compression: gzip, zstd, none"),
            _f(("-compression-level",), "compression_level", "string", "gzip level, 1-9"),
            _f(("-authfile",), "authfile", "string", "Path of the authentication file"),
            _f(("-creds",), "creds", "string", "USER[:PASSWORD] for the registry"),
            _f(("-tls-verify",), "tls_verify", "optbool", "Require HTTPS and verify certificates"),
            JSON,
        ),
        details=(
            "As skopeo copy containers-storage:IMAGE docker://REF: layers rebuilt from their "
            "tar-split, compressed in parallel and streamed; blobs the registry has are "
            "skipped and blobs in another repository of the registry mounted. Prints the "
            "manifest digest."
        ),
        completes="image",
    ),
    Command(
        ("login",),
        "Log in to a registry",
        "registry:login",
        "[options [...]] REGISTRY",
        min_args=1,
        max_args=1,
        flags=(
            _f(("-authfile",), "authfile", "string", "Path of the authentication file"),
            _f(("-username", "u"), "username", "string", "User name"),
            _f(("-password", "p"), "password", "string", "Password"),
            _f(("-password-stdin",), "password_stdin", "bool", "Read the password from stdin"),
            _f(("-tls-verify",), "tls_verify", "optbool", "Require HTTPS and verify certificates"),
            _f(("-get-login",), "get_login", "bool", "Print the user logged in"),
        ),
        needs_store=False,
        details="Checks the credentials and writes the auth file as podman login does.",
        completes="",
    ),
    Command(
        ("logout",),
        "Log out of a registry",
        "registry:logout",
        "[options [...]] REGISTRY",
        flags=(
            _f(("-authfile",), "authfile", "string", "Path of the authentication file"),
            _f(("-all", "a"), "all", "bool", "Remove the credentials of every registry"),
        ),
        needs_store=False,
        details="Removes the credentials from the auth file as podman logout does.",
        completes="",
    ),
    Command(
        ("unpack-image",),
        "Flatten an image into a plain directory",
        "oci:unpack_image",
        "[options [...]] imageNameOrID DIR",
        min_args=2,
        max_args=2,
        details="The image's layers applied in order, whiteouts as deletions.",
        completes="image",
    ),
    Command(
        ("apply-layer",),
        "Apply a layer tarball onto a directory (no store)",
        "apply_layer:run",
        "[options [...]] DIR",
        min_args=1,
        max_args=1,
        flags=(
            _f(("-file", "f"), "file", "string", "Layer tarball ('-' for standard input)"),
            _f(
                ("-whiteouts",),
                "whiteouts",
                "string",
                "How whiteouts are written: vfs, overlay, aufs",
            ),
            _f(("-ignore-chown-errors",), "ignore_chown_errors", "bool", "Do not fail on chown"),
            JSON,
        ),
        needs_store=False,
        details=(
            "Applies a layer tarball (plain, gzip, bzip2, xz or zstd) onto DIR, confined to "
            "it, and prints its digests. Without --file, applies the built-in sample layer."
        ),
        completes="file",
    ),
    Command(
        ("unshare",),
        "Run a command in the rootless user namespace (default: your shell)",
        "unshare:run",
        "[options [...]] [COMMAND [ARG...]]",
        needs_store=False,
        details=(
            "As podman unshare: COMMAND runs as root of the user namespace that a rootless "
            "user's store lives in (joining podman's pause process when there is one), with "
            "CONTAINERS_GRAPHROOT and CONTAINERS_RUNROOT set to the store's roots."
        ),
        completes="file",
    ),
    Command(
        ("completion",),
        "Print a shell completion script (bash, zsh or fish)",
        "completion:completion",
        "bash|zsh|fish",
        min_args=1,
        max_args=1,
        needs_store=False,
        details=(
            "Load it with: source <(containers-storage completion bash), "
            "containers-storage completion zsh > ~/.zfunc/_containers-storage, or "
            "containers-storage completion fish | source."
        ),
        completes="",
    ),
)

_BY_NAME = {name: cmd for cmd in COMMANDS for name in cmd.names}


def find(name: str) -> Command | None:
    """The command called ``name`` (or an alias of it)."""
    return _BY_NAME.get(name)
