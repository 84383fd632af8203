"""Reliability of the Store across processes: crashes mid-write, concurrent writers, reloads.

a) A child that puts layers is killed with SIGKILL at random moments; every reopen must find a
   store with no half-made layer and every layer whose ``put_layer`` returned intact.
b) Four processes run random operations on one store; afterwards the files parse, names are
   unique per kind, references hold, nothing created was lost or resurrected, and Go's CLI
   reads the same store.
c) A long-lived Store sees what another process (ours, or Go's CLI) wrote, without being
   recreated.

Randomness is seeded (``CS_RELIABILITY_SEED`` overrides the seed); the interleavings still
depend on timing. Waits are guarded by HANG_GUARD (a hang detector, not a time limit).
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import random
import select
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import containers_storage as cs
import pytest
from containers_storage import errors

from tests.helpers import (
    HANG_GUARD,
    Child,
    proc_locks_holders,
    run_interrupted,
)
from tests.store.helpers import go_argv, release_mounts
from tests.tars import MTIME, d, f, make_tar, sym, write_many_members

pytestmark = [pytest.mark.root]

SEED = int(os.environ.get("CS_RELIABILITY_SEED", "20240611"))


# -- helpers shared by the tests ---------------------------------------------------------------


@pytest.fixture(autouse=True)
def shut_down(request: pytest.FixtureRequest) -> Iterator[list[tuple[Path, Path, str]]]:
    """Stores to shut down after the test (the overlay driver keeps its home mounted until
    then); the test's ``roots`` store is always one. Torn down after ``children``."""
    stores: list[tuple[Path, Path, str]] = []
    if "roots" in request.fixturenames:
        graph, run = request.getfixturevalue("roots")
        stores.append((graph, run, request.getfixturevalue("driver")))
    yield stores
    for graph, run, drv in stores:
        if graph.exists():
            with contextlib.suppress(cs.StorageError):
                cs.Store(graph, run, drv).shutdown(True)
    # A run that failed half-way (a killed child, a hang) may leave an overlay home mounted.
    release_mounts(request.getfixturevalue("tmp_path_factory").getbasetemp())


def json_paths(graph: Path, run: Path, driver: str) -> dict[str, Path]:
    """The store's bookkeeping JSON files."""
    return {
        "layers": graph / f"{driver}-layers" / "layers.json",
        "images": graph / f"{driver}-images" / "images.json",
        "containers": graph / f"{driver}-containers" / "containers.json",
        "mountpoints": run / f"{driver}-layers" / "mountpoints.json",
        "volatile-containers": run / f"{driver}-containers" / "volatile-containers.json",
    }


def load_json_files(graph: Path, run: Path, driver: str) -> dict[str, list[dict[str, Any]]]:
    """Every bookkeeping file that exists, strictly parsed (each must be a JSON array of
    objects); a missing file is an empty list."""
    out: dict[str, list[dict[str, Any]]] = {}
    for kind, path in json_paths(graph, run, driver).items():
        if not path.exists():
            out[kind] = []
            continue
        data = path.read_bytes()
        try:
            value = json.loads(data)
        except ValueError as e:
            pytest.fail(f"{path} does not parse ({e}): {data[:200]!r}")
        assert isinstance(value, list), f"{path}: not an array"
        assert all(isinstance(v, dict) for v in value), f"{path}: not an array of objects"
        out[kind] = value
    return out


def driver_layer_dirs(graph: Path, driver: str) -> set[str]:
    """Names of the per-layer entries in the driver's home."""
    if driver == "vfs":
        base = graph / "vfs" / "dir"
        return {p.name for p in base.iterdir()} if base.exists() else set()
    if driver == "overlay":
        base = graph / "overlay"
        # tempdirs/ holds no layer; what a killed process left there is removed by the
        # next open (checked by the callers through staging_left).
        skip = {"l", "tempdirs"}
        return {p.name for p in base.iterdir() if p.name not in skip and not p.name.startswith(".")}
    raise AssertionError(f"no layer-directory listing for driver {driver!r}")


def staging_left(graph: Path, driver: str) -> list[str]:
    """Entries in the overlay driver's staging directory (stages and feature probes)."""
    base = graph / "overlay" / "tempdirs"
    return sorted(p.name for p in base.iterdir()) if driver == "overlay" and base.exists() else []


def tar_split_files(graph: Path, driver: str) -> tuple[set[str], list[str]]:
    """(layer IDs with a ``.tar-split.gz``, leftover ``.tar-split.gz.tmp`` files)."""
    base = graph / f"{driver}-layers"
    ids = {p.name.removesuffix(".tar-split.gz") for p in base.glob("*.tar-split.gz")}
    tmps = sorted(p.name for p in base.glob("*.tar-split.gz.tmp"))
    return ids, tmps


def names_unique(records: list[dict[str, Any]], kind: str) -> None:
    holders: dict[str, list[str]] = {}
    for rec in records:
        for name in rec.get("names") or ():
            holders.setdefault(name, []).append(rec["id"])
    shared = {n: ids for n, ids in holders.items() if len(ids) > 1}
    assert not shared, f"{kind} names held by several {kind}s: {shared}"


