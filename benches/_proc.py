"""Process plumbing shared by the benchmarks: timing a command under GNU time, and finding
what is still mounted below a scratch directory."""

from __future__ import annotations

import shlex
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

GNU_TIME = "/usr/bin/time"


class RunError(Exception):
    """A timed process failed; the message carries its exit status and stderr."""


@dataclass
class Sample:
    wall: float  # seconds, perf_counter around the whole process
    rss_kib: int  # GNU time %M
    cpu: float  # GNU time %U + %S: user and system seconds, every thread


def tail(path: Path, limit: int = 4000) -> str:
    """The last ``limit`` bytes of a file as text ("" when unreadable)."""
    try:
        data = path.read_bytes()
    except OSError:
        return ""
    return data[-limit:].decode("utf-8", "replace").strip()


def timed(cmd: list[str], logdir: Path, env: dict[str, str] | None = None) -> Sample:
    """Run cmd under GNU time; wall time from perf_counter, peak RSS from %M, CPU time
    from %U and %S. Its output goes to files in ``logdir``; a failure raises RunError."""
    tfile, out, err = logdir / "time.out", logdir / "stdout.out", logdir / "stderr.out"
    tfile.unlink(missing_ok=True)
    with open(out, "wb") as fout, open(err, "wb") as ferr:
        t0 = time.perf_counter()
        proc = subprocess.run(
            [GNU_TIME, "-f", "%e %M %U %S", "-o", str(tfile), *cmd],
            stdin=subprocess.DEVNULL,
            stdout=fout,
            stderr=ferr,
            env=env,
            check=False,
        )
        wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RunError(
            f"exit status {proc.returncode}: {shlex.join(cmd)}\n"
            f"--- stderr ---\n{tail(err)}\n--- stdout ---\n{tail(out, 1000)}"
        )
    last = tail(tfile).splitlines()[-1].split()
    return Sample(wall=wall, rss_kib=int(last[1]), cpu=float(last[2]) + float(last[3]))


def mounts_under(path: Path, *, include_self: bool = False) -> list[str]:
    """Mount points below ``path`` (and ``path`` itself with ``include_self``), deepest
    first, so that unmounting them in this order works."""
    prefix = str(path).rstrip("/") + "/"
    found = []
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        for line in f:
            mnt = line.split()[4].replace("\\040", " ")
            if mnt.startswith(prefix) or (include_self and mnt == str(path)):
                found.append(mnt)
    return sorted(found, key=len, reverse=True)
