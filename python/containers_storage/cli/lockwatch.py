"""Say which lock file a command waits for, when another process holds it.

Go's CLI waits silently on a store locked by another process. Ours, after a second, names
the lock file and its holder on stderr. A watcher thread reads ``/proc/locks``: a line
``N: -> POSIX ADVISORY WRITE <our pid> MAJ:MIN:INODE ...`` means we are blocked in
``fcntl(F_SETLKW)`` on that inode; the store's lock files are searched for it. Nothing is
opened or locked, so the watcher cannot disturb the locks themselves (closing any descriptor
of a lock file would drop our own record locks on it).
"""

from __future__ import annotations

import _thread
import os
import sys
from collections.abc import Iterable
from typing import TextIO

__all__ = ["LockWatch", "blocked_on"]

PROC_LOCKS = "/proc/locks"


def blocked_on(pid: int, text: str) -> list[tuple[int, int, int, int | None]]:
    """What ``pid`` waits for, from ``/proc/locks`` text: ``(major, minor, inode, holder)``
    per lock, ``holder`` being a process that holds it (None when not listed)."""
    waits: list[tuple[str, tuple[int, int, int]]] = []
    holders: dict[tuple[int, int, int], int] = {}
    for line in text.splitlines():
        fields = line.split()
        waiting = len(fields) > 1 and fields[1] == "->"
        if waiting:
            fields = [fields[0], *fields[2:]]
        # N: POSIX ADVISORY WRITE PID MAJ:MIN:INODE START END
        if len(fields) < 6:
            continue
        try:
            who = int(fields[4])
            major, minor, inode = fields[5].split(":")
            key = (int(major, 16), int(minor, 16), int(inode))
        except ValueError:
            continue
        if waiting:
            if who == pid:
                waits.append((fields[0], key))
        elif who != pid:
            holders.setdefault(key, who)
    return [(*key, holders.get(key)) for _n, key in waits]


def _lock_files(roots: Iterable[str]) -> dict[tuple[int, int, int], str]:
    """The store's lock files by (major, minor, inode): ``*.lock`` two levels down, and the
    digest locks of ``<driver>-locks`` directories."""
    found: dict[tuple[int, int, int], str] = {}

    def add(path: str) -> None:
        try:
            st = os.stat(path)
        except OSError:
            return
        found.setdefault((os.major(st.st_dev), os.minor(st.st_dev), st.st_ino), path)

    for root in roots:
        try:
            top = list(os.scandir(root))
        except OSError:
            continue
        for entry in top:
            if entry.name.endswith(".lock"):
                add(entry.path)
            elif entry.is_dir(follow_symlinks=False):
                try:
                    inner = list(os.scandir(entry.path))
                except OSError:
                    continue
                for sub in inner:
                    if sub.name.endswith(".lock") or entry.name.endswith("-locks"):
                        add(sub.path)
    return found


def _describe(pid: int | None) -> str:
    if pid is None:
        return "another process"
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
        name = os.path.basename(os.fsdecode(argv[0])) if argv and argv[0] else ""
    except OSError:
        name = ""
    return f"process {pid} ({name})" if name else f"process {pid}"


class LockWatch:
    """A daemon thread that reports, once per lock, a wait longer than ``delay`` seconds.

    Args:
        roots: Where the store's lock files are (graph root, run root, image stores).
        out: Where to report (stderr).
        delay: How long a wait goes unreported.
        interval: How often to look after that.
        prog: The name messages start with.
    """

    def __init__(
        self,
        roots: Iterable[str],
        out: TextIO | None = None,
        delay: float = 1.0,
        interval: float = 0.25,
        prog: str = "containers-storage",
    ) -> None:
        self.roots = [r for r in roots if r]
        self.out = out if out is not None else sys.stderr
        self.delay = delay
        self.interval = interval
        self.prog = prog
        self.reported: set[tuple[int, int, int]] = set()
        # Held until stop(): the watcher's timed waits on it end early when it is released.
        # (_thread, not threading: starting a threading.Thread waits for the thread to run,
        # which every command would pay for.)
        self._stop = _thread.allocate_lock()
        self._stop.acquire()
        self._stopped = False

    def start(self) -> LockWatch:
        """Start watching (a daemon thread); returns self."""
        _thread.start_new_thread(self._run, ())
        return self

    def stop(self) -> None:
        """Stop watching (the thread ends at once if it is waiting)."""
        if not self._stopped:
            self._stopped = True
            self._stop.release()

    def check(self) -> None:
        """Look once, and report any new wait."""
        try:
            with open(PROC_LOCKS, encoding="ascii", errors="replace") as f:
                text = f.read()
        except OSError:
            return
        waits = [w for w in blocked_on(os.getpid(), text) if w[:3] not in self.reported]
        if not waits:
            return
        files = _lock_files(self.roots)
        for major, minor, inode, holder in waits:
            key = (major, minor, inode)
            self.reported.add(key)
            path = files.get(key, f"inode {inode} on device {major}:{minor}")
            self.out.write(
                f"{self.prog}: waiting for the lock on {path}, held by {_describe(holder)}\n"
            )
            self.out.flush()

    def _run(self) -> None:
        if self._stop.acquire(timeout=self.delay):
            return
        while True:
            try:
                self.check()
            except Exception:  # never let the watcher disturb the command
                return
            if self._stop.acquire(timeout=self.interval):
                return
