"""Parallel file creation gives the same tree as one thread, whatever the member order.

The extractor hands small new files to worker threads; members that could meet a pending
file (duplicates, hard links, replacements, whiteouts, members under symlinked parents) must
wait for them. These layers are built to hit those cases in random orders.
"""

from __future__ import annotations

import io
import random
import tarfile
from pathlib import Path

import pytest
from containers_storage.archive import apply_layer

from tests.archive.manifest import assert_same_tree, manifest
from tests.tars import MTIME, TarBuilder


def tricky_layer(seed: int, with_error: bool = False) -> bytes:
    rng = random.Random(seed)
    t = TarBuilder(uid=0)
    names: list[str] = []

    def add(name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"", link: str = "") -> None:
        """One member of ``kind``; every one gets a random mtime and mode."""
        mtime = MTIME + rng.randrange(1000)
        mode = rng.choice([0o644, 0o600, 0o755, 0o4755, 0o444])
        if kind == tarfile.DIRTYPE:
            t.dir(name, mode=mode, mtime=mtime)
        elif kind == tarfile.LNKTYPE:
            t.hardlink(name, link, mode=mode, mtime=mtime)
        elif kind == tarfile.SYMTYPE:
            t.symlink(name, link, mode=mode, mtime=mtime)
        else:
            t.file(name, data, mode=mode, mtime=mtime)

    for d in range(12):
        add(f"d{d}", tarfile.DIRTYPE)
    for i in range(1500):
        d = rng.randrange(12)
        name = f"d{d}/f{rng.randrange(400)}"  # duplicates on purpose
        add(name, data=rng.randbytes(rng.randrange(0, 3000)))
        names.append(name)
        roll = rng.random()
        if roll < 0.03:
            add(f"d{d}/h{i}", tarfile.LNKTYPE, link=rng.choice(names))
        elif roll < 0.05:
            add(f"d{d}/s{i}", tarfile.SYMTYPE, link=f"../d{rng.randrange(12)}")
        elif roll < 0.06:
            # a member reached through a symlinked parent, landing on a pending path
            add(f"d{d}/via{i}", tarfile.SYMTYPE, link=f"../d{d}")
            add(f"d{d}/via{i}/{name.split('/')[1]}", data=b"through the link")
        elif roll < 0.07:
            add(f"{name}", tarfile.SYMTYPE, link="replaced-by-symlink")
        elif roll < 0.08:
            add(f"d{d}/.wh.f{rng.randrange(400)}")
        elif with_error and i == 1000:
            add(f"{name}/under-a-file", data=b"x")  # parent is a (pending) file: error
    return t.getvalue()


@pytest.mark.parametrize(("seed", "with_error"), [(s, False) for s in range(6)] + [(9, True)])
def test_workers_match_single_thread(tmp_path: Path, seed: int, with_error: bool) -> None:
    layer = tricky_layer(seed, with_error)
    outcomes = []
    for workers in (0, 4):
        target = tmp_path / f"w{workers}"
        target.mkdir()
        try:
            apply_layer(io.BytesIO(layer), target, workers=workers)
            outcomes.append(("ok", manifest(target, include_root=False)))  # no ./ member
        except Exception as e:  # compare failures too: same class, same member
            outcomes.append(("error", {"type": {"name": type(e).__name__}}))
    (kind0, tree0), (kind4, tree4) = outcomes
    assert kind0 == kind4 == ("error" if with_error else "ok")
    assert_same_tree(tree4, tree0, f"seed {seed}: workers=4 vs workers=0")
