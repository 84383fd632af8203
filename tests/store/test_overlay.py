"""The overlay driver against Go containers/storage 1.43 (issue #6): on-disk layout, kernel
mounts, short links, the private home bind mount, whiteouts, native diffs, ID maps, and
sharing stores (and mount counts) with Debian's Go CLI and skopeo.

Every test uses its own store(s) under ``tmp_path``, unmounts what it mounted, shuts its
stores down (Go's ``shutdown`` too for stores Go touched) and must leave nothing mounted below
``tmp_path`` (checked by the ``nothing_left_mounted`` fixture, which also cleans up after a
failure).
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import hashlib
import io
import json
import os
import re
import stat
import subprocess
import tarfile
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import containers_storage as cs
import pytest
from containers_storage.drivers.overlay import mountpoints

from tests.helpers import SKOPEO
from tests.store.helpers import (
    Layout,
    Roots,
    cs_ref,
    go,
    go_json,
    mounted_under,
    run,
    tool_env,
    write_policy,
)
from tests.tars import d, f, hard, make_tar, sha256, sym

pytestmark = [
    pytest.mark.root,
    pytest.mark.gotools,
    pytest.mark.usefixtures("nothing_left_mounted"),
]

DRV = "overlay"

LINK_RE = re.compile(r"^[A-Z2-7]{26}$")
#: What Go's overlay driver caches in RUNROOT/overlay after creating a layer (section 8 of
#: the on-disk notes; checked against the Go CLI in test_run_root_feature_files).
GO_FEATURES = {"overlay-true", "native-diff()-true", "metacopy()-false", "idmapped-lower-dir-true"}


# -- tar building ---------------------------------------------------------------------------


#: A base layer: owners 0 and 1000, xattrs, setuid, links, things later layers remove.
BASE = (
    d("etc/"),
    f("etc/hostname", b"base\n", xattrs=(("user.fixture", "hello"),)),
    f("etc/passwd", b"root:x:0:0::/root:/bin/sh\n"),
    f("etc/to-delete.txt", b"bye\n"),
    d("bin/"),
    f("bin/tool", b"#!/bin/sh\necho tool\n", mode=0o4755),
    sym("bin/sh", "tool"),
    d("home/"),
    d("home/user/", mode=0o750, uid=1000, gid=1000),
    f("home/user/notes.txt", b"notes\n", mode=0o600, uid=1000, gid=1000),
    d("opt/"),
    d("opt/app/"),
    f("opt/app/old1.txt", b"old1\n"),
    d("opt/app/sub/"),
    f("opt/app/sub/old2.txt", b"old2\n"),
    d("tmp/", mode=0o1777),
)

#: A layer on BASE: a whiteout, an opaque directory, a new file, a hard link.
UPPER = (
    d("etc/"),
    f("etc/.wh.to-delete.txt"),
    f("etc/hostname", b"upper\n", xattrs=(("user.x", "second"),)),
    sym("etc/abs-link", "/etc/hostname"),
    d("opt/"),
    d("opt/app/"),
    f("opt/app/.wh..wh..opq"),
    f("opt/app/new.txt", b"new\n"),
    d("srv/"),
    f("srv/data.txt", b"shared data\n"),
    hard("srv/data-hardlink.txt", "srv/data.txt"),
)


# -- trees, mounts ----------------------------------------------------------------------------

Tree = dict[str, tuple[Any, ...]]


def walk(root: str | os.PathLike[str], *, xattr_prefixes: tuple[str, ...] = ("user.",)) -> Tree:
    """Relative path -> (type, permission bits, uid, gid, size, symlink target, content
    sha256, rdev, link count of files, xattrs with the given prefixes) for ``root`` (as ".")
    and all below it."""
    base = os.fspath(root)
    rels = ["."]
    for dirpath, dirnames, filenames in os.walk(base):
        rels.extend(os.path.relpath(os.path.join(dirpath, n), base) for n in dirnames + filenames)
    out: Tree = {}
    for rel in rels:
        full = os.path.join(base, rel)
        st = os.lstat(full)
        kind = stat.S_IFMT(st.st_mode)
        xattrs = tuple(
            sorted(
                (k, os.getxattr(full, k, follow_symlinks=False))
                for k in os.listxattr(full, follow_symlinks=False)
                if k.startswith(xattr_prefixes)
            )
        )
        size = st.st_size if stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode) else 0
        target = os.readlink(full) if stat.S_ISLNK(st.st_mode) else ""
        digest = hashlib.sha256(Path(full).read_bytes()).hexdigest() if stat.S_ISREG(kind) else ""
        rdev = st.st_rdev if stat.S_ISCHR(kind) or stat.S_ISBLK(kind) else 0
        out[rel] = (
            kind,
            stat.S_IMODE(st.st_mode),
            st.st_uid,
            st.st_gid,
            size,
            target,
            digest,
            rdev,
            st.st_nlink if stat.S_ISREG(kind) else 0,
            xattrs,
        )
    return out


def _unescape(field: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


@dataclass(frozen=True)
class MountInfo:
    mount_point: str
    root: str
    options: tuple[str, ...]  # per-mount options (rw, relatime, ...)
    optional: tuple[str, ...]  # propagation tags (shared:N, master:N, ...)
    fstype: str
    super_options: str

    def overlay(self) -> tuple[list[str], str, str]:
        """(lower dirs in order, upperdir, workdir) from the overlay's super options, for
        both ``lowerdir=a:b`` and the new mount API's ``lowerdir+=a,lowerdir+=b``."""
        lowers: list[str] = []
        upper = work = ""
        for opt in self.super_options.split(","):
            key, _, value = opt.partition("=")
            if key == "lowerdir":
                lowers.extend(value.split(":"))
            elif key == "lowerdir+":
                lowers.append(value)
            elif key == "upperdir":
                upper = value
            elif key == "workdir":
                work = value
        return lowers, upper, work


def mountinfo() -> list[MountInfo]:
    out = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        fields = left.split(" ")
        rfields = right.split(" ")
        out.append(
            MountInfo(
                mount_point=_unescape(fields[4]),
                root=_unescape(fields[3]),
                options=tuple(fields[5].split(",")),
                optional=tuple(fields[6:]),
                fstype=rfields[0],
                super_options=rfields[2] if len(rfields) > 2 else "",
            )
        )
    return out


