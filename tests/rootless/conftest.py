"""A real unprivileged user for the rootless tests, made once per session.

``rootless_user`` creates ``csrootless`` (``useradd``, 65536 subordinate UIDs and GIDs in
``/etc/subuid``/``/etc/subgid``) and ``csnoranges`` (none), and makes the interpreter and
this checkout reachable for them: the interpreter's prefix (under ``/root`` on the CI
machine, mode 0700) is bind-mounted read-only at ``/tmp/cs-rootless-python``; nothing is
chmod-ed except ``/dev/fuse``, set to Debian's usual 0666 for fuse-overlayfs (without udev
it is 0600) and restored afterwards. Everything is undone at the end of the session.

``rl`` (per test) gives that user a fresh ``XDG_RUNTIME_DIR`` and an empty store, and
afterwards stops podman's pause process if the test started one and removes what the user
left.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

PY_MOUNT = Path("/tmp/cs-rootless-python")
USER = "csrootless"
NO_RANGES_USER = "csnoranges"
SUBID_COUNT = 65536
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass
class User:
    """An unprivileged user and how to run things as them."""

    name: str
    uid: int
    gid: int
    home: Path
    python: str
    env_base: dict[str, str]
    sub_start: int = 0  # 0: no subordinate ranges
    runtime_dir: Path | None = None
    extra_env: dict[str, str] = field(default_factory=dict)

    def env(self, **extra: str) -> dict[str, str]:
        env = {**self.env_base, **self.extra_env, **extra}
        if self.runtime_dir is not None and "XDG_RUNTIME_DIR" not in extra:
            env.setdefault("XDG_RUNTIME_DIR", str(self.runtime_dir))
        return {k: v for k, v in env.items() if v != ""}

    def argv(self, args: Sequence[str], env: dict[str, str]) -> list[str]:
        return [
            "setpriv",
            f"--reuid={self.uid}",
            f"--regid={self.gid}",
            "--init-groups",
            "--reset-env",
            "env",
            "-i",
            *(f"{k}={v}" for k, v in env.items()),
            *args,
        ]

    def run(
        self,
        *args: str,
        input: bytes | None = None,
        check: bool = True,
        env: dict[str, str] | None = None,
        **extra: str,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``args`` as the user (in ``$HOME``) with ``env`` and ``extra`` added to
        their environment (an empty value unsets), capturing text output."""
        proc = subprocess.run(
            self.argv(args, self.env(**(env or {}), **extra)),
            input=input.decode() if input is not None else None,
            capture_output=True,
            text=True,
            cwd=self.home,
            check=False,
        )
        if check and proc.returncode:
            raise AssertionError(
                f"{list(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
            )
        return proc

    def cs(
        self, *args: str, check: bool = True, env: dict[str, str] | None = None, **extra: str
    ) -> subprocess.CompletedProcess[str]:
        """Our ``containers-storage`` as the user."""
        env = {**(env or {}), **extra}
        return self.run(self.python, "-m", "containers_storage", *args, check=check, env=env)

    def popen(self, *args: str, **env: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.argv(args, self.env(**env)),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=self.home,
        )

    def put(self, name: str, data: bytes | str) -> Path:
        """Write a file the user owns in ``~/work``; returns its path."""
        work = self.home / "work"
        if not work.exists():
            work.mkdir(mode=0o755)
            os.chown(work, self.uid, self.gid)
        path = work / name
        path.write_bytes(data.encode() if isinstance(data, str) else data)
        os.chown(path, self.uid, self.gid)
        return path

    @property
    def graph_root(self) -> Path:
        return self.home / ".local" / "share" / "containers" / "storage"

    def host_id(self, container_id: int) -> int:
        """The host UID a file owned by ``container_id`` in the namespace has."""
        return self.uid if container_id == 0 else self.sub_start + container_id - 1


def _free_subid_start() -> int:
    end = 200000
    for path in ("/etc/subuid", "/etc/subgid"):
        with contextlib.suppress(FileNotFoundError):
            for line in Path(path).read_text().splitlines():
                parts = line.split(":")
                if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
                    end = max(end, int(parts[1]) + int(parts[2]))
    return end


def _set_subids(name: str, start: int | None) -> None:
    for path in ("/etc/subuid", "/etc/subgid"):
        p = Path(path)
        lines = p.read_text().splitlines() if p.exists() else []
        lines = [line for line in lines if not line.startswith(f"{name}:")]
        if start is not None:
            lines.append(f"{name}:{start}:{SUBID_COUNT}")
        p.write_text("".join(f"{line}\n" for line in lines))


def _remove_user(name: str) -> None:
    with contextlib.suppress(KeyError):
        home = Path(pwd.getpwnam(name).pw_dir)
        subprocess.run(["userdel", "-f", name], capture_output=True, check=False)
        shutil.rmtree(home, ignore_errors=True)
    _set_subids(name, None)


def _make_user(name: str, ranges: bool, python: str, env: dict[str, str]) -> User:
    _remove_user(name)
    subprocess.run(
        ["useradd", "-m", "-U", "-K", "SUB_UID_COUNT=0", "-K", "SUB_GID_COUNT=0", name],
        check=True,
        capture_output=True,
    )
    start = _free_subid_start() if ranges else None
    _set_subids(name, start)
    pw = pwd.getpwnam(name)
    home = Path(pw.pw_dir)
    user_env = {**env, "HOME": str(home), "USER": name, "LOGNAME": name, "SHELL": "/bin/sh"}
    return User(name, pw.pw_uid, pw.pw_gid, home, python, user_env, start or 0)


