"""Overlay driver: our in-process Store API vs Debian's Go CLI, one process per step.

    python3 benches/bench_overlay.py [--runs 20] [--layers 20] [--scratch DIR]

(a) On a two-layer image: a new layer on the image's top layer, mounted and unmounted
    (ours: ``create_layer(top)`` + ``mount`` + ``unmount`` in this process; Go:
    ``create-layer TOP``, ``mount ID``, ``unmount ID`` as three processes).
(b) On an image of N layers (a small file each): a container (ours: ``create_container``;
    Go: ``create-container IMAGE``). Beside them, ``FsFloor`` replays the file-system work
    of ours (locks, three durable saves, the driver's directories and files) as
    straight-line system calls: what no Python store doing that work can go below.
(c) Our CLI (the ``containers-storage`` script next to this interpreter) running the same
    commands as Go in (a) and (b), one process each, on our store; the issue's budget per
    command is the Go CLI's time plus the bare interpreter's start-up (``python3 -c pass``,
    timed here too).

Ours and Go work on two stores of the same shape built (untimed) beforehand, on the same
filesystem. Runs are interleaved (ours, Go, ours, Go, ...); what a run creates is deleted
again, untimed, before the next. One warm-up run of each is not counted (it pays the first
open of the store and the driver's feature probes, which are cached in the run root).
Times are wall clock (perf_counter) medians; ratios are medians of per-repetition ratios (the
runs of one repetition paired). Needs root (kernel overlay mounts).
"""

from __future__ import annotations

import argparse
import fcntl
import gzip
import io
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import containers_storage as cs
from _proc import mounts_under

GO_BIN = "/usr/bin/containers-storage"  # Debian's Go CLI; `containers-storage` on PATH is ours.
DRV = "overlay"
TARGET = 5.0


def small_tar(name: str, data: bytes) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mtime = 1_672_531_200
        t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


class Go:
    """The Go CLI on one store."""

    def __init__(self, graph: Path, run: Path, binary: str = GO_BIN) -> None:
        self.base = [binary, "--graph", str(graph), "--run", str(run), "--storage-driver", DRV]

    def cmd(self, *args: str) -> list[str]:
        return [*self.base, *args]

    def __call__(self, *args: str) -> str:
        p = subprocess.run(self.cmd(*args), capture_output=True, text=True, check=False)
        if p.returncode != 0:
            raise SystemExit(f"{shlex.join(self.cmd(*args))} failed: {p.stderr.strip()}")
        return p.stdout

    def first(self, *args: str) -> str:
        return self(*args).split()[0]


class Ours(Go):
    """Our CLI on our store (the script installed beside this interpreter)."""

    def __init__(self, graph: Path, run: Path) -> None:
        script = Path(sys.executable).parent / "containers-storage"
        if not script.exists():
            raise SystemExit(f"{script} missing: pip install the package first")
        super().__init__(graph, run, str(script))


@dataclass
class Timings:
    samples: dict[str, list[float]] = field(default_factory=dict)

    def add(self, key: str, seconds: float) -> None:
        self.samples.setdefault(key, []).append(seconds)

    def med(self, key: str) -> float:
        return statistics.median(self.samples[key])

    def spread(self, key: str) -> str:
        v = self.samples[key]
        return f"{min(v) * 1e3:.2f}-{max(v) * 1e3:.2f}"


def build_stores(scratch: Path, layers: int) -> tuple[cs.Store, Go, dict[str, str]]:
    """Both stores: a two-layer image ``two`` and an N-layer image ``many``, made by the
    store's own tool (ours by the API, Go's by import-layer), untimed."""
    ours = cs.Store(scratch / "ours-root", scratch / "ours-run", DRV)
    go = Go(scratch / "go-root", scratch / "go-run")
    ids: dict[str, str] = {}
    for tag, count in (("two", 2), ("many", layers)):
        parent_ours: str | None = None
        parent_go: str | None = None
        for i in range(count):
            data = small_tar(f"{tag}/file{i:03}", f"{tag} {i}\n".encode())
            layer, _ = ours.put_layer(parent_ours, io.BytesIO(gzip.compress(data, mtime=0)))
            parent_ours = layer.id
            path = scratch / "layer.tar"
            path.write_bytes(data)
            parent_go = go.first(
                "import-layer", "-f", str(path), *([parent_go] if parent_go else [])
            )
        assert parent_ours is not None and parent_go is not None
        ids[f"ours-{tag}-top"] = parent_ours
        ids[f"go-{tag}-top"] = parent_go
        ids[f"ours-{tag}"] = ours.create_image(parent_ours, names=[f"localhost/{tag}:1"]).id
        ids[f"go-{tag}"] = go.first("create-image", "-n", f"localhost/{tag}:1", parent_go)
    return ours, go, ids