def read_line(proc: subprocess.Popen[str], what: str) -> str:
    """The child's next stdout line, failing (not hanging) when it never comes."""
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], HANG_GUARD)
    if not ready:
        pytest.fail(f"no answer from child within {HANG_GUARD} s ({what})")
    line = proc.stdout.readline()
    if not line:
        _out, err = proc.communicate(timeout=HANG_GUARD)
        pytest.fail(f"child exited ({proc.returncode}) while {what}; stderr:\n{err}")
    return line.rstrip("\n")


# -- the inter-process lock stays held ---------------------------------------------------------


@pytest.mark.parametrize("which", ["layers", "images", "containers", "mountpoints"])
def test_store_calls_keep_a_held_lock(roots: tuple[Path, Path], driver: str, which: str) -> None:
    """POSIX record locks belong to the process and closing *any* descriptor of the file drops
    them: a store that checks a lock's token by opening and closing the lock file while it
    holds the lock silently lets other processes in (the concurrent test then sees writers
    overlap). Deterministic form of that failure."""
    graph, run = roots
    store = cs.Store(graph, run, driver)
    layer = store.create_layer()
    path, call = {
        "layers": (graph / f"{driver}-layers" / "layers.lock", store.layers),
        "images": (graph / f"{driver}-images" / "images.lock", store.images),
        "containers": (graph / f"{driver}-containers" / "containers.lock", store.containers),
        "mountpoints": (
            run / f"{driver}-layers" / "mountpoints.lock",
            lambda: store.mounted(layer.id),
        ),
    }[which]
    lock = cs.Lockfile(path)  # the same object as the store's (one per path per process)
    with lock.writing():
        assert os.getpid() in proc_locks_holders(path)
        call()
        assert os.getpid() in proc_locks_holders(path), (
            f"the process lost its fcntl lock on {path.name} during a store call"
        )


# -- a) SIGKILL during put_layer ---------------------------------------------------------------

PUT_TOTAL = 100

#: argv: graph run driver start total parent-or-"-" tarball...
PUT_CHILD = r"""
import sys
import containers_storage as cs

graph, run, driver, start, total, parent = sys.argv[1:7]
tarballs = sys.argv[7:]
store = cs.Store(graph, run, driver)
print("ready", flush=True)
parent_id = None if parent == "-" else parent
for i in range(int(start), int(total)):
    layer, _size = store.put_layer(parent_id, tarballs[i % len(tarballs)], names=[f"l{i}"])
    print(i, layer.id, layer.diff_digest, flush=True)
    parent_id = layer.id
"""


def make_tarballs(directory: Path, rnd: random.Random, count: int) -> list[tuple[Path, str]]:
    """``count`` gzip layer tarballs (a few small files, a symlink and a 1.5 MB file that
    every layer overwrites) and the sha256 digest of each uncompressed tar."""
    out = []
    for k in range(count):
        entries = [
            d("etc/"),
            f("etc/hello", f"hello {k}\n".encode()),
            f(f"etc/only-{k}", rnd.randbytes(rnd.randint(0, 5000))),
            f("big.bin", rnd.randbytes(1_500_000)),
            sym("link", f"etc/only-{k}"),
        ]
        raw = make_tar(entries, mtime=MTIME + k)
        path = directory / f"diff{k}.tar.gz"
        path.write_bytes(gzip.compress(raw, compresslevel=1))
        out.append((path, "sha256:" + hashlib.sha256(raw).hexdigest()))
    return out


