"""``containers-storage check`` beside GNU tar reading the same layer trees, and ``--quick``
on a 10,000-layer store beside listing its layers.

    python3 benches/bench_check.py [--runs 5] [--corpus ~/.cache/cs-corpus]
        [--stores /var/tmp/cs-bench-check] [--big-store /var/tmp/cs-bench-store] [--warm]

1. Full check of the 3-layer corpus image (base, upper, small: ``benches/bench_import.py``'s
   OCI layout, imported with our API into a vfs and an overlay store, kept under
   ``--stores``): our CLI ``check`` (one process: start-up, records, every file's stat and
   CRC-64) against ``tar -cf - . | cat >/dev/null`` run in each layer's tree (vfs: the
   layer's whole directory; overlay: its ``diff``), one after the other in one shell. Page
   caches are dropped before each timed run unless ``--warm``. Target: ours/tar <= 1.0.
2. ``check --quick`` on the 10,000-layer vfs store of ``benches/bench_store.py`` (built
   there when missing, about 3 minutes) against our CLI ``layers`` on the same store (Go's
   for reference). Warm caches. Target: check/layers <= 2.

Timed runs are whole processes, interleaved within each repetition after one untimed
warm-up each; medians. Needs root (drop_caches, the Go CLI).
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

import bench_import
import bench_store

GO_BIN = "/usr/bin/containers-storage"
DEFAULT_STORES = Path("/var/tmp/cs-bench-check")
NAME = "localhost/bench:1"


def log(msg: str) -> None:
    print(f"[bench_check] {msg}", file=sys.stderr, flush=True)


def drop_caches() -> None:
    os.sync()
    Path("/proc/sys/vm/drop_caches").write_text("3\n")


def timed(cmd: list[str], cold: bool) -> float:
    if cold:
        drop_caches()
    t0 = time.perf_counter()
    p = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
    elapsed = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"{shlex.join(cmd)} failed ({p.returncode}): {p.stderr.decode()}")
    return elapsed


def ours(graph: Path, run: Path, driver: str, *args: str) -> list[str]:
    cli = [sys.executable, "-m", "containers_storage"]
    return [*cli, "-g", str(graph), "-R", str(run), "-s", driver, *args]


def corpus_store(root: Path, driver: str, layout: Path) -> tuple[Path, Path, list[Path]]:
    """The store holding the corpus image (made when missing); its roots and the layer
    trees tar is to read, base first."""
    import containers_storage as cs

    graph, run = root / driver / "graph", root / driver / "run"
    with cs.Store(graph, run, driver) as store:
        try:
            image = store.image(NAME)
        except cs.errors.ImageUnknownError:
            log(f"importing the corpus image into {graph}")
            image = store.import_image(f"oci:{layout}:{bench_import.TAG}", [NAME])
        chain = []
        layer_id = image.layer
        while layer_id:
            chain.append(layer_id)
            layer_id = store.layer(layer_id).parent
        trees = [Path(store.graph_driver().layer_dir(i)) for i in reversed(chain)]
    return graph, run, trees


def pair(a: list[str], b: list[str], runs: int, cold: bool) -> tuple[list[float], list[float]]:
    timed(a, False)
    timed(b, False)
    ta, tb = [], []
    for rep in range(runs):
        ta.append(timed(a, cold))
        tb.append(timed(b, cold))
        log(f"rep {rep + 1}/{runs}: {ta[-1]:.2f} s vs {tb[-1]:.2f} s")
    return ta, tb


def spread(xs: list[float]) -> str:
    return f"{min(xs):.2f}-{max(xs):.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--corpus", type=Path, default=bench_import.DEFAULT_CORPUS)
    parser.add_argument("--stores", type=Path, default=DEFAULT_STORES)
    parser.add_argument("--big-store", type=Path, default=bench_store.DEFAULT_STORE)
    parser.add_argument("--warm", action="store_true", help="keep the page cache")
    args = parser.parse_args()
    cold = not args.warm

    layout = bench_import.build_layout(args.corpus, args.corpus / "oci-bench")
    rows = []
    for driver in ("vfs", "overlay"):
        graph, run, trees = corpus_store(args.stores, driver, layout)
        loop = "; ".join(f"tar -C {shlex.quote(str(t))} -cf - . | cat >/dev/null" for t in trees)
        tar = ["bash", "-c", loop]
        check = ours(graph, run, driver, "check")
        log(f"{driver}: {shlex.join(check)}  vs  {loop}")
        try:
            t_ours, t_tar = pair(check, tar, args.runs, cold)
        finally:
            # The store stays for the next run; its overlay home mount does not.
            subprocess.run(ours(graph, run, driver, "shutdown"), check=True, capture_output=True)
        rows.append((driver, t_ours, t_tar))

    big = args.big_store
    if bench_store.usable_store(big, 10_000, 2_000) is None:
        log(f"building {big} (10,000 layers, 2,000 images)")
        bench_store.build_store(big, 10_000, 2_000)
    g, r = big / "graph", big / "run"
    quick = ours(g, r, "vfs", "check", "--quick")
    listing = ours(g, r, "vfs", "layers")
    go_listing = [GO_BIN, "--graph", str(g), "--run", str(r), "--storage-driver", "vfs", "layers"]
    log(f"10k: {shlex.join(quick)}  vs  {shlex.join(listing)}")
    t_quick, t_list = pair(quick, listing, args.runs, False)
    t_go = [timed(go_listing, False) for _ in range(args.runs)]

    caches = "dropped before each run" if cold else "warm"
    print(f"\nFull check of the 3-layer corpus image (caches {caches}), medians of {args.runs}:\n")
    print("| driver | ours `check` s | GNU tar s | ours/tar | target | spread ours / tar |")
    print("|---|---|---|---|---|---|")
    for driver, t_ours, t_tar in rows:
        ratio = statistics.median(t_ours) / statistics.median(t_tar)
        verdict = "met" if ratio <= 1.0 else "**not met**"
        print(
            f"| {driver} | {statistics.median(t_ours):.2f} | {statistics.median(t_tar):.2f} | "
            f"{ratio:.2f} | <= 1.0: {verdict} | {spread(t_ours)} / {spread(t_tar)} |"
        )
    ratio = statistics.median(t_quick) / statistics.median(t_list)
    verdict = "met" if ratio <= 2.0 else "**not met**"
    print(f"\n`check --quick` on 10,000 layers / 2,000 images (warm), medians of {args.runs}:\n")
    print("| ours `check --quick` ms | ours `layers` ms | Go `layers` ms | quick/layers | target |")
    print("|---|---|---|---|---|")
    print(
        f"| {statistics.median(t_quick) * 1e3:.0f} | {statistics.median(t_list) * 1e3:.0f} | "
        f"{statistics.median(t_go) * 1e3:.0f} | {ratio:.2f} | <= 2.0: {verdict} |"
    )
    print(f"\nload average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
