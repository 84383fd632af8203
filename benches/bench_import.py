"""Image import, whole-process wall time: ours vs skopeo copy into containers-storage.

    python3 benches/bench_import.py [--runs 5] [--drivers overlay,vfs] [--scratch DIR]

The image is a 3-layer gzip OCI layout built from the benchmark corpus (`base`, `upper` and
`small` .tar.gz; diff IDs from the matching .tar files), written once to
`CORPUS/oci-bench` and reused (the blobs are hard links to the corpus files when possible).
Each timed run is one whole process (interpreter or binary start-up included) under GNU time
for its peak RSS:

    skopeo copy oci:LAYOUT:bench containers-storage:[DRV@G+R]localhost/bench:1
    python3 -c '...Store(G, R, DRV).import_image("oci:LAYOUT:bench", ...)'

into a fresh store each time, both on the same (scratch) filesystem. Per driver, the tools
alternate within every repetition (skopeo, ours, skopeo, ...) so drift hits both alike.
Nothing is dropped from the page cache (the layout is read once before timing). Between runs
(untimed): Go `shutdown` on the store, unmount whatever is left below it, `rm -rf`, sync.
Neither tool shuts its store down (skopeo does not), so both leave the overlay home's bind
mount, released by the cleanup. The first run of each driver also checks that both stores hold
the same layer IDs and image (untimed).

Unless DIR is already a mount point, the scratch filesystem is a fresh ext4 mounted with
scratch-fs.sh and unmounted at the end (`--no-scratch-fs` uses DIR as it is). Needs root.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from _proc import GNU_TIME, RunError, Sample, mounts_under, timed

GO_BIN = "/usr/bin/containers-storage"  # Debian's Go CLI; `containers-storage` on PATH is ours.
SKOPEO = "/usr/bin/skopeo"
DEFAULT_CORPUS = Path.home() / ".cache" / "cs-corpus"
DEFAULT_SCRATCH_SCRIPT = Path("/work/shared/bench/scratch-fs.sh")
MAKE_CORPUS = (
    "MIRROR=http://deb.debian.org/debian SKIP_BIG=1 PATH=/usr/sbin:/usr/bin:/sbin:/bin "
    "bash /work/shared/bench/make-corpus.sh"
)
LAYERS = ("base", "upper", "small")
TAG = "bench"
NAME = "localhost/bench:1"
CREATED = "2024-01-01T00:00:00Z"
TOOLS = ("skopeo", "ours")

OURS_CODE = (
    "import sys, containers_storage as cs; "
    "cs.Store(sys.argv[1], sys.argv[2], sys.argv[3]).import_image(sys.argv[4], names=[sys.argv[5]])"
)


@dataclass
class Cell:
    samples: list[Sample] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


# --- the layout ---------------------------------------------------------------------------


def compact(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def build_layout(corpus: Path, layout: Path) -> Path:
    """The 3-layer gzip OCI layout (reused when its stamp is there); returns the layout."""
    layers_dir = corpus / "layers"
    missing = [
        str(layers_dir / f"{n}.{ext}")
        for n in LAYERS
        for ext in ("tar", "tar.gz")
        if not (layers_dir / f"{n}.{ext}").is_file()
    ]
    if missing:
        raise SystemExit(
            f"missing corpus files: {', '.join(missing)}\nbuild the corpus with:\n  {MAKE_CORPUS}"
        )
    stamp = layout / ".complete"
    sources = [layers_dir / f"{n}.tar.gz" for n in LAYERS]
    key = compact([[str(p), p.stat().st_size, p.stat().st_mtime_ns] for p in sources]).decode()
    if stamp.is_file() and stamp.read_text() == key:
        return layout
    log(f"building {layout} from {layers_dir} (hashing {len(LAYERS)} layers, once)")
    if layout.exists():
        shutil.rmtree(layout)
    blobs = layout / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def put_bytes(data: bytes) -> dict[str, object]:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        (blobs / digest.split(":")[1]).write_bytes(data)
        return {"digest": digest, "size": len(data)}

    layer_descs, diff_ids = [], []
    for name in LAYERS:
        gz = layers_dir / f"{name}.tar.gz"
        digest = file_digest(gz)
        target = blobs / digest.split(":")[1]
        try:
            os.link(gz, target)
        except OSError:
            shutil.copyfile(gz, target)
        layer_descs.append(
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": digest,
                "size": gz.stat().st_size,
            }
        )
        diff_ids.append(file_digest(layers_dir / f"{name}.tar"))
    config = compact(
        {
            "created": CREATED,
            "architecture": "amd64",
            "os": "linux",
            "config": {"Env": ["PATH=/usr/bin:/bin"], "Cmd": ["/bin/sh"]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": [{"created": CREATED, "created_by": f"corpus {n}"} for n in LAYERS],
        }
    )
    manifest = compact(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                **put_bytes(config),
            },
            "layers": layer_descs,
        }
    )
    mdesc = put_bytes(manifest)
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                **mdesc,
                "annotations": {"org.opencontainers.image.ref.name": TAG},
            }
        ],
    }
    (layout / "index.json").write_bytes(compact(index))
    (layout / "oci-layout").write_bytes(compact({"imageLayoutVersion": "1.0.0"}))
    stamp.write_text(key)
    return layout


def warm(layout: Path) -> None:
    """Read every blob once, so both tools find the layout in the page cache."""
    for p in sorted((layout / "blobs" / "sha256").iterdir()):
        with open(p, "rb") as f:
            while f.read(1 << 22):
                pass


# --- commands -----------------------------------------------------------------------------


def skopeo_cmd(policy: Path, layout: Path, graph: str, run: str, driver: str) -> list[str]:
    return [
        SKOPEO,
        "--policy",
        str(policy),
        "copy",
        "--quiet",
        f"oci:{layout}:{TAG}",
        f"containers-storage:[{driver}@{graph}+{run}]{NAME}",
    ]


def ours_cmd(layout: Path, graph: str, run: str, driver: str) -> list[str]:
    return [sys.executable, "-c", OURS_CODE, graph, run, driver, f"oci:{layout}:{TAG}", NAME]


def go_base(graph: str, run: str, driver: str) -> list[str]:
    return [GO_BIN, "--graph", graph, "--run", run, "--storage-driver", driver]


def show(cmd: list[str]) -> str:
    text = shlex.join(cmd)
    for var in ("G", "R", "POLICY", "LAYOUT", "CONF"):
        text = text.replace(f"@{var}@", f'"${var}"')
    return text


def print_commands(drivers: list[str]) -> None:
    print("## Commands (timed: the process in each line marked *)\n")
    print("```sh")
    print(f"# each timed process runs as: {GNU_TIME} -f '%e %M' -o TIMEFILE <command>")
    print("# G, R: a fresh store on the scratch fs; CONF: a storage.conf naming the same store")
    for driver in drivers:
        cmd = skopeo_cmd(Path("@POLICY@"), Path("@LAYOUT@"), "@G@", "@R@", driver)
        print('* CONTAINERS_STORAGE_CONF="$CONF" ' + show(cmd))
        print("* " + show(ours_cmd(Path("@LAYOUT@"), "@G@", "@R@", driver)))
    print("# between runs (untimed): " + show([*go_base("@G@", "@R@", "DRV"), "shutdown"]))
    print("#   then umount what is left below the store, rm -rf it, sync")
    print("```\n")


# --- process plumbing ---------------------------------------------------------------------


def clean_store(store: Path, driver: str) -> None:
    if not store.exists():
        return
    graph, run = str(store / "graph"), str(store / "run")
    if (store / "graph").exists():
        subprocess.run([*go_base(graph, run, driver), "shutdown"], capture_output=True, check=False)
    for mnt in mounts_under(store, include_self=True):
        subprocess.run(["umount", mnt], capture_output=True, check=False)
    left = mounts_under(store, include_self=True)
    if left:
        raise SystemExit(f"still mounted below {store}: {left}")
    subprocess.run(["rm", "-rf", "--one-file-system", str(store)], check=True)


def store_env(store: Path, driver: str) -> dict[str, str]:
    """A storage.conf naming the store, so skopeo never opens the host's default store."""
    conf = store.parent / f"{store.name}.conf"
    conf.write_text(
        f'[storage]\ndriver = "{driver}"\ngraphroot = "{store}/graph"\nrunroot = "{store}/run"\n'
    )
    return {**os.environ, "CONTAINERS_STORAGE_CONF": str(conf)}