def mounts_at(path: str | os.PathLike[str]) -> list[MountInfo]:
    p = os.fspath(path)
    return [m for m in mountinfo() if m.mount_point == p]


@pytest.fixture
def stores() -> Iterator[Callable[..., cs.Store]]:
    """Open overlay Stores; each is shut down (forcing unmounts) at the end of the test, as a
    safety net behind the test's own unmounts and ``shutdown(True)``."""
    opened: list[cs.Store] = []

    def _open(r: Roots, **kwargs: Any) -> cs.Store:
        s = cs.Store(r[0], r[1], DRV, **kwargs)
        opened.append(s)
        return s

    yield _open
    for s in opened:
        for _ in range(2):  # a forced shutdown of mounted layers raises before its cleanup
            with contextlib.suppress(cs.StorageError, OSError):
                s.shutdown(True)


@pytest.fixture
def go_roots() -> Iterator[list[Roots]]:
    """Stores the Go CLI touched: Go ``shutdown`` (drops its home bind mount) at the end."""
    touched: list[Roots] = []
    yield touched
    for r in touched:
        go(r, DRV, "shutdown", check=False)


def go_text(r: Roots, *args: str) -> str:
    return go(r, DRV, *args).stdout.decode()


def go_id(r: Roots, *args: str) -> str:
    """The ID a Go ``create-*``/``import-layer`` printed (first line)."""
    return go_text(r, *args).split()[0]


def go_mounted(r: Roots, ref: str) -> bool:
    out = go_text(r, "mounted", ref)
    assert out in ("", f"{ref} mounted\n"), out
    return out != ""


def mount_counts(r: Roots) -> dict[str, tuple[str, int]]:
    data = json.loads((r[1] / f"{DRV}-layers" / "mountpoints.json").read_bytes() or b"[]")
    return {m["id"]: (m["path"], m["count"]) for m in data or []}


def check_links(r: Roots) -> None:
    """l/ holds exactly one ``../<id>/diff`` link per layer directory, named as its link file."""
    h = home(r)
    layer_dirs = [n for n in os.listdir(h) if len(n) == 64]
    assert {n: os.readlink(h / "l" / n) for n in os.listdir(h / "l")} == {
        link_of(r, i): f"../{i}/diff" for i in layer_dirs
    }


def home(r: Roots) -> Path:
    return r[0] / DRV


def link_of(r: Roots, layer_id: str) -> str:
    return (home(r) / layer_id / "link").read_text()


def second_roots(tmp_path: Path, name: str = "go") -> Roots:
    return tmp_path / f"{name}-root", tmp_path / f"{name}-run"


# -- layout -----------------------------------------------------------------------------------


def layer_dir_shape(r: Roots, layer_id: str) -> dict[str, tuple[str, int, int, int]]:
    """Entry name -> (type, mode, uid, gid) of one ``overlay/<id>/`` directory (and "." )."""
    base = home(r) / layer_id
    out = {}
    for name in [".", *os.listdir(base)]:
        st = os.lstat(base / name)
        kind = "dir" if stat.S_ISDIR(st.st_mode) else "file" if stat.S_ISREG(st.st_mode) else "?"
        out[name] = (kind, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)
    return out


def check_go_layout_rules(r: Roots, chain: Sequence[str]) -> None:
    """What section 8 says of every layer dir, ``chain`` listing layer IDs base first."""
    h = home(r)
    flag = h / ".has-mount-program"
    assert flag.read_bytes() == b"false"
    assert stat.S_IMODE(flag.stat().st_mode) == 0o600
    assert stat.S_IMODE(h.stat().st_mode) == 0o700
    assert stat.S_IMODE((h / "l").lstat().st_mode) == 0o755
    for i, layer_id in enumerate(chain):
        link = link_of(r, layer_id)
        assert LINK_RE.match(link), link
        assert stat.S_IMODE((h / layer_id / "link").stat().st_mode) == 0o644
        assert os.readlink(h / "l" / link) == f"../{layer_id}/diff"
        assert (h / "l" / link).resolve() == (h / layer_id / "diff").resolve()
        lower = h / layer_id / "lower"
        if i == 0:
            assert not lower.exists()
            assert (h / layer_id / "empty").is_dir()
        else:
            want = ":".join(f"l/{link_of(r, p)}" for p in reversed(chain[:i]))
            assert lower.read_text() == want
            assert stat.S_IMODE(lower.stat().st_mode) == 0o644
            assert not (h / layer_id / "empty").exists()
    check_links(r)


def our_layout_ops(s: cs.Store, upper_tar: bytes) -> dict[str, str]:
    base = s.create_layer()
    mid = s.create_layer(base.id)
    top, _ = s.put_layer(mid.id, io.BytesIO(upper_tar))
    img = s.create_image(top.id)
    ctr = s.create_container(img.id)
    return {"base": base.id, "mid": mid.id, "top": top.id, "ctr": ctr.layer, "ctr-id": ctr.id}


def go_layout_ops(r: Roots, upper_tar: Path) -> dict[str, str]:
    base = go_id(r, "create-layer")
    mid = go_id(r, "create-layer", base)
    top = go_id(r, "import-layer", "-f", str(upper_tar), mid)
    img = go_id(r, "create-image", top)
    ctr = go_id(r, "create-container", img)
    layer = go_json(r, DRV, "container", "-j", ctr)[0]["layer"]
    return {"base": base, "mid": mid, "top": top, "ctr": layer, "ctr-id": ctr}


