"""Store-level latency on a large vfs store, beside Debian's Go containers-storage CLI.

    python3 benches/bench_store.py [--runs 10] [--ops 50] [--layers 10000] [--images 2000]
        [--store /var/tmp/cs-bench-store] [--reuse]

The store (vfs, ``STORE/graph`` and ``STORE/run``) holds ``--layers`` layers in chains of
``layers / images`` layers, the top of each chain being an image's top layer; images are
named ``bench/imgN:latest``. It is built with our API (``create_layer`` / ``create_image``)
in this process, and the build time is reported; ``--reuse`` keeps a store built before with
the same sizes (created images are removed after each benchmark, so it stays the same).

Measured:

1. Listing, whole processes, start-up included: Go ``layers`` / ``images`` against a fresh
   ``python3 -c`` that opens ``Store(G, R, "vfs")`` and prints the same lines as Go (ID,
   then a tab and each name). Target: ours/Go <= 1.5.
2. ``create_image`` and ``add_names`` latency in one warm process (median of ``--ops`` calls,
   a fresh image on an existing top layer; a fresh name on an image created here) against
   one Go ``create-image`` / ``add-names`` invocation (median of ``--runs``). Target:
   Go / ours >= 10.
3. Start-up on an empty store: ``python3 -c pass``, ``python3 -c "import containers_storage"``,
   ``... cs.Store(g, r, "vfs").layers()``; Go ``layers`` on the same empty store for
   reference. Target: import / bare python <= 2.

Process timings are interleaved within each repetition (after one untimed warm-up each),
outputs go to /dev/null. Needs root (the Go CLI wants it for its store).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

GO_BIN = "/usr/bin/containers-storage"  # Debian's Go CLI; `containers-storage` on PATH is ours.
DEFAULT_STORE = Path("/var/tmp/cs-bench-store")
META = "bench-store.json"

LIST_CODE = (
    "import sys, containers_storage as cs; "
    "s = cs.Store(sys.argv[1], sys.argv[2], 'vfs'); "
    "sys.stdout.write(''.join(r.id + '\\n' + ''.join('\\t' + n + '\\n' for n in r.names) "
    "for r in getattr(s, sys.argv[3])()))"
)
STORE_CODE = (
    "import sys, containers_storage as cs; cs.Store(sys.argv[1], sys.argv[2], 'vfs').layers()"
)

#: In-process latencies, printed as JSON: argv graph run ops.
LATENCY_CODE = r"""
import json, statistics, sys, time
import containers_storage as cs

graph, run, ops = sys.argv[1], sys.argv[2], int(sys.argv[3])
store = cs.Store(graph, run, "vfs")
tops = [img.layer for img in store.images()]
created, create_times, name_times = [], [], []
store.create_image(tops[0]).id  # warm-up: the first call loads layers and images
warm = store.create_image(tops[1])
created.append(warm.id)
store.add_names(warm.id, ["bench-ours-warm"])
for k in range(ops):
    t0 = time.perf_counter()
    img = store.create_image(tops[(k * 7919) % len(tops)])
    create_times.append(time.perf_counter() - t0)
    created.append(img.id)
for k in range(ops):
    t0 = time.perf_counter()
    store.add_names(created[k % len(created)], [f"bench-ours-{k}"])
    name_times.append(time.perf_counter() - t0)
print(json.dumps({"create_image": create_times, "add_names": name_times}))
"""


@dataclass
class Timing:
    samples: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    def span(self) -> str:
        return f"{min(self.samples) * 1e3:.1f}-{max(self.samples) * 1e3:.1f}"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def go_base(graph: Path, run: Path) -> list[str]:
    return [GO_BIN, "--graph", str(graph), "--run", str(run), "--storage-driver", "vfs"]


def run_timed(cmd: Sequence[str]) -> float:
    t0 = time.perf_counter()
    p = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
    elapsed = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"{shlex.join(cmd)} failed ({p.returncode}): {p.stderr.decode()}")
    return elapsed


def go_out(graph: Path, run: Path, *args: str) -> str:
    p = subprocess.run([*go_base(graph, run), *args], capture_output=True, text=True, check=False)
    if p.returncode != 0:
        raise SystemExit(f"Go {' '.join(args)} failed: {p.stderr}")
    return p.stdout


# -- the store ---------------------------------------------------------------------------------


def count_records(path: Path) -> int:
    try:
        return len(json.loads(path.read_bytes() or b"[]"))
    except FileNotFoundError:
        return 0


def build_store(root: Path, layers: int, images: int) -> float:
    """Build the store with our API in this process; returns the seconds it took."""
    import containers_storage as cs

    if root.exists():
        shutil.rmtree(root)
    graph, run = root / "graph", root / "run"
    depth = max(1, layers // images)
    t0 = time.perf_counter()
    store = cs.Store(graph, run, "vfs")
    made = 0
    for j in range(images):
        parent = None
        count = depth if j < images - 1 else layers - made
        for _ in range(count):
            parent = store.create_layer(parent).id
            made += 1
            if made % 1000 == 0:
                log(f"build: {made} layers, {j} images, {time.perf_counter() - t0:.1f} s")
        store.create_image(parent, names=[f"bench/img{j}:latest"])
    elapsed = time.perf_counter() - t0
    meta = {"layers": layers, "images": images, "build_seconds": elapsed, "depth": depth}
    (root / META).write_text(json.dumps(meta))
    return elapsed


def usable_store(root: Path, layers: int, images: int) -> dict[str, float] | None:
    try:
        meta = json.loads((root / META).read_text())
    except (FileNotFoundError, ValueError):
        return None
    graph = root / "graph"
    if (
        meta.get("layers") != layers
        or meta.get("images") != images
        or count_records(graph / "vfs-layers" / "layers.json") != layers
        or count_records(graph / "vfs-images" / "images.json") != images
    ):
        return None
    return dict(meta)


def remove_bench_images(graph: Path, run: Path, keep: int) -> None:
    """Delete the images the benchmark made (everything after the first ``keep``); their
    top layers belong to the store's own images, so no layer goes with them."""
    import containers_storage as cs

    store = cs.Store(graph, run, "vfs")
    for img in store.images()[keep:]:
        removed = store.delete_image(img.id)
        assert not removed, f"benchmark image {img.id} took layers with it: {removed}"