def run_go(go: Go, *args: str) -> str:
    """One Go process (timed by the caller, check included)."""
    p = subprocess.run(go.cmd(*args), capture_output=True, text=True, check=False)
    if p.returncode != 0:
        raise SystemExit(f"{shlex.join(go.cmd(*args))} failed: {p.stderr.strip()}")
    return p.stdout


def bench_mount(ours: cs.Store, go: Go, ids: dict[str, str], runs: int) -> Timings:
    t = Timings()
    top_o, top_g = ids["ours-two-top"], ids["go-two-top"]
    for rep in range(runs + 1):
        # ours
        t0 = time.perf_counter()
        layer = ours.create_layer(top_o)
        t1 = time.perf_counter()
        ours.mount(layer.id)
        t2 = time.perf_counter()
        ours.unmount(layer.id)
        t3 = time.perf_counter()
        ours.delete_layer(layer.id)
        # Go
        g0 = time.perf_counter()
        gid = run_go(go, "create-layer", top_g).split()[0]
        g1 = time.perf_counter()
        run_go(go, "mount", gid)
        g2 = time.perf_counter()
        run_go(go, "unmount", gid)
        g3 = time.perf_counter()
        run_go(go, "delete-layer", gid)
        if rep == 0:
            continue  # warm-up
        for who, (a, b, c, d) in (("ours", (t0, t1, t2, t3)), ("go", (g0, g1, g2, g3))):
            t.add(f"{who} create", b - a)
            t.add(f"{who} mount", c - b)
            t.add(f"{who} unmount", d - c)
            t.add(f"{who} total", d - a)
    return t