def test_layout_and_modes_match_go(
    tmp_path: Path, roots: Roots, stores: Callable[..., cs.Store], go_roots: list[Roots]
) -> None:
    tar = make_tar([d("etc/"), f("etc/motd", b"hi\n")])
    tar_path = tmp_path / "layer.tar"
    tar_path.write_bytes(tar)
    g = second_roots(tmp_path)
    go_roots.append(g)
    s = stores(roots)
    ours = our_layout_ops(s, tar)
    theirs = go_layout_ops(g, tar_path)

    roles = ("base", "mid", "top", "ctr")
    for role in roles:
        assert layer_dir_shape(roots, ours[role]) == layer_dir_shape(g, theirs[role]), role
    assert sorted(os.listdir(home(roots))) == sorted(
        [".has-mount-program", "l", *(ours[x] for x in roles)]
    )
    assert sorted(os.listdir(home(g))) == sorted(
        [".has-mount-program", "l", *(theirs[x] for x in roles)]
    )
    check_go_layout_rules(g, [theirs[x] for x in roles])  # the rules hold for Go...
    check_go_layout_rules(roots, [ours[x] for x in roles])  # ...and for us

    # After a mount and unmount of the container: merged/ is gone in both.
    s.mount(ours["ctr-id"])
    s.unmount(ours["ctr-id"])
    go(g, DRV, "mount", theirs["ctr-id"])
    go(g, DRV, "unmount", theirs["ctr-id"])
    assert layer_dir_shape(roots, ours["ctr"]) == layer_dir_shape(g, theirs["ctr"])
    assert not (home(roots) / ours["ctr"] / "merged").exists()
    assert s.shutdown(True) == []


def test_root_entry_of_applied_tar_ignored(
    tmp_path: Path, roots: Roots, stores: Callable[..., cs.Store], go_roots: list[Roots]
) -> None:
    """Go's overlay ApplyDiff (archive.Unpack) skips a ``./`` entry: the diff dir keeps the
    mode and owner it was created with (0555, or the parent's), and children inherit that."""
    tar = make_tar([d(".", mode=0o750, uid=1000, gid=1000), d("etc/"), f("etc/motd", b"hi\n")])
    tar_path = tmp_path / "rooted.tar"
    tar_path.write_bytes(tar)
    g = second_roots(tmp_path)
    go_roots.append(g)
    s = stores(roots)
    ours = our_layout_ops(s, tar)
    theirs = go_layout_ops(g, tar_path)
    for role in ("top", "ctr"):
        assert (
            layer_dir_shape(roots, ours[role])["diff"] == layer_dir_shape(g, theirs[role])["diff"]
        )
    assert layer_dir_shape(g, theirs["ctr"])["diff"] == ("dir", 0o555, 0, 0)
    assert s.shutdown(True) == []


def test_run_root_feature_files(
    tmp_path: Path, roots: Roots, stores: Callable[..., cs.Store], go_roots: list[Roots]
) -> None:
    """RUNROOT/overlay/ holds the same feature-cache file names as Go's, at each step."""
    g = second_roots(tmp_path)
    go_roots.append(g)
    s = stores(roots)
    seen: list[tuple[str, list[str], list[str]]] = []

    def snap(step: str) -> None:
        seen.append((step, sorted(os.listdir(roots[1] / DRV)), sorted(os.listdir(g[1] / DRV))))

    layer = s.create_layer()
    go_layer = go_id(g, "create-layer")
    snap("create-layer")
    img = s.create_image(layer.id)
    go_img = go_id(g, "create-image", go_layer)
    ctr = s.create_container(img.id, volatile=True)
    go_ctr = go_id(g, "create-container", "--volatile", go_img)
    snap("create-container")
    s.mount(ctr.id)
    s.unmount(ctr.id)
    go(g, DRV, "mount", go_ctr)
    go(g, DRV, "unmount", go_ctr)
    snap("volatile mount")
    assert s.shutdown(True) == []
    # Zero-byte files whose names are the result.
    assert all((roots[1] / DRV / n).stat().st_size == 0 for n in os.listdir(roots[1] / DRV))
    assert [(step, ours) for step, ours, _ in seen] == [(step, go_) for step, _, go_ in seen]
    assert set(seen[-1][2]) == GO_FEATURES | {"volatile-true"}


def test_open_removes_what_a_killed_probe_left(
    tmp_path: Path, roots: Roots, stores: Callable[..., cs.Store]
) -> None:
    """A process killed inside a feature probe leaves its scratch directory in tempdirs/, its
    overlay possibly still mounted: the next open unmounts and removes it, and keeps a
    live process's stage."""
    stores(roots).shutdown(True)
    dead = subprocess.Popen(["true"])
    dead.wait()
    staging = home(roots) / "tempdirs"
    left = staging / f"{dead.pid}-compatxyz"
    for sub in ("lower1", "lower2", "upper", "work", "merged", "mapped"):
        (left / sub).mkdir(parents=True)
    (left / "upper" / "f").write_text("x")
    # As the ID-mapping probe leaves them: mapped/ a mount of a lower, merged/ on top of it.
    subprocess.run(["mount", "--bind", str(left / "lower1"), str(left / "mapped")], check=True)
    subprocess.run(
        ["mount", "-t", "overlay", "overlay", "-o",
         f"lowerdir={left}/mapped:{left}/lower2,upperdir={left}/upper,workdir={left}/work",
         str(left / "merged")],
        check=True,
    )  # fmt: skip
    live = staging / f"{os.getpid()}-stage"
    live.mkdir()
    for name in os.listdir(roots[1] / DRV):  # drop the feature cache: the open probes again
        (roots[1] / DRV / name).unlink()
    s = stores(roots)
    s.layers()
    assert sorted(os.listdir(staging)) == [live.name]
    assert not [p for p in mounted_under(tmp_path) if p.startswith(str(left))]
    assert "overlay-true" in os.listdir(roots[1] / DRV)  # probed again, in tempdirs/
    assert s.shutdown(True) == []
    live.rmdir()


# -- mounting ---------------------------------------------------------------------------------


