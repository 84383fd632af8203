"""Registry pull, whole-process wall time: ours vs skopeo and podman, into containers-storage.

    python3 benches/bench_pull.py [--runs 3] [--scratch DIR] [--tools skopeo,podman,ours]

The image is bench_import.py's 3-layer gzip OCI layout of the corpus (base, upper, small),
pushed once with skopeo to a loopback Debian `docker-registry` (plain HTTP, its storage in
the scratch directory's parent, so in the page cache). Each timed run pulls it into a fresh
overlay store on a fresh ext4 (scratch-fs.sh), one whole process under GNU time:

    skopeo copy --src-tls-verify=false docker://HOST/bench:1 \\
        containers-storage:[overlay@G+R]HOST/bench:1
    podman --root G --runroot R --storage-driver overlay pull -q --tls-verify=false HOST/bench:1
    python3 -m containers_storage --graph G --run R --storage-driver overlay pull \\
        --tls-verify=false HOST/bench:1

The tools alternate within every repetition. Between runs (untimed): Go `shutdown`, unmount
what is left, `rm -rf`, sync. The first repetition checks that all stores hold the same layer
IDs and image ID (untimed). Needs root.
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
import tempfile
import time
from pathlib import Path

from _proc import GNU_TIME, RunError, timed
from bench_import import (
    DEFAULT_CORPUS,
    DEFAULT_SCRATCH_SCRIPT,
    SKOPEO,
    TAG,
    Cell,
    build_layout,
    clean_store,
    log,
    native_build,
    store_env,
    store_summary,
)

PODMAN = "/usr/bin/podman"
REGISTRY = "/usr/bin/docker-registry"
REPO = "bench:1"
DRIVER = "overlay"


def start_registry(base: Path) -> tuple[subprocess.Popen[bytes], str]:
    """A plain-HTTP registry on a free loopback port; (process, host:port)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    base.mkdir(parents=True, exist_ok=True)
    config = {
        "version": "0.1",
        "log": {"level": "warn", "accesslog": {"disabled": True}},
        "storage": {"filesystem": {"rootdirectory": str(base / "storage")}},
        "http": {"addr": f"127.0.0.1:{port}", "secret": "bench"},
    }
    (base / "config.yml").write_text(json.dumps(config))
    log_file = open(base / "registry.log", "wb")
    proc = subprocess.Popen(
        [REGISTRY, "serve", str(base / "config.yml")], stdout=log_file, stderr=subprocess.STDOUT
    )
    host = f"127.0.0.1:{port}"
    import urllib.request

    for _ in range(200):
        try:
            urllib.request.urlopen(f"http://{host}/v2/", timeout=1).read()
            return proc, host
        except OSError:
            time.sleep(0.05)
    proc.terminate()
    raise SystemExit(f"the registry did not start: {(base / 'registry.log').read_text()}")


def commands(host: str, graph: str, run: str, policy: Path) -> dict[str, list[str]]:
    ref = f"{host}/{REPO}"
    return {
        "skopeo": [
            SKOPEO, "--policy", str(policy), "copy", "--quiet", "--src-tls-verify=false",
            f"docker://{ref}", f"containers-storage:[{DRIVER}@{graph}+{run}]{ref}",
        ],
        "podman": [
            PODMAN, "--root", graph, "--runroot", run, "--storage-driver", DRIVER,
            "--cgroup-manager=cgroupfs", "--events-backend=file",
            "pull", "-q", "--tls-verify=false", ref,
        ],
        "ours": [
            sys.executable, "-m", "containers_storage", "--graph", graph, "--run", run,
            "--storage-driver", DRIVER, "pull", "--tls-verify=false", ref,
        ],
    }  # fmt: skip


def bench(
    host: str, tools: list[str], runs: int, scratch: Path, logdir: Path, env_base: dict[str, str]
) -> tuple[dict[str, Cell], list[str], dict[str, int]]:
    results = {t: Cell() for t in tools}
    checks: list[str] = []
    builds: dict[str, int] = {}
    policy = scratch / "policy.json"
    policy.write_text(json.dumps({"default": [{"type": "insecureAcceptAnything"}]}))
    for rep in range(runs):
        summaries = {}
        for tool in tools:
            store = scratch / tool
            clean_store(store, DRIVER)
            store.mkdir(parents=True)
            os.sync()
            graph, run = str(store / "graph"), str(store / "run")
            env = {**store_env(store, DRIVER), **env_base}
            if tool == "ours":
                build = native_build()
                builds[build] = builds.get(build, 0) + 1
            try:
                sample = timed(commands(host, graph, run, policy)[tool], logdir, env)
                if rep == 0:
                    summaries[tool] = store_summary(store, DRIVER)
            except RunError as exc:
                results[tool].errors.append(str(exc))
                log(f"run {rep + 1} {tool}: FAILED {str(exc).splitlines()[0]}")
                continue
            finally:
                clean_store(store, DRIVER)
                (scratch / f"{tool}.conf").unlink(missing_ok=True)
            results[tool].samples.append(sample)
            log(
                f"run {rep + 1}/{runs} {tool}: {sample.wall:.2f} s, "
                f"{sample.rss_kib / 1024:.0f} MiB, {sample.cpu:.2f} CPU-s"
            )
        if rep == 0 and "ours" in summaries:
            for other in (t for t in summaries if t != "ours"):
                same = summaries[other] == summaries["ours"]
                checks.append(
                    f"ours vs {other}: {len(summaries['ours'][0])} layers, "
                    + ("the same layer IDs and image ID" if same else "DIFFERENT IDs")
                )
    return results, checks, builds


