"""Rootless use: the user namespace a store's owner must be in (Go's ``pkg/unshare``).

An ordinary user's store holds files owned by the user's subordinate IDs and overlay mounts,
so its commands run as root of a user namespace whose maps come from ``/etc/subuid`` and
``/etc/subgid`` (through the setuid ``newuidmap``/``newgidmap``), in a mount namespace of
their own. :func:`maybe_reexec` puts the running program there: it joins podman's pause
process when there is one (so podman and this package see the same namespace and mounts),
else re-executes the interpreter with the same arguments in a new namespace, as podman's and
buildah's ``MaybeReexecUsingUserNamespace`` do.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the rest is imported when a namespace is entered (start-up time)
    import ctypes
    from collections.abc import Sequence

    from .records import IDMap

__all__ = [
    "ROOTLESS_GID_ENV",
    "ROOTLESS_UID_ENV",
    "USERNS_ENV",
    "in_user_namespace",
    "is_rootless",
    "join_pause_process",
    "maybe_reexec",
    "namespace_maps",
    "pause_pid_file",
    "rootless_gid",
    "rootless_uid",
    "run_in_namespace",
    "single_mapping",
    "sub_id_ranges",
]

#: The user's UID and GID outside the namespace, for code running inside it.
ROOTLESS_UID_ENV = "_CONTAINERS_ROOTLESS_UID"
ROOTLESS_GID_ENV = "_CONTAINERS_ROOTLESS_GID"
#: Set (to anything) in a namespace entered for rootless use: no second re-exec.
USERNS_ENV = "_CONTAINERS_USERNS_CONFIGURED"
#: Set when the namespace maps only the user's own IDs: the store then ignores chown errors.
SINGLE_MAPPING_ENV = "_CONTAINERS_STORAGE_SINGLE_MAPPING"

_CLONE_NEWNS = 0x00020000
_CLONE_NEWUSER = 0x10000000
_CAP_SYS_ADMIN = 21
_PR_SET_PDEATHSIG = 1


def _atoi(text: str) -> int:
    """Go's ``strconv.Atoi`` with the error dropped (a bad number is 0)."""
    try:
        return int(text, 10)
    except ValueError:
        return 0


def rootless_uid() -> int:
    """Go's ``GetRootlessUID``: ``$_CONTAINERS_ROOTLESS_UID``, else the real UID."""
    env = os.environ.get(ROOTLESS_UID_ENV, "")
    return _atoi(env) if env else os.getuid()


def rootless_gid() -> int:
    """``$_CONTAINERS_ROOTLESS_GID``, else the rootless UID's value, else the effective
    GID (as podman's ``GetRootlessGID``)."""
    env = os.environ.get(ROOTLESS_GID_ENV, "") or os.environ.get(ROOTLESS_UID_ENV, "")
    return _atoi(env) if env else os.getegid()


def in_user_namespace() -> bool:
    """Whether this process is in a user namespace other than the initial one (its
    ``uid_map`` is not the full ``0 0 4294967295``; Go's ``RunningInUserNS``)."""
    try:
        with open("/proc/self/uid_map") as f:
            return f.read().split() != ["0", "0", "4294967295"]
    except OSError:
        return False


def _has_cap_sys_admin() -> bool:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("CapEff:"):
                return bool(int(line.split()[1], 16) >> _CAP_SYS_ADMIN & 1)
    return False


def is_rootless() -> bool:
    """Go's ``unshare.IsRootless``, memoised for the process as Go does: the rootless UID
    is not 0, or a rootless namespace was entered (``$_CONTAINERS_USERNS_CONFIGURED``), or
    CAP_SYS_ADMIN is missing, or the user namespace does not map every ID. The same value
    decides the overlay xattr prefix in the native archive code."""
    from . import _native

    return _native.is_rootless()


def sub_id_ranges(user: str, uid: int, path: str = "/etc/subuid") -> list[IDMap]:
    """The user's ranges in ``/etc/subuid`` (or ``/etc/subgid``) as host ranges
    (``container_id`` 0), sorted by start; lines name the user or its numeric ID."""
    from .records import IDMap

    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return []
    out = []
    for line in lines:
        parts = line.strip().split(":")
        if len(parts) != 3 or parts[0] not in (user, str(uid)):
            continue
        if parts[1].isdigit() and parts[2].isdigit() and int(parts[2]) > 0:
            out.append(IDMap(0, int(parts[1]), int(parts[2])))
    return sorted(out, key=lambda m: m.host_id)


