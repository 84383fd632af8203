"""What the mount counts (the run root's ``mountpoints.json``) cost a listing-heavy loop.

    python3 benches/bench_mount_reload.py [--layers 100] [--calls 1000] [--runs 5]

A vfs store with ``--layers`` layers, one of them mounted. In one warm process, ``--calls``
x ``store.layers()`` and ``--calls`` x ``store.mounted(id)``, timed (median of ``--runs``)
three ways: as shipped (reload the mount counts only when ``mountpoints.lock``'s last
writer, or the file's mtime/inode, changed: Go's ``layerStore.ReloadIfChanged``), with the
mount check skipped (its cost), and reloading the file on every lock (what Go avoids). It
also counts the file's loads, with nothing changing and with another writer touching the
lock every 100 calls. Needs root (vfs owners).
"""

from __future__ import annotations

import argparse
import builtins
import contextlib
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import containers_storage as cs
from containers_storage.layers import LayerStore
from containers_storage.lockfile import Lockfile


@contextlib.contextmanager
def counting_opens(name: str) -> Iterator[list[int]]:
    """Count ``open()`` calls of files called ``name``."""
    seen = [0]
    real = builtins.open

    def wrapped(file: Any, *args: Any, **kwargs: Any) -> Any:
        if str(file).endswith(name):
            seen[0] += 1
        return real(file, *args, **kwargs)

    builtins.open = wrapped
    try:
        yield seen
    finally:
        builtins.open = real


@contextlib.contextmanager
def patched(obj: Any, attr: str, value: Any) -> Iterator[None]:
    old = getattr(obj, attr)
    setattr(obj, attr, value)
    try:
        yield
    finally:
        setattr(obj, attr, old)


def timed(fn: Callable[[], object], calls: int, runs: int) -> float:
    """Median seconds per call over ``runs`` loops of ``calls`` calls."""
    per_run = []
    for _ in range(runs):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        per_run.append((time.perf_counter() - t0) / calls)
    return statistics.median(per_run)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=100)
    ap.add_argument("--calls", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="cs-bench-mounts-") as tmp:
        graph, run = Path(tmp) / "graph", Path(tmp) / "run"
        store = cs.Store(graph, run, "vfs")
        try:
            ids = [store.create_layer().id for _ in range(args.layers)]
            store.mount(ids[0])
            mounted = ids[0]

            def listing() -> object:
                return store.layers()

            def count() -> object:
                return store.mounted(mounted)

            ways: dict[str, Callable[[], contextlib.AbstractContextManager[None]]] = {
                "as shipped (reload on change)": contextlib.nullcontext,
                "mount check skipped": lambda: patched(
                    LayerStore, "_reload_mounts_if_changed", lambda self: None
                ),
                "reload on every lock": lambda: patched(
                    LayerStore, "_reload_mounts_if_changed", LayerStore._load_mounts
                ),
            }
            print(f"{args.layers} layers, {args.calls} calls, median of {args.runs} runs")
            for label, way in ways.items():
                with way(), counting_opens("mountpoints.json") as opens:
                    t_list = timed(listing, args.calls, args.runs)
                    t_count = timed(count, args.calls, args.runs)
                loads = opens[0] / (2 * args.calls * args.runs)
                print(
                    f"  {label:32} layers() {t_list * 1e6:8.1f} us   mounted() "
                    f"{t_count * 1e6:7.1f} us   mountpoints.json opens per call {loads:.3f}"
                )
            other = Lockfile(str(run / "vfs-layers" / "mountpoints.lock"))
            with counting_opens("mountpoints.json") as opens:
                for k in range(args.calls):
                    if k % 100 == 99:
                        with other.writing():
                            other.touch()
                    store.layers()
            print(
                f"  another writer every 100 calls: {opens[0]} loads in {args.calls} layers() calls"
            )
            store.unmount(mounted)
        finally:
            store.shutdown(True)


if __name__ == "__main__":
    main()