@dataclass
class PutRun:
    """What the test knows about the layers put so far (index i has name ``l{i}``)."""

    graph: Path
    run: Path
    driver: str
    expected_digests: list[str]
    layers: list[tuple[str, str]] = field(default_factory=list)  # (id, diff digest)
    verified: int = 0  # layers[:verified] had their diff reproduced at least once
    adopted: int = 0  # complete layers found after a kill that the child had not reported
    interrupted: int = 0  # kills that left a layer flagged incomplete (caught mid-put)

    def expected_digest(self, i: int) -> str:
        return self.expected_digests[i % len(self.expected_digests)]

    def record(self, i: int, layer_id: str, digest: str) -> None:
        assert i == len(self.layers), f"child reported l{i}, expected l{len(self.layers)}"
        assert digest == self.expected_digest(i), f"l{i}: diff digest {digest}"
        self.layers.append((layer_id, digest))

    def check_diff(self, store: cs.Store, i: int) -> None:
        layer_id, digest = self.layers[i]
        data = b"".join(store.diff(None, layer_id, compression="none"))
        assert "sha256:" + hashlib.sha256(data).hexdigest() == digest, f"diff of l{i} changed"

    def verify(self, rnd: random.Random, all_diffs: bool = False) -> None:
        """Open the store afresh and check it against what was reported."""
        before = json_paths(self.graph, self.run, self.driver)["layers"]
        if before.exists() and b'"incomplete":true' in before.read_bytes():
            self.interrupted += 1
        store = cs.Store(self.graph, self.run, self.driver)  # a writable open: must not fail
        # The layer store is opened (and incomplete layers removed) on its first use, as
        # Go's LayerStore(); listing the layers is such a use.
        store.layers()
        files = load_json_files(self.graph, self.run, self.driver)
        layers_json = files["layers"]
        incomplete = [r["id"] for r in layers_json if (r.get("flags") or {}).get("incomplete")]
        assert not incomplete, f"incomplete layers left after a writable open: {incomplete}"
        on_disk = {r["id"]: r for r in layers_json}

        # A layer put but not reported (killed between put_layer's return and the print) is
        # complete and keeps its name: adopt it, after checking it is the one expected.
        nxt = len(self.layers)
        by_name = {n: r for r in layers_json for n in r.get("names") or ()}
        if f"l{nxt}" in by_name:
            rec = by_name[f"l{nxt}"]
            want_parent = self.layers[-1][0] if self.layers else ""
            assert rec.get("parent", "") == want_parent, f"unreported l{nxt} has a wrong parent"
            self.record(nxt, rec["id"], rec.get("diff-digest", ""))
            self.adopted += 1

        ids = [layer_id for layer_id, _ in self.layers]
        extra = set(on_disk) - set(ids)
        missing = set(ids) - set(on_disk)
        assert not missing, f"layers whose put_layer returned are gone: {missing}"
        assert not extra, f"layers nobody put (half-made?): {extra}"
        for i, (layer_id, digest) in enumerate(self.layers):
            rec = on_disk[layer_id]
            assert rec.get("names") == [f"l{i}"], rec
            assert rec.get("parent", "") == (ids[i - 1] if i else ""), rec
            assert rec.get("diff-digest") == digest, rec
        names_unique(layers_json, "layer")

        dirs = driver_layer_dirs(self.graph, self.driver)
        assert dirs == set(on_disk), (
            f"driver dirs without a layer: {dirs - set(on_disk)}; "
            f"layers without a dir: {set(on_disk) - dirs}"
        )
        # Every child is dead by now: the open above removed whatever they left staged.
        assert not staging_left(self.graph, self.driver), "staging left by a killed child"
        split_ids, tmps = tar_split_files(self.graph, self.driver)
        assert split_ids <= set(on_disk), f"tar-split without a layer: {split_ids - set(on_disk)}"
        assert split_ids == set(on_disk), f"layers without tar-split: {set(on_disk) - split_ids}"
        assert not tmps, f"leftover tar-split temporaries: {tmps}"

        listed = [layer.id for layer in store.layers()]
        assert listed == [r["id"] for r in layers_json]
        if ids:
            assert store.layer(f"l{len(ids) - 1}").id == ids[-1]
        # Diffs: every new layer, a sample of older ones (all of them when asked).
        if all_diffs:
            check = list(range(len(self.layers)))
        else:
            older = list(range(self.verified))
            check = rnd.sample(older, min(3, len(older))) + list(
                range(self.verified, len(self.layers))
            )
        for i in check:
            self.check_diff(store, i)
        self.verified = len(self.layers)


def test_sigkill_during_put_layer(tmp_path: Path, roots: tuple[Path, Path], driver: str) -> None:
    rnd = random.Random(SEED)
    graph, run = roots
    tarballs = make_tarballs(tmp_path, rnd, 4)
    state = PutRun(graph, run, driver, [digest for _path, digest in tarballs])
    cs.Store(graph, run, driver)  # create the store before the first child
    kills = early_kills = restarts = 0
    while len(state.layers) < PUT_TOTAL:
        restarts += 1
        assert restarts < 2000, "no progress: the child never gets a layer in"
        parent = state.layers[-1][0] if state.layers else "-"
        cmd = [sys.executable, "-c", PUT_CHILD, str(graph), str(run), driver]
        cmd += [str(len(state.layers)), str(PUT_TOTAL), parent]
        cmd += [str(path) for path, _digest in tarballs]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            assert proc.stdout is not None
            fd = proc.stdout.fileno()
            buf = b""
            early = rnd.random() < 0.15
            if early:
                # Any moment, including the start-up's open (and its clean-up of the
                # previous child's incomplete layer).
                time.sleep(rnd.uniform(0.0, 0.4))
            else:
                # After a random number of layers (0-5) came back, a moment into the next
                # put_layer: always some progress, and most kills land inside a put.
                wanted = rnd.randint(0, 5) + 1  # lines: "ready" and the layers
                deadline = time.monotonic() + HANG_GUARD
                while buf.count(b"\n") < wanted and proc.poll() is None:
                    if time.monotonic() > deadline:
                        pytest.fail(f"put_layer child stalled; said {buf!r}")
                    r, _, _ = select.select([fd], [], [], 1.0)
                    if r:
                        buf += os.read(fd, 65536)
                time.sleep(rnd.uniform(0.0, 0.03))
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                kills += 1
                early_kills += early
            out, err = proc.communicate(timeout=HANG_GUARD)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate(timeout=HANG_GUARD)
        if proc.returncode not in (0, -signal.SIGKILL):
            pytest.fail(f"put_layer child failed ({proc.returncode}):\n{err.decode()}")
        text = (buf + out).decode()
        complete = text[: text.rfind("\n") + 1] if "\n" in text else ""
        for line in complete.splitlines():
            if line == "ready":
                continue
            i, layer_id, digest = line.split()
            state.record(int(i), layer_id, digest)
        if proc.returncode == 0:
            assert len(state.layers) == PUT_TOTAL, text
        state.verify(rnd)
    state.verify(rnd, all_diffs=True)
    print(
        f"{kills} kills ({early_kills} at any moment), {state.interrupted} mid-put, "
        f"{state.adopted} unreported layers adopted"
    )
    assert kills >= 5, f"only {kills} kills: the test did not exercise crashes"
    assert state.interrupted >= 1, "no kill landed inside put_layer"