def namespace_maps(own: int, ranges: Sequence[IDMap]) -> tuple[IDMap, ...]:
    """The namespace's map: the user's own ID as 0, then each range after the last
    (Go's ``MaybeReexecUsingUserNamespace``)."""
    from .records import IDMap

    out = [IDMap(0, own, 1)]
    for r in ranges:
        out.append(IDMap(out[-1].container_id + out[-1].size, r.host_id, r.size))
    return tuple(out)


def single_mapping() -> bool:
    """Whether the namespace this process is in maps only one UID (no subordinate
    ranges): a store then has to ignore chown errors."""
    if os.environ.get(SINGLE_MAPPING_ENV):
        return True
    try:
        with open("/proc/self/uid_map") as f:
            rows = [line.split() for line in f if line.strip()]
    except OSError:
        return False
    # One row mapping one ID is never the initial namespace's full map: no second read of
    # the file through in_user_namespace() is needed.
    return len(rows) == 1 and rows[0][2] == "1"


def pause_pid_file() -> str | None:
    """podman's pause process file, ``$XDG_RUNTIME_DIR/libpod/tmp/pause.pid`` (None
    without ``XDG_RUNTIME_DIR``, as podman's own shortcut)."""
    runtime = os.environ.get("XDG_RUNTIME_DIR", "")
    return os.path.join(runtime, "libpod", "tmp", "pause.pid") if runtime else None


def _libc() -> ctypes.CDLL:
    import ctypes

    return ctypes.CDLL(None, use_errno=True)


def _check(ret: int, what: str) -> None:
    import ctypes

    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _become_root(uid: int, gid: int) -> None:
    os.environ[USERNS_ENV] = os.environ.get(USERNS_ENV) or "done"
    os.environ[ROOTLESS_UID_ENV] = str(uid)
    os.environ[ROOTLESS_GID_ENV] = str(gid)
    os.setresgid(0, 0, 0)
    os.setresuid(0, 0, 0)