def test_mountinfo_of_container(roots: Roots, stores: Callable[..., cs.Store]) -> None:
    s = stores(roots)
    base, _ = s.put_layer(None, io.BytesIO(make_tar(BASE)))
    top, _ = s.put_layer(base.id, io.BytesIO(make_tar(UPPER)))
    ctr = s.create_container(s.create_image(top.id).id)
    merged = s.mount(ctr.id)
    h = home(roots)
    assert merged == str(h / ctr.layer / "merged")
    (m,) = mounts_at(merged)
    assert m.fstype == "overlay"
    lowers, upper, work = m.overlay()
    assert ",lowerdir=" in f",{m.super_options}"  # one mount(2): the options fit in a page
    # Short links, nearest parent first.
    assert lowers == [f"{h}/l/{link_of(roots, top.id)}", f"{h}/l/{link_of(roots, base.id)}"]
    assert upper == f"{h}/{ctr.layer}/diff"
    assert work == f"{h}/{ctr.layer}/work"
    assert s.mounted(ctr.id) == 1
    assert mount_counts(roots) == {ctr.layer: (merged, 1)}
    assert (Path(merged) / "opt/app/new.txt").read_bytes() == b"new\n"
    assert not (Path(merged) / "etc/to-delete.txt").exists()
    assert s.unmount(ctr.id) is False
    assert mounts_at(merged) == []
    assert mount_counts(roots) == {}
    assert s.shutdown(True) == []


def test_151_stacked_layers(
    tmp_path: Path, roots: Roots, stores: Callable[..., cs.Store], go_roots: list[Roots]
) -> None:
    """More lower layers than a page of options holds (and than Go's maxDepth of 128)."""
    s = stores(roots)
    chain: list[str] = []
    parent = None
    for i in range(151):
        layer = s.create_layer(parent)
        path = Path(s.mount(layer.id))
        (path / f"file{i:03}").write_text(f"{i}\n")
        assert s.unmount(layer.id) is False
        chain.append(layer.id)
        parent = layer.id
    top = chain[-1]
    path = Path(s.mount(top))
    try:
        assert sorted(os.listdir(path)) == [f"file{i:03}" for i in range(151)]
        assert (path / "file000").read_text() == "0\n"
        assert (path / "file150").read_text() == "150\n"
        (m,) = mounts_at(path)
        lowers, upper, _work = m.overlay()
        # The new mount API, one lower layer at a time (the options would not fit in a page).
        assert "lowerdir+=" in m.super_options and ",lowerdir=" not in f",{m.super_options}"
        h = home(roots)
        assert lowers == [f"{h}/l/{link_of(roots, x)}" for x in reversed(chain[:-1])]
        assert upper == f"{h}/{top}/diff"
    finally:
        s.unmount(top)
    assert mounts_at(path) == []
    assert s.shutdown(True) == []
    # Go's CLI cannot mount this one (why no comparison with Go here).
    go_roots.append(roots)
    p = go(roots, DRV, "mount", top, check=False)
    assert p.returncode != 0 and b"max depth exceeded" in p.stderr, p
    assert mounted_under(home(roots)) == [str(home(roots))]  # only Go's home bind


def test_unmount_busy_mount(roots: Roots, stores: Callable[..., cs.Store]) -> None:
    """An unmount while something in the mount is open: retried while busy, and when it stays
    busy, detached (Go's Put unmounts with MNT_DETACH); the open file stays readable."""
    s = stores(roots)
    base, _ = s.put_layer(None, io.BytesIO(make_tar(BASE)))
    img = s.create_image(base.id)
    ctr = s.create_container(img.id)
    # Released while the unmount is retrying.
    path = Path(s.mount(ctr.id))
    fd = os.open(path / "etc/hostname", os.O_RDONLY)
    closer = threading.Timer(0.2, os.close, (fd,))
    closer.start()
    try:
        assert s.unmount(ctr.id) is False
    finally:
        closer.join()
    assert mounts_at(path) == []
    # Busy all along.
    path = Path(s.mount(ctr.id))
    fd = os.open(path / "etc/hostname", os.O_RDONLY)
    try:
        assert s.unmount(ctr.id) is False
        assert mounts_at(path) == []
        assert s.mounted(ctr.id) == 0
        assert os.pread(fd, 100, 0) == b"base\n"
    finally:
        os.close(fd)
    assert s.shutdown(True) == []


def test_mountopt_option(
    tmp_path: Path, roots: Roots, stores: Callable[..., cs.Store], go_roots: list[Roots]
) -> None:
    """overlay.mountopt: flags go to the mount, and the feature cache names carry the options,
    as with Go's CLI given the same --storage-opt."""
    opt = "overlay.mountopt=nodev"
    s = stores(roots, driver_options=[opt])
    ctr = s.create_container(s.create_image(s.create_layer().id).id)
    (m,) = mounts_at(s.mount(ctr.id))
    assert "nodev" in m.options
    s.unmount(ctr.id)
    assert s.shutdown(True) == []

    g = second_roots(tmp_path)
    go_roots.append(g)
    img = go_id(
        g, "--storage-opt", opt, "create-image", go_id(g, "--storage-opt", opt, "create-layer")
    )
    go_ctr = go_id(g, "--storage-opt", opt, "create-container", img)
    (gm,) = mounts_at(go_text(g, "--storage-opt", opt, "mount", go_ctr).strip())
    go(g, DRV, "--storage-opt", opt, "unmount", go_ctr)
    assert "nodev" in gm.options
    assert m.options == gm.options
    ours = set(os.listdir(roots[1] / DRV))
    theirs = set(os.listdir(g[1] / DRV))
    assert "metacopy(nodev)-false" in theirs
    assert ours - {"idmapped-lower-dir-true"} == theirs - {"idmapped-lower-dir-true"}


def test_mount_label_without_selinux(
    roots: Roots, stores: Callable[..., cs.Store], go_roots: list[Roots]
) -> None:
    """A mount label becomes a ``context="..."`` option; this kernel has no SELinux, so the
    mount fails for Go's CLI and for us alike, cleanly (nothing mounted or counted)."""
    assert not os.path.exists("/sys/fs/selinux/enforce"), "test written for a non-SELinux host"
    label = "system_u:object_r:container_file_t:s0:c1,c2"
    s = stores(roots)
    layer = s.create_layer()
    with pytest.raises(OSError) as info:
        s.mount(layer.id, mount_label=label)
    assert info.value.errno == errno.EINVAL
    assert s.mounted(layer.id) == 0
    assert mount_counts(roots) == {}
    go_roots.append(roots)
    p = go(roots, DRV, "mount", "-l", label, layer.id, check=False)
    assert p.returncode != 0 and b"context=" in p.stderr, p
    assert mounted_under(home(roots)) == [str(home(roots))]
    assert s.shutdown(True) == []


