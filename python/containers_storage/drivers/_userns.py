"""A user namespace with given ID maps, held by a file descriptor, for ID-mapped mounts."""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Iterator, Sequence

from ..records import IDMap

__all__ = ["user_namespace"]

_GUARD = 30.0


def _map_text(maps: Sequence[IDMap]) -> str:
    return "".join(f"{m.container_id} {m.host_id} {m.size}\n" for m in maps)


@contextlib.contextmanager
def user_namespace(uid_map: Sequence[IDMap], gid_map: Sequence[IDMap]) -> Iterator[int]:
    """Yield an fd of a new user namespace whose maps are ``uid_map``/``gid_map`` (as Go's
    ``createUsernsProcess``: a child unshares, we write its maps, keep the namespace's fd,
    and let the child go)."""
    proc = subprocess.Popen(
        ["unshare", "--user", "--", "sleep", "infinity"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        mine = os.readlink("/proc/self/ns/user")
        deadline = time.monotonic() + _GUARD
        while True:
            try:
                if os.readlink(f"/proc/{proc.pid}/ns/user") != mine:
                    break
            except FileNotFoundError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                raise OSError(f"could not create a user namespace: {err.strip()}")
            time.sleep(0.0005)
        with open(f"/proc/{proc.pid}/uid_map", "w") as f:
            f.write(_map_text(uid_map))
        with open(f"/proc/{proc.pid}/gid_map", "w") as f:
            f.write(_map_text(gid_map))
        fd = os.open(f"/proc/{proc.pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        proc.kill()
        proc.wait()
        if proc.stderr:
            proc.stderr.close()
    try:
        yield fd
    finally:
        os.close(fd)
