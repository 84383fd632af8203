"""Rootless image import, whole-process wall time: ours vs skopeo, as one unprivileged user.

    python3 benches/bench_rootless.py [--runs 3] [--user csbench] [--scratch DIR]

The image is bench_import's 3-layer gzip OCI layout of the corpus (base, upper, small),
copied once onto the scratch filesystem where the user can read it. Each timed run is one
whole process started as the user (``setpriv`` to the user, a clean environment, a fresh
``XDG_RUNTIME_DIR``, ``XDG_DATA_HOME`` on the scratch filesystem) into an empty default
rootless store, so both tools pick the store and driver themselves (native overlay):

    skopeo --policy P copy --quiet oci:LAYOUT:bench containers-storage:localhost/bench:1
    python -m containers_storage import-image -n localhost/bench:1 oci:LAYOUT:bench

skopeo enters its user namespace with ``MaybeReexecUsingUserNamespace``, ours with
``containers_storage.unshare.maybe_reexec``: both map the user's subordinate ranges with
newuidmap/newgidmap and re-execute themselves, which the timings include. The tools
alternate within each repetition. The first run checks that both stores hold the same layer
IDs and image ID (untimed). Between runs (untimed) the store is removed and synced.

Needs root (it creates the user if missing, with 65536 subordinate IDs, and removes it
again; the interpreter's prefix is bind-mounted read-only when the user cannot reach it).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pwd
import shutil
import statistics
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from _proc import GNU_TIME, Sample, timed
from bench_import import (
    DEFAULT_CORPUS,
    DEFAULT_SCRATCH_SCRIPT,
    NAME,
    SKOPEO,
    TAG,
    build_layout,
    warm,
)

REPO = Path(__file__).resolve().parents[1]
PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


@contextlib.contextmanager
def bench_user(name: str) -> Iterator[pwd.struct_passwd]:
    """The user (created with subordinate ranges when missing, and then removed)."""
    try:
        yield pwd.getpwnam(name)
        return
    except KeyError:
        pass
    subprocess.run(
        ["useradd", "-m", "-U", "-K", "SUB_UID_COUNT=0", "-K", "SUB_GID_COUNT=0", name],
        check=True,
    )
    start = 400000
    for path in ("/etc/subuid", "/etc/subgid"):
        for line in Path(path).read_text().splitlines():
            parts = line.split(":")
            if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
                start = max(start, int(parts[1]) + int(parts[2]))
    for path in ("/etc/subuid", "/etc/subgid"):
        with open(path, "a") as f:
            f.write(f"{name}:{start}:65536\n")
    try:
        yield pwd.getpwnam(name)
    finally:
        subprocess.run(["userdel", "-r", "-f", name], capture_output=True, check=False)
        for path in ("/etc/subuid", "/etc/subgid"):
            lines = Path(path).read_text().splitlines()
            Path(path).write_text("".join(f"{x}\n" for x in lines if not x.startswith(name + ":")))


@contextlib.contextmanager
def python_for(user: pwd.struct_passwd, mountpoint: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """An interpreter path the user can run and the environment it needs."""
    import sysconfig

    prefix = Path(sys.base_prefix).resolve()
    exe = Path(sys.executable).resolve()
    env = {"PYTHONPATH": str(REPO / "python")}
    probe = [*as_user(user, {}), str(exe), "-c", ""]
    if subprocess.run(probe, capture_output=True, check=False).returncode == 0:
        yield str(exe), env
        return
    mountpoint.mkdir(exist_ok=True)
    subprocess.run(["mount", "--bind", "-o", "ro", str(prefix), str(mountpoint)], check=True)
    purelib = Path(sysconfig.get_paths()["purelib"]).resolve()
    env["PYTHONPATH"] += f":{mountpoint / purelib.relative_to(prefix)}"
    env["LD_LIBRARY_PATH"] = str(mountpoint / "lib")
    try:
        yield str(mountpoint / exe.relative_to(prefix)), env
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)


def as_user(user: pwd.struct_passwd, env: dict[str, str]) -> list[str]:
    base = {"HOME": user.pw_dir, "USER": user.pw_name, "LOGNAME": user.pw_name, "PATH": PATH}
    return [
        "setpriv",
        f"--reuid={user.pw_uid}",
        f"--regid={user.pw_gid}",
        "--init-groups",
        "--reset-env",
        "env",
        "-i",
        *(f"{k}={v}" for k, v in {**base, **env}.items()),
    ]


def fresh_dirs(user: pwd.struct_passwd, scratch: Path, n: int) -> dict[str, str]:
    """An empty XDG_DATA_HOME and a new XDG_RUNTIME_DIR for one run."""
    data, run = scratch / "data", scratch / f"run{n}"
    subprocess.run(["rm", "-rf", str(data)], check=True)
    for d in (data, run):
        d.mkdir(mode=0o700)
        os.chown(d, user.pw_uid, user.pw_gid)
    os.sync()
    return {"XDG_DATA_HOME": str(data), "XDG_RUNTIME_DIR": str(run)}


def summary(cmd: list[str]) -> tuple[list[str], list[str]]:
    layers = json.loads(
        subprocess.run([*cmd, "layers", "-j"], capture_output=True, check=True).stdout
    )
    images = json.loads(
        subprocess.run([*cmd, "images", "-j"], capture_output=True, check=True).stdout
    )
    return sorted(x["id"] for x in layers or []), [x["id"] for x in images or []]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--user", default="csbench")
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--scratch", type=Path, default=Path("/tmp/bench-rootless"))
    parser.add_argument("--scratch-size", default="12G")
    parser.add_argument("--no-scratch-fs", action="store_true")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("needs root")
    source = build_layout(args.corpus, (args.corpus / "oci-bench").resolve())
    scratch: Path = args.scratch.resolve()
    mounted = False
    if not args.no_scratch_fs and not os.path.ismount(scratch):
        script = str(DEFAULT_SCRATCH_SCRIPT)
        subprocess.run(["bash", script, "up", str(scratch), args.scratch_size], check=True)
        mounted = True
    scratch.mkdir(parents=True, exist_ok=True)
    os.chmod(scratch, 0o755)
    times: dict[str, list[Sample]] = {"skopeo": [], "ours": []}
    checks = []
    try:
        layout = scratch / "layout"
        if not (layout / "index.json").exists():
            shutil.copytree(source, layout, ignore=shutil.ignore_patterns(".complete"))
        policy = scratch / "policy.json"
        policy.write_text(json.dumps({"default": [{"type": "insecureAcceptAnything"}]}))
        logdir = scratch / "logs"
        logdir.mkdir(exist_ok=True)
        warm(layout)
        with bench_user(args.user) as user, python_for(user, scratch / "python") as (py, penv):
            cmds = {
                "skopeo": [
                    SKOPEO, "--policy", str(policy), "copy", "--quiet",
                    f"oci:{layout}:{TAG}", f"containers-storage:{NAME}",
                ],
                "ours": [py, "-m", "containers_storage", "import-image", "-n", NAME,
                         f"oci:{layout}:{TAG}"],
            }  # fmt: skip
            n = 0
            for i in range(args.runs):
                ids = {}
                for tool in ("skopeo", "ours") if i % 2 == 0 else ("ours", "skopeo"):
                    n += 1
                    env = {**penv, **fresh_dirs(user, scratch, n)}
                    times[tool].append(timed([*as_user(user, env), *cmds[tool]], logdir))
                    if i == 0:
                        ids[tool] = summary([*as_user(user, env), py, "-m", "containers_storage"])
                if i == 0:
                    same = ids["skopeo"] == ids["ours"]
                    checks.append(
                        f"same {len(ids['ours'][0])} layer IDs and image ID as skopeo: {same}"
                    )
            subprocess.run(["rm", "-rf", str(scratch / "data")], check=True)
    finally:
        if mounted:
            subprocess.run(["bash", str(DEFAULT_SCRATCH_SCRIPT), "down", str(scratch)], check=False)
    sk = statistics.median(s.wall for s in times["skopeo"])
    ou = statistics.median(s.wall for s in times["ours"])
    print(f"# bench_rootless: {args.runs} runs, load {os.getloadavg()[0]:.1f}, {GNU_TIME}")
    print("\n| tool | median wall s | runs | peak MiB | CPU s |\n|---|---|---|---|---|")
    for tool, med in (("skopeo", sk), ("ours", ou)):
        s = times[tool]
        print(
            f"| {tool} | {med:.2f} | {' '.join(f'{x.wall:.2f}' for x in s)} | "
            f"{max(x.rss_kib for x in s) / 1024:.0f} | "
            f"{statistics.median(x.cpu for x in s):.2f} |"
        )
    print(f"\nours/skopeo: {ou / sk:.2f}x (target <= 0.5x)")
    for c in checks:
        print(f"- {c}")


if __name__ == "__main__":
    main()