def report(results: dict[str, Cell], runs: int, load: float) -> None:
    print(f"## Results: medians of {runs} runs (whole process)\n")
    print("| tool | wall s | spread | CPU s | peak RSS MiB | ours / tool (paired median) |")
    print("|---|---|---|---|---|---|")
    ours = results.get("ours")
    for tool, cell in results.items():
        if not cell.samples:
            print(f"| {tool} | failed | - | - | - | - |")
            continue
        walls = [s.wall for s in cell.samples]
        paired = "-"
        if ours is not None and ours.samples and tool != "ours" and not cell.errors:
            ratios = [o.wall / s.wall for o, s in zip(ours.samples, cell.samples, strict=False)]
            paired = f"{statistics.median(ratios):.2f}"
        print(
            f"| {tool} | {statistics.median(walls):.2f} | {min(walls):.2f}-{max(walls):.2f} | "
            f"{statistics.median(s.cpu for s in cell.samples):.2f} | "
            f"{statistics.median(s.rss_kib for s in cell.samples) / 1024:.0f} | {paired} |"
        )
    print(f"\n1-minute load average at the end: {load:.2f}")
    for tool, cell in results.items():
        if cell.errors:
            print(f"\n{tool}: {len(cell.errors)} of {runs} runs failed; first:\n")
            print(f"```\n{cell.errors[0]}\n```")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--tools", default="skopeo,podman,ours")
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--scratch", type=Path, default=Path("/tmp/bench-pull"))
    parser.add_argument("--scratch-size", default="20G")
    parser.add_argument("--scratch-script", type=Path, default=DEFAULT_SCRATCH_SCRIPT)
    args = parser.parse_args()
    tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    if not tools or any(t not in ("skopeo", "podman", "ours") for t in tools):
        raise SystemExit("--tools: skopeo, podman and/or ours")
    for tool in (GNU_TIME, SKOPEO, PODMAN, REGISTRY):
        if not os.access(tool, os.X_OK):
            raise SystemExit(f"{tool} is missing")
    if os.geteuid() != 0:
        raise SystemExit("needs root")
    layout = build_layout(args.corpus, (args.corpus / "oci-bench").resolve())
    scratch: Path = args.scratch.resolve()
    mounted_here = False
    if not os.path.ismount(scratch):
        subprocess.run(
            ["bash", str(args.scratch_script), "up", str(scratch), args.scratch_size], check=True
        )
        mounted_here = True
    work = Path(tempfile.mkdtemp(prefix="bench-pull-registry-"))
    proc, host = start_registry(work / "registry")
    try:
        auth = work / "auth.json"
        auth.write_text('{"auths":{}}')
        env_base = {"REGISTRY_AUTH_FILE": str(auth), "TMPDIR": str(scratch / "tmp")}
        (scratch / "tmp").mkdir(exist_ok=True)
        push = [
            SKOPEO, "--insecure-policy", "copy", "--quiet", "--dest-tls-verify=false",
            f"oci:{layout}:{TAG}", f"docker://{host}/{REPO}",
        ]  # fmt: skip
        subprocess.run(push, check=True, env={**os.environ, **env_base})
        logdir = scratch / "logs"
        logdir.mkdir(exist_ok=True)
        results, checks, builds = bench(host, tools, args.runs, scratch, logdir, env_base)
        load = os.getloadavg()[0]
    finally:
        proc.terminate()
        proc.wait()
        shutil.rmtree(work, ignore_errors=True)
        if mounted_here:
            subprocess.run(["bash", str(args.scratch_script), "down", str(scratch)], check=False)
    sizes = sum(p.stat().st_size for p in (layout / "blobs/sha256").iterdir())
    print(f"# bench_pull: {args.runs} runs, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
    print(f"\nimage: {layout}:{TAG} pushed to {host}/{REPO} ({sizes / 1e6:.0f} MB of blobs)\n")
    print("## Commands (each timed under GNU time; G, R: a fresh store on the scratch ext4)\n")
    print("```sh")
    for cmd in commands("HOST", "G", "R", Path("POLICY")).values():
        print(shlex.join(cmd))
    print("```\n")
    report(results, args.runs, load)
    for c in checks:
        print(f"- {c}")
    for build, used in builds.items():
        print(f"- extension {build}: {used} runs")


if __name__ == "__main__":
    main()