#: argv: graph run driver layer last. Prints "interrupted" when put_layer raises
#: KeyboardInterrupt, "done" when it returns; before that, "stopped early" or "applied to
#: the end" when the interrupt comes out of the apply (the rollback then removes the files).
PUT_INTERRUPTED_CHILD = r"""
import os, sys
import containers_storage as cs
from containers_storage import archive
graph, run, driver, layer, last = sys.argv[1:6]
apply_layer = archive.apply_layer

def watched(source, target_dir, **kwargs):
    try:
        return apply_layer(source, target_dir, **kwargs)
    except KeyboardInterrupt:
        end = os.path.lexists(os.path.join(target_dir, last))
        print("applied to the end" if end else "stopped early", flush=True)
        raise

archive.apply_layer = watched
store = cs.Store(graph, run, driver)
try:
    store.put_layer(None, layer)
except KeyboardInterrupt:
    print("interrupted", flush=True)
    sys.exit(3)
print("done", flush=True)
"""


def test_ctrl_c_during_put_layer(
    tmp_path: Path, roots: tuple[Path, Path], driver: str, no_leaked_mounts: None
) -> None:
    """SIGINT once the layer's first files are on disk: put_layer raises KeyboardInterrupt
    part-way (the apply checks signals about every 100 ms) and its rollback leaves no
    layer record, no layer directory and no tar-split behind."""
    graph, run = roots
    layer = tmp_path / "layer.tar"
    last = write_many_members(layer, 60_000, size=1024)
    cs.Store(graph, run, driver).shutdown(True)
    progress = ("vfs/dir/*" if driver == "vfs" else "overlay/*/diff") + "/d/*"
    seen: list[Path] = []

    def applying() -> bool:
        for p in graph.glob(progress):
            seen.append(p.parent.parent)
            return True
        return False

    argv = [str(graph), str(run), driver, str(layer), last]
    rc, out, err = run_interrupted(PUT_INTERRUPTED_CHILD, argv, applying)
    assert (rc, out) == (3, "stopped early\ninterrupted\n"), err
    store = cs.Store(graph, run, driver)
    try:
        assert store.layers() == []
        assert driver_layer_dirs(graph, driver) == set()
        assert tar_split_files(graph, driver) == (set(), [])
        assert not staging_left(graph, driver)
        assert not seen[0].exists()
    finally:
        store.shutdown(True)


#: argv: graph run driver. Applies from a pipe that delivers one member and then nothing
#: (the child keeps the write end open); exits 130 on KeyboardInterrupt.
STALLED_PIPE_CHILD = r"""
import os, sys, tarfile, io
import containers_storage as cs
graph, run, driver = sys.argv[1:4]
buf = io.BytesIO()
with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
    info = tarfile.TarInfo("first")
    info.size = 5
    tar.addfile(info, io.BytesIO(b"hello"))
r, w = os.pipe()
os.write(w, buf.getvalue()[:1024])  # the member, not the end-of-archive blocks
store = cs.Store(graph, run, driver)
try:
    store.put_layer(None, r)
except KeyboardInterrupt:
    print("interrupted", flush=True)
    sys.exit(130)
print("done", flush=True)
"""


def test_ctrl_c_while_the_source_pipe_stalls(
    roots: tuple[Path, Path], driver: str, no_leaked_mounts: None
) -> None:
    """SIGINT while put_layer waits on a pipe that delivers nothing more: the wait is
    interrupted (KeyboardInterrupt, exit 130), and the rollback leaves the store clean."""
    graph, run = roots
    cs.Store(graph, run, driver).shutdown(True)

    def stalled() -> bool:
        """The child's native apply has started: its decoder thread exists."""
        for task in Path("/proc").glob("[0-9]*/task/*/comm"):
            with contextlib.suppress(OSError):
                if task.read_text() == "cs-decode\n":
                    cmdline = (task.parents[2] / "cmdline").read_bytes()
                    if os.fsencode(graph) in cmdline:
                        return True
        return False

    rc, out, err = run_interrupted(STALLED_PIPE_CHILD, [str(graph), str(run), driver], stalled)
    assert (rc, out) == (130, "interrupted\n"), err
    store = cs.Store(graph, run, driver)
    try:
        assert store.layers() == []
        assert driver_layer_dirs(graph, driver) == set()
        assert tar_split_files(graph, driver) == (set(), [])
        assert not staging_left(graph, driver)
    finally:
        store.shutdown(True)


# -- b) concurrent random operations -----------------------------------------------------------

STRESS_PROCS = 4
STRESS_OPS = 200
NAME_POOL = [f"n{k}" for k in range(6)]

