"""Diff benchmarks beside the Go containers-storage CLI, whole-process wall times.

    python3 benches/compare_diff.py [--runs 5] [--corpus ~/.cache/cs-corpus]

1. Reproduce the corpus base layer from its tar-split (Go: ``diff -u LAYER`` on a vfs layer
   made by ``applydiff``; ours: ``reassemble_layer`` on the same layer directory and the same
   ``.tar-split.gz`` Go wrote).
2. Naive diff of a layer edited through a mount (Go: ``create-layer BASE``, ``mount``, the
   corpus ``upper`` tree rsync'ed in, ``diff -u``; ours: ``diff(child, parent)`` on the same
   directories).

Outputs go to /dev/null. Prints a markdown table of medians and ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GO = "/usr/bin/containers-storage"


def go(store: Path, *args: str) -> str:
    argv = [GO, "--graph", str(store / "g"), "--run", str(store / "r"), "-s", "vfs", *args]
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout.strip()


def timed(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--corpus", default=str(Path.home() / ".cache/cs-corpus"))
    args = parser.parse_args()
    corpus = Path(args.corpus)
    with tempfile.TemporaryDirectory(dir=os.environ.get("SCRATCH")) as tmp:
        store = Path(tmp)
        base = go(store, "create-layer").split()[-1]
        go(store, "applydiff", "-f", str(corpus / "layers/base.tar"), base)
        child = go(store, "create-layer", base).split()[-1]
        mnt = go(store, "mount", child)
        subprocess.run(
            ["rsync", "-aHAX", "--delete", f"{corpus}/rootfs/upper/", f"{mnt}/"], check=True
        )
        layers = json.loads((store / "g/vfs-layers/layers.json").read_text())
        digest = next(x["diff-digest"] for x in layers if x["id"] == base)
        base_dir, child_dir = store / "g/vfs/dir" / base, store / "g/vfs/dir" / child
        split = store / "g/vfs-layers" / f"{base}.tar-split.gz"
        py = sys.executable
        ours_repro = [
            py,
            "-c",
            "import sys; from containers_storage.archive import reassemble_layer as r; "
            "r(sys.argv[1], sys.argv[2], '/dev/null')",
            str(split),
            str(base_dir),
        ]
        ours_diff = [
            py,
            "-c",
            "import sys; from containers_storage.archive import diff; "
            "diff(sys.argv[1], '/dev/null', sys.argv[2])",
            str(child_dir),
            str(base_dir),
        ]
        go_cmd = [GO, "--graph", str(store / "g"), "--run", str(store / "r"), "-s", "vfs"]
        cases = [
            ("reproduce base layer (tar-split)", ours_repro, [*go_cmd, "diff", "-u", base]),
            ("naive diff, upper edited via mount", ours_diff, [*go_cmd, "diff", "-u", child]),
        ]
        print(f"base layer diff-digest {digest}")
        print("| case | ours s | Go s | ours/Go |")
        print("|---|---|---|---|")
        for name, ours, theirs in cases:
            o, g = [], []
            for _ in range(args.runs):
                o.append(timed(ours))
                g.append(timed(theirs))
            mo, mg = statistics.median(o), statistics.median(g)
            print(f"| {name} | {mo:.3f} | {mg:.3f} | {mo / mg:.2f}x |")
        go(store, "unmount", child)


if __name__ == "__main__":
    main()
