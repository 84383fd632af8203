"""Image push, whole-process wall time: ours vs skopeo copy from containers-storage.

    python3 benches/bench_push.py [--runs 5] [--scratch DIR] [--compression gzip]

The 3-layer corpus image (bench_import's OCI layout of `base`, `upper`, `small`) is imported
once (untimed) into an overlay store on a fresh scratch ext4, then pushed to a loopback
Debian `docker-registry` (plain HTTP, storage on the same scratch filesystem), a fresh
registry with empty storage for every run, by

    skopeo --insecure-policy copy --dest-tls-verify=false \\
        containers-storage:[overlay@G+R]localhost/bench:1 docker://127.0.0.1:PORT/bench:1
    python3 -c '...Store(G, R, "overlay").push_image("localhost/bench:1", "docker://...")'

alternating within every repetition (skopeo, ours, skopeo, ...). Ours runs with an empty
blob info cache each time (nothing is known to be in the registry), so both compress and
upload every layer. Each timed run is one whole process under GNU time (peak RSS, CPU).
The pushed manifests are checked after the first run of each (layer count and DiffIDs).
Needs root (the scratch filesystem and overlay).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import bench_import as bi
from _proc import RunError, Sample, timed

HERE = Path(__file__).resolve().parent
SKOPEO = "/usr/bin/skopeo"
REGISTRY = "/usr/bin/docker-registry"
SCRATCH = Path("/work/shared/bench/scratch-fs.sh")
NAME = "localhost/bench:1"
OURS_CODE = (
    "import sys, containers_storage as cs; "
    "print(cs.Store(sys.argv[1], sys.argv[2], 'overlay').push_image("
    "sys.argv[3], sys.argv[4], tls_verify=False, compression=sys.argv[5], "
    "compression_level=int(sys.argv[6]) if sys.argv[6] else None))"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Registry:
    """docker-registry on 127.0.0.1 with its storage in ``base``."""

    def __init__(self, base: Path) -> None:
        if base.exists():
            shutil.rmtree(base)
        base.mkdir(parents=True)
        self.port = free_port()
        config = {
            "version": 0.1,
            "log": {"level": "error", "accesslog": {"disabled": True}},
            "storage": {"filesystem": {"rootdirectory": str(base / "storage")}},
            "http": {"addr": f"127.0.0.1:{self.port}"},
        }
        (base / "config.yml").write_text(json.dumps(config))
        self.log = open(base / "registry.log", "wb")
        self.proc = subprocess.Popen(
            [REGISTRY, "serve", str(base / "config.yml")], stdout=self.log, stderr=self.log
        )
        for _ in range(500):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/v2/", timeout=1)
                return
            except OSError:
                time.sleep(0.02)
        raise SystemExit("docker-registry did not start")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)
        self.log.close()


def manifest(port: int) -> dict[str, object]:
    p = subprocess.run(
        [SKOPEO, "inspect", "--raw", "--tls-verify=false", f"docker://127.0.0.1:{port}/bench:1"],
        capture_output=True,
        check=True,
    )
    result: dict[str, object] = json.loads(p.stdout)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--scratch", type=Path, default=Path("/tmp/cs-bench-push"))
    ap.add_argument("--corpus", type=Path, default=Path.home() / ".cache" / "cs-corpus")
    ap.add_argument("--compression", default="gzip", choices=["gzip", "zstd"])
    ap.add_argument("--level", default="", help="our gzip level (default: push's default)")
    args = ap.parse_args()
    layout = bi.build_layout(args.corpus, args.corpus / "oci-bench")
    scratch: Path = args.scratch
    mounted_here = False
    if not os.path.ismount(scratch):
        subprocess.run(["bash", str(SCRATCH), "up", str(scratch), "12G"], check=True)
        mounted_here = True
    store = scratch / "store"
    graph, run = store / "graph", store / "run"
    logs = scratch / "logs"
    logs.mkdir(exist_ok=True)
    py = sys.executable
    env = {**os.environ, "PYTHONPATH": str(HERE.parent / "python")}
    try:
        bi.clean_store(store, "overlay")
        subprocess.run(
            [py, "-c", bi.OURS_CODE, str(graph), str(run), "overlay", f"oci:{layout}:{bi.TAG}",
             NAME],
            env=env, check=True,
        )  # fmt: skip
        sk_env = bi.store_env(store, "overlay")
        samples: dict[str, list[Sample]] = {"skopeo": [], "ours": []}
        for i in range(args.runs):
            for tool in ("skopeo", "ours"):
                reg = Registry(scratch / "registry")
                dest = f"docker://127.0.0.1:{reg.port}/bench:1"
                if tool == "skopeo":
                    extra = ["--dest-compress-format", "zstd"] if args.compression == "zstd" else []
                    cmd = [SKOPEO, "--insecure-policy", "copy", "--quiet",
                           "--dest-tls-verify=false", *extra,
                           f"containers-storage:[overlay@{graph}+{run}]{NAME}", dest]  # fmt: skip
                    tenv = sk_env
                else:
                    cache = scratch / "blob-cache"
                    shutil.rmtree(cache, ignore_errors=True)
                    cmd = [py, "-c", OURS_CODE, str(graph), str(run), NAME, dest,
                           args.compression, args.level]  # fmt: skip
                    tenv = {**env, "CONTAINERS_STORAGE_BLOB_INFO_CACHE_DIR": str(cache)}
                subprocess.run(["sync"], check=True)
                try:
                    s = timed(cmd, logs, tenv)
                    if i == 0:
                        m = manifest(reg.port)
                        layers = m["layers"]
                        assert isinstance(layers, list) and len(layers) == 3, m
                        types = sorted({x["mediaType"] for x in layers})
                        sizes = [x["size"] for x in layers]
                        mb = sum(sizes) / 1e6
                        print(f"# {tool}: {types} layer sizes {sizes} = {mb:.1f} MB")
                except RunError as e:
                    raise SystemExit(str(e)) from None
                finally:
                    # The registry goes whatever happened: a failed check or Ctrl-C too.
                    reg.stop()
                samples[tool].append(s)
                print(f"run {i} {tool:6} {s.wall:6.2f} s  cpu {s.cpu:6.2f} s  "
                      f"rss {s.rss_kib / 1024:6.1f} MiB", flush=True)  # fmt: skip
        sk = statistics.median(x.wall for x in samples["skopeo"])
        ours = statistics.median(x.wall for x in samples["ours"])
        print(f"median wall: skopeo {sk:.2f} s, ours {ours:.2f} s, ratio {ours / sk:.2f}x")
        for tool in ("skopeo", "ours"):
            cpu = statistics.median(x.cpu for x in samples[tool])
            rss = max(x.rss_kib for x in samples[tool]) / 1024
            print(f"{tool}: median cpu {cpu:.2f} s, peak rss {rss:.1f} MiB")
    finally:
        bi.clean_store(store, "overlay")
        shutil.rmtree(scratch / "registry", ignore_errors=True)
        if mounted_here:
            subprocess.run(["bash", str(SCRATCH), "down", str(scratch)], check=False)


if __name__ == "__main__":
    main()