def store_summary(store: Path, driver: str) -> tuple[list[str], list[str]]:
    """(layer IDs, image IDs) as Go lists them."""
    graph, run = str(store / "graph"), str(store / "run")
    layers = subprocess.run(
        [*go_base(graph, run, driver), "layers", "-j"], capture_output=True, check=True
    )
    imgs = subprocess.run(
        [*go_base(graph, run, driver), "images", "-j"], capture_output=True, check=True
    )
    return (
        [x["id"] for x in json.loads(layers.stdout) or []],
        [x["id"] for x in json.loads(imgs.stdout) or []],
    )


def native_build() -> str:
    """Identity of the installed extension (sha256 prefix + mtime), without importing it."""
    spec = importlib.util.find_spec("containers_storage")
    if spec is None or not spec.submodule_search_locations:
        return "containers_storage not found"
    libs = sorted(p for d in spec.submodule_search_locations for p in Path(d).glob("_native*.so"))
    if not libs:
        return "no _native*.so"
    try:
        data = libs[0].read_bytes()
        mtime = time.strftime("%H:%M:%S", time.localtime(libs[0].stat().st_mtime))
    except OSError as exc:
        return f"{libs[0].name}: {exc}"
    return f"{libs[0].name} sha256:{hashlib.sha256(data).hexdigest()[:12]} mtime {mtime}"


