"""The registry client's HTTP library, chosen by measurement: pull one big blob from a
loopback Debian ``docker-registry`` (plain HTTP) with

- ``curl -o /dev/null``: the floor (no hashing),
- ``curl | openssl dgst -sha256`` and ``curl | sha256sum``: native download and SHA-256 in
  two processes (about what a Rust client would do, with or without SHA extensions),
- urllib3 streaming 1 MiB chunks, hashing nothing (the library's own cost),
- urllib3 streaming 1 MiB chunks into ``hashlib.sha256`` (the Python client),
- the same, also writing every chunk into a pipe drained by ``cat >/dev/null`` (the hand-off
  to the Rust apply through a file descriptor).

Each is a whole process under GNU time (wall, CPU = user + system of every thread and child,
peak RSS), interleaved within each repetition; medians are printed with the exact commands.
Usage: ``python3 benches/bench_registry_client.py [--mib 256] [--runs 5]``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _proc import Sample, timed

REGISTRY = "/usr/bin/docker-registry"
CHUNK = 1 << 20


def client(url: str, digest: str, mode: str) -> None:
    """Stream ``url`` with urllib3: into SHA-256 (``mode`` "hash"), also into a pipe ("pipe"),
    or nowhere ("none"); check the digest when hashing."""
    import urllib3

    pipe = mode == "pipe"
    sink = (
        subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
        if pipe
        else None
    )
    http = urllib3.PoolManager()
    resp = http.request("GET", url, preload_content=False, decode_content=False)
    h = hashlib.sha256()
    n = 0
    fd = sink.stdin.fileno() if sink is not None and sink.stdin is not None else -1
    for chunk in resp.stream(CHUNK):
        n += len(chunk)
        if mode != "none":
            h.update(chunk)
        if fd >= 0:
            out = memoryview(chunk)
            while out:
                out = out[os.write(fd, out) :]
    resp.release_conn()
    if mode == "none":
        return
    if sink is not None and sink.stdin is not None:
        sink.stdin.close()
        sink.wait()
    if "sha256:" + h.hexdigest() != digest:
        sys.exit(f"digest mismatch after {n} bytes")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_registry(base: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    config = {
        "version": "0.1",
        "log": {"level": "error", "accesslog": {"disabled": True}},
        "storage": {"filesystem": {"rootdirectory": str(base / "storage")}},
        "http": {"addr": f"127.0.0.1:{port}", "secret": "bench"},
    }
    (base / "config.yml").write_text(json.dumps(config))
    log = (base / "registry.log").open("wb")
    proc = subprocess.Popen([REGISTRY, "serve", str(base / "config.yml")], stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if subprocess.run(["curl", "-sf", "-o", "/dev/null", f"{url}/v2/"]).returncode == 0:
            return proc, url
        time.sleep(0.05)
    proc.kill()
    sys.exit("registry did not start")


def upload(url: str, data_path: Path, digest: str) -> None:
    """POST + PUT a monolithic upload with curl."""
    out = subprocess.run(
        [
            "curl",
            "-sf",
            "-D",
            "-",
            "-o",
            "/dev/null",
            "-X",
            "POST",
            f"{url}/v2/bench/blobs/uploads/",
        ],
        capture_output=True,
        check=True,
        text=True,
    ).stdout
    location = next(
        line.split(":", 1)[1].strip()
        for line in out.splitlines()
        if line.lower().startswith("location:")
    )
    if location.startswith("/"):
        location = url + location
    sep = "&" if "?" in location else "?"
    subprocess.run(
        ["curl", "-sf", "-X", "PUT", "-H", "Content-Type: application/octet-stream",
         "--data-binary", f"@{data_path}", f"{location}{sep}digest={digest}"],
        check=True,
    )  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mib", type=int, default=256)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--client", choices=["none", "hash", "pipe"], help=argparse.SUPPRESS)
    ap.add_argument("--url", help=argparse.SUPPRESS)
    ap.add_argument("--digest", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.client:
        client(args.url, args.digest, args.client)
        return
    with tempfile.TemporaryDirectory(prefix="bench-registry-") as tmp:
        base = Path(tmp)
        data = base / "blob"
        h = hashlib.sha256()
        with data.open("wb") as f:
            for _ in range(args.mib):
                chunk = os.urandom(CHUNK)
                h.update(chunk)
                f.write(chunk)
        digest = "sha256:" + h.hexdigest()
        proc, url = start_registry(base)
        try:
            upload(url, data, digest)
            data.unlink()
            blob = f"{url}/v2/bench/blobs/{digest}"
            me = [sys.executable, __file__, "--url", blob, "--digest", digest, "--client"]
            cmds = {
                "curl -o /dev/null": ["curl", "-sf", "-o", "/dev/null", blob],
                "curl | openssl sha256": [
                    "sh",
                    "-c",
                    f"curl -sf {shlex.quote(blob)} | openssl dgst -sha256",
                ],
                "curl | sha256sum": ["sh", "-c", f"curl -sf {shlex.quote(blob)} | sha256sum"],
                "urllib3 (no hash)": [*me, "none"],
                "urllib3 -> sha256": [*me, "hash"],
                "urllib3 -> sha256 + pipe": [*me, "pipe"],
            }
            for cmd in cmds.values():
                print("$", shlex.join(cmd))
            samples: dict[str, list[Sample]] = {k: [] for k in cmds}
            for _ in range(args.runs):
                for name, cmd in cmds.items():
                    samples[name].append(timed(cmd, base))
            load = os.getloadavg()[0]
        finally:
            proc.terminate()
            proc.wait()
    mb = args.mib * CHUNK / 1e6
    print(f"\nblob {args.mib} MiB, {args.runs} runs, medians (load {load:.2f}):\n")
    print("| client | wall s | MB/s | CPU s | peak RSS MiB |")
    print("|---|---|---|---|---|")
    for name, ss in samples.items():
        wall = statistics.median(s.wall for s in ss)
        cpu = statistics.median(s.cpu for s in ss)
        rss = statistics.median(s.rss_kib for s in ss) / 1024
        print(f"| {name} | {wall:.2f} | {mb / wall:.0f} | {cpu:.2f} | {rss:.0f} |")


if __name__ == "__main__":
    main()
