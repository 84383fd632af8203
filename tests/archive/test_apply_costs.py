"""apply_layer's costs to its caller: Ctrl-C stops it part-way, its memory stays within the
apply budget by default, and a missing target is created.

Each of the first two runs ``apply_layer`` in a child process: the signal goes to that
process alone, and its peak RSS is its own. The peak is ``VmHWM`` of /proc/self/status:
``getrusage``'s ``ru_maxrss`` survives fork and exec on Linux, so in a child of pytest it
starts at pytest's own size.
"""

from __future__ import annotations

import io
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from containers_storage.archive import apply_layer

from tests.helpers import HANG_GUARD, run_interrupted
from tests.tars import TarBuilder, write_many_members

#: The apply's memory budget (DESIGN: 64 MiB whatever the layer).
BUDGET = 64 << 20

#: argv: layer target keep_tar_split(0/1). Prints "interrupted" on KeyboardInterrupt, else
#: "done <peak RSS in bytes>".
APPLY_CHILD = r"""
import re, sys
from containers_storage.archive import apply_layer
layer, target, keep = sys.argv[1:4]
try:
    if keep == "1":
        apply_layer(layer, target, keep_tar_split=True)
    else:
        apply_layer(layer, target)
except KeyboardInterrupt:
    print("interrupted", flush=True)
    sys.exit(3)
with open("/proc/self/status") as f:
    kib = int(re.search(r"^VmHWM:\s+(\d+) kB", f.read(), re.M).group(1))
print("done", kib * 1024, flush=True)
"""


def run_child(layer: Path, target: Path, *, keep: bool = False) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", APPLY_CHILD, os.fspath(layer), os.fspath(target), "01"[keep]],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def has_files(directory: Path, n: int) -> bool:
    """Whether ``directory`` holds at least ``n`` entries (stops counting there)."""
    try:
        with os.scandir(directory) as it:
            return sum(1 for _, _ in zip(range(n), it, strict=False)) >= n
    except FileNotFoundError:
        return False


def test_ctrl_c_stops_apply_layer(tmp_path: Path) -> None:
    """SIGINT once the first files are on disk: the child raises KeyboardInterrupt out of
    apply_layer long before the layer's last member (the native loop checks signals about
    every 100 ms; before, it saw the signal only once the whole layer was written)."""
    layer = tmp_path / "layer.tar"
    last = write_many_members(layer, 60_000, size=1024)
    target = tmp_path / "target"
    target.mkdir()
    argv = [os.fspath(layer), os.fspath(target), "0"]
    rc, out, err = run_interrupted(APPLY_CHILD, argv, lambda: has_files(target / "d", 100))
    assert (rc, out) == (3, "interrupted\n"), err
    assert not (target / last).exists(), "the apply ran to the end"
    assert not has_files(target / "d", 60_000)


def peak_rss(layer: Path, target: Path, *, keep: bool) -> int:
    proc = run_child(layer, target, keep=keep)
    out, err = proc.communicate(timeout=HANG_GUARD)
    assert proc.returncode == 0, err
    word, rss = out.split()
    assert word == "done"
    return int(rss)


def test_default_apply_stays_within_the_memory_budget(tmp_path: Path) -> None:
    """12,000 members with 4 KiB PAX headers: the tar-split record of their headers is
    about 70 MB, which ``keep_tar_split=True`` holds (and copies) in memory. By default no
    record is made and the peak RSS stays under 64 MiB."""
    layer = tmp_path / "layer.tar"
    last = write_many_members(layer, 12_000, pax_bytes=4096)
    assert layer.stat().st_size > BUDGET
    default = peak_rss(layer, tmp_path / "default", keep=False)
    kept = peak_rss(layer, tmp_path / "kept", keep=True)
    assert (tmp_path / "default" / last).exists()
    assert default < BUDGET, f"default apply peaked at {default >> 20} MiB"
    # The control: the same apply keeping the record in memory is over the budget.
    assert kept > BUDGET, f"keep_tar_split=True peaked at {kept >> 20} MiB"


@pytest.mark.parametrize("umask", [0o022, 0o077], ids=["umask022", "umask077"])
def test_missing_target_is_created_with_parents(tmp_path: Path, umask: int) -> None:
    """A target that does not exist is made with its missing parents, 0755 less the umask
    (Go's MkdirAll(dest, 0755)); one that is not a directory is an error."""
    tar = TarBuilder().file("f", b"data").getvalue()
    target = tmp_path / "new" / "dir"
    old = os.umask(umask)
    try:
        res = apply_layer(io.BytesIO(tar), target)
    finally:
        os.umask(old)
    assert (target / "f").read_bytes() == b"data"
    assert res.entries == 1
    for made in (tmp_path / "new", target):
        assert stat.S_IMODE(made.stat().st_mode) == 0o755 & ~umask, made
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(FileExistsError):
        apply_layer(io.BytesIO(tar), tmp_path / "file")
    with pytest.raises(NotADirectoryError):
        apply_layer(io.BytesIO(tar), tmp_path / "file" / "sub")