# --- the benchmark ------------------------------------------------------------------------


def bench(
    layout: Path, policy: Path, drivers: list[str], runs: int, scratch: Path, logdir: Path
) -> tuple[dict[tuple[str, str], Cell], list[str], dict[str, int]]:
    results = {(d, t): Cell() for d in drivers for t in TOOLS}
    checks: list[str] = []
    builds: dict[str, int] = {}  # extension build -> ours runs that used it
    for driver in drivers:
        for rep in range(runs):
            summaries = {}
            for tool in TOOLS:
                store = scratch / f"{tool}-{driver}"
                clean_store(store, driver)
                store.mkdir(parents=True)
                os.sync()
                graph, run = str(store / "graph"), str(store / "run")
                try:
                    if tool == "skopeo":
                        env = store_env(store, driver)
                        sample = timed(skopeo_cmd(policy, layout, graph, run, driver), logdir, env)
                    else:
                        build = native_build()
                        builds[build] = builds.get(build, 0) + 1
                        sample = timed(ours_cmd(layout, graph, run, driver), logdir)
                    if rep == 0:
                        summaries[tool] = store_summary(store, driver)
                except RunError as exc:
                    results[(driver, tool)].errors.append(str(exc))
                    log(f"{driver} run {rep + 1} {tool}: FAILED {str(exc).splitlines()[0]}")
                    continue
                finally:
                    clean_store(store, driver)
                    (scratch / f"{tool}-{driver}.conf").unlink(missing_ok=True)
                results[(driver, tool)].samples.append(sample)
                log(
                    f"{driver} run {rep + 1}/{runs} {tool}: {sample.wall:.2f} s, "
                    f"{sample.rss_kib / 1024:.0f} MiB"
                )
            if rep == 0 and len(summaries) == 2:
                same = summaries["skopeo"] == summaries["ours"]
                checks.append(
                    f"{driver}: {len(summaries['ours'][0])} layers, image "
                    f"{summaries['ours'][1][0][:12] if summaries['ours'][1] else '-'}; "
                    + ("same layer IDs and image ID as skopeo" if same else "DIFFERENT from skopeo")
                )
    return results, checks, builds


def med(cell: Cell) -> float | None:
    return statistics.median(s.wall for s in cell.samples) if cell.samples else None