# -- measurements ------------------------------------------------------------------------------


def interleaved(cmds: dict[str, list[str]], runs: int) -> dict[str, Timing]:
    out = {label: Timing() for label in cmds}
    for cmd in cmds.values():
        run_timed(cmd)  # warm-up
    for rep in range(runs):
        for label, cmd in cmds.items():
            out[label].samples.append(run_timed(cmd))
        log(
            f"rep {rep + 1}/{runs}: "
            + ", ".join(f"{k} {v.samples[-1] * 1e3:.0f} ms" for k, v in out.items())
        )
    return out


def paired(a: Timing, b: Timing) -> float:
    """Median of per-repetition ratios a/b."""
    return statistics.median(x / y for x, y in zip(a.samples, b.samples, strict=True))


def verdict(value: float, target: float, at_most: bool) -> str:
    ok = value <= target if at_most else value >= target
    sign = "<=" if at_most else ">="
    return f"{'met' if ok else 'NOT met'} (target {sign} {target:g})"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=10, help="process runs per command")
    parser.add_argument("--ops", type=int, default=50, help="in-process calls per operation")
    parser.add_argument("--layers", type=int, default=10_000)
    parser.add_argument("--images", type=int, default=2_000)
    parser.add_argument("--store", type=Path, default=DEFAULT_STORE)
    parser.add_argument("--reuse", action="store_true", help="keep a store built before")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("needs root (Debian's containers-storage wants it)")
    if not os.access(GO_BIN, os.X_OK):
        raise SystemExit(f"{GO_BIN} missing (Debian package golang-github-containers-storage)")
    if args.runs < 1 or args.ops < 2 or args.images < 1 or args.layers < args.images:
        raise SystemExit("need --runs >= 1, --ops >= 2, --layers >= --images >= 1")

    root: Path = args.store.resolve()
    graph, run = root / "graph", root / "run"
    meta = usable_store(root, args.layers, args.images) if args.reuse else None
    if meta is None:
        log(f"building {args.layers} layers / {args.images} images in {root} ...")
        build = build_store(root, args.layers, args.images)
        built = f"built now in {build:.1f} s"
    else:
        build = meta["build_seconds"]
        built = f"reused (built earlier in {build:.1f} s)"
    depth = max(1, args.layers // args.images)
    empty_graph, empty_run = root / "empty-graph", root / "empty-run"
    for d in (empty_graph, empty_run):
        if d.exists():
            shutil.rmtree(d)
    py = sys.executable

    # 1. Listing.
    listing: dict[str, list[str]] = {}
    for what in ("layers", "images"):
        listing[f"Go {what}"] = [*go_base(graph, run), what]
        listing[f"ours {what}"] = [py, "-c", LIST_CODE, str(graph), str(run), what]
        # Our CLI, run as `python3 -m` (a pyenv shim in front of the console script adds
        # its own start-up, which is not ours).
        listing[f"our CLI {what}"] = [
            py,
            "-m",
            "containers_storage",
            "--graph",
            str(graph),
            "--run",
            str(run),
            "--storage-driver",
            "vfs",
            what,
        ]
    log("listing ...")
    lst = interleaved(listing, args.runs)

    # 2. create_image / add_names: in process (ours) vs one Go invocation each.
    log("in-process latency ...")
    p = subprocess.run(
        [py, "-c", LATENCY_CODE, str(graph), str(run), str(args.ops)],
        capture_output=True,
        text=True,
        check=False,
    )
    if p.returncode != 0:
        raise SystemExit(f"latency child failed: {p.stderr}")
    lat = json.loads(p.stdout)
    ours_create, ours_names = Timing(lat["create_image"]), Timing(lat["add_names"])
    tops = [img["layer"] for img in json.loads(go_out(graph, run, "images", "-j"))]
    go_create, go_names = Timing(), Timing()
    go_made: list[str] = []
    log("Go create-image / add-names ...")
    go_out(graph, run, "create-image", tops[0])  # warm-up
    for k in range(args.runs):
        cmd = [*go_base(graph, run), "create-image", tops[(k * 7919 + 1) % len(tops)]]
        go_create.samples.append(run_timed(cmd))
    go_made = [img["id"] for img in json.loads(go_out(graph, run, "images", "-j"))][args.images :]
    for k in range(args.runs):
        target = go_made[k % len(go_made)]
        cmd = [*go_base(graph, run), "add-names", "-n", f"bench-go-{k}", target]
        go_names.samples.append(run_timed(cmd))
    remove_bench_images(graph, run, args.images)

    # 3. Start-up on an empty store.
    log("start-up ...")
    startup = interleaved(
        {
            "python3 -c pass": [py, "-c", "pass"],
            "import containers_storage": [py, "-c", "import containers_storage"],
            "Store(g, r, 'vfs').layers()": [py, "-c", STORE_CODE, str(empty_graph), str(empty_run)],
            "Go layers (empty store)": [*go_base(empty_graph, empty_run), "layers"],
            "our CLI layers (empty store)": [
                py,
                "-m",
                "containers_storage",
                "--graph",
                str(empty_graph),
                "--run",
                str(empty_run),
                "--storage-driver",
                "vfs",
                "layers",
            ],
        },
        args.runs,
    )

    # Report.
    ms = 1e3
    print(
        f"# bench_store: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, "
        f"runs {args.runs}, ops {args.ops}, load average at the end "
        + "/".join(f"{x:.2f}" for x in os.getloadavg())
    )
    print(
        f"\nstore: {root} (vfs), {args.layers} layers in chains of {depth}, {args.images} images; "
        f"{built}\n"
    )
    print("## Commands\n")
    print("Code run by `python3 -c` (LIST_CODE, STORE_CODE, LATENCY_CODE in this script):\n")
    print("```python")
    print(f"# LIST_CODE  (argv: G R layers|images)\n{LIST_CODE}")
    print(f"# STORE_CODE (argv: E ER)\n{STORE_CODE}")
    print(f"# LATENCY_CODE (argv: G R OPS)\n{LATENCY_CODE.strip()}")
    print("```\n\n```sh")
    print(f"G={graph} R={run} E={empty_graph} ER={empty_run} PY={py}")
    print(f'GO="{GO_BIN} --graph $G --run $R --storage-driver vfs"')
    print('$GO layers;  $PY -c "$LIST_CODE" $G $R layers    # 1 (and: images)')
    print("$GO create-image TOPLAYER;  $GO add-names -n NAME IMAGE    # 2, Go, one process each")
    print(f'$PY -c "$LATENCY_CODE" $G $R {args.ops}    # 2, ours, one process, timed inside')
    print('$PY -c pass;  $PY -c "import containers_storage";  $PY -c "$STORE_CODE" $E $ER')
    print(f"{GO_BIN} --graph $E --run $ER --storage-driver vfs layers    # 3")
    print("```\n")

    print(f"## 1. Listing ({args.layers} layers / {args.images} images), whole process\n")
    print("| command | Go ms | ours ms | Go min-max | ours min-max | ours/Go | |")
    print("|---|---|---|---|---|---|---|")
    for what in ("layers", "images"):
        for label in ("ours", "our CLI"):
            g, o = lst[f"Go {what}"], lst[f"{label} {what}"]
            r = paired(o, g)
            print(
                f"| {what} ({label}) | {g.median * ms:.1f} | {o.median * ms:.1f} | {g.span()} "
                f"| {o.span()} | {r:.2f} | {verdict(r, 1.5, True)} |"
            )

    print("\n## 2. Latency: ours in process (median of calls) vs one Go invocation\n")
    print(
        "| operation | Go invocation ms | ours in-process ms | Go min-max | ours min-max "
        "| Go/ours | |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, g, o in (
        ("create_image", go_create, ours_create),
        ("add_names", go_names, ours_names),
    ):
        r = g.median / o.median
        print(
            f"| {name} | {g.median * ms:.1f} | {o.median * ms:.2f} | {g.span()} | {o.span()} | "
            f"{r:.1f} | {verdict(r, 10, False)} |"
        )

    print("\n## 3. Start-up on an empty store, whole process\n")
    print("| command | median ms | min-max |")
    print("|---|---|---|")
    for label, t in startup.items():
        print(f"| `{label}` | {t.median * ms:.1f} | {t.span()} |")
    r_import = paired(startup["import containers_storage"], startup["python3 -c pass"])
    r_store = paired(startup["Store(g, r, 'vfs').layers()"], startup["python3 -c pass"])
    print(
        f"\nimport / bare python: {r_import:.2f} {verdict(r_import, 2, True)}; "
        f"Store(...).layers() / bare python: {r_store:.2f}"
    )


if __name__ == "__main__":
    main()
