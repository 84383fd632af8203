"""Layer extraction, whole-process wall time: ours vs GNU tar, Go containers-storage, tarfile.

    python3 benches/compare_apply.py [--runs 5] [--layers base,upper,small]
        [--formats tar,tar.gz,tar.zst] [--tools ours,tar,go,tarfile] [--scratch DIR]

Each timed run is one whole process (interpreter or binary start-up included) wrapped in GNU
time for its peak RSS. Per layer x format, the tools are interleaved within every repetition
(ours, tar, go vfs, go overlay, tarfile, ours, tar, ...) so drift hits all of them alike. Input
files stay in the page cache (caches are never dropped); every target is a fresh directory on
a scratch filesystem, removed and followed by sync() between runs. For Go, a fresh store is
made per run and its `create-layer` is not timed; only `applydiff` is.

`--tools go` means both Go drivers; `go-vfs` and `go-overlay` select one. Unless DIR is already
a mount point, the scratch filesystem is mounted with scratch-fs.sh (fresh ext4 on a loop
device) and unmounted at the end. Needs root (Go store, loop mount, numeric owners).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import io
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from _proc import GNU_TIME, RunError, Sample, mounts_under, timed

GO_BIN = "/usr/bin/containers-storage"  # Debian's Go CLI; `containers-storage` on PATH is ours.
DEFAULT_CORPUS = Path.home() / ".cache" / "cs-corpus" / "layers"
DEFAULT_SCRATCH_SCRIPT = Path("/work/shared/bench/scratch-fs.sh")
ALL_TOOLS = ("ours", "tar", "go-vfs", "go-overlay", "tarfile")
LABELS = {
    "ours": "ours",
    "tar": "GNU tar",
    "go-vfs": "Go vfs",
    "go-overlay": "Go overlay",
    "tarfile": "tarfile",
}

OURS_CODE = (
    "import sys; from containers_storage.archive import apply_layer; "
    "apply_layer(sys.argv[1], sys.argv[2], whiteouts='vfs', tar_split_path=sys.argv[3])"
)
HAS_TAR_FILTER = hasattr(tarfile, "fully_trusted_filter")
TARFILE_CODE = (
    "import sys, tarfile; tarfile.open(sys.argv[1], mode='r|*').extractall(sys.argv[2], "
    "numeric_owner=True" + (", filter='fully_trusted'" if HAS_TAR_FILTER else "") + ")"
)
# Stream mode 'r|*' learnt zstd only together with the compression.zstd module (3.14).
TARFILE_HAS_ZSTD = hasattr(tarfile.TarFile, "zstopen")


@dataclass
class Cell:
    samples: list[Sample] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    skipped: str | None = None
    entries: tuple[int, int] | None = None  # (entries, regular-file bytes) after run 1
    load: float | None = None  # 1-minute load average when this layer x format finished


# --- commands ---------------------------------------------------------------------------


def ours_cmd(src: str, dst: str, tar_split: str) -> list[str]:
    return [sys.executable, "-c", OURS_CODE, src, dst, tar_split]


def tar_cmd(src: str, dst: str, fmt: str) -> list[str]:
    mode = {"tar": ["-xpf"], "tar.gz": ["-xzpf"], "tar.zst": ["--zstd", "-xpf"]}[fmt]
    return ["tar", "--xattrs", "--xattrs-include=*", "--numeric-owner", *mode, src, "-C", dst]


def tarfile_cmd(src: str, dst: str) -> list[str]:
    return [sys.executable, "-c", TARFILE_CODE, src, dst]


def go_base(graph: str, run: str, driver: str) -> list[str]:
    return [GO_BIN, "--graph", graph, "--run", run, "--storage-driver", driver]


def go_create_cmd(graph: str, run: str, driver: str) -> list[str]:
    return [*go_base(graph, run, driver), "create-layer"]


def go_apply_cmd(graph: str, run: str, driver: str, src: str, layer_id: str) -> list[str]:
    return [*go_base(graph, run, driver), "applydiff", "-f", src, layer_id]


def show(cmd: list[str]) -> str:
    """Shell form of cmd, with @VAR@ placeholders printed as "$VAR"."""
    text = shlex.join(cmd)
    for var in ("SRC", "DST", "TS", "G", "R", "ID"):
        text = text.replace(f"@{var}@", f'"${var}"')
    return text


def print_commands(formats: Sequence[str], tools: Sequence[str]) -> None:
    print("## Commands (timed: the process in each line marked *)\n")
    print("```sh")
    print(f"# each timed process runs as: {GNU_TIME} -f '%e %M %U %S' -o TIMEFILE <command>")
    print("# DST: a fresh empty directory on the scratch fs; TS: tar-split file on the scratch fs")
    if "ours" in tools:
        print("* " + show(ours_cmd("@SRC@", "@DST@", "@TS@")))
    if "tar" in tools:
        for fmt in formats:
            print(f"* [{fmt}] " + show(tar_cmd("@SRC@", "@DST@", fmt)))
    for driver in ("vfs", "overlay"):
        if f"go-{driver}" in tools:
            print(f"  [Go {driver}, fresh store per run, untimed] ID=$(")
            print("      " + show(go_create_cmd("@G@", "@R@", driver)) + ")")
            print("* " + show(go_apply_cmd("@G@", "@R@", driver, "@SRC@", "@ID@")))
            if driver == "overlay":
                print("  [untimed] " + show([*go_base("@G@", "@R@", driver), "shutdown"]))
    if "tarfile" in tools:
        print("* " + show(tarfile_cmd("@SRC@", "@DST@")))
    print("# between runs (untimed): rm -rf $DST $TS (or the whole Go store); sync")
    print("```\n")


# --- process plumbing ---------------------------------------------------------------------


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


def rm_rf(path: Path) -> None:
    if path.exists() or path.is_symlink():
        subprocess.run(["rm", "-rf", "--one-file-system", str(path)], check=True)


def count_tree(root: Path) -> tuple[int, int]:
    """(entries below root, bytes in regular files); hardlinks counted once per name."""
    entries = size = 0
    for dirpath, dirnames, filenames in os.walk(root):
        entries += len(dirnames) + len(filenames)
        for name in filenames:
            st = os.lstat(os.path.join(dirpath, name))
            if (st.st_mode & 0o170000) == 0o100000:
                size += st.st_size
    return entries, size


# --- one timed run per tool -----------------------------------------------------------------


@dataclass
class Ctx:
    scratch: Path
    logdir: Path
    src: Path
    fmt: str
    count: bool  # count the output tree (first repetition only)


def run_plain(ctx: Ctx, make: Callable[[str, str, str], list[str]]) -> tuple[Sample, Path]:
    dst = ctx.scratch / "target"
    ts = ctx.scratch / "tar-split.gz"
    rm_rf(dst)
    ts.unlink(missing_ok=True)
    dst.mkdir()
    os.sync()
    return timed(make(str(ctx.src), str(dst), str(ts)), ctx.logdir), dst


def run_go(ctx: Ctx, driver: str) -> tuple[Sample, Path]:
    store = ctx.scratch / f"go-{driver}"
    graph, run = str(store / "graph"), str(store / "run")
    cleanup_go(store, driver)
    os.sync()
    created = subprocess.run(
        go_create_cmd(graph, run, driver), capture_output=True, text=True, check=False
    )
    if created.returncode != 0 or not created.stdout.strip():
        raise RunError(f"create-layer ({driver}) failed: {created.stderr.strip()}")
    layer_id = created.stdout.split()[-1]
    try:
        sample = timed(go_apply_cmd(graph, run, driver, str(ctx.src), layer_id), ctx.logdir)
    finally:
        # The overlay driver bind-mounts its home onto itself; release it (untimed).
        subprocess.run([*go_base(graph, run, driver), "shutdown"], capture_output=True, check=False)
    if driver == "vfs":
        content = store / "graph" / "vfs" / "dir" / layer_id
    else:
        content = store / "graph" / "overlay" / layer_id / "diff"
    return sample, content


def cleanup_go(store: Path, driver: str) -> None:
    if not store.exists():
        return
    for mnt in mounts_under(store):
        subprocess.run(["umount", mnt], capture_output=True, check=False)
    rm_rf(store)


def run_tool(tool: str, ctx: Ctx) -> tuple[Sample, tuple[int, int] | None]:
    if tool == "ours":
        sample, out = run_plain(ctx, ours_cmd)
    elif tool == "tar":
        sample, out = run_plain(ctx, lambda s, d, _t: tar_cmd(s, d, ctx.fmt))
    elif tool == "tarfile":
        sample, out = run_plain(ctx, lambda s, d, _t: tarfile_cmd(s, d))
    else:
        sample, out = run_go(ctx, tool.removeprefix("go-"))
    counted = count_tree(out) if ctx.count and out.is_dir() else None
    return sample, counted


def cleanup_all(scratch: Path) -> None:
    rm_rf(scratch / "target")
    (scratch / "tar-split.gz").unlink(missing_ok=True)
    for driver in ("vfs", "overlay"):
        cleanup_go(scratch / f"go-{driver}", driver)
    os.sync()


def probe_go(driver: str, scratch: Path, logdir: Path) -> str | None:
    """None if the Go driver can create a layer and apply a one-file tar here, else why not."""
    src = scratch / "probe.tar"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        info = tarfile.TarInfo("hello")
        info.size = 3
        tf.addfile(info, io.BytesIO(b"hi\n"))
    src.write_bytes(buf.getvalue())
    ctx = Ctx(scratch=scratch, logdir=logdir, src=src, fmt="tar", count=False)
    try:
        run_go(ctx, driver)
    except (RunError, OSError) as exc:
        return f"Go {driver} probe failed: {exc}"
    finally:
        cleanup_go(scratch / f"go-{driver}", driver)
        src.unlink(missing_ok=True)
    return None


# --- report -------------------------------------------------------------------------------


def med_wall(cell: Cell | None) -> float | None:
    if cell is None or not cell.samples:
        return None
    return statistics.median(s.wall for s in cell.samples)


def med_rss(cell: Cell | None) -> float | None:
    if cell is None or not cell.samples:
        return None
    return statistics.median(s.rss_kib for s in cell.samples) / 1024


def fmt_cell(cell: Cell | None, value: float | None, spec: str) -> str:
    if cell is None:
        return "-"
    if cell.skipped is not None:
        return "n/a"
    if value is None:
        return "err"
    mark = "*" if cell.errors else ""
    return f"{value:{spec}}{mark}"


def paired_ratio(a: Cell | None, b: Cell | None) -> str:
    """Median over repetitions of a/b, pairing the runs of one repetition."""
    if a is None or b is None or not a.samples or not b.samples:
        return "-"
    if a.errors or b.errors:  # runs no longer line up; fall back to a ratio of medians
        wa, wb = med_wall(a), med_wall(b)
        return f"{wa / wb:.2f}~" if wa is not None and wb else "-"
    ratios = [x.wall / y.wall for x, y in zip(a.samples, b.samples, strict=True)]
    return f"{statistics.median(ratios):.2f}"


def tool_table(
    pairs: list[tuple[str, str, Path]],
    results: dict[tuple[str, str], dict[str, Cell]],
    tools: Sequence[str],
    cell: Callable[[Cell], str],
    last_head: str,
    last: Callable[[dict[str, Cell]], str],
) -> None:
    """A Markdown table: a row per layer, a column per tool, and one more column."""
    labels = " | ".join(LABELS[t] for t in tools)
    print(f"| layer | {labels} | {last_head} |")
    print("|---|" + "---|" * (len(tools) + 1))
    for layer, fmt, _src in pairs:
        row = results[(layer, fmt)]
        cells = " | ".join(cell(row[t]) for t in tools)
        print(f"| {layer}.{fmt} | {cells} | {last(row)} |")


def report(
    pairs: list[tuple[str, str, Path]],
    results: dict[tuple[str, str], dict[str, Cell]],
    tools: Sequence[str],
    runs: int,
) -> None:
    print(f"## Results: medians of {runs} runs, wall seconds (whole process)\n")
    head = [
        "layer",
        "MB",
        "ours s",
        "GNU tar s",
        "Go vfs s",
        "Go overlay s",
        "tarfile s",
        "ours/tar",
        "ours/Go vfs",
        "ours/Go ovl",
        "ours peak MiB",
        "tar / Go vfs / Go ovl / tarfile peak MiB",
    ]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for layer, fmt, src in pairs:
        row = results[(layer, fmt)]
        c = {t: row.get(t) for t in ALL_TOOLS}
        peaks = " / ".join(fmt_cell(c[t], med_rss(c[t]), ".0f") for t in ALL_TOOLS[1:])
        cells = [
            f"{layer}.{fmt}",
            f"{src.stat().st_size / 1e6:.0f}",
            *(fmt_cell(c[t], med_wall(c[t]), ".2f") for t in ALL_TOOLS),
            paired_ratio(c["ours"], c["tar"]),
            paired_ratio(c["ours"], c["go-vfs"]),
            paired_ratio(c["ours"], c["go-overlay"]),
            fmt_cell(c["ours"], med_rss(c["ours"]), ".0f"),
            peaks,
        ]
        print("| " + " | ".join(cells) + " |")
    print(
        "\nRatios: median of per-repetition ratios (runs paired within a repetition); "
        "`~` = ratio of medians because some run failed. `*` = some runs failed (median of "
        "the rest); `err` = all failed; `n/a` = not applicable; `-` = not selected."
    )

    def spread(cell: Cell) -> str:
        walls = [s.wall for s in cell.samples]
        return f"{min(walls):.2f}-{max(walls):.2f}" if walls else "-"

    def load(row: dict[str, Cell]) -> str:
        value = row[tools[0]].load
        return f"{value:.2f}" if value is not None else "-"

    print("\n### Spread (min-max wall seconds; load = 1-min load average at the end)\n")
    tool_table(pairs, results, tools, spread, "load", load)

    cores = os.cpu_count() or 1
    print(f"\n### CPU seconds (user + system, every thread; medians) and ours / {cores} cores\n")
    print(
        f"With {cores} cores our wall time cannot be below our CPU time / {cores}: the last "
        "column is that floor as a ratio of GNU tar's wall time.\n"
    )

    def cpu(cell: Cell) -> str:
        return f"{statistics.median(s.cpu for s in cell.samples):.2f}" if cell.samples else "-"

    def floor(row: dict[str, Cell]) -> str:
        ours, tar = row.get("ours"), row.get("tar")
        if ours is None or tar is None or not ours.samples or not tar.samples:
            return "-"
        ours_cpu = statistics.median(s.cpu for s in ours.samples)
        tar_wall = statistics.median(s.wall for s in tar.samples)
        return f"{ours_cpu / cores / tar_wall:.2f}"

    tool_table(pairs, results, tools, cpu, f"ours CPU / {cores} / tar wall", floor)

    print("\n### Output trees after run 1 (entries / MB in regular files)\n")
    print("| layer | " + " | ".join(LABELS[t] for t in tools) + " |")
    print("|---|" + "---|" * len(tools))
    for layer, fmt, _src in pairs:
        row = results[(layer, fmt)]
        counts = []
        for t in tools:
            e = row[t].entries
            counts.append(f"{e[0]} / {e[1] / 1e6:.1f}" if e else "-")
        print(f"| {layer}.{fmt} | " + " | ".join(counts) + " |")

    notes = []
    for layer, fmt, _src in pairs:
        for t in tools:
            cell = results[(layer, fmt)][t]
            if cell.skipped:
                notes.append(f"- {layer}.{fmt} {LABELS[t]}: skipped: {cell.skipped}")
            if cell.errors:
                notes.append(
                    f"- {layer}.{fmt} {LABELS[t]}: {len(cell.errors)} of {runs} runs failed; "
                    f"first:\n\n```\n{cell.errors[0]}\n```"
                )
    if notes:
        print("\n### Failures and skips\n")
        print("\n".join(notes))


# --- main ---------------------------------------------------------------------------------


def parse_list(value: str, allowed: Sequence[str], what: str) -> list[str]:
    items = [v.strip() for v in value.split(",") if v.strip()]
    bad = [v for v in items if v not in allowed]
    if bad:
        raise SystemExit(f"unknown {what}: {', '.join(bad)} (choose from {', '.join(allowed)})")
    return items


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--layers", default="base,upper,small")
    parser.add_argument("--formats", default="tar,tar.gz,tar.zst")
    parser.add_argument("--tools", default="ours,tar,go,tarfile")
    parser.add_argument("--scratch", type=Path, default=Path("/tmp/bench-scratch"))
    parser.add_argument("--scratch-size", default="20G")
    parser.add_argument("--scratch-script", type=Path, default=DEFAULT_SCRATCH_SCRIPT)
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    args = parser.parse_args()

    layers = [v.strip() for v in args.layers.split(",") if v.strip()]
    formats = parse_list(args.formats, ("tar", "tar.gz", "tar.zst"), "format")
    requested = parse_list(args.tools, ("ours", "tar", "go", *ALL_TOOLS), "tool")
    expanded = {t for r in requested for t in (("go-vfs", "go-overlay") if r == "go" else (r,))}
    tools = [t for t in ALL_TOOLS if t in expanded]
    if args.runs < 1:
        raise SystemExit("--runs must be at least 1")
    if not os.access(GNU_TIME, os.X_OK):
        raise SystemExit(f"{GNU_TIME} missing: apt-get install time")
    if any(t.startswith("go-") for t in tools) and not os.access(GO_BIN, os.X_OK):
        raise SystemExit(f"{GO_BIN} missing (Debian package golang-github-containers-storage)")
    pairs = []
    for layer in layers:
        for fmt in formats:
            src = args.corpus / f"{layer}.{fmt}"
            if not src.is_file():
                raise SystemExit(f"missing corpus file {src} (see make-corpus.sh)")
            pairs.append((layer, fmt, src))

    scratch: Path = args.scratch.resolve()
    mounted_here = False
    if not os.path.ismount(scratch):
        if not args.scratch_script.is_file():
            raise SystemExit(f"{scratch} is not a mount point and {args.scratch_script} is missing")
        subprocess.run(
            ["bash", str(args.scratch_script), "up", str(scratch), args.scratch_size], check=True
        )
        mounted_here = True
    try:
        with tempfile.TemporaryDirectory(prefix="compare-apply-") as tmp:
            logdir = Path(tmp)
            cleanup_all(scratch)
            skipped: dict[str, str] = {}
            for t in tools:
                if t.startswith("go-"):
                    why = probe_go(t.removeprefix("go-"), scratch, logdir)
                    if why:
                        skipped[t] = why
            results, builds = bench(pairs, tools, skipped, args.runs, scratch, logdir)
            cleanup_all(scratch)
    finally:
        if mounted_here:
            subprocess.run(["bash", str(args.scratch_script), "down", str(scratch)], check=False)

    print(
        f"# compare_apply: {args.runs} runs, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}"
    )
    print(f"\ncorpus: {args.corpus}; scratch: {scratch} (fresh ext4 loop mount)\n")
    print_commands(formats, tools)
    report(pairs, results, tools, args.runs)
    if builds:
        print("\n### Extension build used by `ours` (checked before each run)\n")
        for build, used in builds.items():
            span = used[0] if len(used) == 1 else f"{used[0]} .. {used[-1]}"
            print(f"- {build}: {len(used)} runs ({span})")
        if len(builds) > 1:
            print("- WARNING: the extension was rebuilt during the benchmark; ours mixes builds.")


def bench(
    pairs: list[tuple[str, str, Path]],
    tools: Sequence[str],
    skipped: dict[str, str],
    runs: int,
    scratch: Path,
    logdir: Path,
) -> tuple[dict[tuple[str, str], dict[str, Cell]], dict[str, list[str]]]:
    results: dict[tuple[str, str], dict[str, Cell]] = {}
    builds: dict[str, list[str]] = {}  # extension build -> "layer.fmt run N" that used it
    for layer, fmt, src in pairs:
        row = {t: Cell() for t in tools}
        results[(layer, fmt)] = row
        for t in tools:
            if t in skipped:
                row[t].skipped = skipped[t]
            elif t == "tarfile" and fmt == "tar.zst" and not TARFILE_HAS_ZSTD:
                row[t].skipped = f"Python {sys.version.split()[0]} tarfile cannot read zstd"
        active = [t for t in tools if row[t].skipped is None]
        for rep in range(runs):
            ctx = Ctx(scratch=scratch, logdir=logdir, src=src, fmt=fmt, count=rep == 0)
            for t in active:
                if t == "ours":
                    builds.setdefault(native_build(), []).append(f"{layer}.{fmt} run {rep + 1}")
                try:
                    sample, counted = run_tool(t, ctx)
                except RunError as exc:
                    row[t].errors.append(str(exc))
                    log(f"{layer}.{fmt} run {rep + 1} {t}: FAILED {str(exc).splitlines()[0]}")
                    continue
                finally:
                    cleanup_all(scratch)
                row[t].samples.append(sample)
                if counted is not None:
                    row[t].entries = counted
                log(
                    f"{layer}.{fmt} run {rep + 1}/{runs} {t}: {sample.wall:.3f} s, "
                    f"{sample.rss_kib / 1024:.0f} MiB"
                )
        for cell in row.values():
            cell.load = os.getloadavg()[0]
    return results, builds


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


if __name__ == "__main__":
    if shutil.which("tar") is None:
        raise SystemExit("GNU tar not found")
    main()
