"""import-image, export-image and unpack-image from the command line."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.helpers import SKOPEO
from tests.store.helpers import Layout, go_argv, ours_argv, write_policy
from tests.tars import d, f, make_tar

pytestmark = [pytest.mark.root, pytest.mark.gotools, pytest.mark.skopeo]


def _layout(root: Path) -> list[str]:
    """A two-layer gzip OCI layout tagged ``t:1``; returns the DiffIDs."""
    tars = [
        make_tar([d("etc/"), f("etc/a", b"a\n"), f("etc/b", b"b\n")]),
        make_tar([d("etc/"), f("etc/.wh.a"), f("etc/c", b"c\n")]),
    ]
    return Layout(root).add_image("t:1", tars).diff_ids


def test_import_export_unpack(tmp_path: Path) -> None:
    diffs = _layout(tmp_path / "layout")
    g, r = tmp_path / "g", tmp_path / "r"
    ours, go = ours_argv((g, r), "vfs"), go_argv((g, r), "vfs")

    def run(cmd: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(cmd, capture_output=True, text=True, check=False)

    p = run([*ours, "import-image", "-n", "localhost/t:1", f"oci:{tmp_path / 'layout'}:t:1"])
    assert p.returncode == 0, p.stderr
    image_id = p.stdout.splitlines()[0]
    assert p.stdout.splitlines()[1] == "\tlocalhost/t:1"
    assert p.stderr == ""  # no bar when not on a terminal
    (listed,) = json.loads(run([*go, "images", "-j"]).stdout)
    assert listed["id"] == image_id and listed["names"] == ["localhost/t:1"]
    layers = json.loads(run([*go, "layers", "-j"]).stdout)
    assert [x["diff-digest"] for x in layers] == diffs

    out = tmp_path / "out"
    p = run([*ours, "export-image", "localhost/t:1", f"oci:{out}:x"])
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip().startswith("sha256:")
    policy = write_policy(tmp_path / "policy.json")
    inspect = run([SKOPEO, "--policy", str(policy), "inspect", f"oci:{out}:x"])
    assert inspect.returncode == 0, inspect.stderr
    assert json.loads(inspect.stdout)["Layers"] == diffs  # uncompressed: blob digest = DiffID

    p = run([*ours, "unpack-image", "localhost/t:1", str(tmp_path / "rootfs")])
    assert p.returncode == 0, p.stderr
    assert sorted(os.listdir(tmp_path / "rootfs" / "etc")) == ["b", "c"]

    bad = run([*ours, "import-image", f"oci:{tmp_path / 'nowhere'}"])
    assert bad.returncode == 1
    assert bad.stderr.count("\n") == 1 and "not an OCI layout" in bad.stderr
    assert "Traceback" not in bad.stderr
