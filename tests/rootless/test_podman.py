"""Rootless podman 4.3 and this package on one user's store: images both ways, the pause
process's namespace shared, owners on disk identical."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import pytest

from tests.rootless.conftest import User
from tests.store.helpers import PODMAN, Layout
from tests.tars import TarBuilder

pytestmark = [pytest.mark.root]

#: podman's global options here: no systemd (cgroupfs, file events), runc (crun fails here).
PODMAN_ARGS = ("--cgroup-manager=cgroupfs", "--events-backend=file", "--runtime=runc")


def _layers(marker: bytes) -> tuple[bytes, bytes]:
    """A shell (dash with its libc), files of namespace owners 0, 1, 2 and 1000, a whiteout;
    ``marker`` makes the layer IDs of two such images differ."""
    t = TarBuilder()
    for d in ("bin", "lib", "lib/x86_64-linux-gnu", "lib64"):
        t.dir(d)
    for path, src in (
        ("bin/sh", "/bin/dash"),
        ("lib/x86_64-linux-gnu/libc.so.6", "/lib/x86_64-linux-gnu/libc.so.6"),
        ("lib64/ld-linux-x86-64.so.2", "/lib64/ld-linux-x86-64.so.2"),
    ):
        t.file(path, Path(src).read_bytes(), mode=0o755)
    t.file("marker", marker)
    t.file("one", b"1\n", uid=1, gid=1)
    t.dir("home", uid=1000, gid=1000, mode=0o750)
    t.file("home/f", b"u\n", uid=1000, gid=1000, mode=0o4755)
    upper = TarBuilder()
    upper.file("two", b"2\n", uid=2, gid=2)
    upper.file(".wh.one", b"")
    return t.getvalue(), upper.getvalue()


def _layout(user: User, name: str, marker: bytes) -> Path:
    """An OCI layout (tag ``t``) in the user's ~/work."""
    layout = user.put(f"{name}.keep", "").parent / name
    fields = {"config": {"Env": ["PATH=/bin"], "Cmd": ["/bin/sh"]}}
    Layout(layout).add_configured("t", _layers(marker), fields)
    for p in [layout, *layout.rglob("*")]:
        os.chown(p, user.uid, user.gid)
    return layout


def _image(user: User, name: str) -> dict[str, object]:
    import json

    doc = json.loads(user.cs("image", "-j", name).stdout)
    assert isinstance(doc, list)
    image: dict[str, object] = doc[0]
    return image


def _owners(diff: Path) -> dict[str, tuple[int, int, int]]:
    """Host owner and mode of everything in a layer directory (read as root, from outside)."""
    out = {}
    for p in [diff, *diff.rglob("*")]:
        st = os.lstat(p)
        out[str(p.relative_to(diff))] = (st.st_uid, st.st_gid, st.st_mode)
    return out


def test_podman_shares_the_store(rl: User) -> None:
    if not os.access(PODMAN, os.X_OK):
        pytest.skip("needs podman")
    podman = (PODMAN, *PODMAN_ARGS)

    # podman lists and runs an image we imported.
    ours = _layout(rl, "ours", b"A")
    rl.cs("import-image", "-n", "localhost/ours:1", f"oci:{ours}:t")
    listed = rl.run(*podman, "images", "--format", "{{.Repository}}:{{.Tag}}").stdout
    assert "localhost/ours:1" in listed.split()
    script = 'read x < /two; echo "$x"; [ -e /one ] || echo gone; read y < /home/f; echo "$y"'
    run = rl.run(
        *podman, "run", "--rm", "--network=none", "localhost/ours:1", "/bin/sh", "-c", script
    )
    assert run.stdout.split() == ["2", "gone", "u"]

    # We list and read what podman loaded.
    theirs = _layout(rl, "theirs", b"B")
    image_id = rl.run(*podman, "pull", "-q", f"oci:{theirs}:t").stdout.strip()
    rl.run(*podman, "tag", image_id, "localhost/theirs:1")
    assert "localhost/theirs:1" in rl.cs("images").stdout
    top = str(_image(rl, "localhost/theirs:1")["layer"])

    # podman's pause process exists now: we join it, so a mount we make is podman's too.
    pause = Path(str(rl.runtime_dir)) / "libpod" / "tmp" / "pause.pid"
    assert pause.exists()
    ns_ours = rl.cs("unshare", "readlink", "/proc/self/ns/user").stdout
    ns_podman = rl.run(*podman, "unshare", "readlink", "/proc/self/ns/user").stdout
    assert ns_ours == ns_podman
    mountpoint = rl.cs("mount", top).stdout.strip()
    try:
        seen = rl.run(*podman, "unshare", "cat", f"{mountpoint}/two", f"{mountpoint}/marker")
        assert seen.stdout == "2\nB"
    finally:
        rl.cs("unmount", top)
    gone = rl.run(
        *podman,
        "unshare",
        "sh",
        "-c",
        f"grep -c {shlex.quote(mountpoint)} /proc/self/mountinfo || true",
    )
    assert gone.stdout.strip() == "0"

    # Owners and modes on disk: the subordinate IDs, the same whoever wrote the layer.
    overlay = rl.graph_root / "overlay"
    ours_top = str(_image(rl, "localhost/ours:1")["layer"])
    ours_base, theirs_base = (
        _parent(rl, ours_top),
        _parent(rl, top),
    )
    a, b = _owners(overlay / ours_base / "diff"), _owners(overlay / theirs_base / "diff")
    a.pop("marker")
    b.pop("marker")
    assert a == b
    assert a["one"][:2] == (rl.host_id(1), rl.host_id(1))
    assert a["home/f"] == (rl.host_id(1000), rl.host_id(1000), 0o104755)
    assert a["bin/sh"][:2] == (rl.uid, rl.gid)
    assert _owners(overlay / ours_top / "diff") == _owners(overlay / top / "diff")


def _parent(user: User, layer: str) -> str:
    import json

    doc = json.loads(user.cs("layer", "-j", layer).stdout)
    parent = doc[0]["parent"] if isinstance(doc, list) else doc["parent"]
    assert isinstance(parent, str)
    return parent