@pytest.mark.parametrize("char", [",", ":"])
def test_option_injection_refused(
    tmp_path: Path, char: str, stores: Callable[..., cs.Store]
) -> None:
    """A graph root with a character that means something in overlay options: opening or
    mounting fails with an error and leaves nothing mounted or counted."""
    r = (tmp_path / f"a{char}b" / "root", tmp_path / f"a{char}b" / "run")
    with pytest.raises((cs.StorageError, OSError)):
        stores(r)  # the feature probe would have to mount there
    assert mounted_under(tmp_path) == []
    # With the probe results cached in the run root (as after a run with a plain path),
    # the store opens and the mount itself must refuse the path.
    feature_dir = r[1] / DRV
    feature_dir.mkdir(parents=True, exist_ok=True)
    for name in ("overlay-true", "native-diff()-true", "metacopy()-false"):
        (feature_dir / name).touch()
    for n in os.listdir(feature_dir):
        if n not in ("overlay-true", "native-diff()-true", "metacopy()-false"):
            (feature_dir / n).unlink()
    s = stores(r)
    layer = s.create_layer()
    child = s.create_layer(layer.id)
    for target in (layer.id, child.id):
        with pytest.raises((cs.StorageError, OSError)):
            s.mount(target)
        assert s.mounted(target) == 0
    assert mount_counts(r) == {}
    assert mounted_under(tmp_path) == [str(home(r))]  # only the private home bind
    assert s.shutdown(True) == []
    assert mounted_under(tmp_path) == []


def populate(s: cs.Store) -> list[str]:
    """Three layers with files added and removed at each (tests/helpers.bash populate)."""
    lower, _ = s.put_layer(None, io.BytesIO(make_tar([d("a/"), f("a/one", b"1"), f("x", b"x")])))
    mid, _ = s.put_layer(lower.id, io.BytesIO(make_tar([f("a/.wh.one"), f("two", b"2")])))
    upper, _ = s.put_layer(mid.id, io.BytesIO(make_tar([f(".wh.x"), f("three", b"3")])))
    return [lower.id, mid.id, upper.id]


def test_lost_links_recreated(roots: Roots, stores: Callable[..., cs.Store]) -> None:
    """tests/overlay-recreate.bats: lose l/* and then */link; mounting recovers both."""
    s = stores(roots)
    layers = populate(s)
    h = home(roots)
    before = {x: link_of(roots, x) for x in layers}
    for name in os.listdir(h / "l"):
        os.unlink(h / "l" / name)
    for layer in layers:
        path = Path(s.mount(layer))
        assert path.is_dir()
        assert s.unmount(layer) is False
    assert {n: os.readlink(h / "l" / n) for n in os.listdir(h / "l")} == {
        before[x]: f"../{x}/diff" for x in layers
    }
    for layer in layers:
        os.unlink(h / layer / "link")
    for layer in layers:
        path = Path(s.mount(layer))
        if layer == layers[-1]:
            assert sorted(os.listdir(path)) == ["a", "three", "two"]
        assert s.unmount(layer) is False
    assert {x: link_of(roots, x) for x in layers} == before
    for layer in layers:
        assert stat.S_IMODE((h / layer / "link").stat().st_mode) == 0o644
    assert mounted_under(h) == [str(h)]
    assert s.shutdown(True) == []


def home_binds(r: Roots) -> list[MountInfo]:
    return mounts_at(home(r))


def test_home_private_bind_mount(roots: Roots, stores: Callable[..., cs.Store]) -> None:
    s = stores(roots)
    (bind,) = home_binds(roots)
    assert bind.fstype != "overlay"
    assert not any(t.startswith(("shared:", "master:")) for t in bind.optional), bind
    layer = s.create_layer()
    s.mount(layer.id)
    s.unmount(layer.id)
    assert s.shutdown() == []
    assert home_binds(roots) == []


def test_skip_mount_home(roots: Roots, stores: Callable[..., cs.Store]) -> None:
    s = stores(roots, driver_options=["overlay.skip_mount_home=true"])
    assert home_binds(roots) == []
    layer = s.create_layer()
    path = s.mount(layer.id)
    assert len(mounts_at(path)) == 1
    s.unmount(layer.id)
    assert home_binds(roots) == []
    assert s.shutdown() == []
    assert mounted_under(roots[0]) == []


# -- contents ---------------------------------------------------------------------------------


def test_whiteouts_on_disk_match_go(
    tmp_path: Path, roots: Roots, stores: Callable[..., cs.Store], go_roots: list[Roots]
) -> None:
    base_tar, upper_tar = make_tar(BASE), make_tar(UPPER)
    s = stores(roots)
    base, _ = s.put_layer(None, io.BytesIO(base_tar))
    top, _ = s.put_layer(base.id, io.BytesIO(upper_tar))
    diff = home(roots) / top.id / "diff"
    st = os.lstat(diff / "etc/to-delete.txt")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
    assert (st.st_uid, st.st_gid) == (0, 0)
    assert os.getxattr(diff / "opt/app", "trusted.overlay.opaque") == b"y"
    assert sorted(os.listdir(diff / "opt/app")) == ["new.txt"]
    assert not any(".wh." in rel for rel in walk(diff))

    g = second_roots(tmp_path)
    go_roots.append(g)
    (tmp_path / "base.tar").write_bytes(base_tar)
    (tmp_path / "upper.tar").write_bytes(upper_tar)
    go_base = go_id(g, "import-layer", "-f", str(tmp_path / "base.tar"))
    go_top = go_id(g, "import-layer", "-f", str(tmp_path / "upper.tar"), go_base)
    everything = ("user.", "trusted.", "security.")
    for ours, theirs in ((base.id, go_base), (top.id, go_top)):
        assert walk(home(roots) / ours / "diff", xattr_prefixes=everything) == walk(
            home(g) / theirs / "diff", xattr_prefixes=everything
        )
    assert s.shutdown(True) == []