def _python_for_users() -> tuple[str, dict[str, str], bool]:
    """An interpreter path the users can run, its environment, and whether we mounted it."""
    prefix = Path(sys.base_prefix).resolve()
    exe = Path(sys.executable).resolve()
    env = {"PATH": PATH, "LANG": "C.UTF-8"}
    probe = [
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "env",
        str(exe),
        "-c",
        "",
    ]
    if subprocess.run(probe, capture_output=True, check=False).returncode == 0:
        return str(exe), env, False
    PY_MOUNT.mkdir(exist_ok=True)
    subprocess.run(["mount", "--bind", "-o", "ro", str(prefix), str(PY_MOUNT)], check=True)
    env["LD_LIBRARY_PATH"] = str(PY_MOUNT / "lib")
    rel = exe.relative_to(prefix) if exe.is_relative_to(prefix) else Path("bin") / exe.name
    return str(PY_MOUNT / rel), env, True


def _package_path(mounted: bool) -> str:
    """The directory holding the package these tests import (the checkout's ``python/`` when
    PYTHONPATH names it, site-packages when it is installed, as in CI), as the users see
    it."""
    import containers_storage

    root = Path(containers_storage.__file__).resolve().parent.parent
    prefix = Path(sys.base_prefix).resolve()
    if mounted and root.is_relative_to(prefix):
        return str(PY_MOUNT / root.relative_to(prefix))
    return str(root)


def _site_packages_path() -> str:
    """Where the interpreter's third-party packages are (urllib3), seen through the mount."""
    import sysconfig

    purelib = Path(sysconfig.get_paths()["purelib"]).resolve()
    prefix = Path(sys.base_prefix).resolve()
    if purelib.is_relative_to(prefix):
        return str(PY_MOUNT / purelib.relative_to(prefix))
    return str(purelib)


@pytest.fixture(scope="session")
def rootless_users() -> Iterator[tuple[User, User]]:
    """(user with subordinate ranges, user without), both able to run this checkout."""
    if os.geteuid() != 0:
        pytest.skip("needs root (to create the users)")
    for tool in ("useradd", "setpriv", "newuidmap", "newgidmap"):
        if shutil.which(tool) is None:
            if os.environ.get("CS_REQUIRE_ALL") == "1":
                pytest.fail(f"needs {tool} (Debian: passwd, util-linux, uidmap)")
            pytest.skip(f"needs {tool}")
    python, env, mounted = _python_for_users()
    env["PYTHONPATH"] = _package_path(mounted)
    if mounted:
        env["PYTHONPATH"] = f"{env['PYTHONPATH']}:{_site_packages_path()}"
    fuse_mode = os.stat("/dev/fuse").st_mode & 0o777 if os.path.exists("/dev/fuse") else None
    try:
        if fuse_mode is not None:
            os.chmod("/dev/fuse", 0o666)
        users = (
            _make_user(USER, True, python, env),
            _make_user(NO_RANGES_USER, False, python, env),
        )
        yield users
    finally:
        for name in (USER, NO_RANGES_USER):
            _remove_user(name)
        if fuse_mode is not None:
            os.chmod("/dev/fuse", fuse_mode)
        if mounted:
            subprocess.run(["umount", "-l", str(PY_MOUNT)], check=False)
            with contextlib.suppress(OSError):
                PY_MOUNT.rmdir()


def _stop_pause_process(user: User) -> None:
    if user.runtime_dir is None:
        return
    pid_file = user.runtime_dir / "libpod" / "tmp" / "pause.pid"
    with contextlib.suppress(OSError, ValueError):
        pid = int(pid_file.read_text().strip())
        if os.stat(f"/proc/{pid}").st_uid == user.uid:
            os.kill(pid, signal.SIGKILL)


def _fresh(user: User) -> User:
    """A new ``XDG_RUNTIME_DIR`` (short: podman's run root must stay under 50 bytes)."""
    import tempfile

    tmp = Path(tempfile.mkdtemp(prefix="csrl-", dir="/tmp"))
    os.chmod(tmp, 0o755)
    runtime = tmp / "run"
    runtime.mkdir(mode=0o700)
    os.chown(runtime, user.uid, user.gid)
    user.runtime_dir = runtime
    user.extra_env = {}
    return user


def _wipe(user: User) -> None:
    _stop_pause_process(user)
    for path in (
        *((user.runtime_dir.parent,) if user.runtime_dir else ()),
        user.home / ".local",
        user.home / "work",
        user.home / ".config",
        user.home / "rundir",
        Path(f"/tmp/containers-user-{user.uid}"),
        Path(f"/tmp/podman-run-{user.uid}"),
        Path(f"/run/user/{user.uid}"),
    ):
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def rl(rootless_users: tuple[User, User]) -> Iterator[User]:
    """The user with subordinate ranges, with a fresh XDG_RUNTIME_DIR and an empty store."""
    _wipe(rootless_users[0])
    user = _fresh(rootless_users[0])
    try:
        yield user
    finally:
        _wipe(user)


@pytest.fixture
def rl_noranges(rootless_users: tuple[User, User]) -> Iterator[User]:
    """The user without subordinate ranges, with a fresh XDG_RUNTIME_DIR."""
    _wipe(rootless_users[1])
    user = _fresh(rootless_users[1])
    try:
        yield user
    finally:
        _wipe(user)