#: argv: graph run driver seed ops log-path. Prints "ready", waits for a line, runs the
#: operations, logging one JSON object per operation to the log, and prints "done".
STRESS_CHILD = r"""
import json, random, sys
import containers_storage as cs
from containers_storage import errors as E

graph, run, driver, seed, nops, log_path = sys.argv[1:7]
POOL = [f"n{k}" for k in range(6)]
KEYS = ["k0", "k1", "manifest"]
REFUSALS = (
    E.LayerHasChildrenError, E.LayerUsedByImageError, E.LayerUsedByContainerError,
    E.ImageUsedByContainerError, E.DuplicateNameError, E.ParentIsContainerError,
    E.LayerUnknownError, E.ImageUnknownError, E.ContainerUnknownError, E.NotALayerError,
    E.NotAnImageError, E.NotAContainerError, E.NotAnIDError,
)
rnd = random.Random(int(seed))
store = cs.Store(graph, run, driver)
print("ready", flush=True)
sys.stdin.readline()
log = open(log_path, "w")


def plain_layers():
    layers = [l.id for l in store.layers()]  # then containers: a container layer listed
    used = {c.layer for c in store.containers()}  # here already has its container saved
    return [l for l in layers if l not in used], layers


def some_names(at_least=0):
    return rnd.sample(POOL, rnd.randint(at_least, 2))


def target(kind):
    if kind == "layer":
        ids = [l.id for l in store.layers()]
    elif kind == "image":
        ids = [i.id for i in store.images()]
    else:
        ids = [c.id for c in store.containers()]
    return rnd.choice(ids) if ids else None


def create_layer(tag):
    plain, _ = plain_layers()
    parent = rnd.choice(plain + [None] * 3)
    names = some_names() if rnd.random() < 0.4 else []
    layer = store.create_layer(parent, names=names)
    return {"id": layer.id, "parent": parent or "", "names": names}


def create_image(tag):
    plain, _ = plain_layers()
    if not plain:
        return None
    top = rnd.choice(plain)
    names = some_names() if rnd.random() < 0.5 else []
    img = store.create_image(top, names=names, metadata=tag)
    return {"id": img.id, "layer": top, "names": names, "metadata": tag}


def create_container(tag):
    image = target("image")
    if image is None:
        return None
    names = some_names() if rnd.random() < 0.5 else []
    ctr = store.create_container(image, names=names)
    return {"id": ctr.id, "image": image, "layer": ctr.layer, "names": names}


def names_op(tag):
    kind = rnd.choice(["layer", "image", "container"])
    ref = target(kind)
    if ref is None:
        return None
    how = rnd.choice(["add", "set", "remove"])
    names = some_names(at_least=1 if how == "add" else 0)
    getattr(store, how + "_names")(ref, names)
    return {"kind": kind, "ref": ref, "how": how, "names": names}


def set_metadata(tag):
    kind = rnd.choice(["layer", "image", "container"])
    ref = target(kind)
    if ref is None:
        return None
    store.set_metadata(ref, tag)
    return {"kind": kind, "ref": ref, "metadata": tag}


def set_image_big_data(tag):
    ref = target("image")
    if ref is None:
        return None
    key = rnd.choice(KEYS)
    store.set_image_big_data(ref, key, tag.encode())
    return {"ref": ref, "key": key, "data": tag}


def delete_container(tag):
    ref = target("container")
    if ref is None:
        return None
    store.delete_container(ref)
    return {"ref": ref}


def delete_image(tag):
    ref = target("image")
    if ref is None:
        return None
    removed = store.delete_image(ref)
    return {"ref": ref, "layers": removed}


def delete_layer(tag):
    ref = target("layer")
    if ref is None:
        return None
    store.delete_layer(ref)
    return {"ref": ref}


OPS = [
    (create_layer, 18), (create_image, 12), (create_container, 10), (names_op, 22),
    (set_metadata, 8), (set_image_big_data, 8), (delete_container, 6), (delete_image, 6),
    (delete_layer, 10),
]
funcs, weights = zip(*OPS)
for n in range(int(nops)):
    op = rnd.choices(funcs, weights)[0]
    tag = f"p{seed}-{n}"
    entry = {"n": n, "op": op.__name__}
    try:
        result = op(tag)
    except REFUSALS as e:
        entry["refused"] = type(e).__name__
    else:
        entry["skipped" if result is None else "ok"] = result
    log.write(json.dumps(entry) + "\n")
    log.flush()
log.close()
print("done", flush=True)
"""


@dataclass
class StressResult:
    graph: Path
    run: Path
    log: list[dict[str, Any]]  # successful operations of every process ("ok" entries)
    counts: Counter[str]  # "<op> ok" / "<op> <Refusal>" / "<op> skipped"


_stress_runs: dict[str, StressResult] = {}


def run_stress(base: Path, driver: str) -> StressResult:
    graph, run = base / "root", base / "run"
    cs.Store(graph, run, driver)
    started: list[Child] = []
    try:
        for p in range(STRESS_PROCS):
            log = base / f"ops-{p}.jsonl"
            args = (str(graph), str(run), driver, str(SEED + p), str(STRESS_OPS), str(log))
            started.append(Child(STRESS_CHILD, *args))
        for child in started:
            child.expect("ready")
        for child in started:
            child.send("go")
        for p, child in enumerate(started):
            try:
                rc, out, err = child.finish()
            except subprocess.TimeoutExpired:
                pytest.fail(f"stress process {p} still running after {HANG_GUARD} s (hung?)")
            assert rc == 0, f"stress process {p} failed ({rc}):\n{err}"
            assert out.split() == ["done"], out
    finally:
        for child in started:
            child.kill()
    entries: list[dict[str, Any]] = []
    counts: Counter[str] = Counter()
    for p in range(STRESS_PROCS):
        lines = (base / f"ops-{p}.jsonl").read_text().splitlines()
        assert len(lines) == STRESS_OPS, f"process {p} logged {len(lines)} operations"
        for line in lines:
            entry = json.loads(line)
            if "ok" in entry:
                counts[f"{entry['op']} ok"] += 1
                entries.append({"op": entry["op"], "p": p, **entry["ok"]})
            elif "refused" in entry:
                counts[f"{entry['op']} {entry['refused']}"] += 1
            else:
                counts[f"{entry['op']} skipped"] += 1
    return StressResult(graph, run, entries, counts)