def test_diff_reproduces_tar(roots: Roots, stores: Callable[..., cs.Store]) -> None:
    s = stores(roots)
    base_tar, upper_tar = make_tar(BASE), make_tar(UPPER)
    base, _ = s.put_layer(None, io.BytesIO(base_tar))
    top, _ = s.put_layer(base.id, io.BytesIO(gzip.compress(upper_tar, mtime=0)))
    assert top.diff_digest == sha256(upper_tar)
    for layer, tar in ((base, base_tar), (top, upper_tar)):
        out = b"".join(s.diff(None, layer.id, compression="none"))
        assert sha256(out) == layer.diff_digest
        assert out == tar
    assert s.shutdown(True) == []


def tar_members(data: bytes) -> list[tuple[Any, ...]]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as t:
        return sorted(
            (
                m.name,
                m.type,
                m.mode & 0o7777,
                m.uid,
                m.gid,
                m.size,
                m.linkname,
                tuple(sorted((k, v) for k, v in m.pax_headers.items() if "xattr" in k)),
            )
            for m in t.getmembers()
        )


def test_changes_and_sizes_match_go(
    roots: Roots, stores: Callable[..., cs.Store], go_roots: list[Roots]
) -> None:
    """Changes, diff sizes and native diffs of an applied layer and of a container layer the
    kernel wrote to (its own whiteouts and opaque directory), as Go's CLI reports them."""
    s = stores(roots)
    go_roots.append(roots)
    base, _ = s.put_layer(None, io.BytesIO(make_tar(BASE)))
    top, _ = s.put_layer(base.id, io.BytesIO(make_tar(UPPER)))
    ctr = s.create_container(s.create_image(top.id).id)
    root = Path(s.mount(ctr.id))
    (root / "etc/passwd").unlink()
    (root / "etc/new.conf").write_text("new\n")
    os.setxattr(root / "etc/new.conf", "user.k", b"v")
    (root / "opt/app/new.txt").unlink()
    (root / "opt/app").rmdir()
    (root / "opt/app").mkdir()
    (root / "opt/app/again.txt").write_text("again\n")
    os.chmod(root / "bin/tool", 0o755)
    (root / "home/user/notes.txt").write_text("more notes\n")
    s.unmount(ctr.id)

    for layer in (base.id, top.id, ctr.layer):
        ours = sorted((c.path, int(c.kind)) for c in s.changes(None, layer))
        theirs = sorted((c["Path"], c["Kind"]) for c in go_json(roots, DRV, "changes", "-j", layer))
        assert ours == theirs, layer
        assert s.diff_size(None, layer) == int(go_text(roots, "diffsize", layer)), layer
    our_diff = b"".join(s.diff(None, ctr.layer, compression="none"))
    go_diff = go(roots, DRV, "diff", "-u", ctr.layer).stdout
    assert tar_members(our_diff) == tar_members(go_diff)
    names = [m[0] for m in tar_members(our_diff)]
    assert "etc/.wh.passwd" in names and "opt/app/.wh..wh..opq" in names
    # Against a layer that is not the parent: the naive (mount and compare) path.
    ours = sorted((c.path, int(c.kind)) for c in s.changes(base.id, ctr.layer))
    theirs = sorted(
        (c["Path"], c["Kind"]) for c in go_json(roots, DRV, "changes", "-j", ctr.layer, base.id)
    )
    assert ours == theirs
    assert s.diff_size(base.id, ctr.layer) == int(go_text(roots, "diffsize", ctr.layer, base.id))
    assert mounted_under(home(roots)) == [str(home(roots))]
    assert s.shutdown(True) == []


def test_delete_mounted_container(roots: Roots, stores: Callable[..., cs.Store]) -> None:
    """Deleting a mounted container unmounts its layer first (Go's deleteInternal), and takes
    its short link along."""
    s = stores(roots)
    img = s.create_image(s.put_layer(None, io.BytesIO(make_tar(BASE)))[0].id)
    ctr = s.create_container(img.id)
    link = link_of(roots, ctr.layer)
    path = s.mount(ctr.id)
    s.mount(ctr.id)
    s.delete_container(ctr.id)
    assert mounts_at(path) == []
    assert mount_counts(roots) == {}
    assert not (home(roots) / ctr.layer).exists()
    assert not (home(roots) / "l" / link).exists()
    assert s.shutdown(True) == []


def test_mount_image_read_only(roots: Roots, stores: Callable[..., cs.Store]) -> None:
    s = stores(roots)
    base, _ = s.put_layer(None, io.BytesIO(make_tar(BASE)))
    top, _ = s.put_layer(base.id, io.BytesIO(make_tar(UPPER)))
    img = s.create_image(top.id, names=["localhost/ro:1"])
    path = Path(s.mount_image("localhost/ro:1"))
    (m,) = mounts_at(path)
    assert "ro" in m.options
    assert (path / "etc/hostname").read_bytes() == b"upper\n"
    with pytest.raises(OSError) as info:
        (path / "etc/new").write_text("x")
    assert info.value.errno == errno.EROFS
    with pytest.raises(OSError) as info:
        (path / "etc/hostname").unlink()
    assert info.value.errno == errno.EROFS
    before = walk(home(roots) / top.id / "diff")
    assert s.unmount_image(img.id) is False
    assert mounts_at(path) == []
    assert s.mounted(top.id) == 0
    assert walk(home(roots) / top.id / "diff") == before
    assert s.shutdown(True) == []


def test_volatile_container_mount(roots: Roots, stores: Callable[..., cs.Store]) -> None:
    s = stores(roots)
    base, _ = s.put_layer(None, io.BytesIO(make_tar(BASE)))
    img = s.create_image(base.id)
    plain = s.create_container(img.id)
    volatile = s.create_container(img.id, volatile=True)
    assert s.container(volatile.id).flags.get("Volatile") is True
    vpath, ppath = s.mount(volatile.id), s.mount(plain.id)
    (vm,) = mounts_at(vpath)
    (pm,) = mounts_at(ppath)
    # Shown as "volatile" by older kernels, "fsync=volatile" by 6.x (as for Go's mounts).
    volatile_opts = {"volatile", "fsync=volatile"}
    assert volatile_opts & set(vm.super_options.split(",")), vm
    assert not volatile_opts & set(pm.super_options.split(",")), pm
    s.unmount(volatile.id)
    s.unmount(plain.id)
    assert (roots[1] / DRV / "volatile-true").exists()
    # Mounting again after the kernel's volatile "dirty" marker was left works (Go removes
    # work/work/incompat/volatile before mounting).
    s.mount(volatile.id)
    s.unmount(volatile.id)
    assert s.shutdown(True) == []