class FsFloor:
    """The file-system work of our ``create_container``, replayed as straight-line system
    calls in a directory of its own: the lock files taken, the three atomic saves (the
    layer flagged incomplete, the layer complete, the container: temporary file,
    fdatasync, rename, and a directory fsync for the last two), the driver's directories,
    short link and link/lower files. What ours takes beyond this is the interpreter running
    the store's code."""

    def __init__(self, root: Path, layers_json: bytes) -> None:
        self.root = root
        self.layers_json = layers_json
        for d in ("layers", "images", "containers", "overlay/l", "overlay/parent/diff"):
            (root / d).mkdir(parents=True)
        for d in ("layers", "images", "containers"):
            (root / d / "x.lock").write_bytes(bytes(64))
        (root / "containers/containers.json").write_bytes(b"[]")
        (root / "overlay/parent/link").write_text("A" * 26)
        (root / "overlay/parent/lower").write_text("l/" + "B" * 26)
        self.n = 0

    def _save(self, d: str, name: str, data: bytes, sync_dir: bool) -> None:
        tmp = f"{self.root}/{d}/.{name}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        os.write(fd, data)
        os.fdatasync(fd)
        os.close(fd)
        os.rename(tmp, f"{self.root}/{d}/{name}")
        if sync_dir:
            dfd = os.open(f"{self.root}/{d}", os.O_RDONLY | os.O_DIRECTORY)
            os.fsync(dfd)
            os.close(dfd)

    def create(self) -> None:
        self.n += 1
        r = self.root
        fds = []
        for d in ("layers", "images", "containers"):
            fd = os.open(f"{r}/{d}/x.lock", os.O_RDWR | os.O_CLOEXEC)
            fcntl.lockf(fd, fcntl.LOCK_EX)
            os.pread(fd, 64, 0)
            fds.append(fd)
        self._save("layers", "layers.json", self.layers_json + b" ", False)
        layer = f"{r}/overlay/c{self.n}"
        os.stat(f"{r}/overlay/parent")
        for name in ("link", "lower"):
            fd = os.open(f"{r}/overlay/parent/{name}", os.O_RDONLY | os.O_CLOEXEC)
            os.read(fd, 4096)
            os.close(fd)
        os.mkdir(layer, 0o700)
        for sub in ("diff", "work", "merged"):
            os.mkdir(f"{layer}/{sub}", 0o700)
        os.symlink(f"../c{self.n}/diff", f"{r}/overlay/l/L{self.n}")
        for name in ("link", "lower"):
            fd = os.open(f"{layer}/{name}", os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
            os.write(fd, b"l/" + b"C" * 26)
            os.close(fd)
        self._save("layers", "layers.json", self.layers_json, True)
        self._save("containers", "containers.json", b"[" + b"c" * 300 + b"]", True)
        for fd in fds:
            os.pwrite(fd, os.urandom(64), 0)
            os.close(fd)

    def delete(self) -> None:
        subprocess.run(
            ["rm", "-rf", f"{self.root}/overlay/c{self.n}", f"{self.root}/overlay/l/L{self.n}"],
            check=True,
        )


def bench_container(
    ours: cs.Store, go: Go, ids: dict[str, str], runs: int, floor: FsFloor
) -> Timings:
    t = Timings()
    for rep in range(runs + 1):
        t0 = time.perf_counter()
        ctr = ours.create_container(ids["ours-many"])
        dt = time.perf_counter() - t0
        ours.delete_container(ctr.id)
        g0 = time.perf_counter()
        gid = run_go(go, "create-container", ids["go-many"]).split()[0]
        gdt = time.perf_counter() - g0
        run_go(go, "delete-container", gid)
        f0 = time.perf_counter()
        floor.create()
        fdt = time.perf_counter() - f0
        floor.delete()
        # Each is timed right after a Go process, as ours is.
        run_go(go, "delete-container", run_go(go, "create-container", ids["go-many"]).split()[0])
        if rep:
            t.add("ours", dt)
            t.add("go", gdt)
            t.add("floor", fdt)
    return t


def bench_cli(ours_cli: Ours, go: Go, ids: dict[str, str], runs: int) -> Timings:
    """The steps of (a) and (b) through both CLIs, one process per command, and the bare
    interpreter (``python3 -c pass``), interleaved within each repetition."""
    t = Timings()
    for rep in range(runs + 1):
        b0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        bare = time.perf_counter() - b0
        for who, cli, pre in (("ours", ours_cli, "ours"), ("go", go, "go")):
            stamps = [time.perf_counter()]
            lid = run_go(cli, "create-layer", ids[f"{pre}-two-top"]).split()[0]
            stamps.append(time.perf_counter())
            run_go(cli, "mount", lid)
            stamps.append(time.perf_counter())
            run_go(cli, "unmount", lid)
            stamps.append(time.perf_counter())
            cid = run_go(cli, "create-container", ids[f"{pre}-many"]).split()[0]
            stamps.append(time.perf_counter())
            run_go(cli, "delete-container", cid)
            run_go(cli, "delete-layer", lid)
            if rep == 0:
                continue
            for i, step in enumerate(CLI_STEPS):
                t.add(f"{who} {step}", stamps[i + 1] - stamps[i])
                if who == "ours":
                    t.add(f"ours-bare {step}", stamps[i + 1] - stamps[i] - bare)
        if rep:
            t.add("bare", bare)
    return t


CLI_STEPS = ("create-layer", "mount", "unmount", "create-container")


def bench_startup(runs: int) -> Timings:
    t = Timings()
    cmds = {
        "python3 -c pass": [sys.executable, "-c", "pass"],
        "python3 -c 'import containers_storage'": [
            sys.executable,
            "-c",
            "import containers_storage",
        ],
    }
    for rep in range(runs + 1):
        for key, cmd in cmds.items():
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True)
            if rep:
                t.add(key, time.perf_counter() - t0)
    return t


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.2f}"


def paired(t: Timings, go: str, ours: str) -> float:
    """Median over repetitions of Go/ours, pairing the runs of one repetition (load drifts
    hit both alike)."""
    return statistics.median(g / o for g, o in zip(t.samples[go], t.samples[ours], strict=True))


def verdict(r: float) -> str:
    return f"{r:.2f}x {'(met)' if r >= TARGET else '(NOT met)'}"