def stress_run(driver: str, factory: pytest.TempPathFactory) -> StressResult:
    """One stress run per driver, shared by the tests that examine its result (run inside
    the first test that asks, so that a failure of the run fails that test)."""
    if driver not in _stress_runs:
        _stress_runs[driver] = run_stress(factory.mktemp(f"stress-{driver}"), driver)
    return _stress_runs[driver]


def test_concurrent_operations_keep_store_consistent(
    driver: str, tmp_path_factory: pytest.TempPathFactory, shut_down: list[tuple[Path, Path, str]]
) -> None:
    stress = stress_run(driver, tmp_path_factory)
    shut_down.append((stress.graph, stress.run, driver))
    graph, run = stress.graph, stress.run
    files = load_json_files(graph, run, driver)
    layers = {r["id"]: r for r in files["layers"]}
    images = {r["id"]: r for r in files["images"]}
    ctrs = {r["id"]: r for r in files["containers"]}

    # Every kind of operation went through at least once (the run exercised something).
    for op in (
        "create_layer",
        "create_image",
        "create_container",
        "names_op",
        "set_metadata",
        "set_image_big_data",
        "delete_container",
        "delete_image",
        "delete_layer",
    ):
        assert stress.counts[f"{op} ok"] > 0, f"{op} never succeeded: {stress.counts}"

    # Records and references.
    names_unique(files["layers"], "layer")
    names_unique(files["images"], "image")
    names_unique(files["containers"], "container")
    for rec in layers.values():
        assert not (rec.get("flags") or {}).get("incomplete"), rec
        assert not rec.get("parent") or rec["parent"] in layers, f"dangling parent: {rec}"
    for img in images.values():
        assert img.get("layer") in layers, f"image without its top layer: {img}"
        for mapped in img.get("mapped-layers") or ():
            assert mapped in layers, f"image without its mapped layer: {img}"
    container_layers = set()
    for ctr in ctrs.values():
        assert ctr["layer"] in layers, f"container without its layer: {ctr}"
        assert ctr.get("image") in images, f"container without its image: {ctr}"
        img = images[ctr["image"]]
        parent = layers[ctr["layer"]].get("parent", "")
        assert parent in (img["layer"], *(img.get("mapped-layers") or ())), (ctr, img)
        container_layers.add(ctr["layer"])
    assert len(container_layers) == len(ctrs), "two containers share a layer"

    # Nothing lost, nothing resurrected: the final records are exactly those created and not
    # deleted by the successful operations of all processes (IDs are random, never reused).
    made: dict[str, set[str]] = {"layer": set(), "image": set(), "container": set()}
    gone: dict[str, set[str]] = {"layer": set(), "image": set(), "container": set()}
    ctr_layer: dict[str, str] = {}
    given: dict[str, set[str]] = {}  # record ID -> names some operation gave it
    metadata: dict[str, set[str]] = {}  # record ID -> metadata values written
    big_data: dict[tuple[str, str], set[str]] = {}  # (image, key) -> values written
    for e in stress.log:
        op = e["op"]
        if op == "create_layer":
            made["layer"].add(e["id"])
        elif op == "create_image":
            made["image"].add(e["id"])
            metadata.setdefault(e["id"], set()).add(e["metadata"])
        elif op == "create_container":
            made["container"].add(e["id"])
            made["layer"].add(e["layer"])
            ctr_layer[e["id"]] = e["layer"]
        elif op == "delete_layer":
            gone["layer"].add(e["ref"])
        elif op == "delete_image":
            gone["image"].add(e["ref"])
            gone["layer"].update(e["layers"])
        elif op == "delete_container":
            gone["container"].add(e["ref"])
        elif op == "set_metadata":
            metadata.setdefault(e["ref"], set()).add(e["metadata"])
        elif op == "set_image_big_data":
            big_data.setdefault((e["ref"], e["key"]), set()).add(e["data"])
        if op.startswith("create_"):
            given.setdefault(e["id"], set()).update(e["names"])
        elif op == "names_op" and e["how"] != "remove":
            given.setdefault(e["ref"], set()).update(e["names"])
    for ctr_id in gone["container"]:
        gone["layer"].add(ctr_layer[ctr_id])
    for kind, now in (("layer", layers), ("image", images), ("container", ctrs)):
        assert not (gone[kind] - made[kind]), f"deleted {kind}s nobody created"
        want = made[kind] - gone[kind]
        assert set(now) == want, (
            f"{kind}s lost: {want - set(now)}; {kind}s that should be gone: {set(now) - want}"
        )

    # Names and metadata only ever come from an operation on that record.
    for kind, recs in (("layer", layers), ("image", images), ("container", ctrs)):
        for rec in recs.values():
            stray = set(rec.get("names") or ()) - given.get(rec["id"], set())
            assert not stray, f"{kind} {rec['id']} has names nobody gave it: {stray}"
            value = rec.get("metadata", "")
            assert value == "" or value in metadata.get(rec["id"], set()), (kind, rec)

    # Image big data: the recorded keys, sizes and digests match the files, whose contents are
    # values written for that image and key.
    for img in images.values():
        keys = img.get("big-data-names") or []
        assert len(keys) == len(set(keys)), img
        for key in keys:
            assert (img["id"], key) in big_data, f"big data nobody set: {img['id']} {key}"
        store = cs.Store(graph, run, driver)
        for key in keys:
            data = store.image_big_data(img["id"], key)
            assert data.decode() in big_data[(img["id"], key)], (img["id"], key, data)
            assert img["big-data-sizes"][key] == len(data)
            assert img["big-data-digests"][key] == "sha256:" + hashlib.sha256(data).hexdigest()

    # The files agree with the driver's home and the per-record directories.
    assert driver_layer_dirs(graph, driver) == set(layers)
    split_ids, tmps = tar_split_files(graph, driver)
    assert split_ids <= set(layers) and not tmps
    for sub, known in (
        (graph / f"{driver}-images", images),
        (graph / f"{driver}-containers", ctrs),
        (run / f"{driver}-containers", ctrs),
    ):
        dirs = {p.name for p in sub.iterdir() if p.is_dir()} if sub.exists() else set()
        assert dirs <= set(known), f"directories without a record in {sub}: {dirs - set(known)}"

    # A fresh Store agrees with the files.
    store = cs.Store(graph, run, driver)
    assert [x.id for x in store.layers()] == [r["id"] for r in files["layers"]]
    assert [x.id for x in store.images()] == [r["id"] for r in files["images"]]
    assert [x.id for x in store.containers()] == [r["id"] for r in files["containers"]]
    for name in NAME_POOL:
        for kind, listed in (("layer", files["layers"]), ("image", files["images"])):
            holder = [r["id"] for r in listed if name in (r.get("names") or ())]
            if holder:
                getter = store.layer if kind == "layer" else store.image
                assert getter(name).id == holder[0]