def test_status_matches_go(
    roots: Roots, stores: Callable[..., cs.Store], go_roots: list[Roots]
) -> None:
    s = stores(roots)
    ours = s.status()
    go_roots.append(roots)
    theirs = go_json(roots, DRV, "status", "-j")
    assert [k for k, _ in theirs[:4]] == ["Root", "Run Root", "Driver Name", "Driver Options"]
    assert [list(p) for p in ours] == theirs[4:]
    assert [k for k, _ in ours] == [
        "Backing Filesystem",
        "Supports d_type",
        "Native Overlay Diff",
        "Using metacopy",
    ]
    assert s.shutdown(True) == []


def _check_mapped_tree(root: Path, home_owner: int) -> None:
    tree = walk(root)
    owners = {rel: (v[2], v[3]) for rel, v in tree.items()}
    assert owners["etc/hostname"] == (100000, 100000)
    assert owners["home/user"] == (home_owner, home_owner)
    assert owners["home/user/notes.txt"] == (home_owner, home_owner)
    # The root is the container layer's own upper directory: with shifting it keeps the
    # store's owner, as in Go (compared with Go's own mount in the next test).
    assert all(uid in (100000, home_owner) for rel, (uid, _) in owners.items() if rel != "."), (
        owners
    )
    assert (root / "etc/hostname").read_bytes() == b"upper\n"
    assert not (root / "etc/to-delete.txt").exists()
    assert sorted(os.listdir(root / "opt/app")) == ["new.txt"]
    assert tree["bin/tool"][1] == 0o4755
    assert tree["etc/hostname"][9] == (("user.x", b"second"),)


def test_id_mapped_container(roots: Roots, stores: Callable[..., cs.Store]) -> None:
    """A container with contiguous maps gets Go's ID-mapped copy of the image's top layer,
    as Go does without idmapped mounts: its owners are mapped on disk, so the copy shows
    them on any mount (Go 1.43 on this kernel leaves them unmapped and fails its own
    idmaps tests; see test_go_id_mapped_container_mounts_in_ours for its containers)."""
    s = stores(roots)
    base, _ = s.put_layer(None, io.BytesIO(make_tar(BASE)))
    top, _ = s.put_layer(base.id, io.BytesIO(make_tar(UPPER)))
    img = s.create_image(top.id)
    umap = [(0, 100000, 65536)]
    ctr = s.create_container(img.id, uid_map=umap, gid_map=umap)
    image = s.image(img.id)
    assert len(image.mapped_layers) == 1
    layer = s.layer(ctr.layer)
    assert layer.parent == image.mapped_layers[0]
    assert [(m.container_id, m.host_id, m.size) for m in layer.uidmap] == umap
    assert [(m.container_id, m.host_id, m.size) for m in s.container(ctr.id).uidmap] == umap
    root = Path(s.mount(ctr.id))
    try:
        _check_mapped_tree(root, 101000)
    finally:
        s.unmount(ctr.id)
    assert not any("/mapped/" in p for p in mountpoints()), "idmapped helpers left mounted"
    # The copy reproduces the image's top layer exactly.
    assert b"".join(s.diff(None, image.mapped_layers[0], compression="none")) == make_tar(UPPER)
    assert s.shutdown(True) == []


def test_id_mapped_container_chown_copy(roots: Roots, stores: Callable[..., cs.Store]) -> None:
    """Maps that idmapped mounts cannot express (not contiguous) get Go's ID-mapped copy of
    the top layer, recorded in the image and reused by the next container."""
    s = stores(roots)
    base, _ = s.put_layer(None, io.BytesIO(make_tar(BASE)))
    top, _ = s.put_layer(base.id, io.BytesIO(make_tar(UPPER)))
    img = s.create_image(top.id)
    umap = [(0, 100000, 1000), (1000, 200000, 64536)]
    ctr = s.create_container(img.id, uid_map=umap, gid_map=umap)
    image = s.image(img.id)
    assert len(image.mapped_layers) == 1
    mapped = s.layer(image.mapped_layers[0])
    assert [(m.container_id, m.host_id, m.size) for m in mapped.uidmap] == umap
    assert s.layer(ctr.layer).parent == mapped.id
    root = Path(s.mount(ctr.id))
    try:
        _check_mapped_tree(root, 200000)
    finally:
        s.unmount(ctr.id)
    s.create_container(img.id, uid_map=umap, gid_map=umap)
    assert s.image(img.id).mapped_layers == image.mapped_layers
    assert s.shutdown(True) == []


def test_go_id_mapped_container_mounts_in_ours(
    tmp_path: Path, roots: Roots, stores: Callable[..., cs.Store], go_roots: list[Roots]
) -> None:
    """Go on this kernel makes an ID-mapped container without a mapped copy (its layer sits on
    the image's top layer, unmapped) and shifts owners with idmapped lower mounts. Ours must
    mount such a container with the same tree as Go's mount."""
    go_roots.append(roots)
    (tmp_path / "base.tar").write_bytes(make_tar(BASE))
    (tmp_path / "upper.tar").write_bytes(make_tar(UPPER))
    base = go_id(roots, "import-layer", "-f", str(tmp_path / "base.tar"))
    top = go_id(roots, "import-layer", "-f", str(tmp_path / "upper.tar"), base)
    img = go_id(roots, "create-image", top)
    m = "0:100000:65536"
    ctr = go_id(roots, "create-container", "--uidmap", m, "--gidmap", m, img)
    want = go_mount_tree(roots, ctr)
    assert want["etc/hostname"][2:4] == (100000, 100000)
    assert want["home/user/notes.txt"][2:4] == (101000, 101000)
    go(roots, DRV, "shutdown")
    s = stores(roots)
    assert our_mount_tree(s, ctr) == want
    assert s.shutdown(True) == []


