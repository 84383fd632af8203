"""Rootless use as a real unprivileged user: defaults, the user namespace, the drivers.

Every command runs as ``csrootless`` (subordinate ranges) or ``csnoranges`` (none) through
``setpriv`` with a fresh ``XDG_RUNTIME_DIR`` (see conftest). Go's CLI never enters a
namespace itself; run inside ours with ``_CONTAINERS_ROOTLESS_UID`` exported (as ``podman
unshare containers-storage`` does) it computes the same rootless defaults, so it is the
reference for them.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest
from containers_storage.cli.main import main

from tests.helpers import GO_CONTAINERS_STORAGE
from tests.rootless.conftest import User
from tests.tars import TarBuilder

pytestmark = [pytest.mark.root]


def _status(proc: subprocess.CompletedProcess[str]) -> dict[str, str]:
    """``status`` output (Go's CLI prints it on stderr)."""
    out = {}
    for line in (proc.stdout + proc.stderr).splitlines():
        key, sep, value = line.partition(": ")
        if sep:
            out[key] = value
    return out


# -- defaults -----------------------------------------------------------------------------


def test_defaults_without_xdg_runtime_dir(rl: User) -> None:
    """The reported failure: no XDG_RUNTIME_DIR used to stop every command with
    ``error initializing: /run/user/<uid>: permission denied``; Go falls back to
    ``/tmp/containers-user-<uid>``."""
    st = _status(rl.cs("status", XDG_RUNTIME_DIR=""))
    assert st["Run Root"] == f"/tmp/containers-user-{rl.uid}/containers"
    assert st["Root"] == str(rl.graph_root)
    assert st["Driver Name"] == "overlay"
    assert st["Native Overlay Diff"] == "true"
    # Go, in our namespace, computes the same roots and driver.
    go_st = _status(rl.cs("unshare", GO_CONTAINERS_STORAGE, "status", XDG_RUNTIME_DIR=""))
    for key in ("Root", "Run Root", "Driver Name", "Backing Filesystem"):
        assert go_st[key] == st[key], key
    # Both left the same feature cache in the run root (Go's file names).
    cache = sorted(os.listdir(f"/tmp/containers-user-{rl.uid}/containers/overlay"))
    assert "overlay-true" in cache and "native-diff()-true" in cache
    assert os.stat(rl.graph_root).st_uid == rl.uid


def test_xdg_dirs_and_user_storage_conf(rl: User) -> None:
    """XDG_DATA_HOME and XDG_RUNTIME_DIR place the store; a storage.conf in
    XDG_CONFIG_HOME is read alone, its rootless_storage_path taking the graph root."""
    data = rl.home / "data"
    st = _status(rl.cs("status", XDG_DATA_HOME=str(data)))
    assert st["Root"] == f"{data}/containers/storage"
    assert st["Run Root"] == f"{rl.runtime_dir}/containers"
    conf_dir = rl.home / "cfg" / "containers"
    rl.run("mkdir", "-p", str(conf_dir))
    rl.run(
        "sh",
        "-c",
        f'printf \'[storage]\\ndriver = "vfs"\\nrootless_storage_path = "$HOME/rsp-$UID"\\n\' '
        f"> {conf_dir}/storage.conf",
    )
    env = {"XDG_CONFIG_HOME": str(rl.home / "cfg")}
    ours = _status(rl.cs("status", env=env))
    assert ours["Root"] == f"{rl.home}/rsp-{rl.uid}"
    assert ours["Driver Name"] == "vfs"
    go = _status(rl.cs("unshare", GO_CONTAINERS_STORAGE, "status", env=env))
    assert (go["Root"], go["Run Root"], go["Driver Name"]) == (
        ours["Root"],
        ours["Run Root"],
        ours["Driver Name"],
    )


def test_apply_layer_ignore_chown_errors_unprivileged(rl: User) -> None:
    """The other reported failure: the built-in sample with --ignore-chown-errors applies
    as an unprivileged user (no namespace), files keeping the user as owner."""
    target = rl.home / "work" / "applied"
    rl.put("x", "")
    plain = rl.cs("apply-layer", str(rl.home / "work" / "strict"), check=False)
    assert plain.returncode == 1
    assert "changing owner: Operation not permitted" in plain.stderr
    rl.cs("apply-layer", "--ignore-chown-errors", str(target))
    owners = {os.lstat(p).st_uid for p in [target, *target.rglob("*")]}
    assert owners == {rl.uid}
    assert (target / "usr" / "bin" / "hello").exists()


def test_unshare_command(rl: User) -> None:
    out = rl.cs(
        "unshare",
        "sh",
        "-c",
        'id -u; cat /proc/self/uid_map; echo "$CONTAINERS_GRAPHROOT"; '
        'echo "$_CONTAINERS_ROOTLESS_UID"',
    ).stdout.split("\n")
    assert out[0] == "0"
    assert out[1].split() == ["0", str(rl.uid), "1"]
    assert out[2].split() == ["1", str(rl.sub_start), "65536"]
    assert out[3] == str(rl.graph_root)
    assert out[4] == str(rl.uid)
    # No command: the user's shell.
    assert rl.cs("unshare", SHELL="/bin/true").returncode == 0


def test_unshare_as_root(capsys: pytest.CaptureFixture[str]) -> None:
    """Root is told to use it as a rootless user (podman's text)."""
    assert main(["unshare", "true"]) == 1
    assert "please use unshare with rootless" in capsys.readouterr().err


# -- drivers ------------------------------------------------------------------------------


def _base_tar() -> bytes:
    t = TarBuilder()
    t.dir("etc")
    t.file("etc/root-owned", b"r\n")
    t.dir("home", uid=1000, gid=1000)
    t.file("home/user-file", b"u\n", uid=1000, gid=1000)
    t.file("one", b"1\n", uid=1, gid=1)
    t.file("high", b"h\n", uid=65535, gid=65535)
    t.dir("opaque")
    t.file("opaque/old", b"o\n")
    t.file("gone", b"g\n")
    return t.getvalue()


def _upper_tar() -> bytes:
    t = TarBuilder()
    t.file(".wh.gone", b"")
    t.dir("opaque")
    t.file("opaque/.wh..wh..opq", b"")
    t.file("opaque/new", b"n\n", uid=2, gid=2)
    return t.getvalue()


def _driver_env(rl: User, driver: str) -> dict[str, str]:
    if driver == "vfs":
        return {"STORAGE_DRIVER": "vfs"}
    if driver == "fuse-overlayfs":
        conf = rl.home / ".config" / "containers"
        rl.run("mkdir", "-p", str(conf))
        rl.run(
            "sh",
            "-c",
            'printf \'[storage]\\ndriver = "overlay"\\n[storage.options.overlay]\\n'
            f'mount_program = "/usr/bin/fuse-overlayfs"\\n\' > {conf}/storage.conf',
        )
    return {}


DRIVERS = ["overlay", "fuse-overlayfs", "vfs"]


@pytest.mark.parametrize("driver", DRIVERS)
def test_layer_lifecycle(rl: User, driver: str) -> None:
    """import, mount, changes, diff and delete as the user, on native overlay,
    fuse-overlayfs and vfs; owners on disk are the user's subordinate IDs."""
    if driver == "fuse-overlayfs" and not os.path.exists("/usr/bin/fuse-overlayfs"):
        pytest.skip("needs fuse-overlayfs")
    env = _driver_env(rl, driver)
    base, upper = _base_tar(), _upper_tar()
    rl.put("base.tar", base)
    rl.put("upper.tar", upper)
    lower_id = rl.cs("import-layer", "-f", str(rl.home / "work" / "base.tar"), env=env).stdout
    lower_id = lower_id.split()[-1]
    top_id = rl.cs(
        "import-layer", "-f", str(rl.home / "work" / "upper.tar"), lower_id, env=env
    ).stdout.split()[-1]
    st = _status(rl.cs("status", env=env))
    assert st["Driver Name"] == ("vfs" if driver == "vfs" else "overlay")
    if driver != "vfs":
        assert st["Native Overlay Diff"] == ("true" if driver == "overlay" else "false")
        marker = (rl.graph_root / "overlay" / ".has-mount-program").read_text()
        assert marker == ("true" if driver == "fuse-overlayfs" else "false")

    # Owners on the host: namespace ID k is the k-th subordinate ID.
    layer_dir = (
        rl.graph_root / "vfs" / "dir" / lower_id
        if driver == "vfs"
        else rl.graph_root / "overlay" / lower_id / "diff"
    )
    assert os.lstat(layer_dir / "etc" / "root-owned").st_uid == rl.uid
    assert os.lstat(layer_dir / "one").st_uid == rl.host_id(1)
    assert os.lstat(layer_dir / "home" / "user-file").st_gid == rl.host_id(1000)
    assert os.lstat(layer_dir / "high").st_uid == rl.host_id(65535)
    if driver == "overlay":
        top_dir = rl.graph_root / "overlay" / top_id / "diff"
        wh = os.lstat(top_dir / "gone")
        assert stat.S_ISCHR(wh.st_mode) and wh.st_rdev == 0
        assert os.getxattr(top_dir / "opaque", "user.overlay.opaque") == b"y"
    elif driver == "fuse-overlayfs":
        top_dir = rl.graph_root / "overlay" / top_id / "diff"
        assert (top_dir / ".wh.gone").is_file()
        assert (top_dir / "opaque" / ".wh..wh..opq").is_file()

    # Mounted (within one namespace: the mount lives as long as it), the merged view.
    script = (
        f"set -e; m=$({_cs(rl)} mount {top_id}); "
        'ls -A "$m" | tr "\\n" " "; echo; ls -A "$m/opaque"; stat -c %u "$m/one"; '
        f"{_cs(rl)} mounted {top_id}; {_cs(rl)} unmount {top_id}; {_cs(rl)} mounted {top_id}"
    )
    out = rl.cs("unshare", "sh", "-c", script, env=env).stdout.splitlines()
    assert out[0].split() == ["etc", "high", "home", "one", "opaque"]
    assert out[1:3] == ["new", "1"]
    assert out[-2:] == [f"{top_id} mounted", f"{top_id} mountpoint unmounted"]

    changes = sorted(c for c in rl.cs("changes", top_id, env=env).stdout.split("\n") if c)
    assert changes == _go_changes(driver), changes
    # diff against the parent reproduces the applied tarball byte for byte.
    rl.cs("diff", "-u", "-f", str(rl.home / "work" / "out.tar"), top_id, env=env)
    got = (rl.home / "work" / "out.tar").read_bytes()
    assert hashlib.sha256(got).hexdigest() == hashlib.sha256(upper).hexdigest()
    # diff against an empty reference: the whole tree, owners as in the namespace.
    rl.cs("diff", "-u", "-f", str(rl.home / "work" / "full.tar"), top_id, lower_id, env=env)
    with tarfile.open(rl.home / "work" / "full.tar") as t:
        members = {m.name.rstrip("/"): m for m in t.getmembers()}
    assert members["opaque/new"].uid == 2

    rl.cs("delete-layer", top_id, env=env)
    rl.cs("delete-layer", lower_id, env=env)
    assert lower_id not in rl.cs("layers", env=env).stdout
    assert not layer_dir.exists()
    assert not [
        p for p in Path("/proc/self/mountinfo").read_text().split("\n") if str(rl.home) in p
    ]


def _go_changes(driver: str) -> list[str]:
    """What Go's ``changes`` says for the two layers as root, on the driver (fuse-overlayfs:
    overlay's naive comparison, which vfs also makes)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        (t / "base.tar").write_bytes(_base_tar())
        (t / "upper.tar").write_bytes(_upper_tar())
        drv = "overlay" if driver == "overlay" else "vfs"
        go = [GO_CONTAINERS_STORAGE, "-g", f"{tmp}/g", "-R", f"{tmp}/r", "-s", drv]
        try:
            low = subprocess.run(
                [*go, "import-layer", "-f", f"{tmp}/base.tar"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.split()[-1]
            top = subprocess.run(
                [*go, "import-layer", "-f", f"{tmp}/upper.tar", low],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.split()[-1]
            out = subprocess.run([*go, "changes", top], capture_output=True, text=True, check=True)
        finally:
            subprocess.run([*go, "shutdown"], capture_output=True, check=False)
            subprocess.run(
                ["umount", "-R", "-l", f"{tmp}/g/overlay"], capture_output=True, check=False
            )
        return sorted(c for c in out.stdout.split("\n") if c)


def _cs(rl: User) -> str:
    return f"{shlex.quote(rl.python)} -m containers_storage"


def test_no_subordinate_ranges(rl_noranges: User) -> None:
    """A user without subordinate ranges gets a vfs store in a single-ID namespace, files
    of other owners kept as the user's (ignore_chown_errors), and one clear warning."""
    user = rl_noranges
    user.put("base.tar", _base_tar())
    proc = user.cs("import-layer", "-f", str(user.home / "work" / "base.tar"), STORAGE_DRIVER="vfs")
    warnings = [line for line in proc.stderr.splitlines() if "level=warning" in line]
    assert len(warnings) == 1, proc.stderr
    assert "no UID/GID ranges" in warnings[0] and "single mapping" in warnings[0]
    layer = proc.stdout.split()[-1]
    tree = user.graph_root / "vfs" / "dir" / layer
    assert {os.lstat(p).st_uid for p in [tree, *tree.rglob("*")]} == {user.uid}
    assert (tree / "home" / "user-file").read_bytes() == b"u\n"
    assert layer in user.cs("layers", STORAGE_DRIVER="vfs").stdout


# -- crashes and concurrency --------------------------------------------------------------


def _many_files_tar(n: int, tag: str) -> bytes:
    t = TarBuilder()
    t.dir("d", uid=1, gid=1)
    for i in range(n):
        t.file(f"d/{tag}{i}", b"x" * (i % 512), uid=i % 3, gid=i % 3)
    return t.getvalue()


def _overlay_leftovers(user: User) -> list[str]:
    home = user.graph_root / "overlay"
    stage = home / "tempdirs"
    return sorted(os.listdir(stage)) if stage.exists() else []


def test_kill_9_during_import_leaves_a_clean_store(rl: User) -> None:
    """SIGKILL to the command (its namespace child dies with it) while a layer is being
    applied: the next command finds no half layer, no staging directory, no mount, and
    the same import then succeeds."""
    import signal
    import time

    base = rl.put("big.tar", _many_files_tar(10000, "f"))
    killed = False
    for _ in range(5):
        proc = rl.popen(rl.python, "-m", "containers_storage", "import-layer", "-f", str(base))
        # Until the layer's record exists, incomplete (the apply has begun).
        layers_json = rl.graph_root / "overlay-layers" / "layers.json"
        while proc.poll() is None:
            if layers_json.exists() and "incomplete" in layers_json.read_text():
                os.kill(proc.pid, signal.SIGKILL)
                break
            time.sleep(0.001)
        proc.communicate()
        if proc.returncode == -signal.SIGKILL:
            killed = True
            break
        rl.cs("wipe")
    assert killed, "the import always finished before it could be killed"
    # The namespace child dies with the command (its SIGKILL may still be in flight).
    while [p for p in os.listdir("/proc") if p.isdigit() and _uid_of(p) == rl.uid]:
        time.sleep(0.01)
    listed = rl.cs("layers").stdout
    assert listed == ""
    assert "incomplete" not in (rl.graph_root / "overlay-layers" / "layers.json").read_text()
    assert _overlay_leftovers(rl) == []
    layer_dirs = [
        n for n in os.listdir(rl.graph_root / "overlay") if n not in ("l", ".has-mount-program")
    ]
    assert layer_dirs == []
    assert os.listdir(rl.graph_root / "overlay" / "l") == []
    again = rl.cs("import-layer", "-f", str(base)).stdout.split()[-1]
    assert rl.cs("layers").stdout.split() == [again]


def _uid_of(pid: str) -> int:
    """The owner of a live process (-1 when gone or a zombie)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            if f.read().rpartition(")")[2].split()[0] == "Z":
                return -1
        return os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return -1


def test_two_processes_of_the_user_at_once(rl: User) -> None:
    """Two imports by the user at the same time, each in a namespace of its own, onto one
    parent: both layers land, the store stays consistent."""
    rl.put("base.tar", _base_tar())
    parent = rl.cs("import-layer", "-f", str(rl.home / "work" / "base.tar")).stdout.split()[-1]
    a = rl.put("a.tar", _many_files_tar(3000, "a"))
    b = rl.put("b.tar", _many_files_tar(3000, "b"))
    procs = [
        rl.popen(rl.python, "-m", "containers_storage", "import-layer", "-f", str(p), parent)
        for p in (a, b)
    ]
    outs = [p.communicate() for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    ids = [o[0].split()[-1] for o in outs]
    listed = rl.cs("layers").stdout.split()
    assert sorted(listed) == sorted([parent, *ids])
    for layer_id, tag in zip(ids, "ab", strict=True):
        diff = rl.graph_root / "overlay" / layer_id / "diff" / "d"
        assert len(os.listdir(diff)) == 3000
        assert os.lstat(diff / f"{tag}1").st_uid == rl.host_id(1)
    assert _overlay_leftovers(rl) == []