@pytest.mark.gotools
def test_go_reads_store_after_concurrent_operations(
    driver: str, tmp_path_factory: pytest.TempPathFactory, shut_down: list[tuple[Path, Path, str]]
) -> None:
    stress = stress_run(driver, tmp_path_factory)
    shut_down.append((stress.graph, stress.run, driver))
    graph, run = stress.graph, stress.run
    paths = json_paths(graph, run, driver)
    before = {k: paths[k].read_bytes() for k in ("layers", "images", "containers")}
    files = load_json_files(graph, run, driver)
    base = go_argv((graph, run), driver)

    def go(*args: str) -> Any:
        p = subprocess.run([*base, *args], capture_output=True, check=False, timeout=HANG_GUARD)
        assert p.returncode == 0, f"Go {args} failed: {p.stderr.decode()}"
        return json.loads(p.stdout or b"[]")

    def summary(recs: list[dict[str, Any]], *keys: str) -> dict[str, tuple[Any, ...]]:
        return {
            r["id"]: (sorted(r.get("names") or ()), *(r.get(k) or "" for k in keys)) for r in recs
        }

    assert summary(go("layers", "-j"), "parent") == summary(files["layers"], "parent")
    assert summary(go("images", "-j"), "layer") == summary(files["images"], "layer")
    assert summary(go("containers", "-j"), "image", "layer") == summary(
        files["containers"], "image", "layer"
    )
    # Go found nothing to repair (incomplete layers, duplicate names) in what we wrote.
    for kind, data in before.items():
        assert paths[kind].read_bytes() == data, f"Go rewrote {kind}.json"


# -- c) a long-lived Store sees other processes' writes ----------------------------------------

#: A line-driven server holding one Store for its whole life; answers one line per request.
SERVER_CHILD = r"""
import sys
import containers_storage as cs

store = cs.Store(sys.argv[1], sys.argv[2], sys.argv[3])
print("ready", flush=True)
for line in sys.stdin:
    cmd, *args = line.split()
    try:
        if cmd == "create-layer":
            out = store.create_layer(None if args[0] == "-" else args[0], names=args[1:]).id
        elif cmd == "delete-layer":
            store.delete_layer(args[0]); out = "ok"
        elif cmd in ("add-names", "set-names", "remove-names"):
            getattr(store, cmd.replace("-", "_"))(args[0], args[1:]); out = "ok"
        elif cmd == "names":
            out = " ".join(store.names(args[0])) or "-"
        elif cmd == "layers":
            out = " ".join(sorted(x.id for x in store.layers())) or "-"
        elif cmd == "set-metadata":
            store.set_metadata(args[0], args[1]); out = "ok"
        elif cmd == "metadata":
            out = store.metadata(args[0]) or "-"
        elif cmd == "create-image":
            out = store.create_image(args[0], names=args[1:]).id
        elif cmd == "delete-image":
            out = " ".join(store.delete_image(args[0])) or "-"
        elif cmd == "create-container":
            out = store.create_container(args[0], names=args[1:]).id
        elif cmd == "delete-container":
            store.delete_container(args[0]); out = "ok"
        elif cmd == "containers":
            out = " ".join(sorted(x.id for x in store.containers())) or "-"
        else:
            out = "error unknown command"
    except cs.StorageError as e:
        out = "error " + type(e).__name__
    print(out, flush=True)
"""


