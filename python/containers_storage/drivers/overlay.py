"""The overlay driver: layers are overlayfs upper directories stacked with kernel mounts.

Same layout as Go containers/storage 1.43, so podman and this package can mount each other's
layers: ``GRAPHROOT/overlay/<id>/{diff,link,lower,work,merged,empty}`` and short links
``GRAPHROOT/overlay/l/<26 chars>`` -> ``../<id>/diff`` that keep mount option strings short.
Mounting happens in Rust (``mount(2)``, or the new mount API adding lower layers one at a
time when the option string would not fit in a page). The driver home is bind-mounted
private, as Go does, and :meth:`cleanup` undoes it.

ID-mapped layers are made with a chown copy (the merged view copied with new owners into
``diff1``, Go's rotated-diff layout) rather than idmapped mounts.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from .. import _native
from .._mounts import mountpoints, remove_all
from .._strconv import parse_bool
from .._struct import replace
from ..errors import LayerUnknownError, NotSupportedError
from ..records import IDMap, idmaps_to_tuples
from .base import Driver, MountOptions, root_pair

if TYPE_CHECKING:
    from ..archive import ApplyResult, Change, Limits, ProgressCallback, Sink, Source

__all__ = ["OverlayDriver", "mountpoints"]

_DEFAULT_PERMS = 0o555
_LINK_DIR = "l"

#: Where this process's stages, feature probes and diff views are made, each named
#: ``<pid>-...``: inside the home (a stage is renamed into its layer, and the home may be
#: a mount of its own), and not in Go's ``staging/``, which Go 1.43's overlay ``Cleanup()``
#: removes at the end of every podman or Go CLI command. Later Go versions keep their own
#: temporary directories here as ``temp-dir-*``/``lock-*`` pairs and leave other names be.
STAGING_DIR = "tempdirs"
_LOWER_FILE = "lower"
#: The kernel stacks at most 500 lower layers (OVL_MAX_STACK).
MAX_DEPTH = 500

FS_NAMES = {
    0xEF53: "extfs",
    0x58465342: "xfs",
    0x9123683E: "btrfs",
    0x01021994: "tmpfs",
    0x794C7630: "overlayfs",
    0x2FC12FC1: "zfs",
    0x6969: "nfs",
    0x61756673: "aufs",
    0xF15F: "ecryptfs",
    0x65735546: "fuse",
    0x5346544E: "ntfs",
    0x52654973: "reiserfs",
    0x73717368: "squashfs",
    0x4244: "hfs",
    0x3153464A: "jfs",
}
_UNSUPPORTED_BACKING = {"aufs", "zfs", "overlayfs", "ecryptfs"}
#: Mount options that are kernel mount flags, never passed to a mount program.
_KERNEL_FLAGS = {"ro", "rw", "nodev", "dev", "nosuid", "suid", "noexec", "exec", "noatime", "sync"}


#: Each byte value to a base32 letter (A-Z, 2-7) by its low five bits: 8 values a letter.
_B32 = bytes.maketrans(bytes(range(256)), b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567" * 8)


def _link_id() -> str:
    # 26 base32 characters, 5 random bits each (130 bits), as Go's generateID(idLength)
    # (the base64 module costs start-up time).
    return os.urandom(26).translate(_B32).decode("ascii")


class OverlayDriver(Driver):
    """containers/storage's ``overlay`` driver on the same layout."""

    name = "overlay"

    def __init__(self, graph_root: str, run_root: str, options: Sequence[str] = ()) -> None:
        super().__init__(graph_root, run_root, options)
        from ..unshare import is_rootless

        self.mount_options = ""
        self.skip_mount_home = False
        self.mount_program = ""
        #: Rootless (Go's ``unshare.IsRootless``): native mounts take ``userxattr`` and the
        #: overlay xattrs are ``user.overlay.*``.
        self.rootless = is_rootless()
        stores: list[str] = []
        for option in options:
            key, sep, value = option.partition("=")
            if not sep:
                raise ValueError(f"unable to parse key/value option: {option}")
            key = key.strip().lower()
            for prefix in ("overlay.", "overlay2.", "."):
                if key.startswith(prefix):
                    key = key[len(prefix) :]
                    break
            if key == "override_kernel_check":
                continue
            if key == "mountopt":
                self.mount_options = value
            elif key in ("imagestore", "additionalimagestore"):
                stores.extend(p for p in value.split(",") if p)
            elif key == "skip_mount_home":
                # Go 1.43 drops this option's parse error: a bad value leaves it false.
                try:
                    self.skip_mount_home = parse_bool(value)
                except ValueError:
                    self.skip_mount_home = False
            elif key == "ignore_chown_errors":
                self.ignore_chown_errors = parse_bool(value)
            elif key in ("size", "inodes"):
                raise NotSupportedError(
                    "storage option overlay.size and overlay.inodes only supported for "
                    "backingFS XFS with project quota; not supported here"
                )
            elif key == "mount_program":
                os.stat(value)  # Go: the program must exist
                self.mount_program = value
            elif key in ("force_mask", "additionallayerstore"):
                raise NotSupportedError(f"overlay: option {key} is not supported here")
            else:
                raise ValueError(f"overlay: Unknown option {key}")
        self.image_stores = tuple(stores)
        self.run_home = os.path.join(run_root, "overlay")
        os.makedirs(self.home, mode=0o700, exist_ok=True)
        os.makedirs(os.path.join(self.home, _LINK_DIR), mode=0o755, exist_ok=True)
        os.makedirs(self.run_home, mode=0o700, exist_ok=True)
        self.backing_fs = FS_NAMES.get(_native.fs_magic(self.home), "<unknown>")
        flag_file = os.path.join(self.home, ".has-mount-program")
        if self.rootless and not self.mount_program and not self._supports_native(flag_file):
            import shutil

            self.mount_program = shutil.which("fuse-overlayfs") or ""
        if self.mount_program:
            self._write_small(flag_file, "true", 0o600)
        elif self.backing_fs in _UNSUPPORTED_BACKING:
            raise NotSupportedError(
                f"'overlay' is not supported over {self.backing_fs}, a mount_program is "
                "required: backing file system is unsupported for this graph driver"
            )
        elif not os.path.exists(flag_file):
            self._write_small(flag_file, "false", 0o600)
        self.clean_staging()
        if self.mount_program:
            # Go: no probes; d_type assumed, diffs always by comparing mounted trees.
            self.supports_dtype, self.native_diff, self.using_metacopy = True, False, False
        else:
            self.supports_dtype = self._feature("overlay", self._probe_overlay)
            self.native_diff = self._feature(
                f"native-diff({self.mount_options})", self._probe_native_diff
            )
            self.using_metacopy = self._feature(
                f"metacopy({self.mount_options})",
                lambda: "metacopy=on" in self.mount_options.split(","),
            )
        self._supports_volatile: bool | None = None
        self._supports_shifting: bool | None = None
        if not self.skip_mount_home:
            _native.make_private(self.home, self.home in mountpoints())

    # -- feature probes ---------------------------------------------------------------------

    def _xattr(self, name: str) -> str:
        """Go's ``GetOverlayXattrName``: ``user.overlay.<name>`` rootless, else trusted."""
        return ("user.overlay." if self.rootless else "trusted.overlay.") + name

    def _native_options(self, options: Sequence[str] = ()) -> list[str]:
        """Mount options of a native overlay mount: ``userxattr`` added when rootless."""
        return [*options, "userxattr"] if self.rootless else list(options)

    @property
    def whiteout_format(self) -> str:
        """How applied whiteouts are stored: overlay's (0:0 devices, opaque xattr) on a
        native mount, AUFS ``.wh.`` files under a mount program (as Go)."""
        return "aufs" if self.mount_program else "overlay"

    def _supports_native(self, flag_file: str) -> bool:
        """Go's ``SupportsNativeOverlay`` (rootless): the home's ``.has-mount-program``
        marker, written after a look for a mount program's traces when missing, then the
        overlay probe."""
        flag = self._read(flag_file)
        if flag is None or flag not in ("true", "false"):
            flag = "true" if self._has_mount_program_traces() else "false"
            self._write_small(flag_file, flag, 0o600)
        if flag == "true":
            return False
        try:
            return self._feature("overlay", self._probe_overlay)
        except OSError:
            return False

    def _has_mount_program_traces(self) -> bool:
        for top, dirs, files in os.walk(self.home):
            if any(n.startswith(".wh.") for n in (*dirs, *files)):
                return True
            for d in dirs:
                try:
                    names = os.listxattr(os.path.join(top, d), follow_symlinks=False)
                except OSError:
                    continue
                if any(n.startswith(("user.fuseoverlayfs.", "user.containers.")) for n in names):
                    return True
        return False

    def _feature(self, feature: str, probe: object) -> bool:
        for value in (True, False):
            if os.path.exists(os.path.join(self.run_home, f"{feature}-{str(value).lower()}")):
                return value
        assert callable(probe)
        result = bool(probe())
        path = os.path.join(self.run_home, f"{feature}-{str(result).lower()}")
        with open(path, "w"):
            pass
        return result

    @contextlib.contextmanager
    def _scratch(self, kind: str = "compat") -> Iterator[str]:
        """A directory for this process alone, removed afterwards (what is mounted in it
        must be unmounted by then, except a probe's ``merged``).

        It is made under tempdirs/ with the PID first, as stage() does: if this process is
        killed meanwhile, clean_staging() in the next process unmounts and removes what it
        left. tempdirs/ itself goes again when empty, as Go 1.43 leaves no such directory.
        """
        d = self._staging_dir(kind)
        try:
            yield d
        finally:
            _native.unmount(os.path.join(d, "merged"))
            _native.remove_tree(d)
            with contextlib.suppress(OSError):
                os.rmdir(os.path.dirname(d))

    def _probe_overlay(self) -> bool:
        with self._scratch() as d:
            for sub in ("lower1", "lower2", "upper", "work", "merged"):
                os.mkdir(os.path.join(d, sub), 0o700)
            if self.rootless:
                import stat

                try:
                    os.mknod(os.path.join(d, "upper", "whiteout"), stat.S_IFCHR, 0)
                except OSError as e:
                    raise OSError(e.errno, f"unable to create kernel-style whiteout: {e}") from e
            _native.overlay_mount(
                os.path.join(d, "merged"),
                [os.path.join(d, "lower1"), os.path.join(d, "lower2")],
                upper=os.path.join(d, "upper"),
                work=os.path.join(d, "work"),
                options=self._native_options(),
            )
            _native.unmount(os.path.join(d, "merged"))
        return True

    def _probe_native_diff(self) -> bool:
        """Go's ``doesSupportNativeDiff``: an opaque directory must not be copied up as
        opaque, and renaming a directory must not leave a redirect xattr."""
        with self._scratch() as d:
            for sub in ("l1", "l2", "l3", "work", "merged"):
                os.mkdir(os.path.join(d, sub), 0o755)
            os.makedirs(os.path.join(d, "l2", "d"))
            os.setxattr(os.path.join(d, "l2", "d"), self._xattr("opaque"), b"y")
            os.makedirs(os.path.join(d, "l3", "d"))
            merged = os.path.join(d, "merged")
            _native.overlay_mount(
                merged,
                [os.path.join(d, "l2"), os.path.join(d, "l1")],
                upper=os.path.join(d, "l3"),
                work=os.path.join(d, "work"),
                options=self._native_options(),
            )
            try:
                with open(os.path.join(merged, "d", "f"), "w") as f:
                    f.write("x")
                os.mkdir(os.path.join(merged, "d2"))
                try:
                    os.rename(os.path.join(merged, "d2"), os.path.join(merged, "d3"))
                except OSError:
                    pass
            finally:
                _native.unmount(merged)
            try:
                opaque = os.getxattr(os.path.join(d, "l3", "d"), self._xattr("opaque"))
            except OSError:
                opaque = b""
            if opaque == b"y":
                return False
            try:
                os.getxattr(os.path.join(d, "l3", "d3"), self._xattr("redirect"))
                return False
            except OSError:
                return True

    def _volatile_supported(self) -> bool:
        if self._supports_volatile is None:
            self._supports_volatile = self._feature("volatile", self._probe_volatile)
        return self._supports_volatile

    def _probe_volatile(self) -> bool:
        with self._scratch() as d:
            for sub in ("lower", "upper", "work", "merged"):
                os.mkdir(os.path.join(d, sub), 0o700)
            try:
                _native.overlay_mount(
                    os.path.join(d, "merged"),
                    [os.path.join(d, "lower")],
                    upper=os.path.join(d, "upper"),
                    work=os.path.join(d, "work"),
                    options=self._native_options(["volatile"]),
                )
            except OSError:
                return False
            _native.unmount(os.path.join(d, "merged"))
            return True

    # -- paths ------------------------------------------------------------------------------

    def _dir(self, layer_id: str) -> tuple[str, bool]:
        """The layer's directory and whether it lives in an additional (read-only) store."""
        own = os.path.join(self.home, layer_id)
        if os.path.exists(own):
            return own, False
        for store in self.image_stores:
            candidate = os.path.join(store, self.name, layer_id)
            if os.path.exists(candidate):
                return candidate, True
        return own, False

    def layer_dir(self, layer_id: str) -> str:
        return os.path.join(self._dir(layer_id)[0], "diff")

    def content_dir(self, layer_id: str) -> str:
        # An ID-mapped copy keeps its (re-owned) files in diff1 and an empty diff: Go's
        # DiffGetter looks through diff, diff1, ... for each file.
        diff = self.layer_dir(layer_id)
        rotated = diff + "1"
        if os.path.isdir(rotated) and not os.listdir(diff):
            return rotated
        return diff

    def exists(self, layer_id: str) -> bool:
        return os.path.exists(self._dir(layer_id)[0])

    def _read(self, path: str) -> str | None:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        try:
            data = os.read(fd, 65536)
            if len(data) == 65536:  # a short read of a regular file is its end
                chunks = [data]
                while chunk := os.read(fd, 65536):
                    chunks.append(chunk)
                data = b"".join(chunks)
        finally:
            os.close(fd)
        return data.decode("utf-8")

    @staticmethod
    def _write_small(path: str, text: str, mode: int = 0o644) -> None:
        """Create or truncate ``path`` with ``text`` and exactly ``mode`` (Go's
        ``os.WriteFile``, without the umask)."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
        try:
            data = memoryview(text.encode("utf-8"))
            while data:
                data = data[os.write(fd, data) :]
            os.fchmod(fd, mode)
        finally:
            os.close(fd)

    def _lower_entry(self, rel: str) -> str:
        """An ``l/<link>`` entry of a lower file as a path (here or in an extra store)."""
        here = os.path.join(self.home, rel)
        if os.path.exists(here):
            return here
        for store in self.image_stores:
            candidate = os.path.join(store, self.name, rel)
            if os.path.exists(candidate):
                return candidate
        self.recreate_symlinks()
        return here

    def lower_dirs(self, layer_id: str) -> list[str]:
        """The lower ``diff`` directories of a layer, nearest first (for diffs)."""
        lower = self._read(os.path.join(self._dir(layer_id)[0], _LOWER_FILE)) or ""
        out = []
        for rel in lower.split(":"):
            if rel:
                out.append(os.path.realpath(self._lower_entry(rel)))
        return out

    # -- create and remove ------------------------------------------------------------------

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
        below = template or parent
        d = os.path.join(self.home, layer_id)
        # Container root under the new maps owns the layer directory; the directories in
        # it are owned as the parent layer's directory when there is one.
        map_root = root_pair(uid_map, gid_map)
        root_uid, root_gid = map_root
        perms = _DEFAULT_PERMS
        parent_dir = None
        if below is not None:
            parent_dir = os.path.join(self.home, below)
            try:
                st = os.stat(parent_dir)
            except FileNotFoundError:
                parent_dir = self._dir(below)[0]
                st = os.stat(parent_dir)
            # As Go: the new directories get the parent layer directory's owner, and diff/
            # the parent's diff/ permissions.
            root_uid, root_gid = st.st_uid, st.st_gid
            perms = os.stat(os.path.join(parent_dir, "diff")).st_mode & 0o7777
        remap = list(uid_map) != list(from_uid_map) or list(gid_map) != list(from_gid_map)
        try:
            os.mkdir(d, 0o700)
        except FileExistsError:  # left over: start afresh
            self.remove(layer_id)
            os.mkdir(d, 0o700)
        os.chown(d, *map_root)
        try:
            self._mkdir_as(os.path.join(d, "diff"), perms, root_uid, root_gid)
            link = _link_id()
            # The link file first: a process killed in between leaves no l/ entry that
            # remove() could not find.
            self._write_small(os.path.join(d, "link"), link)
            self._symlink_link(link, layer_id)
            self._mkdir_as(os.path.join(d, "work"), 0o700, root_uid, root_gid)
            self._mkdir_as(os.path.join(d, "merged"), 0o700, root_uid, root_gid)
            if below is None:
                self._mkdir_as(os.path.join(d, "empty"), 0o700, root_uid, root_gid)
            else:
                self._write_small(
                    os.path.join(d, _LOWER_FILE), self._lower_of_child(below, parent_dir)
                )
                if remap:
                    self._remapped_copy(layer_id, from_uid_map, from_gid_map, uid_map, gid_map)
                    # Go re-creates diff/ and work/ owned by the new maps' root after the copy.
                    for sub in ("diff", "work"):
                        os.chown(os.path.join(d, sub), *map_root)
        except BaseException:
            with contextlib.suppress(Exception):
                self.remove(layer_id)
            raise

    def _symlink_link(self, link: str, layer_id: str) -> None:
        """``l/<link>`` -> ``../<id>/diff`` (``l/`` made again if someone removed it)."""
        target = os.path.join("..", layer_id, "diff")
        path = os.path.join(self.home, _LINK_DIR, link)
        try:
            os.symlink(target, path)
        except FileNotFoundError:
            os.makedirs(os.path.join(self.home, _LINK_DIR), mode=0o755, exist_ok=True)
            os.symlink(target, path)

    @staticmethod
    def _mkdir_as(path: str, mode: int, uid: int, gid: int) -> None:
        os.mkdir(path, mode)
        os.chown(path, uid, gid)
        os.chmod(path, mode)

    def _lower_of_child(self, parent: str, parent_dir: str | None = None) -> str:
        if parent_dir is None:
            parent_dir = self._dir(parent)[0]
        link = self._read(os.path.join(parent_dir, "link"))
        if link is None:
            self.recreate_symlinks()
            link = self._read(os.path.join(parent_dir, "link"))
            if link is None:
                raise FileNotFoundError(f"open {os.path.join(parent_dir, 'link')}: no such file")
        lowers = [f"{_LINK_DIR}/{link.strip()}"]
        parent_lower = self._read(os.path.join(parent_dir, _LOWER_FILE))
        if parent_lower:
            lowers.extend(parent_lower.split(":"))
        return ":".join(lowers)

    def _remapped_copy(
        self,
        layer_id: str,
        from_uid: Sequence[IDMap],
        from_gid: Sequence[IDMap],
        uid_map: Sequence[IDMap],
        gid_map: Sequence[IDMap],
    ) -> None:
        """Go's ``UpdateLayerIDMap``: the layer's merged view, re-owned, becomes ``diff1``
        (in Go through copy-ups in a mount; here as a reflinked copy of the merged tree)."""
        d = self._dir(layer_id)[0]
        target = os.path.join(d, "diff1")
        with self._view(layer_id) as view:
            assert view is not None
            os.mkdir(target, 0o700)
            _native.copy_tree(
                view,
                target,
                uid_from=idmaps_to_tuples(from_uid),
                gid_from=idmaps_to_tuples(from_gid),
                uid_to=idmaps_to_tuples(uid_map),
                gid_to=idmaps_to_tuples(gid_map),
            )

    def remove(self, layer_id: str) -> None:
        d = os.path.join(self.home, layer_id)
        link = self._read(os.path.join(d, "link"))
        if link:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(self.home, _LINK_DIR, link.strip()))
        remove_all(d)

    def recreate_symlinks(self) -> None:
        """Go's ``recreateSymlinks``: restore lost ``l/`` links from the ``link`` files and
        lost ``link`` files from the ``l/`` links."""
        link_dir = os.path.join(self.home, _LINK_DIR)
        os.makedirs(link_dir, mode=0o755, exist_ok=True)
        for _ in range(10):
            progress = False
            for name in os.listdir(self.home):
                layer_dir = os.path.join(self.home, name)
                if name == _LINK_DIR or not os.path.isdir(layer_dir) or os.path.islink(layer_dir):
                    continue
                link = self._read(os.path.join(layer_dir, "link"))
                if link is None:
                    continue
                path = os.path.join(link_dir, link.strip())
                if not os.path.lexists(path):
                    os.symlink(os.path.join("..", name, "diff"), path)
                    progress = True
            for link in os.listdir(link_dir):
                path = os.path.join(link_dir, link)
                try:
                    target = os.readlink(path)
                except OSError:
                    continue
                parts = target.split("/")
                if len(parts) != 3 or parts[0] != ".." or parts[2] != "diff":
                    os.unlink(path)
                    progress = True
                    continue
                link_file = os.path.join(self.home, parts[1], "link")
                if os.path.isdir(os.path.join(self.home, parts[1])) and (
                    self._read(link_file) != link
                ):
                    self._write_small(link_file, link)
                    progress = True
            if not progress:
                return

    # -- mounting ---------------------------------------------------------------------------

    def _mount_lowers(self, layer_id: str) -> list[str]:
        d = self._dir(layer_id)[0]
        lowers: list[str] = []
        n = 1
        while os.path.isdir(os.path.join(d, f"diff{n}")):
            lowers.append(os.path.join(d, f"diff{n}"))
            n += 1
        text = self._read(os.path.join(d, _LOWER_FILE)) or ""
        entries = [e for e in text.split(":") if e]
        if len(entries) > MAX_DEPTH:
            raise OSError("max depth exceeded")
        for rel in entries:
            lower = self._lower_entry(rel)
            lowers.append(lower)
            n = 1
            while os.path.isdir(os.path.join(lower, "..", f"diff{n}")):
                lowers.append(os.path.join(lower, "..", f"diff{n}"))
                n += 1
        return lowers

    def is_mounted(self, layer_id: str, path: str) -> bool:
        return os.path.normpath(path) in mountpoints()

    def get(self, layer_id: str, options: MountOptions) -> str:
        d, _in_store = self._dir(layer_id)
        merged = os.path.join(d, "merged")
        if not os.path.isdir(d):
            raise LayerUnknownError(f"{d}: {LayerUnknownError.go_message}")
        with contextlib.suppress(FileExistsError):
            os.mkdir(merged, 0o700)
        if merged in mountpoints():
            return merged
        self._mount(layer_id, merged, options)
        return merged

    def _mount(self, layer_id: str, target: str, options: MountOptions) -> None:
        d, in_store = self._dir(layer_id)
        if self._read(os.path.join(d, "link")) is None:
            self.recreate_symlinks()
        opts = list(options.options) or [o for o in self.mount_options.split(",") if o]
        if not self.using_metacopy:
            opts = [o for o in opts if o != "metacopy=on"]
        read_write = not in_store and "ro" not in opts
        lowers = self._mount_lowers(layer_id)
        if not lowers:
            lowers = [os.path.join(d, "empty")]
        diff = os.path.join(d, "diff")
        if not os.path.isdir(diff):
            os.mkdir(diff, _DEFAULT_PERMS)
        if options.volatile and "volatile" not in opts and self._volatile_supported():
            opts.append("volatile")
        if options.mount_label:
            opts.append(f'context="{options.mount_label}"')
        work = os.path.join(d, "work")
        _native.remove_tree(os.path.join(work, "work", "incompat", "volatile"))
        with contextlib.ExitStack() as stack:
            if (
                options.uid_map
                and options.gid_map
                and not options.disable_shifting
                and self.supports_shifting()
            ):
                lowers = self._idmapped_lowers(layer_id, lowers, options, stack)
            if self.mount_program:
                self._program_mount(target, lowers, diff if read_write else None, work, opts)
            elif read_write:
                opts = self._native_options(opts)
                _native.overlay_mount(target, lowers, upper=diff, work=work, options=opts)
            else:
                opts = self._native_options(opts)
                _native.overlay_mount(target, [diff, *lowers], options=opts)

    def _program_mount(
        self, target: str, lowers: list[str], upper: str | None, work: str, opts: list[str]
    ) -> None:
        """Go's mount through ``mount_program``: ``PROGRAM -o DATA TARGET`` run in the
        home; the kernel flags among the options (``nodev``, ``ro``...) are not passed."""
        import subprocess

        if upper is None:
            data = "lowerdir=" + ":".join([os.path.join(os.path.dirname(work), "diff"), *lowers])
        else:
            data = f"lowerdir={':'.join(lowers)},upperdir={upper},workdir={work}"
        extra = [o for o in opts if o not in _KERNEL_FLAGS]
        if extra:
            data += "," + ",".join(extra)
        proc = subprocess.run(
            [self.mount_program, "-o", data, target],
            cwd=self.home,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            check=False,
        )
        if proc.returncode:
            err = proc.stderr.decode(errors="replace").strip() or "<stderr empty>"
            raise OSError(
                f"creating overlay mount to {target}, mount_data={data!r}: using mount program "
                f"{self.mount_program}: {err}: exit status {proc.returncode}"
            )

    def _unmount(self, target: str) -> None:
        """Unmount ``target``: ``fusermount3 -u``/``fusermount -u`` first under a mount
        program (as Go), then a lazy unmount if it is still mounted."""
        if self.mount_program and target in mountpoints():
            import shutil
            import subprocess

            for tool in ("fusermount3", "fusermount"):
                path = shutil.which(tool)
                if (
                    path
                    and not subprocess.run(
                        [path, "-u", target], capture_output=True, check=False
                    ).returncode
                ):
                    return
        _native.unmount(target)

    def _idmapped_lowers(
        self,
        layer_id: str,
        lowers: list[str],
        options: MountOptions,
        stack: contextlib.ExitStack,
    ) -> list[str]:
        """Go's shifting: each lower is reached through an ID-mapped clone of the directory
        above it (the home, for ``l/`` links), mounted under ``<id>/mapped/<n>`` and
        detached as soon as the overlay holds it."""
        from ._userns import user_namespace

        mapped_root = os.path.join(self._dir(layer_id)[0], "mapped")
        os.makedirs(mapped_root, mode=0o700, exist_ok=True)
        userns = stack.enter_context(user_namespace(options.uid_map, options.gid_map))
        roots: dict[str, str] = {}
        out = []
        for lower in lowers:
            parent = os.path.dirname(lower)
            src = os.path.dirname(parent) if os.path.basename(parent) == _LINK_DIR else parent
            root = roots.get(src)
            if root is None:
                root = os.path.join(mapped_root, str(len(roots)))
                with contextlib.suppress(FileExistsError):
                    os.mkdir(root, 0o700)
                _native.idmapped_mount(src, root, userns)
                stack.callback(_native.unmount, root)
                roots[src] = root
            out.append(os.path.join(root, os.path.relpath(lower, src)))
        return out

    def supports_shifting(self) -> bool:
        if self._supports_shifting is None:
            self._supports_shifting = self._feature(
                "idmapped-lower-dir", self._probe_idmapped_lowers
            )
        return self._supports_shifting

    def _probe_idmapped_lowers(self) -> bool:
        """Go's ``supportsIdmappedLowerLayers``: an overlay over an ID-mapped lower."""
        from ..records import IDMap
        from ._userns import user_namespace

        with self._scratch() as d:
            for sub in ("lower", "upper", "work", "merged", "mapped"):
                os.mkdir(os.path.join(d, sub), 0o700)
            mapped = os.path.join(d, "mapped")
            try:
                with user_namespace((IDMap(0, 0, 1),), (IDMap(0, 0, 1),)) as userns:
                    _native.idmapped_mount(os.path.join(d, "lower"), mapped, userns)
                try:
                    _native.overlay_mount(
                        os.path.join(d, "merged"),
                        [mapped],
                        upper=os.path.join(d, "upper"),
                        work=os.path.join(d, "work"),
                    )
                    _native.unmount(os.path.join(d, "merged"))
                finally:
                    _native.unmount(mapped)
            except OSError:
                return False
            return True

    @contextlib.contextmanager
    def _view(self, layer_id: str | None) -> Iterator[str | None]:
        """A private read-only mount of the layer's merged tree (not its ``merged`` dir,
        which a container may mount at the same time)."""
        if layer_id is None:
            yield None
            return
        with self._scratch("view") as d:
            target = os.path.join(d, "view")
            os.mkdir(target, 0o700)
            self._mount(layer_id, target, MountOptions(options=("ro",)))
            try:
                yield target
            finally:
                self._unmount(target)

    def put(self, layer_id: str) -> None:
        d = self._dir(layer_id)[0]
        merged = os.path.join(d, "merged")
        self._unmount(merged)
        with contextlib.suppress(FileNotFoundError, OSError):
            os.rmdir(merged)

    def cleanup(self) -> None:
        if not self.skip_mount_home and self.home in mountpoints():
            _native.unmount(self.home)

    def status(self) -> list[tuple[str, str]]:
        return [
            ("Backing Filesystem", self.backing_fs),
            ("Supports d_type", str(self.supports_dtype).lower()),
            ("Native Overlay Diff", str(self.native_diff).lower()),
            ("Using metacopy", str(self.using_metacopy).lower()),
        ]

    # -- contents ---------------------------------------------------------------------------

    supports_staging = True

    def _staging_dir(self, kind: str = "") -> str:
        """A new directory ``tempdirs/<pid>-<kind><random>`` (see :data:`STAGING_DIR`)."""
        import tempfile

        root = os.path.join(self.home, STAGING_DIR)
        prefix = f"{os.getpid()}-{kind}"
        while True:
            try:
                return tempfile.mkdtemp(prefix=prefix, dir=root)
            except FileNotFoundError:
                pass
            # tempdirs/ is missing (or another process's _scratch() removed it just now,
            # being done with it when it was empty).
            try:
                os.mkdir(root, 0o700)
            except FileExistsError:
                pass

    def clean_staging(self) -> None:
        """Remove staging directories left by processes that no longer exist."""
        root = os.path.join(self.home, STAGING_DIR)
        try:
            names = os.listdir(root)
        except FileNotFoundError:
            return
        for name in names:
            pid = name.split("-", 1)[0]
            if pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
                # A feature probe killed mid-way leaves its mounts (merged/, and mapped/
                # under it).
                remove_all(os.path.join(root, name))

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
        directory = self._staging_dir()
        diff = os.path.join(directory, "diff")
        ts = tar_split_path or os.path.join(directory, "tar-split.gz")
        try:
            os.mkdir(diff, _DEFAULT_PERMS)
            os.chmod(diff, _DEFAULT_PERMS)
            result = self._apply_into(
                diff, self.whiteout_format, source, uid_map, gid_map, ts, progress, limits
            )
        except BaseException:
            _native.remove_tree(directory)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(ts)
            raise
        return directory, diff, ts, replace(result, size=_native.dir_size(diff))

    def adopt_staged(self, layer_id: str, diff_dir: str) -> None:
        target = os.path.join(self._dir(layer_id)[0], "diff")
        os.rmdir(target)
        os.rename(diff_dir, target)

    def _is_parent(self, layer_id: str, parent: str | None) -> bool:
        d = self._dir(layer_id)[0]
        text = self._read(os.path.join(d, _LOWER_FILE)) or ""
        if not parent:
            return not text
        parent_link = self._read(os.path.join(self._dir(parent)[0], "link"))
        first = text.split(":")[0] if text else ""
        return bool(parent_link) and first == f"{_LINK_DIR}/{(parent_link or '').strip()}"

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
        target = self.layer_dir(layer_id)
        result = self._apply_into(
            target, self.whiteout_format, source, uid_map, gid_map, tar_split_path, progress, limits
        )
        # Go's overlay ApplyDiff reports the size of the diff directory.
        return replace(result, size=_native.dir_size(target))

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

        maps = (
            idmaps_to_tuples(uid_map) or None,
            idmaps_to_tuples(gid_map) or None,
            idmaps_to_tuples(parent_uid_map) or None,
            idmaps_to_tuples(parent_gid_map) or None,
        )
        if self.native_diff and self._is_parent(layer_id, parent):
            diff = self.layer_dir(layer_id)
            changes, _ = archive._changes_and_size(diff, None, self.lower_dirs(layer_id), *maps)
            return changes, _native.dir_size(diff)
        return self._naive_changes(layer_id, parent, maps)

    def _naive_changes(
        self, layer_id: str, parent: str | None, maps: tuple[object, ...]
    ) -> tuple[list[Change], int]:
        from .. import archive  # on first use of layer contents

        with self._view(layer_id) as top, self._view(parent) as below:
            assert top is not None
            return archive._changes_and_size(top, below, None, *maps)  # type: ignore[arg-type]

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

        maps = {
            "uid_map": idmaps_to_tuples(uid_map) or None,
            "gid_map": idmaps_to_tuples(gid_map) or None,
            "parent_uid_map": idmaps_to_tuples(parent_uid_map) or None,
            "parent_gid_map": idmaps_to_tuples(parent_gid_map) or None,
        }
        if self.native_diff and self._is_parent(layer_id, parent):
            archive.diff(
                self.layer_dir(layer_id),
                out,
                overlay=True,
                lowers=self.lower_dirs(layer_id),
                compression=compression,  # type: ignore[arg-type]
                **maps,  # type: ignore[arg-type]
            )
            return
        with self._view(layer_id) as top, self._view(parent) as below:
            assert top is not None
            archive.diff(top, out, below, compression=compression, **maps)  # type: ignore[arg-type]
