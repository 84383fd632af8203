"""Helpers the tests import by name: where the Go tools are, a guard against hangs, record
locks seen in /proc/locks, and Python child processes driven line by line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

#: Debian's Go containers-storage binary (ours is also called containers-storage on PATH).
GO_CONTAINERS_STORAGE = os.environ.get("GO_CONTAINERS_STORAGE", "/usr/bin/containers-storage")

#: Our CLI (the command; arguments follow).
OURS = (sys.executable, "-m", "containers_storage")

#: Debian's skopeo (built against containers/storage 1.43).
SKOPEO = os.environ.get("SKOPEO", "/usr/bin/skopeo")

#: A guard against hangs in tests that wait for another process: a test fails, instead of
#: hanging CI, when an expected event never comes. Not a performance limit.
HANG_GUARD = 120.0


def proc_locks_waiters(path: Path) -> set[int]:
    """PIDs blocked in fcntl waiting for a record lock on ``path`` (from /proc/locks)."""
    ino = path.stat().st_ino
    pids = set()
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        if len(fields) > 1 and fields[1] == "->":
            # "N: -> POSIX ADVISORY WRITE PID MAJ:MIN:INODE START END"
            dev_ino = fields[6]
            if int(dev_ino.rsplit(":", 1)[1]) == ino:
                pids.add(int(fields[5]))
    return pids


def proc_locks_holders(path: Path) -> set[int]:
    """PIDs holding a POSIX record lock on ``path`` (from /proc/locks)."""
    ino = path.stat().st_ino
    pids = set()
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        if len(fields) > 5 and fields[1] == "POSIX" and int(fields[5].rsplit(":", 1)[1]) == ino:
            pids.add(int(fields[4]))
    return pids


def wait_until_blocked(path: Path, pid: int) -> None:
    """Wait until process ``pid`` is blocked on a record lock of ``path``."""
    deadline = time.monotonic() + HANG_GUARD
    while pid not in proc_locks_waiters(path):
        if time.monotonic() > deadline:
            pytest.fail(f"process {pid} never blocked on {path}")
        time.sleep(0.01)


class Child:
    """A Python child process driven line by line over stdin/stdout."""

    def __init__(self, script: str, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", script, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def expect(self, want: str) -> str:
        """Read the next line (blocking, guarded) and check it."""
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        if line != want:
            _out, err = self.proc.communicate(timeout=HANG_GUARD)
            pytest.fail(f"child said {line!r}, expected {want!r}; stderr:\n{err}")
        return line

    def finish(self) -> tuple[int, str, str]:
        out, err = self.proc.communicate(timeout=HANG_GUARD)
        return self.proc.returncode, out, err

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate(timeout=HANG_GUARD)


def interrupt_when(proc: subprocess.Popen[Any], ready: Callable[[], bool]) -> None:
    """Send SIGINT (Ctrl-C) to ``proc`` as soon as ``ready()`` holds (polled every 10 ms);
    fail if the process ends first or ``ready()`` never holds."""
    deadline = time.monotonic() + HANG_GUARD
    while not ready():
        if proc.poll() is not None:
            pytest.fail(f"the child ended ({proc.returncode}) before it showed progress")
        if time.monotonic() > deadline:
            pytest.fail("the child never showed progress")
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)


#: The first lines of a Python child script that a test interrupts with SIGINT: they restore
#: Python's handler, since an ignored SIGINT (as a background CI shell has) is inherited
#: through exec and Python then leaves it ignored.
RESTORE_SIGINT = "import signal\nsignal.signal(signal.SIGINT, signal.default_int_handler)\n"


def run_interrupted(
    script: str, args: Sequence[str], ready: Callable[[], bool]
) -> tuple[int, str, str]:
    """Run ``script`` (after :data:`RESTORE_SIGINT`) in a Python child with ``args``, send it
    SIGINT as soon as ``ready()`` holds (:func:`interrupt_when`) and return its exit status,
    stdout and stderr; the child is killed if it does not end."""
    proc = subprocess.Popen(
        [sys.executable, "-c", RESTORE_SIGINT + script, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        interrupt_when(proc, ready)
        out, err = proc.communicate(timeout=HANG_GUARD)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.returncode, out, err
