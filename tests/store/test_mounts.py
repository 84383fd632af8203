"""Mounts in a shared store (issue 14): deleting containers, layers and whole stores with
something mounted in their directories (podman's ``userdata/shm`` tmpfs, a user's bind
mount) removes records, directories and mounts as Go's ``EnsureRemoveAll`` does; unmount
detaches once as Go's overlay ``Put`` does, even with a process working inside."""

from __future__ import annotations

import errno
import io
import json
import tarfile
from pathlib import Path

import containers_storage as cs
import pytest
from containers_storage._mounts import mountpoints

from tests.helpers import Child
from tests.store.helpers import Roots, go, mounted_under, ours, podman, run

pytestmark = [pytest.mark.root]


def mount_shm(path: Path) -> None:
    """A tmpfs as podman mounts a container's shm, with a file in it."""
    path.mkdir(parents=True, exist_ok=True)
    run(["mount", "-t", "tmpfs", "-o", "nosuid,nodev,noexec,size=1m", "shm", str(path)])
    (path / "in-shm").write_text("x")


def bind(source: Path, target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    run(["mount", "--bind", str(source), str(target)])


@pytest.fixture
def host_dir(tmp_path: Path) -> Path:
    """A directory outside the store to bind-mount into it; deleting must not empty it."""
    d = tmp_path / "host"
    d.mkdir()
    (d / "keep").write_text("kept")
    return d


def layer_dir(roots: Roots, driver: str, layer_id: str) -> Path:
    if driver == "vfs":
        return roots[0] / "vfs" / "dir" / layer_id
    return roots[0] / "overlay" / layer_id


def container_dirs(roots: Roots, driver: str, ctr_id: str) -> list[Path]:
    return [r / f"{driver}-containers" / ctr_id for r in roots]


def store_mounts(roots: Roots, driver: str) -> list[str]:
    """What is mounted in the store, less the overlay home's own private bind mount."""
    home = str(roots[0] / driver)
    return [p for r in roots for p in mounted_under(r) if p != home]


def delete(how: str, store: cs.Store, roots: Roots, driver: str, *args: str) -> None:
    """Run a delete command through our API, our CLI or Go's CLI."""
    if how == "api":
        getattr(store, args[0].replace("-", "_"))(*args[1:])
    elif how == "cli":
        p = ours(roots, driver, *args)
        assert p.returncode == 0, p.stderr
    else:
        theirs = go(roots, driver, *args, check=False)
        if theirs.returncode != 0:
            # Go 1.43's DeleteContainer races itself: containerStore.Delete's plain
            # os.RemoveAll of the container's directory runs beside the goroutine that
            # unmounts userdata/shm and removes the same directory (EnsureRemoveAll), and
            # fails with EBUSY when it gets to shm first (about 1 run in 10 here, seen
            # with strace). The record, layer, directories and mounts still all go, so
            # the end state the test checks is the same; only the exit status differs.
            err = theirs.stderr.decode()
            assert "/userdata/shm: device or resource busy" in err, err


def make_container(store: cs.Store) -> cs.Container:
    layer = store.create_layer(names=["base"])
    img = store.create_image(layer.id, names=["img"])
    return store.create_container(img.id, names=["ctr"])


# -- deleting around mounts -------------------------------------------------------------


@pytest.mark.parametrize("how", ["api", "cli", "go"])
def test_delete_container_unmounts_shm_and_binds(
    store: cs.Store, roots: Roots, driver: str, host_dir: Path, how: str
) -> None:
    """podman's shm tmpfs in the graph root's userdata, a bind mount in the run root's, and
    the container's own mount: all go with the record, the layer and the directories. Go's
    CLI (tmpfs only: it deletes a bind mount's files through it) ends the same way."""
    ctr = make_container(store)
    mount_shm(Path(store.container_directory(ctr.id)) / "shm")
    if how != "go":
        bind(host_dir, Path(store.container_run_directory(ctr.id)) / "bind")
    store.mount(ctr.id)
    assert store_mounts(roots, driver)

    delete(how, store, roots, driver, "delete-container", ctr.id)

    assert store.containers() == []
    assert not store.exists(ctr.layer)
    assert [x.names for x in store.layers()] == [("base",)]
    for d in container_dirs(roots, driver, ctr.id):
        assert not d.exists(), d
    assert store_mounts(roots, driver) == []
    assert (host_dir / "keep").read_text() == "kept"


def test_delete_container_keeps_the_record_when_the_directories_stay(
    store: cs.Store, roots: Roots, driver: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Directories go first: when they cannot, the container and its layer are still
    there, and a second delete finishes the work."""
    from containers_storage import containers

    ctr = make_container(store)
    Path(store.container_directory(ctr.id), "file").write_text("x")

    def busy(path: str) -> None:
        raise OSError(errno.EBUSY, "Device or resource busy", path)

    with monkeypatch.context() as m:
        m.setattr(containers, "remove_all", busy)
        with pytest.raises(OSError, match="busy"):
            store.delete_container(ctr.id)
    assert [c.id for c in store.containers()] == [ctr.id]
    assert store.exists(ctr.layer)
    store.delete_container(ctr.id)
    assert store.containers() == []
    assert not store.exists(ctr.layer)
    for d in container_dirs(roots, driver, ctr.id):
        assert not d.exists(), d


@pytest.mark.parametrize("how", ["api", "cli", "go"])
def test_delete_layer_unmounts_what_is_in_its_directory(
    store: cs.Store, roots: Roots, driver: str, host_dir: Path, how: str
) -> None:
    """A tmpfs and a bind mount inside the layer's driver directory, and the layer itself
    mounted: delete-layer removes the record, the directory and every mount (Go's CLI:
    tmpfs only)."""
    layer = store.create_layer(names=["l"])
    d = layer_dir(roots, driver, layer.id)
    mount_shm(d / "tmp")
    if how != "go":
        bind(host_dir, d / "bind")
    store.mount(layer.id)

    delete(how, store, roots, driver, "delete-layer", layer.id)

    assert store.layers() == []
    assert not d.exists()
    assert store_mounts(roots, driver) == []
    assert (host_dir / "keep").read_text() == "kept"


@pytest.mark.parametrize("how", ["api", "cli"])
def test_wipe_unmounts_everything(
    store: cs.Store, roots: Roots, driver: str, host_dir: Path, how: str
) -> None:
    ctr = make_container(store)
    mount_shm(Path(store.container_directory(ctr.id)) / "shm")
    bind(host_dir, Path(store.container_run_directory(ctr.id)) / "bind")
    store.mount(ctr.id)
    other = store.create_layer(names=["other"])
    mount_shm(layer_dir(roots, driver, other.id) / "tmp")

    if how == "api":
        store.wipe()
    else:
        p = ours(roots, driver, "wipe")
        assert p.returncode == 0, p.stderr

    assert (store.containers(), store.images(), store.layers()) == ([], [], [])
    for d in container_dirs(roots, driver, ctr.id):
        assert not d.exists(), d
    assert not layer_dir(roots, driver, other.id).exists()
    assert store_mounts(roots, driver) == []
    assert (host_dir / "keep").read_text() == "kept"


def _rootfs_tar() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        info = tarfile.TarInfo("etc/hostname")
        info.size = 2
        t.addfile(info, io.BytesIO(b"x\n"))
    return buf.getvalue()


def test_delete_a_podman_container_with_its_mounts(short_dir: Path, driver: str) -> None:
    """podman creates a container in the shared store and mounts it (``podman mount``, its
    own counted layer mount) and its shm (a tmpfs at ``userdata/shm``; ``podman init``
    would mount it, but no OCI runtime can start here, so the test mounts it the same way).
    Our delete-container removes the storage container, its mounts and directories; podman
    then removes its own record of it (``rm``) and lists no such container."""
    roots = (short_dir / "root", short_dir / "run")
    rootfs = short_dir / "rootfs.tar"
    rootfs.write_bytes(_rootfs_tar())
    podman(roots, driver, "import", "--quiet", str(rootfs), "localhost/rootfs:1")
    ctr_id = podman(roots, driver, "create", "--name", "pc", "localhost/rootfs:1", "/x")
    ctr_id_text = ctr_id.stdout.decode().strip()
    merged = podman(roots, driver, "mount", "pc").stdout.decode().strip()
    assert Path(merged, "etc", "hostname").read_bytes() == b"x\n"
    graph_dir, _run_dir = container_dirs(roots, driver, ctr_id_text)
    mount_shm(graph_dir / "userdata" / "shm")

    with cs.Store(*roots, driver) as s:
        ctr = s.container("pc")
        assert s.mounted(ctr.id) == 1
        s.delete_container("pc")
        assert s.containers() == []
        assert not s.exists(ctr.layer)
    for d in container_dirs(roots, driver, ctr_id_text):
        assert not d.exists(), d
    assert store_mounts(roots, driver) == []

    def listed() -> list[str]:
        out = podman(roots, driver, "ps", "-a", "--external", "--format", "json").stdout
        return [c["Id"] for c in json.loads(out)]

    assert listed() == [ctr_id_text]  # podman's own database still has it
    podman(roots, driver, "rm", "pc")
    assert listed() == []
    podman(roots, driver, "rmi", "localhost/rootfs:1")


# -- unmount ------------------------------------------------------------------------------

_INSIDE = """
import os, sys
os.chdir(sys.argv[1])
print("in", flush=True)
sys.stdin.readline()
with open("late", "w") as f:
    f.write("after the unmount")
print("wrote", flush=True)
sys.stdin.readline()
"""


def test_unmount_with_a_process_inside(store: cs.Store, roots: Roots, driver: str) -> None:
    """A process has its working directory in the mount: unmount detaches it (no longer a
    mount point, count 0), and what was written through the mount, before and even after
    the detach, is in the layer's diff."""
    layer = store.create_layer()
    path = store.mount(layer.id)
    Path(path, "early").write_text("before the unmount")
    child = Child(_INSIDE, path)
    try:
        child.expect("in")
        assert store.unmount(layer.id) is False
        assert store.mounted(layer.id) == 0
        assert path not in mountpoints()
        child.send("")
        child.expect("wrote")
    finally:
        child.kill()
    diff = layer_dir(roots, driver, layer.id) / ("diff" if driver == "overlay" else "")
    assert (diff / "early").read_text() == "before the unmount"
    assert (diff / "late").read_text() == "after the unmount"
    changed = {c.path for c in store.changes(None, layer.id)}
    assert {"/early", "/late"} <= changed