def report(
    runs: int,
    layers: int,
    scratch: Path,
    mount: Timings,
    ctr: Timings,
    cli: Timings,
    start: Timings,
) -> None:
    print(
        f"# bench_overlay: {runs} runs (+1 warm-up), {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, kernel {platform.release()}"
    )
    print(f"\nscratch: {scratch} ({fs_type(scratch)}); load {os.getloadavg()[0]:.2f}\n")
    print("## Go commands timed (one process each)\n")
    print("```sh")
    print(
        "G=" + shlex.quote(str(scratch / "go-root")) + " R=" + shlex.quote(str(scratch / "go-run"))
    )
    go_cs = f"{GO_BIN} --graph $G --run $R --storage-driver {DRV}"
    print(f"# (a) TOP = top layer of the two-layer image\nID=$({go_cs} create-layer $TOP)")
    print(f"{go_cs} mount $ID\n{go_cs} unmount $ID\n# untimed: {go_cs} delete-layer $ID")
    print(f"# (b) IMAGE = the {layers}-layer image\n{go_cs} create-container $IMAGE")
    print(f"# untimed: {go_cs} delete-container $CTR")
    print("```\n")
    print("## (a) two-layer image: new layer on top + mount + unmount (ms, medians)\n")
    print("| step | ours (API, in-process) | Go CLI (process) | Go/ours (paired) |")
    print("|---|---|---|---|")
    for step in ("create", "mount", "unmount", "total"):
        o, g = mount.med(f"ours {step}"), mount.med(f"go {step}")
        print(
            f"| {step} | {ms(o)} | {ms(g)} | {paired(mount, f'go {step}', f'ours {step}'):.2f}x |"
        )
    print(f"\nTarget Go/ours >= {TARGET:.0f}: {verdict(paired(mount, 'go total', 'ours total'))}")
    print(f"Spread (min-max ms): ours {mount.spread('ours total')}, Go {mount.spread('go total')}")
    print(f"\n## (b) create a container on an image of {layers} layers (ms, medians)\n")
    print("| ours (API, in-process) | Go CLI (process) | Go/ours (paired) |")
    print("|---|---|---|")
    r = paired(ctr, "go", "ours")
    print(f"| {ms(ctr.med('ours'))} | {ms(ctr.med('go'))} | {r:.2f}x |")
    print(f"\nTarget Go/ours >= {TARGET:.0f}: {verdict(r)}")
    print(f"Spread (min-max ms): ours {ctr.spread('ours')}, Go {ctr.spread('go')}")
    print(
        "\nThe same file-system work as straight-line system calls (`FsFloor`, each run "
        "right after a Go process, as ours):\n"
    )
    print("| file-system floor | Go/floor (paired) | ours minus floor |")
    print("|---|---|---|")
    rf = paired(ctr, "go", "floor")
    print(f"| {ms(ctr.med('floor'))} | {rf:.2f}x | {ms(ctr.med('ours') - ctr.med('floor'))} |")
    print("\n## (c) our CLI against Go's, one process per command (ms, medians)\n")
    print(
        "Budget per command: the Go CLI's time plus the bare interpreter's start-up, i.e. "
        "ours minus `python3 -c pass` (run in the same repetition) at most Go's time.\n"
    )
    print("| process | ms (median) | min-max |")
    print("|---|---|---|")
    for key in start.samples:
        print(f"| `{key}` | {ms(start.med(key))} | {start.spread(key)} |")
    print(f"| `python3 -c pass` (beside the CLIs) | {ms(cli.med('bare'))} | {cli.spread('bare')} |")
    print("\n| command | ours | ours minus bare start-up | Go | within budget |")
    print("|---|---|---|---|---|")
    for step in CLI_STEPS:
        o, net, g = cli.med(f"ours {step}"), cli.med(f"ours-bare {step}"), cli.med(f"go {step}")
        print(f"| {step} | {ms(o)} | {ms(net)} | {ms(g)} | {'yes' if net <= g else 'NO'} |")


def fs_type(path: Path) -> str:
    best, fstype = "", "?"
    with open("/proc/self/mounts", encoding="utf-8") as f:
        for line in f:
            fields = line.split()
            point = fields[1].replace("\\040", " ")
            if (str(path) + "/").startswith(point.rstrip("/") + "/") and len(point) >= len(best):
                best, fstype = point, fields[2]
    return fstype


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--layers", type=int, default=20)
    parser.add_argument(
        "--scratch",
        type=Path,
        default=None,
        help="parent directory for the stores (default: /var/tmp)",
    )
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("needs root (kernel overlay mounts)")
    if not os.access(GO_BIN, os.X_OK):
        raise SystemExit(f"{GO_BIN} missing (Debian package golang-github-containers-storage)")
    parent = args.scratch or Path("/var/tmp")
    parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="bench-overlay-", dir=parent)).resolve()
    ours: cs.Store | None = None
    go: Go | None = None
    try:
        ours, go, ids = build_stores(scratch, args.layers)
        mount = bench_mount(ours, go, ids, args.runs)
        layers_json = (scratch / "ours-root" / f"{DRV}-layers" / "layers.json").read_bytes()
        floor = FsFloor(scratch / "floor", layers_json)
        ctr = bench_container(ours, go, ids, args.runs, floor)
        cli = bench_cli(Ours(scratch / "ours-root", scratch / "ours-run"), go, ids, args.runs)
        start = bench_startup(args.runs)
    finally:
        if ours is not None:
            ours.shutdown(True)
        if go is not None:
            subprocess.run(go.cmd("shutdown"), capture_output=True, check=False)
        for point in mounts_under(scratch):
            subprocess.run(["umount", "-l", point], check=False)
    report(args.runs, args.layers, scratch, mount, ctr, cli, start)
    subprocess.run(["rm", "-rf", "--one-file-system", str(scratch)], check=False)


if __name__ == "__main__":
    main()