# -- sharing stores with skopeo and the Go CLI ------------------------------------------------


@dataclass(frozen=True)
class Oci:
    layout: Path
    policy: Path
    tag: str


@pytest.fixture(scope="module")
def oci(tmp_path_factory: pytest.TempPathFactory) -> Oci:
    """An OCI layout with BASE and UPPER as gzip layers, tagged ``1``."""
    base = tmp_path_factory.mktemp("oci")
    layout = base / "layout"
    Layout(layout).add_image("1", [make_tar(BASE), make_tar(UPPER)])
    policy = write_policy(base / "policy.json")
    return Oci(layout, policy, "1")


IMAGE = "localhost/x:1"


def skopeo_copy(oci: Oci, r: Roots) -> None:
    """skopeo copy into the store, with a storage.conf of its own (never the host's store)."""
    source = f"oci:{oci.layout}:{oci.tag}"
    cmd = [SKOPEO, "--policy", str(oci.policy), "copy", "--quiet", source, cs_ref(r, DRV, IMAGE)]
    run(cmd, tool_env(r, DRV))


def go_mount_tree(r: Roots, ref: str) -> Tree:
    path = go_text(r, "mount", ref).strip()
    try:
        return walk(path)
    finally:
        go(r, DRV, "unmount", ref)


def our_mount_tree(s: cs.Store, ref: str) -> Tree:
    path = s.mount(ref)
    try:
        return walk(path)
    finally:
        s.unmount(ref)


@pytest.mark.skopeo
def test_skopeo_and_go_store_mounts_in_ours(
    oci: Oci, roots: Roots, stores: Callable[..., cs.Store], go_roots: list[Roots]
) -> None:
    go_roots.append(roots)
    skopeo_copy(oci, roots)
    top = go_json(roots, DRV, "image", "-j", IMAGE)[0]["layer"]
    ctr = go_id(roots, "create-container", IMAGE)
    path = Path(go_text(roots, "mount", ctr).strip())
    (path / "etc/passwd").unlink()
    for name in os.listdir(path / "srv"):
        (path / "srv" / name).unlink()
    (path / "srv").rmdir()
    (path / "srv").mkdir(mode=0o700)  # an opaque directory made by the kernel
    (path / "etc/go.txt").write_text("go\n")
    go(roots, DRV, "unmount", ctr)
    go(roots, DRV, "shutdown")
    want_top, want_ctr = go_mount_tree(roots, top), go_mount_tree(roots, ctr)
    assert "etc/go.txt" in want_ctr and "etc/passwd" not in want_ctr
    assert "etc/to-delete.txt" not in want_top and "opt/app/old1.txt" not in want_top

    s = stores(roots)
    assert our_mount_tree(s, top) == want_top
    assert our_mount_tree(s, ctr) == want_ctr
    assert s.image(IMAGE).layer == top
    assert want_top["srv/data.txt"][8] == 2  # the hard link survived
    # Our deleting Go's container keeps l/ consistent (one link per layer directory).
    s.delete_container(ctr)
    check_links(roots)
    assert s.shutdown(True) == []


@pytest.mark.skopeo
def test_our_container_mounts_in_go(
    oci: Oci, roots: Roots, stores: Callable[..., cs.Store], go_roots: list[Roots]
) -> None:
    go_roots.append(roots)
    skopeo_copy(oci, roots)
    s = stores(roots)
    ctr = s.create_container(IMAGE, names=["ours"])
    root = Path(s.mount(ctr.id))
    (root / "etc/hostname").write_text("ours\n")
    os.setxattr(root / "etc/hostname", "user.ours", b"1")
    (root / "home/user/notes.txt").unlink()
    os.mkdir(root / "var")
    os.chown(root / "var", 1000, 1000)
    (root / "opt/app/new.txt").unlink()
    (root / "opt/app").rmdir()
    (root / "opt/app").mkdir()
    (root / "opt/app/ours.txt").write_text("ours\n")
    s.unmount(ctr.id)
    ours = our_mount_tree(s, ctr.id)
    assert ours["etc/hostname"][9] == (("user.ours", b"1"), ("user.x", b"second"))
    assert go_mount_tree(roots, "ours") == ours
    assert go_mount_tree(roots, ctr.id) == ours
    assert s.shutdown(True) == []


def test_mount_counts_shared_with_go(
    roots: Roots, stores: Callable[..., cs.Store], go_roots: list[Roots]
) -> None:
    s = stores(roots)
    go_roots.append(roots)
    base, _ = s.put_layer(None, io.BytesIO(make_tar(BASE)))
    ctr = s.create_container(s.create_image(base.id).id)
    path = s.mount(ctr.id)
    assert s.mount(ctr.id) == path
    assert s.mounted(ctr.id) == 2
    assert mount_counts(roots) == {ctr.layer: (path, 2)}
    assert go_mounted(roots, ctr.id)
    assert go_text(roots, "unmount", ctr.id) == ""  # count 2 -> 1: nothing printed
    assert s.mounted(ctr.id) == 1
    assert len(mounts_at(path)) == 1
    assert go_text(roots, "mount", ctr.id).strip() == path
    assert s.mounted(ctr.id) == 2
    assert len(mounts_at(path)) == 1  # counted, not stacked
    assert s.unmount(ctr.id) is True
    assert go_mounted(roots, ctr.id)
    assert s.unmount(ctr.id) is False
    assert not go_mounted(roots, ctr.id)
    assert mounts_at(path) == []
    # And the other way round: Go mounts, we count on and unmount.
    go_path = go_text(roots, "mount", ctr.id).strip()
    assert go_path == path
    assert s.mounted(ctr.id) == 1
    assert s.mount(ctr.id) == path
    assert s.mounted(ctr.id) == 2
    assert s.unmount(ctr.id) is True
    assert go_text(roots, "unmount", ctr.id).strip() == f"{ctr.id} mountpoint unmounted"
    assert s.mounted(ctr.id) == 0
    assert mounts_at(path) == []
    assert mount_counts(roots) == {}
    assert s.shutdown(True) == []
