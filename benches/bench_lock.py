"""Lock-file micro-benchmarks: uncontended round trips, in microseconds.

    python3 benches/bench_lock.py [--rounds N]

Compares containers_storage.Lockfile with Python's fcntl.lockf on the same kind of file.
Go's lockfile opens the file on the first take and closes it on the last release (that close
is what releases the record lock); ours does the same, so the fair baseline is
open + lockf + close. The bare lockf/unlock pair on a kept-open fd is shown as a floor.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import statistics
import tempfile
import timeit
from collections.abc import Callable

import containers_storage as cs


def measure(fn: Callable[[], object], rounds: int, repeat: int = 7) -> float:
    """Median microseconds per call over ``repeat`` runs of ``rounds`` calls."""
    times = timeit.repeat(fn, number=rounds, repeat=repeat)
    return statistics.median(times) / rounds * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=20000)
    args = parser.parse_args()
    n = args.rounds
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "layers.lock")
        lock = cs.Lockfile(path)

        def ours_write() -> None:
            with lock.writing():
                pass

        def ours_read() -> None:
            with lock.reading():
                pass

        def ours_touch_modified() -> None:
            lock.touch()
            lock.modified()

        def lockf_open_close() -> None:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            fcntl.lockf(fd, fcntl.LOCK_EX)
            os.close(fd)

        keep = os.open(path + ".floor", os.O_RDWR | os.O_CREAT, 0o644)

        def lockf_kept_open() -> None:
            fcntl.lockf(keep, fcntl.LOCK_EX)
            fcntl.lockf(keep, fcntl.LOCK_UN)

        def py_touch_modified() -> None:
            os.pwrite(keep, os.urandom(64), 0)
            os.pread(keep, 64, 0)

        rows = [
            ("write lock round trip", measure(ours_write, n), measure(lockf_open_close, n)),
            ("read lock round trip", measure(ours_read, n), measure(lockf_open_close, n)),
        ]
        lock.lock()
        try:
            rows.append(
                (
                    "touch + modified (lock held)",
                    measure(ours_touch_modified, n),
                    measure(py_touch_modified, n),
                )
            )
        finally:
            lock.unlock()
        floor = measure(lockf_kept_open, n)
        os.close(keep)

    print("| operation | containers_storage (µs) | Python baseline (µs) | ratio |")
    print("|---|---|---|---|")
    for name, ours, base in rows:
        print(f"| {name} | {ours:.2f} | {base:.2f} | {ours / base:.2f}x |")
    print(f"\nFloor: fcntl.lockf lock+unlock on a kept-open fd: {floor:.2f} µs")


if __name__ == "__main__":
    main()
