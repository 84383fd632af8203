"""Store options: ``storage.conf``, the environment and defaults.

Follows containers/storage 1.43: the configuration file is ``$CONTAINERS_STORAGE_CONF``,
else (rootless) ``$XDG_CONFIG_HOME/containers/storage.conf`` or
``~/.config/containers/storage.conf``, else ``/etc/containers/storage.conf``, else
``/usr/share/containers/storage.conf``. ``STORAGE_DRIVER`` overrides the driver and
``STORAGE_OPTS`` (comma-separated) replaces the driver options.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from typing import Any

from ._strconv import go_quote
from ._struct import field, struct
from .idtools import parse_idmap
from .records import IDMap

__all__ = ["StoreOptions", "config_file", "rootless_runtime_dir"]

DEFAULT_GRAPH_ROOT = "/var/lib/containers/storage"
DEFAULT_RUN_ROOT = "/run/containers/storage"
SYSTEM_CONFIG = "/etc/containers/storage.conf"
DEFAULT_CONFIG = "/usr/share/containers/storage.conf"

_KNOWN = {
    "storage": {"driver", "runroot", "graphroot", "rootless_storage_path", "options"},
    "storage.options": {
        "additionalimagestores",
        "additionallayerstores",
        "size",
        "override_kernel_check",
        "remap-uids",
        "remap-gids",
        "remap-user",
        "remap-group",
        "root-auto-userns-user",
        "auto-userns-min-size",
        "auto-userns-max-size",
        "mount_program",
        "mountopt",
        "skip_mount_home",
        "ignore_chown_errors",
        "force_mask",
        "pull_options",
        "disable-volatile",
        "overlay",
        "vfs",
        "btrfs",
        "zfs",
        "aufs",
        "thinpool",
    },
    "storage.options.overlay": {
        "ignore_chown_errors",
        "mountopt",
        "mount_program",
        "size",
        "inodes",
        "skip_mount_home",
        "force_mask",
    },
    "storage.options.vfs": {"ignore_chown_errors"},
    "storage.options.btrfs": {"min_space", "size"},
    "storage.options.zfs": {"mountopt", "fsname", "size"},
    "storage.options.aufs": {"mountopt"},
    "storage.options.thinpool": {
        "autoextend_percent",
        "autoextend_threshold",
        "basesize",
        "blocksize",
        "directlvm_device",
        "directlvm_device_force",
        "fs",
        "log_level",
        "min_free_space",
        "mkfsarg",
        "mountopt",
        "size",
        "use_deferred_deletion",
        "use_deferred_removal",
        "xfs_nospace_max_retries",
        "metadatasize",
    },
}


def _rootless() -> bool:
    """Go's ``DefaultStoreOptionsAutoDetectUID``: rootless when the rootless UID
    (``$_CONTAINERS_ROOTLESS_UID``, else the real UID) is not 0."""
    from .unshare import rootless_uid

    return rootless_uid() != 0


def _home() -> str:
    """``$HOME``, else the rootless UID's home in the password database (Go's
    ``homedir.GetHomeDir``)."""
    home = os.environ.get("HOME", "")
    if home:
        return home
    import pwd

    from .unshare import rootless_uid

    try:
        return pwd.getpwuid(rootless_uid()).pw_dir
    except KeyError:
        raise OSError("cannot determine user's homedir") from None


def _user_config() -> str:
    """The rootless user's storage.conf path (Go's ``DefaultConfigFile(true)``)."""
    env = os.environ.get("CONTAINERS_STORAGE_CONF")
    if env:
        return env
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(_home(), ".config")
    return os.path.join(base, "containers", "storage.conf")


def _system_config() -> str:
    """The file Go's ``loadDefaultStoreOptions`` reads (it may not exist)."""
    env = os.environ.get("CONTAINERS_STORAGE_CONF")
    if env:
        return env
    xdg = os.environ.get("XDG_CONFIG_HOME")
    if xdg and os.path.exists(os.path.join(xdg, "containers", "storage.conf")):
        return os.path.join(xdg, "containers", "storage.conf")
    if os.path.exists(SYSTEM_CONFIG):
        return SYSTEM_CONFIG
    return DEFAULT_CONFIG


def config_file(rootless: bool | None = None) -> str:
    """The storage.conf that applies (it may not exist): for a rootless user their own
    file when it exists, else the system one."""
    if _rootless() if rootless is None else rootless:
        user = _user_config()
        if os.path.exists(user):
            return user
    return _system_config()


def _expand(path: str, uid: int) -> str:
    """Go's ``expandEnvPath``: ``$UID``, then the environment, then symlinks resolved
    when the path exists (else only cleaned)."""
    path = os.path.expandvars(path.replace("$UID", str(uid)))
    try:
        return os.path.realpath(path, strict=True)
    except OSError:
        return os.path.normpath(path)


