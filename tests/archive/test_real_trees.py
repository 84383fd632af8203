"""Real trees: our extraction equals GNU tar's, and, with whiteouts, Go's applydiff.

Layers made here from this machine's own directories (a few thousand real files, symlinks
and hard links), and, when the benchmark corpus exists (``../shared/bench/make-corpus.sh``,
``~/.cache/cs-corpus``), the corpus layers themselves.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
from containers_storage.archive import apply_layer, iter_reassemble

from tests.archive.helpers import GoStore, without_root_mtime
from tests.archive.manifest import Manifest, assert_same_tree, manifest

CORPUS = Path(os.environ.get("CS_CORPUS", Path.home() / ".cache/cs-corpus")) / "layers"
TREES = ["etc", "usr/lib/python3"]


def gnu_extract(layer: Path, dest: Path) -> None:
    dest.mkdir()
    flags = ["--xattrs", "--xattrs-include=*", "--numeric-owner", "-xpf"]
    subprocess.run(["tar", *flags, str(layer), "-C", str(dest)], check=True)


def implicit_dirs_untimed(m: Manifest, plain_layer: Path) -> Manifest:
    """Drop the mtimes of directories the archive does not list (its implicit parents, the
    root): each extractor gives them the time it made them."""
    with tarfile.open(plain_layer) as tar:
        listed = {os.path.normpath(n) for n in tar.getnames()}
    for path, entry in m.items():
        if path not in listed:
            m[path] = {k: v for k, v in entry.items() if k != "mtime_ns"}
    return m


def same_tree(ours: Path, gnu: Path, plain_layer: Path, what: str) -> None:
    assert_same_tree(
        implicit_dirs_untimed(manifest(ours), plain_layer),
        implicit_dirs_untimed(manifest(gnu), plain_layer),
        what,
    )


@pytest.fixture(scope="module")
def host_layer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A pax tar of real directories of this machine (GNU tar, xattrs, numeric owners)."""
    out = tmp_path_factory.mktemp("host") / "host.tar"
    present = [t for t in TREES if (Path("/") / t).is_dir()]
    subprocess.run(
        [
            "tar",
            "--format=pax",
            "--xattrs",
            "--numeric-owner",
            "-C",
            "/",
            "-cf",
            str(out),
            *present,
        ],
        check=True,
    )
    return out


@pytest.mark.root
@pytest.mark.parametrize("compression", ["none", "gzip", "zstd"])
def test_host_tree_equals_gnu_tar(host_layer: Path, tmp_path: Path, compression: str) -> None:
    layer = host_layer
    if compression != "none":
        tool = {"gzip": ["gzip", "-1", "-c"], "zstd": ["zstd", "-q", "-c"]}[compression]
        layer = tmp_path / f"host.tar.{compression}"
        with layer.open("wb") as out:
            subprocess.run([*tool, str(host_layer)], stdout=out, check=True)
    gnu_extract(host_layer, tmp_path / "gnu")
    result = apply_layer(layer, _mkdir(tmp_path / "ours"))
    assert result.compression == compression
    assert result.entries > 1000
    same_tree(tmp_path / "ours", tmp_path / "gnu", host_layer, "host tree")


def _mkdir(p: Path) -> Path:
    p.mkdir()
    return p


def corpus_layer(name: str) -> Path:
    path = CORPUS / name
    if not path.exists():
        pytest.skip(f"benchmark corpus not built ({path}); run ../shared/bench/make-corpus.sh")
    return path


@pytest.mark.root
@pytest.mark.parametrize("name", ["base.tar", "upper.tar.gz", "small.tar.zst"])
def test_corpus_layer_equals_gnu_tar(tmp_path: Path, name: str) -> None:
    layer = corpus_layer(name)
    plain = CORPUS / (name.split(".")[0] + ".tar")
    gnu_extract(plain, tmp_path / "gnu")
    apply_layer(layer, _mkdir(tmp_path / "ours"), whiteouts="aufs")
    same_tree(tmp_path / "ours", tmp_path / "gnu", plain, name)


@pytest.mark.root
@pytest.mark.gotools
def test_corpus_upper_equals_go_applydiff(tmp_path: Path) -> None:
    """The corpus upper layer (whiteouts, opaque dirs) on the base, against Go's vfs."""
    base, upper = corpus_layer("base.tar"), corpus_layer("upper.tar")
    go = GoStore(tmp_path / "go")
    parent = go.create_layer()
    go.applydiff(base, parent)
    child = go.create_layer(parent)
    go.applydiff(upper, child)
    ours = tmp_path / "ours"
    apply_layer(base, _mkdir(ours))
    apply_layer(upper, ours, whiteouts="vfs")
    want = manifest(go.layer_dir(child))
    assert_same_tree(without_root_mtime(manifest(ours)), without_root_mtime(want), "upper")
    shutil.rmtree(tmp_path / "go", ignore_errors=True)


@pytest.mark.root
@pytest.mark.parametrize("name", ["base.tar.gz", "upper.tar", "small.tar.zst"])
def test_corpus_layer_reproduces_exactly(tmp_path: Path, name: str) -> None:
    """Apply, then rebuild the tar from tar-split and the files: the DiffID comes back."""
    layer = corpus_layer(name)
    target = _mkdir(tmp_path / "layer")
    split = tmp_path / "layer.tar-split.gz"
    result = apply_layer(layer, target, whiteouts="overlay", tar_split_path=split)
    digest = hashlib.sha256()
    for chunk in iter_reassemble(split, target):
        digest.update(chunk)
    assert "sha256:" + digest.hexdigest() == result.uncompressed_digest
