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

__all__ = ["StoreOptions", "config_file"]

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
    return os.geteuid() != 0 or "_CONTAINERS_ROOTLESS_UID" in os.environ


def config_file(rootless: bool | None = None) -> str:
    """The storage.conf that applies (it may not exist)."""
    env = os.environ.get("CONTAINERS_STORAGE_CONF")
    if env:
        return env
    if _rootless() if rootless is None else rootless:
        base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
        user = os.path.join(base, "containers", "storage.conf")
        if os.path.exists(user):
            return user
    if os.path.exists(SYSTEM_CONFIG):
        return SYSTEM_CONFIG
    return DEFAULT_CONFIG


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
        """The options podman would use here: defaults, storage.conf, then environment."""
        rootless = _rootless()
        opts = cls()
        if rootless:
            data_home = os.environ.get("XDG_DATA_HOME") or os.path.join(
                os.path.expanduser("~"), ".local", "share"
            )
            opts.graph_root = os.path.join(data_home, "containers", "storage")
            runtime = os.environ.get("XDG_RUNTIME_DIR") or f"/run/user/{os.geteuid()}"
            opts.run_root = os.path.join(runtime, "containers")
        else:
            opts.graph_root = DEFAULT_GRAPH_ROOT
            opts.run_root = DEFAULT_RUN_ROOT
        path = config or config_file(rootless)
        env_driver = os.environ.get("STORAGE_DRIVER", "")
        if os.path.exists(path):
            opts.load_config(path, rootless, driver_override=env_driver)
        if env_driver:
            opts.graph_driver_name = env_driver
        if "STORAGE_OPTS" in os.environ:
            # Go replaces the options whenever the variable is set, even to nothing.
            env_opts = os.environ["STORAGE_OPTS"]
            opts.graph_driver_options = [o for o in env_opts.split(",") if o]
        if opts.graph_driver_name == "overlay2":
            warnings.warn(
                "Switching default driver from overlay2 to the equivalent overlay driver",
                stacklevel=2,
            )
            opts.graph_driver_name = "overlay"
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
        if not rootless:
            if runroot := storage.get("runroot"):
                self.run_root = str(runroot)
            if graphroot := storage.get("graphroot"):
                self.graph_root = str(graphroot)
        elif path_ := storage.get("rootless_storage_path"):
            self.rootless_storage_path = str(path_)
            self.graph_root = str(path_)
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