def _owned_private(path: str) -> bool:
    """Go's runtime dir check: owned by the (namespace) UID, ``rwx`` for it, nothing for
    group and others' read/write."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return st.st_uid == os.getuid() and st.st_mode & 0o700 == 0o700 and not st.st_mode & 0o066


def rootless_runtime_dir(uid: int) -> str:
    """Go's ``getRootlessRuntimeDirIsolated``: ``$XDG_RUNTIME_DIR``; ``/run/user/<uid>``
    (only when ``/proc/1/comm`` is unreadable, as Go compares it with its newline);
    ``$TMPDIR/containers-user-<uid>``; ``$HOME/rundir``."""
    env = os.environ.get("XDG_RUNTIME_DIR", "")
    if env:
        try:
            return os.path.realpath(env, strict=True)
        except OSError:
            pass
    try:
        with open("/proc/1/comm") as f:
            systemd = f.read() == "systemd"
    except OSError:
        systemd = True
    run_user = f"/run/user/{uid}"
    if systemd and _owned_private(run_user):
        return run_user
    tmp = os.path.join(os.environ.get("TMPDIR") or "/tmp", f"containers-user-{uid}")
    try:
        os.mkdir(tmp, 0o700)
        return tmp
    except FileExistsError:
        if _owned_private(tmp):
            return tmp
    except OSError as e:
        warnings.warn(f"Failed to create temp directory for user: {e}", stacklevel=2)
    home = os.environ.get("HOME", "")
    if not home:
        raise OSError("neither XDG_RUNTIME_DIR nor temp dir nor HOME was set non-empty")
    return _expand(os.path.join(home, "rundir"), uid)


def _warn_unknown(table: Mapping[str, Any], prefix: str, path: str, bad: list[str]) -> None:
    known = _KNOWN.get(prefix)
    for key, value in table.items():
        name = f"{prefix}.{key}"
        if known is not None and key not in known:
            bad.append(name)
        elif isinstance(value, dict) and name in _KNOWN:
            _warn_unknown(value, name, path, bad)


@struct
class StoreOptions:
    """Where a store lives and how its driver is set up (Go ``types.StoreOptions``)."""

    graph_root: str = ""
    run_root: str = ""
    graph_driver_name: str = ""
    graph_driver_options: list[str] = field(default_factory=list)
    uid_map: tuple[IDMap, ...] = ()
    gid_map: tuple[IDMap, ...] = ()
    rootless_storage_path: str = ""
    pull_options: dict[str, str] = field(default_factory=dict)
    disable_volatile: bool = False
    root_auto_ns_user: str = ""
    auto_ns_min_size: int = 0
    auto_ns_max_size: int = 0

    @classmethod
    def default(cls, config: str | None = None) -> StoreOptions:
        """The options podman would use here: defaults, storage.conf, then environment
        (Go's ``DefaultStoreOptionsAutoDetectUID``; for a rootless user §1 of the rootless
        notes: their own storage.conf alone if it exists, else the system file's driver
        and ``rootless_storage_path`` with per-user roots)."""
        if _rootless() and config is None:
            return cls._rootless_default()
        opts = cls(graph_root=DEFAULT_GRAPH_ROOT, run_root=DEFAULT_RUN_ROOT)
        path = config or config_file(False)
        env_driver = os.environ.get("STORAGE_DRIVER", "")
        if os.path.exists(path):
            opts.load_config(path, False, driver_override=env_driver)
        opts._apply_env(env_driver, replace=True)
        return opts

    def _apply_env(self, env_driver: str, replace: bool) -> None:
        if env_driver:
            self.graph_driver_name = env_driver
        if "STORAGE_OPTS" in os.environ:
            # Go replaces the options whenever the variable is set, even to nothing (the
            # rootless defaults get a non-empty value appended instead).
            env_opts = [o for o in os.environ["STORAGE_OPTS"].split(",") if o]
            if replace:
                self.graph_driver_options = env_opts
            else:
                self.graph_driver_options = [*self.graph_driver_options, *env_opts]
        if self.graph_driver_name == "overlay2":
            warnings.warn(
                "Switching default driver from overlay2 to the equivalent overlay driver",
                stacklevel=3,
            )
            self.graph_driver_name = "overlay"

    @classmethod
    def _rootless_default(cls) -> StoreOptions:
        from .unshare import rootless_uid

        uid = rootless_uid()
        env_driver = os.environ.get("STORAGE_DRIVER", "")
        system = cls()
        system_path = _system_config()
        if os.path.exists(system_path):
            system.load_config(system_path, True)
        run_dir = rootless_runtime_dir(uid)
        run_root = os.path.join(run_dir, "containers")
        try:
            os.makedirs(run_root, mode=0o700, exist_ok=True)
        except OSError as e:
            raise OSError(f"unable to make rootless runtime: {e}") from e
        if system.rootless_storage_path:
            graph_root = _expand(system.rootless_storage_path, uid)
        else:
            data = os.environ.get("XDG_DATA_HOME") or os.path.join(_home(), ".local", "share")
            graph_root = _expand(os.path.join(data, "containers", "storage"), uid)
        user_path = _user_config()
        opts = cls(graph_root=graph_root, run_root=run_root)
        if os.path.exists(user_path):
            opts.load_config(user_path, True, driver_override=env_driver)
            opts.run_root = _expand(opts.run_root, uid) if opts.run_root else run_root
            if opts.graph_root:
                opts.graph_root = _expand(opts.graph_root, uid)
            elif opts.rootless_storage_path:
                opts.graph_root = _expand(opts.rootless_storage_path, uid)
            else:
                opts.graph_root = graph_root
            opts._apply_env(env_driver, replace=True)
            return opts
        # No user file: the system driver if rootless users can have it, else vfs; of the
        # system options only overlay's ignore_chown_errors.
        driver = system.graph_driver_name
        if driver not in ("btrfs", "overlay", "overlay2", "vfs"):
            driver = ""
        opts.graph_driver_name = {"overlay2": "overlay"}.get(
            env_driver or driver, env_driver or driver
        ) or "vfs"
        if opts.graph_driver_name == "overlay":
            opts.graph_driver_options = [
                o for o in system.graph_driver_options if "ignore_chown_errors" in o
            ]
        opts.pull_options = system.pull_options
        opts.rootless_storage_path = system.rootless_storage_path
        opts._apply_env("", replace=False)
        return opts

    def load_config(self, path: str, rootless: bool = False, driver_override: str = "") -> None:
        """Merge a storage.conf into these options (Go ``ReloadConfigurationFile``);
        ``driver_override`` (``$STORAGE_DRIVER``) replaces the file's driver before the
        driver-prefixed options are built, as Go does."""
        import tomllib  # only when a configuration file is read

        with open(path, "rb") as f:
            doc = tomllib.load(f)
        bad: list[str] = []
        for key, value in doc.items():
            if key != "storage":
                bad.append(key)
            elif isinstance(value, dict):
                _warn_unknown(value, "storage", path, bad)
        if bad:
            keys = "[" + " ".join(go_quote(k) for k in bad) + "]"  # Go's %q of a []string
            warnings.warn(f"Failed to decode the keys {keys} from {go_quote(path)}", stacklevel=3)
        storage = doc.get("storage", {})
        if driver := driver_override or storage.get("driver"):
            self.graph_driver_name = str(driver)
        if runroot := storage.get("runroot"):
            self.run_root = str(runroot)
        elif rootless:
            self.run_root = ""
        if graphroot := storage.get("graphroot"):
            self.graph_root = str(graphroot)
        elif rootless:
            self.graph_root = ""
        if path_ := storage.get("rootless_storage_path"):
            self.rootless_storage_path = str(path_)
        o = storage.get("options", {}) or {}
        drv = self.graph_driver_name
        opts: list[str] = []

        def add(key: str, value: Any, prefix: str | None = None) -> None:
            if value is None or value == "" or (value is False and key != "ignore_chown_errors"):
                return
            if isinstance(value, bool):
                value = "true" if value else "false"
            opts.append(f"{prefix if prefix is not None else drv}.{key}={value}")

        for store in o.get("additionalimagestores", []) or []:
            opts.append(f"{drv}.imagestore={store}")
        for store in o.get("additionallayerstores", []) or []:
            opts.append(f"{drv}.additionallayerstore={store}")
        for key in ("size", "mount_program", "skip_mount_home", "mountopt", "force_mask"):
            add(key, o.get(key))
        if "ignore_chown_errors" in o:
            add("ignore_chown_errors", o["ignore_chown_errors"])
        for table in ("overlay", "vfs", "btrfs", "zfs", "aufs", "thinpool"):
            sub = o.get(table)
            if isinstance(sub, dict) and (
                drv == table or (table == "overlay" and drv == "overlay2")
            ):
                for key, value in sub.items():
                    add(key, value, "overlay" if table == "overlay" else table)
        if o.get("remap-uids"):
            self.uid_map = parse_idmap(str(o["remap-uids"]), "remap-uids")
        if o.get("remap-gids"):
            self.gid_map = parse_idmap(str(o["remap-gids"]), "remap-gids")
        if isinstance(o.get("pull_options"), dict):
            self.pull_options = {str(k): str(v) for k, v in o["pull_options"].items()}
        self.disable_volatile = bool(o.get("disable-volatile", False))
        self.root_auto_ns_user = str(o.get("root-auto-userns-user", "") or "")
        self.auto_ns_min_size = int(o.get("auto-userns-min-size", 0) or 0)
        self.auto_ns_max_size = int(o.get("auto-userns-max-size", 0) or 0)
        self.graph_driver_options = opts