def join_pause_process() -> bool:
    """Join podman's pause process (its user and mount namespaces) in place, as podman's
    start-up does; True when joined. False when there is no pause process to join; errors
    after entering its user namespace are raised."""
    path = pause_pid_file()
    if path is None:
        return False
    try:
        with open(path) as f:
            pid = int(f.read().strip())
        os.kill(pid, 0)
        userns = os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    except (OSError, ValueError):
        return False
    uid, gid = os.getuid(), os.getgid()
    cwd = os.getcwd()
    libc = _libc()
    try:
        mntns = os.open(f"/proc/{pid}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
        try:
            if libc.setns(userns, _CLONE_NEWUSER) != 0:
                return False
            _check(libc.setns(mntns, _CLONE_NEWNS), f"cannot join mount namespace for {pid}")
        finally:
            os.close(mntns)
    finally:
        os.close(userns)
    _become_root(uid, gid)
    os.chdir(cwd)
    return True


def _warn(message: str) -> None:
    sys.stderr.write(f'time="{_now()}" level=warning msg="{message}"\n')
    sys.stderr.flush()


def _now() -> str:
    from datetime import datetime

    return datetime.now().astimezone().isoformat(timespec="seconds")


def _write_map(pid: int, name: str, text: str) -> None:
    with open(f"/proc/{pid}/{name}", "w") as f:
        f.write(text)


def _set_maps(pid: int, uid: int, gid: int, user: str) -> bool:
    """Write the child's maps; True when it got only the single mapping."""
    import shutil
    import subprocess

    uids = sub_id_ranges(user, uid, "/etc/subuid")
    gids = sub_id_ranges(user, uid, "/etc/subgid")
    if uids and gids:
        try:
            for tool, maps in (
                ("newuidmap", namespace_maps(uid, uids)),
                ("newgidmap", namespace_maps(gid, gids)),
            ):
                args = [str(n) for m in maps for n in (m.container_id, m.host_id, m.size)]
                proc = subprocess.run(
                    [shutil.which(tool) or tool, str(pid), *args],
                    stdin=subprocess.DEVNULL,
                    capture_output=True,
                    text=True,
                    check=False,
                )
                if proc.returncode:
                    err = proc.stderr.strip()
                    _warn(f"Error running {tool}: exit status {proc.returncode}: {err}")
                    raise OSError
            return False
        except OSError:
            _warn("Falling back to single mapping")
    else:
        _warn(
            f"Found no UID/GID ranges set aside for user {user!r} in /etc/subuid and "
            "/etc/subgid: using a single mapping (only your own UID and GID; other file "
            "owners in images are dropped, as with ignore_chown_errors)"
        )
    _write_map(pid, "uid_map", f"0 {uid} 1\n")
    _write_map(pid, "setgroups", "deny")
    _write_map(pid, "gid_map", f"0 {gid} 1\n")
    return True


def run_in_namespace(argv: Sequence[str], executable: str | None = None) -> int:
    """Run ``argv`` as root of a new user and mount namespace mapped from the user's
    subordinate ranges, wait for it and return its exit status (128+n after signal n).
    The child gets ``$_CONTAINERS_USERNS_CONFIGURED``, ``$_CONTAINERS_ROOTLESS_UID``/``GID``
    and ``$BUILDAH_ISOLATION=rootless``."""
    import pwd
    import signal

    uid, gid = os.getuid(), os.getgid()
    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:
        user = str(uid)
    os.environ.setdefault("BUILDAH_ISOLATION", "rootless")
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:  # the child: unshare, wait for the maps, become root, exec
        try:
            os.close(ready_r)
            os.close(go_w)
            libc = _libc()
            # As Go's Pdeathsig: the child dies with the parent (kill -9 of the command).
            _check(libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "prctl")
            if os.getppid() != parent:
                os._exit(1)
            _check(libc.unshare(_CLONE_NEWUSER), "Error during unshare(CLONE_NEWUSER)")
            os.write(ready_w, b"1")
            answer = os.read(go_r, 1)
            if answer not in (b"0", b"1"):
                os._exit(1)
            if answer == b"1":
                os.environ[SINGLE_MAPPING_ENV] = "1"
            _become_root(uid, gid)
            _check(libc.unshare(_CLONE_NEWNS), "Error during unshare(CLONE_NEWNS)")
            os.execvp(executable or argv[0], list(argv))
        except OSError as e:
            sys.stderr.write(f"{e}\n")
        finally:
            os._exit(127)
    os.close(ready_w)
    os.close(go_r)
    try:
        if os.read(ready_r, 1) != b"1":
            os.waitpid(pid, 0)
            return 1
        try:
            single = _set_maps(pid, uid, gid, user)
        except OSError as e:
            _warn(f"cannot set up the user namespace: {e}")
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return 1
        os.write(go_w, b"1" if single else b"0")
    finally:
        os.close(ready_r)
        os.close(go_w)
    return _wait_forwarding(pid)


def _wait_forwarding(pid: int) -> int:
    """Wait for ``pid``, forwarding HUP, INT and TERM to it, as Go's re-exec does."""
    import signal

    def forward(signum: int, _frame: object) -> None:
        os.kill(pid, signum)

    old = {s: signal.signal(s, forward) for s in (signal.SIGHUP, signal.SIGINT, signal.SIGTERM)}
    try:
        while True:
            try:
                _, status = os.waitpid(pid, 0)
                break
            except InterruptedError:
                continue
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.waitstatus_to_exitcode(status)


def maybe_reexec() -> None:
    """Put this program in the rootless user namespace if it is not there yet.

    Nothing happens for root (CAP_SYS_ADMIN in the initial namespace) or inside a
    namespace already entered. Otherwise podman's pause process is joined in place when it
    exists; else the interpreter is re-executed with the same arguments (``sys.orig_argv``)
    in a new user and mount namespace, and this process exits with the child's status.
    """
    if not _needs_namespace():
        return
    if join_pause_process():
        return
    argv = [sys.executable, *sys.orig_argv[1:]]
    sys.exit(run_in_namespace(argv, sys.executable))


def _needs_namespace() -> bool:
    if os.environ.get(USERNS_ENV):
        return False
    if os.geteuid() == 0 and (not in_user_namespace() or _has_cap_sys_admin()):
        return False
    return True