def report(
    results: dict[tuple[str, str], Cell], drivers: list[str], runs: int, load: float
) -> None:
    print(f"## Results: medians of {runs} runs, wall seconds (whole process)\n")
    print(
        "| driver | skopeo s | ours s | ours/skopeo (paired) | ours/skopeo (medians) "
        "| skopeo spread | ours spread | skopeo / ours peak MiB |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for driver in drivers:
        sk, ours = results[(driver, "skopeo")], results[(driver, "ours")]
        msk, mours = med(sk), med(ours)
        paired = "-"
        if sk.samples and ours.samples and not sk.errors and not ours.errors:
            ratios = [o.wall / s.wall for o, s in zip(ours.samples, sk.samples, strict=True)]
            paired = f"{statistics.median(ratios):.2f}"
        ratio = f"{mours / msk:.2f}" if msk and mours else "-"

        def spread(c: Cell) -> str:
            w = [s.wall for s in c.samples]
            return f"{min(w):.2f}-{max(w):.2f}" if w else "-"

        def rss(c: Cell) -> str:
            if not c.samples:
                return "-"
            return f"{statistics.median(s.rss_kib for s in c.samples) / 1024:.0f}"

        print(
            f"| {driver} | {msk:.2f} | {mours:.2f} | {paired} | {ratio} | {spread(sk)} | "
            f"{spread(ours)} | {rss(sk)} / {rss(ours)} |"
            if msk is not None and mours is not None
            else f"| {driver} | {msk} | {mours} | - | - | - | - | - |"
        )
    print(f"\n1-minute load average at the end: {load:.2f}")
    for (driver, tool), cell in results.items():
        if cell.errors:
            print(f"\n{driver} {tool}: {len(cell.errors)} of {runs} runs failed; first:\n")
            print(f"```\n{cell.errors[0]}\n```")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--drivers", default="overlay,vfs")
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--layout", type=Path, help="default: CORPUS/oci-bench")
    parser.add_argument("--scratch", type=Path, default=Path("/tmp/bench-import"))
    parser.add_argument("--scratch-size", default="20G")
    parser.add_argument("--scratch-script", type=Path, default=DEFAULT_SCRATCH_SCRIPT)
    parser.add_argument(
        "--no-scratch-fs", action="store_true", help="use --scratch as it is (no fresh ext4)"
    )
    args = parser.parse_args()

    drivers = [d.strip() for d in args.drivers.split(",") if d.strip()]
    if not drivers or any(d not in ("overlay", "vfs") for d in drivers):
        raise SystemExit("--drivers: overlay and/or vfs")
    if args.runs < 1:
        raise SystemExit("--runs must be at least 1")
    for tool in (GNU_TIME, SKOPEO, GO_BIN):
        if not os.access(tool, os.X_OK):
            raise SystemExit(f"{tool} is missing")
    if os.geteuid() != 0:
        raise SystemExit("needs root")
    layout = build_layout(args.corpus, (args.layout or args.corpus / "oci-bench").resolve())

    scratch: Path = args.scratch.resolve()
    mounted_here = False
    if not args.no_scratch_fs and not os.path.ismount(scratch):
        if not args.scratch_script.is_file():
            raise SystemExit(f"{scratch} is not a mount point and {args.scratch_script} is missing")
        subprocess.run(
            ["bash", str(args.scratch_script), "up", str(scratch), args.scratch_size], check=True
        )
        mounted_here = True
    scratch.mkdir(parents=True, exist_ok=True)
    try:
        logdir = scratch / "logs"
        logdir.mkdir(exist_ok=True)
        policy = scratch / "policy.json"
        policy.write_text(json.dumps({"default": [{"type": "insecureAcceptAnything"}]}))
        warm(layout)
        results, checks, builds = bench(layout, policy, drivers, args.runs, scratch, logdir)
        load = os.getloadavg()[0]
        shutil.rmtree(logdir, ignore_errors=True)
        policy.unlink(missing_ok=True)
    finally:
        if mounted_here:
            subprocess.run(["bash", str(args.scratch_script), "down", str(scratch)], check=False)

    sizes = sum(
        p.stat().st_size for p in (layout / "blobs" / "sha256").iterdir() if p.stat().st_size > 1e6
    )
    print(
        f"# bench_import: {args.runs} runs, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}"
    )
    print(
        f"\nimage: {layout}:{TAG} ({', '.join(f'{n}.tar.gz' for n in LAYERS)}; "
        f"{sizes / 1e6:.0f} MB of gzip blobs)\nscratch: {scratch}"
        + (" (fresh ext4 loop mount)" if mounted_here else "")
        + "\n"
    )
    print_commands(drivers)
    report(results, drivers, args.runs, load)
    if checks:
        print("\n### Checks (first run, untimed)\n")
        for c in checks:
            print(f"- {c}")
    print("\n### Extension build used by `ours` (checked before each run)\n")
    for build, used in builds.items():
        print(f"- {build}: {used} runs")
    if len(builds) > 1:
        print("- WARNING: the extension was rebuilt during the benchmark; ours mixes builds.")


if __name__ == "__main__":
    main()