class Server:
    def __init__(self, child: Child) -> None:
        self.child = child
        child.expect("ready")

    def __call__(self, *words: str) -> str:
        self.child.send(" ".join(words))
        return read_line(self.child.proc, f"answering {words}")


def ids(records: Any) -> set[str]:
    return {r.id for r in records}


def test_long_lived_store_sees_other_process(
    roots: tuple[Path, Path], driver: str, children: list[Child]
) -> None:
    store = cs.Store(roots[0], roots[1], driver)
    base = store.create_layer(names=["base"])
    srv = Server(Child(SERVER_CHILD, str(roots[0]), str(roots[1]), driver))
    children.append(srv.child)
    assert srv("names", base.id) == "base"
    mine: set[str] = set()
    for k in range(15):
        # Layers the other process creates are seen, by ID and by name.
        theirs = srv("create-layer", base.id, f"x{k}", "shared")
        assert len(theirs) == 64, theirs
        assert store.layer(f"x{k}").id == theirs
        assert store.layer("shared").id == theirs  # its previous holder was deleted
        assert store.layer(theirs).parent == base.id
        assert theirs in ids(store.layers())
        # A name the other process moves is seen moved.
        assert srv("add-names", base.id, f"x{k}") == "ok"
        assert store.layer(f"x{k}").id == base.id
        assert store.names(theirs) == ["shared"]
        # Our write right after theirs, without reading first, loses nothing of theirs...
        ours = store.create_layer(base.id, names=[f"y{k}"]).id
        mine.add(ours)
        assert {theirs, ours} <= ids(store.layers())
        # ...and they see it.
        assert ours in srv("layers").split()
        assert srv("names", ours) == f"y{k}"
        # Metadata both ways.
        assert srv("set-metadata", theirs, f"m{k}") == "ok"
        assert store.metadata(theirs) == f"m{k}"
        store.set_metadata(theirs, f"ours{k}")
        assert srv("metadata", theirs) == f"ours{k}"
        # A layer they delete disappears, whether looked up by ID, name or in the list.
        assert srv("delete-layer", theirs) == "ok"
        assert not store.exists(theirs)
        assert theirs not in ids(store.layers())
        with pytest.raises(errors.LayerUnknownError):
            store.layer(theirs)
        with pytest.raises(errors.LayerUnknownError):
            store.layer("shared")
        # A layer we delete disappears for them.
        if k % 3 == 0:
            store.delete_layer(ours)
            mine.discard(ours)
            assert srv("names", ours) == "error LayerUnknownError"
    assert ids(store.layers()) == {base.id, *mine}
    assert set(srv("layers").split()) == {base.id, *mine}

    # Images and containers.
    image_id = srv("create-image", base.id, "img")
    assert store.image("img").id == image_id
    store.set_names(image_id, ["img2"])
    assert srv("names", image_id) == "img2"
    ctr_id = srv("create-container", "img2", "ctr")
    ctr = store.container("ctr")
    assert ctr.id == ctr_id and ctr.image == image_id
    assert store.layer(ctr.layer).parent == base.id
    store.add_names(ctr_id, ["ctr2"])
    assert srv("names", "ctr2") == "ctr ctr2"
    assert srv("delete-container", ctr_id) == "ok"
    assert store.containers() == []
    assert not store.exists(ctr.layer)
    with pytest.raises(errors.ImageUnknownError):
        store.image("img")
    for layer_id in mine:
        store.delete_layer(layer_id)
    assert srv("delete-image", image_id) == base.id  # the base layer went with it
    assert store.images() == []
    assert store.layers() == []
    assert srv("layers") == "-"


@pytest.mark.gotools
def test_long_lived_store_sees_go_writes(roots: tuple[Path, Path], driver: str) -> None:
    graph, run = roots
    store = cs.Store(graph, run, driver)
    base = store.create_layer(names=["base"])
    cmd = go_argv((graph, run), driver)

    def go(*args: str) -> str:
        p = subprocess.run(
            [*cmd, *args], capture_output=True, text=True, check=False, timeout=HANG_GUARD
        )
        assert p.returncode == 0, f"Go {args} failed: {p.stderr}"
        return p.stdout

    for k in range(3):
        theirs = go("create-layer", "-n", f"g{k}", base.id).split()[0]
        assert store.layer(f"g{k}").id == theirs
        assert theirs in ids(store.layers())
        go("add-names", "-n", f"g{k}", base.id)
        assert store.layer(f"g{k}").id == base.id
        assert store.names(theirs) == []
        go("set-metadata", "-m", f"meta{k}", theirs)
        assert store.metadata(theirs) == f"meta{k}"
        go("delete-layer", theirs)
        assert not store.exists(theirs)
        assert ids(store.layers()) == {base.id}
    image_id = go("create-image", "-n", "gimg", base.id).split()[0]
    assert store.image("gimg").id == image_id
    store.add_names(image_id, ["ours"])
    assert "ours" in go("get-names", image_id).split()
    go("delete-image", image_id)
    assert store.images() == []
    assert store.layers() == []
