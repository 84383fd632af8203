"""changes, diff_size and diff: what changed in a layer, and the tar of those changes.

References:

* Debian's Go ``containers-storage`` (1.43, GO_CONTAINERS_STORAGE in /usr/bin; the
  ``containers-storage`` on PATH is ours) on a vfs store: ``changes --json``, ``diffsize`` and
  ``diff`` of a layer applied from a tarball must agree with ours on the same directories.
  Go builds its change list from map iteration, so vfs changes are compared as sets. Its
  ``diff`` is the driver's diff only when the layer has no tar-split (otherwise Go just
  reassembles the tarball it was given), so the tar-split is removed first.
* The same CLI on an overlay store, where Go uses the native overlay diff (``OverlayChanges``
  and the overlay whiteout converter) over the layer's ``diff`` directory and its lower
  layers' ``diff`` directories; there Go walks the upper directory in name order, so the
  lists are compared in order.
* Round trips: the diff of a child tree against its parent, applied onto a copy of the
  parent, gives back the child (a hypothesis property); the diff of an overlay upper
  directory written by the kernel, applied onto a copy of the lower directory, gives back
  the merged view the mount showed.
"""

from __future__ import annotations

import difflib
import gzip
import io
import json
import os
import shutil
import stat
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest
from containers_storage.archive import (
    Change,
    ChangeKind,
    apply_layer,
    changes,
    diff,
    diff_size,
)
from containers_storage.errors import ArchiveError
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.archive.helpers import (
    CAPABILITY,
    GoOverlayStore,
    GoStore,
    TreeBuilder,
    WriteOnly,
    run,
)
from tests.archive.manifest import Manifest, assert_same_tree, manifest, raw_typeflags
from tests.tars import MTIME, TarBuilder

M, A, D = ChangeKind.MODIFY, ChangeKind.ADD, ChangeKind.DELETE

Pair = tuple[str, ChangeKind]
Record = dict[str, object]

# --------------------------------------------------------------------------------------
# helpers


def pairs(found: list[Change]) -> list[Pair]:
    return [(c.path, c.kind) for c in found]


def as_set(found: list[Change]) -> set[Pair]:
    """The changes as a set; a path reported twice is a bug, not a set member."""
    listed = pairs(found)
    assert len(listed) == len(set(listed)), f"duplicate changes: {listed}"
    return set(listed)


def fmt_changes(items: Any) -> str:
    return "\n".join(f"  {kind.name:6} {path}" for path, kind in sorted(items))


def diff_bytes(layer: Path, parent: Path | None = None, **kwargs: Any) -> bytes:
    sink = io.BytesIO()
    diff(layer, sink, parent, **kwargs)
    return sink.getvalue()


_TYPES = {
    tarfile.REGTYPE: "file",
    tarfile.AREGTYPE: "file",
    tarfile.DIRTYPE: "dir",
    tarfile.SYMTYPE: "symlink",
    tarfile.LNKTYPE: "hardlink",
    tarfile.CHRTYPE: "char",
    tarfile.BLKTYPE: "block",
    tarfile.FIFOTYPE: "fifo",
}


def is_whiteout(name: str) -> bool:
    base = name.rsplit("/", 1)[-1]
    return base.startswith(".wh.") and base != ".wh..wh..opq"


def members(data: bytes, *, whiteout_mtimes: bool = True) -> list[Record]:
    """Every member of a tar as a comparable record, in archive order.

    The mode loses its file-type bits (Go's headers carry them, extractors ignore them), user
    and group names are left out, and so are the mtimes of whiteouts unless
    ``whiteout_mtimes`` (Go's naive diff stamps them with the time of the diff).
    """
    out: list[Record] = []
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tf:
        for m in tf.getmembers():
            rec: Record = {
                "name": m.name,
                "type": _TYPES.get(m.type, repr(m.type)),
                "mode": f"{m.mode & 0o7777:04o}",
                "uid": m.uid,
                "gid": m.gid,
                "size": m.size,
                "linkname": m.linkname,
                "mtime": int(m.mtime),
                "xattrs": {
                    k: v for k, v in sorted(m.pax_headers.items()) if k.startswith("SCHILY.xattr.")
                },
            }
            if m.type in (tarfile.CHRTYPE, tarfile.BLKTYPE):
                rec["dev"] = (m.devmajor, m.devminor)
            if not whiteout_mtimes and is_whiteout(m.name):
                del rec["mtime"]
            out.append(rec)
    return out


def assert_same_members(got: list[Record], want: list[Record], what: str) -> None:
    g = [json.dumps(r, sort_keys=True) for r in got]
    w = [json.dumps(r, sort_keys=True) for r in want]
    if g != w:
        delta = "\n".join(difflib.unified_diff(w, g, "want", "got", lineterm="", n=1))
        pytest.fail(f"{what}: members differ\n{delta}")


def names(data: bytes) -> list[str]:
    return [str(r["name"]) for r in members(data)]


def set_mtime(path: Path, seconds: int) -> None:
    os.utime(path, ns=(seconds * 10**9, seconds * 10**9), follow_symlinks=False)


def walk(root: Path) -> Iterator[Path]:
    """Every path under ``root`` (not following symlinks), parents before children."""
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        path = Path(entry.path)
        yield path
        if entry.is_dir(follow_symlinks=False):
            yield from walk(path)


# --------------------------------------------------------------------------------------
# Go's CLI


def go_changes(go: GoStore, layer: str) -> list[Pair]:
    """``containers-storage changes --json LAYER``, in the order Go printed them."""
    out = go.cli("changes", "--json", layer)
    records = json.loads(out) if out else None
    return [(r["Path"], ChangeKind(r["Kind"])) for r in records or []]


def go_diffsize(go: GoStore, layer: str) -> int:
    return int(go.cli("diffsize", layer))


def go_driver_diff(go: GoStore, layer: str, driver: str) -> bytes:
    """Go's driver diff of ``layer``, uncompressed.

    A layer applied from a tarball has a tar-split, and Go's ``diff`` then reassembles that
    tarball instead of asking the driver; without it, Go computes the diff as we do.
    """
    (go.graph / f"{driver}-layers" / f"{layer}.tar-split.gz").unlink(missing_ok=True)
    out = go.graph.parent / f"{layer}.diff.tar"
    go.cli("diff", "-u", "-f", out, layer)
    return out.read_bytes()


@pytest.fixture
def go_overlay(tmp_path: Path) -> Iterator[GoOverlayStore]:
    store = GoOverlayStore(tmp_path / "go")
    try:
        yield store
    finally:
        store.close()


# --------------------------------------------------------------------------------------
# 1. the Go oracle, vfs (naive diff)


def vfs_base_layer() -> bytes:
    t = TarBuilder(uid=0)
    t.dir("./")
    t.dir("etc")
    t.file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n")
    t.file("etc/shadow", b"ssssssss")
    t.file("etc/hosts", b"127.0.0.1 localhost\n")
    t.file("etc/motd", b"hello\n")
    t.file("etc/issue", b"Debian\n")
    t.file("etc/group", b"root:x:0:\n")
    t.file("etc/rc", b"a file that becomes a directory\n")
    t.dir("usr").dir("usr/bin").file("usr/bin/tool", b"\x7fELF" * 64, mode=0o755)
    t.dir("usr/share").dir("usr/share/doc").file("usr/share/doc/README", b"doc")
    t.dir("usr/share/doc/sub").file("usr/share/doc/sub/f", b"f")
    t.dir("opq").file("opq/old1", b"1").dir("opq/sub").file("opq/sub/old2", b"2")
    t.symlink("link", "etc/passwd")
    t.dir("data").file("data/big", b"B" * 4000)
    t.dir("ns")
    t.file("ns/f1", b"f1", mtime=MTIME + 0.5)
    t.file("ns/f2", b"f2")
    t.file("ns/f3", b"f3", mtime=MTIME + 0.75)
    t.dir("caps").file("caps/ping", b"ping", mode=0o755).file("caps/xu", b"xu")
    t.dir("dev").chardev("dev/null", 1, 3, mode=0o666).fifo("dev/fifo")
    return t.getvalue()


def set_capability(layer: Path) -> None:
    os.setxattr(layer / "caps/ping", "security.capability", CAPABILITY)


def set_user_xattr(layer: Path) -> None:
    os.setxattr(layer / "caps/xu", "user.note", b"changed in the child")


@dataclass(frozen=True)
class VfsCase:
    """A child layer over :func:`vfs_base_layer` and what Go reports for it."""

    name: str
    build: Callable[[TarBuilder], object]
    expect: frozenset[Pair]
    #: Done in the child layer's directory after Go applied the tar (as a container would).
    post: Callable[[Path], object] | None = None
    #: Part of the all-at-once case (False: same path as another case, or reported alone).
    combined: bool = True


VFS_CASES = [
    VfsCase(
        "content",
        lambda t: t.file("etc/passwd", b"root:x:0:0:root:/root:/bin/bash\n"),
        frozenset({("/etc", M), ("/etc/passwd", M)}),
    ),
    # Same size and mtime: invisible to Go's metadata comparison, so to ours.
    VfsCase("content_same_size_and_mtime", lambda t: t.file("etc/shadow", b"t" * 8), frozenset()),
    VfsCase(
        "mode_only",
        lambda t: t.file("etc/hosts", b"127.0.0.1 localhost\n", mode=0o600),
        frozenset({("/etc", M), ("/etc/hosts", M)}),
    ),
    VfsCase(
        "owner_only",
        lambda t: t.file("etc/motd", b"hello\n", uid=1000, gid=1000),
        frozenset({("/etc", M), ("/etc/motd", M)}),
    ),
    VfsCase(
        "mtime_only",
        lambda t: t.file("etc/issue", b"Debian\n", mtime=MTIME + 100),
        frozenset({("/etc", M), ("/etc/issue", M)}),
    ),
    VfsCase(
        "mtime_nanoseconds",
        lambda t: t.file("ns/f1", b"f1", mtime=MTIME + 0.25),
        frozenset({("/ns", M), ("/ns/f1", M)}),
    ),
    # Same second, and the parent's mtime has no nanoseconds: the same time for Go.
    VfsCase(
        "mtime_vs_whole_second", lambda t: t.file("ns/f2", b"f2", mtime=MTIME + 0.5), frozenset()
    ),
    # Go 1.43 compares seconds first (no "rounded up" allowance).
    VfsCase(
        "mtime_next_whole_second",
        lambda t: t.file("ns/f3", b"f3", mtime=MTIME + 1),
        frozenset({("/ns", M), ("/ns/f3", M)}),
    ),
    VfsCase(
        "delete_file",
        lambda t: t.file("etc/.wh.group"),
        frozenset({("/etc", M), ("/etc/group", D)}),
    ),
    VfsCase(
        "delete_dir",
        lambda t: t.file("usr/share/.wh.doc"),
        frozenset({("/usr", M), ("/usr/share", M), ("/usr/share/doc", D)}),
    ),
    VfsCase(
        "opaque_dir",
        lambda t: (
            t.dir("opq").file("opq/.wh..wh..opq").file("opq/old1", b"1").file("opq/new", b"n")
        ),
        frozenset({("/opq", M), ("/opq/new", A), ("/opq/sub", D)}),
    ),
    VfsCase(
        "hardlink_to_parent_file",
        lambda t: t.hardlink("data/hl", "data/big"),
        frozenset({("/data", M), ("/data/hl", A)}),
    ),
    VfsCase(
        "hardlink_pair",
        lambda t: t.dir("new").file("new/a", b"aaaa").hardlink("new/b", "new/a"),
        frozenset({("/new", A), ("/new/a", A), ("/new/b", A)}),
    ),
    VfsCase(
        "symlink_retarget",
        lambda t: t.symlink("link", "etc/hosts"),
        frozenset({("/link", M)}),
    ),
    # A target of the same length and the same mtime: invisible to Go.
    VfsCase(
        "symlink_same_size",
        lambda t: t.symlink("link", "etc/shadow"),
        frozenset(),
        combined=False,
    ),
    VfsCase(
        "file_to_dir",
        lambda t: t.dir("etc/rc").file("etc/rc/x", b"x"),
        frozenset({("/etc", M), ("/etc/rc", M), ("/etc/rc/x", A)}),
    ),
    # The old directory's content is not reported: only the path that changed type.
    VfsCase(
        "dir_to_file",
        lambda t: t.file("usr/bin", b"now a file"),
        frozenset({("/usr", M), ("/usr/bin", M)}),
    ),
    VfsCase(
        "device_number",
        lambda t: t.chardev("dev/null", 1, 5, mode=0o666),
        frozenset({("/dev", M), ("/dev/null", M)}),
    ),
    VfsCase(
        "fifo_added",
        lambda t: t.fifo("dev/fifo2"),
        frozenset({("/dev", M), ("/dev/fifo2", A)}),
    ),
    VfsCase(
        "new_tree",
        lambda t: t.dir("newdir").dir("newdir/sub").file("newdir/sub/f", b"f"),
        frozenset({("/newdir", A), ("/newdir/sub", A), ("/newdir/sub/f", A)}),
    ),
    VfsCase(
        "capability_only",
        lambda t: t,
        frozenset({("/caps", M), ("/caps/ping", M)}),
        post=set_capability,
    ),
    # Go 1.43 compares user.* xattrs too (changes.go: reflect.DeepEqual(oldChild.xattrs, ...)).
    VfsCase(
        "user_xattr_only",
        lambda t: t,
        frozenset({("/caps", M), ("/caps/xu", M)}),
        post=set_user_xattr,
        combined=False,
    ),
]


@pytest.fixture(scope="module")
def go_vfs(tmp_path_factory: pytest.TempPathFactory) -> tuple[GoStore, str]:
    """A Go vfs store with the base layer applied; each test adds its own child."""
    base = tmp_path_factory.mktemp("go-vfs")
    go = GoStore(base / "go")
    parent = go.create_layer()
    archive = base / "parent.tar"
    archive.write_bytes(vfs_base_layer())
    go.applydiff(archive, parent)
    return go, parent


def compare_with_go_vfs(
    go: GoStore, layer: str, parent: str | None, expect: set[Pair] | frozenset[Pair]
) -> None:
    """Our changes, diff_size and diff of ``layer`` against Go's, on the same directories.

    Every disagreement is collected before failing, so one does not hide the others.
    """
    theirs = go_changes(go, layer)
    assert len(theirs) == len(set(theirs)), theirs
    assert set(theirs) == expect, (
        f"the Go oracle did not report what the case means:\n{fmt_changes(theirs)}"
    )
    layer_dir = go.layer_dir(layer)
    parent_dir = None if parent is None else go.layer_dir(parent)
    problems: list[str] = []
    ours = as_set(changes(layer_dir, parent_dir))
    if ours != set(theirs):
        problems.append(
            f"changes differ from Go's\nonly ours:\n{fmt_changes(ours - set(theirs))}\n"
            f"only Go's:\n{fmt_changes(set(theirs) - ours)}"
        )
    size, go_size = diff_size(layer_dir, parent_dir), go_diffsize(go, layer)
    if size != go_size:
        problems.append(f"diff_size {size}, Go's diffsize {go_size}")
    try:
        assert_same_members(
            members(diff_bytes(layer_dir, parent_dir), whiteout_mtimes=False),
            members(go_driver_diff(go, layer, "vfs"), whiteout_mtimes=False),
            "diff vs Go's driver diff",
        )
    except pytest.fail.Exception as e:
        problems.append(str(e))
    if problems:
        pytest.fail("\n\n".join(problems), pytrace=False)


@pytest.mark.gotools
@pytest.mark.root
@pytest.mark.parametrize("case", VFS_CASES, ids=lambda c: c.name)
def test_go_vfs(go_vfs: tuple[GoStore, str], tmp_path: Path, case: VfsCase) -> None:
    go, parent = go_vfs
    child = go.create_layer(parent)
    t = TarBuilder(uid=0)
    case.build(t)
    go.applydiff(t.write(tmp_path / "child.tar"), child)
    if case.post is not None:
        case.post(go.layer_dir(child))
    compare_with_go_vfs(go, child, parent, case.expect)


@pytest.mark.gotools
@pytest.mark.root
def test_go_vfs_all_at_once(go_vfs: tuple[GoStore, str], tmp_path: Path) -> None:
    """Every combinable case in one child layer: dirs holding several kinds of change."""
    go, parent = go_vfs
    child = go.create_layer(parent)
    t = TarBuilder(uid=0)
    t.dir("./", mtime=MTIME + 7)
    cases = [c for c in VFS_CASES if c.combined]
    for case in cases:
        case.build(t)
    go.applydiff(t.write(tmp_path / "child.tar"), child)
    for case in cases:
        if case.post is not None:
            case.post(go.layer_dir(child))
    expect = set().union(*(c.expect for c in cases))
    compare_with_go_vfs(go, child, parent, expect)
    # Ours is in tree order: each directory right before what it holds, names sorted.
    ours = pairs(changes(go.layer_dir(child), go.layer_dir(parent)))
    paths = [p for p, _ in ours]
    for i, path in enumerate(paths):
        parent_path = path.rsplit("/", 1)[0]
        if parent_path:
            assert parent_path in paths[:i], f"{path} before its directory: {paths}"


@pytest.mark.gotools
@pytest.mark.root
def test_go_vfs_parentless(tmp_path: Path) -> None:
    """A base layer: everything is added (Go compares it with an empty directory)."""
    go = GoStore(tmp_path / "go")
    layer = go.create_layer()
    archive = tmp_path / "base.tar"
    archive.write_bytes(vfs_base_layer())
    go.applydiff(archive, layer)
    expect = {("/" + p, A) for p in manifest(go.layer_dir(layer), include_root=False)}
    compare_with_go_vfs(go, layer, None, expect)


# --------------------------------------------------------------------------------------
# 1b. the Go oracle, overlay (native diff)


def overlay_base_layer(t: TarBuilder) -> object:
    t.dir("./")
    t.dir("etc")
    t.file("etc/passwd", b"root:x:0:0\n").file("etc/group", b"root:x:0:\n")
    t.file("etc/hosts", b"127.0.0.1 localhost\n")
    t.dir("d").file("d/a", b"a").dir("d/b").file("d/b/c", b"c")
    t.dir("o").file("o/x", b"x").file("o/y", b"y")
    t.dir("keep").file("keep/k", b"k")
    t.dir("a").dir("a/b").file("a/b/k", b"k")
    t.symlink("link", "etc/passwd")
    return t


def overlay_basic_child(t: TarBuilder) -> object:
    t.dir("etc", mtime=MTIME + 1)
    t.file("etc/passwd", b"root:x:0:0:changed\n")
    t.file("etc/.wh.group")
    t.file("etc/hosts", b"127.0.0.1 localhost\n", mode=0o600)
    t.file(".wh.d", uid=1000, gid=1001)  # Go chowns the whiteout it makes
    t.file("new", b"new")
    t.dir("newdir").file("newdir/f", b"ffff").hardlink("newdir/g", "newdir/f")
    t.symlink("link", "etc/hosts")
    t.dir("o").file("o/.wh..wh..opq").file("o/x", b"x again").file("o/z", b"z")
    return t


@dataclass(frozen=True)
class OverlayCase:
    """Layers applied by Go on an overlay store (base first); the last one is compared."""

    name: str
    layers: tuple[Callable[[TarBuilder], object], ...]
    #: What Go reports for the last layer, in its order.
    expect: tuple[Pair, ...]


OVERLAY_CASES = [
    OverlayCase(
        "basic",
        (overlay_base_layer, overlay_basic_child),
        (
            ("/d", D),
            ("/etc", M),
            ("/etc/group", D),
            ("/etc/hosts", M),
            ("/etc/passwd", M),
            ("/link", M),
            ("/new", A),
            ("/newdir", A),
            ("/newdir/f", A),
            ("/newdir/g", A),
            ("/o", D),  # opaque and present below: deleted, then...
            ("/o/x", M),  # ...its content is compared with the lower layers
            ("/o/z", A),
        ),
    ),
    # Go: an opaque directory that no lower layer has is not a deletion (overlayDeletedFile),
    # and its native diff writes no .wh..wh..opq for it (ConvertWrite).
    OverlayCase(
        "opaque_dir_not_in_lower",
        (
            overlay_base_layer,
            lambda t: t.dir("n2").file("n2/.wh..wh..opq").file("n2/f", b"f"),
        ),
        (("/n2", A), ("/n2/f", A)),
    ),
    # Go's .wh..wh..opq member takes the directory's permission bits and owner.
    OverlayCase(
        "opaque_dir_owner",
        (
            overlay_base_layer,
            lambda t: (
                t.dir("o", mode=0o750, uid=1000, gid=1000).file("o/.wh..wh..opq").file("o/q", b"q")
            ),
        ),
        (("/o", D), ("/o/q", A)),
    ),
    # A directory identical to the lower one is skipped, and not recorded as changed: the
    # addition inside it then reports it (changes(): the changedDirs loop).
    OverlayCase(
        "unchanged_dir_holding_an_addition",
        (overlay_base_layer, lambda t: t.dir("keep").file("keep/added", b"+")),
        (("/keep", M), ("/keep/added", A)),
    ),
    OverlayCase(
        "unchanged_dirs_nested",
        (overlay_base_layer, lambda t: t.dir("a").dir("a/b").file("a/b/c", b"c")),
        (("/a", M), ("/a/b", M), ("/a/b/c", A)),
    ),
    # A path a lower layer whited out is new when it comes back (overlayLowerContainsWhiteout).
    OverlayCase(
        "whiteout_in_lower_layer",
        (
            overlay_base_layer,
            lambda t: t.dir("etc").file("etc/.wh.passwd").file(".wh.d"),
            lambda t: (
                t.dir("etc", mtime=MTIME + 2)
                .file("etc/passwd", b"back\n")
                .dir("d")
                .file("d/new", b"n")
            ),
        ),
        (("/d", A), ("/d/new", A), ("/etc", M), ("/etc/passwd", A)),
    ),
]


def go_overlay_layers(
    go: GoOverlayStore, tmp_path: Path, builders: tuple[Callable[[TarBuilder], object], ...]
) -> str:
    layer: str | None = None
    for i, build in enumerate(builders):
        layer = go.create_layer(layer)
        t = TarBuilder(uid=0)
        build(t)
        go.applydiff(t.write(tmp_path / f"layer{i}.tar"), layer)
    assert layer is not None
    return layer


@pytest.mark.gotools
@pytest.mark.root
@pytest.mark.parametrize("case", OVERLAY_CASES, ids=lambda c: c.name)
def test_go_overlay(go_overlay: GoOverlayStore, tmp_path: Path, case: OverlayCase) -> None:
    go = go_overlay
    layer = go_overlay_layers(go, tmp_path, case.layers)
    theirs = go_changes(go, layer)
    assert theirs == list(case.expect), (
        f"the Go oracle did not report what the case means:\n{theirs}"
    )
    upper, lowers = go.diff_dir(layer), go.lowers(layer)
    assert lowers, "a child layer has lower layers"
    problems: list[str] = []
    ours = pairs(changes(upper, lowers=lowers))
    if ours != theirs:
        problems.append(f"overlay changes differ from Go's:\nours: {ours}\nGo:   {theirs}")
    size, go_size = diff_size(upper, lowers=lowers), go_diffsize(go, layer)
    if size != go_size:
        problems.append(f"diff_size {size}, Go's diffsize {go_size}")
    got = members(diff_bytes(upper, overlay=True, lowers=lowers))
    want = members(go_driver_diff(go, layer, "overlay"))
    # The whiteouts' mode and owner are checked by test_go_overlay_whiteout_members.
    for rec in got + want:
        if is_whiteout(str(rec["name"])):
            for key in ("mode", "uid", "gid"):
                del rec[key]
    try:
        assert_same_members(got, want, "overlay diff vs Go's native diff")
    except pytest.fail.Exception as e:
        problems.append(str(e))
    if problems:
        pytest.fail("\n\n".join(problems), pytrace=False)


@pytest.mark.gotools
@pytest.mark.root
def test_go_overlay_whiteout_members(go_overlay: GoOverlayStore, tmp_path: Path) -> None:
    """Whiteout members exactly as Go's overlay converter writes them: the character
    device's header renamed, with mode 0 (hdr.Mode = 0), its owner and its mtime."""
    go = go_overlay
    layer = go_overlay_layers(go, tmp_path, (overlay_base_layer, overlay_basic_child))
    upper = go.diff_dir(layer)
    assert (os.lstat(upper / "d").st_uid, os.lstat(upper / "d").st_gid) == (1000, 1001)
    ours = [r for r in members(diff_bytes(upper, overlay=True)) if is_whiteout(str(r["name"]))]
    theirs = [
        r for r in members(go_driver_diff(go, layer, "overlay")) if is_whiteout(str(r["name"]))
    ]
    assert [(r["name"], r["uid"], r["gid"]) for r in theirs] == [
        (".wh.d", 1000, 1001),
        ("etc/.wh.group", 0, 0),
    ]
    assert_same_members(ours, theirs, "overlay whiteout members vs Go's")


@pytest.mark.gotools
@pytest.mark.root
def test_go_overlay_parentless(go_overlay: GoOverlayStore, tmp_path: Path) -> None:
    """A base layer on overlay: no lower layers, everything is added."""
    go = go_overlay
    layer = go_overlay_layers(go, tmp_path, (overlay_base_layer,))
    theirs = go_changes(go, layer)
    upper = go.diff_dir(layer)
    assert set(theirs) == {("/" + p, A) for p in manifest(upper, include_root=False)}
    assert pairs(changes(upper, lowers=[])) == theirs
    assert diff_size(upper, lowers=[]) == go_diffsize(go, layer)
    assert_same_members(
        members(diff_bytes(upper, overlay=True)),
        members(go_driver_diff(go, layer, "overlay")),
        "overlay diff of a base layer vs Go's",
    )


# --------------------------------------------------------------------------------------
# 2. round trip: diff against the parent, applied onto a copy of the parent


NAMES = ["a", "b", "c", "dd", "e"]
FILE_MODES = [0o644, 0o600, 0o755, 0o4755]
DIR_MODES = [0o755, 0o750, 0o700, 0o1777]
LINK_TARGETS = ["a", "../b", "/etc/passwd", "dd/e", "nowhere"]

_leaves: st.SearchStrategy[Any] = st.one_of(
    st.tuples(st.just("file"), st.binary(max_size=40), st.sampled_from(FILE_MODES)),
    st.tuples(st.just("symlink"), st.sampled_from(LINK_TARGETS)),
)
_nodes: st.SearchStrategy[Any] = st.recursive(
    _leaves,
    lambda kids: st.tuples(
        st.just("dir"),
        st.dictionaries(st.sampled_from(NAMES), kids, max_size=4),
        st.sampled_from(DIR_MODES),
    ),
    max_leaves=14,
)
TREES: st.SearchStrategy[dict[str, Any]] = st.dictionaries(
    st.sampled_from(NAMES), _nodes, min_size=1, max_size=5
)


def build_tree(root: Path, spec: dict[str, Any]) -> None:
    """Create ``spec`` under ``root``; every mtime a distinct whole second."""
    for name, node in spec.items():
        path = root / name
        if node[0] == "file":
            path.write_bytes(node[1])
            os.chmod(path, node[2])
        elif node[0] == "symlink":
            os.symlink(node[1], path)
        else:
            path.mkdir()
            build_tree(path, node[1])
            os.chmod(path, node[2])


def whole_second_mtimes(root: Path, start: int) -> None:
    for i, path in enumerate(walk(root)):
        set_mtime(path, start + 10 * i)
    set_mtime(root, start - 10)


EDITS = [
    "add_file",
    "add_dir",
    "add_symlink",
    "delete",
    "delete_dir",
    "modify",
    "chmod",
    "file_to_dir",
    "dir_to_file",
    "retarget",
]


def random_edits(child: Path, data: st.DataObject) -> list[str]:
    """Edit ``child`` (a copy of the parent) as a container would; return what was done.

    Deletions and changes only touch paths that came from the parent (deleting a path this
    function added would leave a directory whose mtime changed with nothing to report: a
    limit of the format, not of the diff).
    """
    original = {str(p.relative_to(child)) for p in walk(child)}
    done: list[str] = []
    n = data.draw(st.integers(1, 8), label="edits")
    for i in range(n):
        modes = {p: os.lstat(child / p).st_mode for p in sorted(original)}
        files = [p for p, m in modes.items() if stat.S_ISREG(m)]
        dirs = [p for p, m in modes.items() if stat.S_ISDIR(m)]
        links = [p for p, m in modes.items() if stat.S_ISLNK(m)]
        targets: dict[str, list[str]] = {
            "delete": files + links,
            "delete_dir": dirs,
            "modify": files,
            "chmod": files + dirs,
            "file_to_dir": files,
            "dir_to_file": dirs,
            "retarget": links,
        }
        possible = [k for k in EDITS if k not in targets or targets[k]]
        kind = data.draw(st.sampled_from(possible), label="edit")
        pick_from = targets.get(kind)
        if pick_from is None:
            # An addition, in any directory there is now (new ones included).
            where = [Path(".")] + [
                p.relative_to(child) for p in walk(child) if p.is_dir() and not p.is_symlink()
            ]
            rel = data.draw(st.sampled_from(where), label="in") / f"n{i}"
            path = child / rel
            if kind == "add_dir":
                path.mkdir()
                (path / "f").write_bytes(data.draw(st.binary(max_size=20)))
            elif kind == "add_symlink":
                os.symlink(data.draw(st.sampled_from(LINK_TARGETS)), path)
            else:
                path.write_bytes(data.draw(st.binary(max_size=40)))
                os.chmod(path, data.draw(st.sampled_from(FILE_MODES)))
            done.append(f"{kind} {rel}")
            event(kind)
            continue
        target = data.draw(st.sampled_from(pick_from), label="target")
        path = child / target
        if kind == "delete":
            path.unlink()
        elif kind == "delete_dir":
            shutil.rmtree(path)
        elif kind == "modify":
            path.write_bytes(data.draw(st.binary(max_size=40)))
        elif kind == "chmod":
            choices = DIR_MODES if path.is_dir() else FILE_MODES
            old = stat.S_IMODE(os.lstat(path).st_mode)
            os.chmod(path, data.draw(st.sampled_from([m for m in choices if m != old])))
        elif kind == "file_to_dir":
            path.unlink()
            path.mkdir()
            (path / "inside").write_bytes(b"was a file")
        elif kind == "dir_to_file":
            shutil.rmtree(path)
            path.write_bytes(b"was a directory")
        elif kind == "retarget":
            old_target = os.readlink(path)
            path.unlink()
            os.symlink(
                data.draw(st.sampled_from([t for t in LINK_TARGETS if t != old_target])), path
            )
        if kind in ("delete_dir", "dir_to_file", "file_to_dir", "delete"):
            original = {p for p in original if p != target and not p.startswith(target + "/")}
        done.append(f"{kind} {target}")
        event(kind)
    return done


def settle_mtimes(child: Path, start: int) -> None:
    """Give whatever the edits touched (mtimes with nanoseconds: the parent has none) a
    distinct whole second: tar headers carry seconds (Go truncates the same way)."""
    for i, path in enumerate(walk(child)):
        if os.lstat(path).st_mtime_ns % 10**9:
            set_mtime(path, start + i)


def round_trip(tree: dict[str, Any], data: st.DataObject, base: Path) -> None:
    parent, child, target = base / "parent", base / "child", base / "target"
    parent.mkdir()
    build_tree(parent, tree)
    whole_second_mtimes(parent, MTIME)
    run("cp", "-a", parent, child)
    done = random_edits(child, data)
    settle_mtimes(child, MTIME + 500_000)
    layer = base / "layer.tar"
    diff(child, layer, parent)
    run("cp", "-a", parent, target)
    apply_layer(layer, target, whiteouts="vfs")
    assert_same_tree(
        manifest(target, include_root=False),
        manifest(child, include_root=False),
        f"parent + diff vs child after {done}; layer: {names(layer.read_bytes())}",
    )
    # And the result has nothing left to report.
    assert changes(target, child) == [], done


@settings(
    derandomize=True,
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(tree=TREES, data=st.data())
def test_round_trip_property(tree: dict[str, Any], data: st.DataObject) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        round_trip(tree, data, Path(tmp))


def test_round_trip_directory_mtimes(tmp_path: Path) -> None:
    """A directory whose only change is a deletion inside it gets its mtime back: the
    whiteout must not leave the directory with the time of the apply."""
    parent = tmp_path / "parent"
    b = TreeBuilder(parent)
    b.dir("d")
    b.file("d/gone", b"g")
    b.file("d/kept", b"k")
    b.dir("e")
    b.dir("e/sub")
    b.file("e/sub/f", b"f")
    b.finish()
    child = tmp_path / "child"
    run("cp", "-a", parent, child)
    (child / "d/gone").unlink()
    shutil.rmtree(child / "e/sub")
    set_mtime(child / "d", MTIME + 77)
    set_mtime(child / "e", MTIME + 78)
    assert pairs(changes(child, parent)) == [("/d", M), ("/d/gone", D), ("/e", M), ("/e/sub", D)]
    layer = tmp_path / "layer.tar"
    diff(child, layer, parent)
    assert names(layer.read_bytes()) == ["d", "d/.wh.gone", "e", "e/.wh.sub"]
    target = tmp_path / "target"
    run("cp", "-a", parent, target)
    apply_layer(layer, target, whiteouts="vfs")
    assert_same_tree(
        manifest(target, include_root=False), manifest(child, include_root=False), "round trip"
    )


# --------------------------------------------------------------------------------------
# 3. overlay upper directories


def whiteout(path: Path) -> None:
    os.mknod(path, stat.S_IFCHR, os.makedev(0, 0))


def opaque(path: Path) -> None:
    os.setxattr(path, "trusted.overlay.opaque", b"y")


@pytest.fixture
def lower_and_upper(tmp_path: Path) -> tuple[Path, Path]:
    """A lower directory and an upper directory written by hand as overlayfs writes them."""
    lower = tmp_path / "lower"
    b = TreeBuilder(lower)
    b.dir("etc")
    b.file("etc/passwd", b"root\n")
    b.file("etc/group", b"root\n")
    b.dir("d")
    b.file("d/x", b"x")
    b.file("d/y", b"y")
    b.dir("o")
    b.file("o/old", b"old")
    b.dir("o/sub")
    b.file("o/sub/z", b"z")
    b.dir("keep")
    b.file("keep/k", b"k")
    b.finish()
    upper = tmp_path / "upper"
    upper.mkdir()
    (upper / "etc").mkdir()
    (upper / "etc/passwd").write_bytes(b"root:changed\n")
    whiteout(upper / "etc/group")
    whiteout(upper / "d")
    (upper / "o").mkdir(mode=0o750)
    opaque(upper / "o")
    (upper / "o/new").write_bytes(b"new")
    (upper / "new").mkdir()
    (upper / "new/f").write_bytes(b"ffff")
    os.link(upper / "new/f", upper / "new/g")
    for i, path in enumerate(walk(upper)):
        set_mtime(path, MTIME + 50_000 + i)
    set_mtime(upper, MTIME)
    return lower, upper


@pytest.mark.root
def test_overlay_changes(lower_and_upper: tuple[Path, Path]) -> None:
    lower, upper = lower_and_upper
    assert pairs(changes(upper, lowers=[lower])) == [
        ("/d", D),
        ("/etc", M),
        ("/etc/group", D),
        ("/etc/passwd", M),
        ("/new", A),
        ("/new/f", A),
        ("/new/g", A),
        ("/o", D),
        ("/o/new", A),
    ]
    # Everything in the upper directory that is not a directory, the linked inode once.
    assert diff_size(upper, lowers=[lower]) == len(b"root:changed\n") + 3 + 4


@pytest.mark.root
def test_overlay_diff_members(lower_and_upper: tuple[Path, Path], tmp_path: Path) -> None:
    lower, upper = lower_and_upper
    data = diff_bytes(upper, overlay=True, lowers=[lower])
    got = members(data)
    assert [(r["name"], r["type"], r["size"]) for r in got] == [
        (".wh.d", "file", 0),
        ("etc", "dir", 0),
        ("etc/.wh.group", "file", 0),
        ("etc/passwd", "file", 13),
        ("new", "dir", 0),
        ("new/f", "file", 4),
        ("new/g", "hardlink", 0),
        ("o", "dir", 0),
        ("o/.wh..wh..opq", "file", 0),  # right after its directory
        ("o/new", "file", 3),
    ]
    by_name = {r["name"]: r for r in got}
    assert by_name["new/g"]["linkname"] == "new/f"
    assert by_name["o/.wh..wh..opq"]["mode"] == "0750"  # the directory's permissions
    assert by_name[".wh.d"]["mtime"] == os.lstat(upper / "d").st_mtime_ns // 10**9
    # No overlay xattr travels: the marker member says it.
    assert all(not r["xattrs"] for r in got)
    # Directories end with "/" in the raw headers.
    raw = {name: flag for name, flag in raw_typeflags(data)}
    assert b"o/" in raw and b"etc/" in raw and b"new/" in raw

    # Applied with overlay whiteouts, the layer is the upper directory again, but for the
    # whiteouts' mtimes: Go's ConvertRead makes the device (mknod, chown) and sets no time.
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    apply_layer(io.BytesIO(data), fresh, whiteouts="overlay")
    got_tree = manifest(fresh, include_root=False)
    want_tree = manifest(upper, include_root=False)
    for tree in (got_tree, want_tree):
        for path in ("d", "etc/group"):
            del tree[path]["mtime_ns"]
    assert_same_tree(got_tree, want_tree, "overlay diff applied with overlay whiteouts")
    assert got_tree["o"]["xattrs"] == {"trusted.overlay.opaque": b"y".hex()}
    assert (got_tree["d"]["type"], got_tree["d"]["major"], got_tree["d"]["minor"]) == (
        "char",
        0,
        0,
    )

    # Applied onto the lower directory with vfs whiteouts, it is the merged view.
    merged = tmp_path / "merged"
    run("cp", "-a", lower, merged)
    apply_layer(io.BytesIO(data), merged, whiteouts="vfs")
    assert sorted(manifest(merged, include_root=False)) == [
        "etc",
        "etc/passwd",
        "keep",
        "keep/k",
        "new",
        "new/f",
        "new/g",
        "o",
        "o/new",
    ]


@pytest.mark.root
def test_overlay_diff_to_fd_and_path(lower_and_upper: tuple[Path, Path], tmp_path: Path) -> None:
    _, upper = lower_and_upper
    want = diff_bytes(upper, overlay=True)
    diff(upper, tmp_path / "by-path.tar", overlay=True)
    with open(tmp_path / "by-fd.tar", "wb") as f:
        diff(upper, f.fileno(), overlay=True)
        os.fstat(f.fileno())  # still open: diff closes only its own duplicate
    assert (tmp_path / "by-path.tar").read_bytes() == want
    assert (tmp_path / "by-fd.tar").read_bytes() == want


@pytest.mark.root
def test_kernel_overlay(tmp_path: Path) -> None:
    """An upper directory written by the kernel: its changes, and its diff applied onto the
    lower directory gives the merged view the mount showed."""
    lower = tmp_path / "lower"
    b = TreeBuilder(lower)
    b.dir("etc")
    b.file("etc/passwd", b"root\n")
    b.file("etc/hostname", b"box\n")
    b.dir("keep")
    b.file("keep/old", b"old")
    b.file("keep/stay", b"stay")
    b.dir("tree")
    b.file("tree/x", b"x")
    b.dir("tree/sub")
    b.file("tree/sub/y", b"y")
    b.dir("untouched")
    b.file("untouched/u", b"u")
    b.finish()
    upper, work, mnt = tmp_path / "upper", tmp_path / "work", tmp_path / "merged"
    for d in (upper, work, mnt):
        d.mkdir()
    opts = f"lowerdir={lower},upperdir={upper},workdir={work}"
    run("mount", "-t", "overlay", "overlay", "-o", opts, mnt)
    try:
        with open(mnt / "etc/passwd", "r+b") as f:  # modified in place (copied up)
            f.write(b"ROOT\n")
        (mnt / "keep/old").unlink()
        (mnt / "keep/new").write_bytes(b"new")
        shutil.rmtree(mnt / "tree")
        (mnt / "tree").mkdir()
        (mnt / "tree/x").write_bytes(b"x again")
        (mnt / "tree/only").write_bytes(b"only")
        (mnt / "newdir").mkdir()
        (mnt / "newdir/f").write_bytes(b"f")
        # Whole seconds for what changed (tar headers carry seconds); set through the mount
        # on paths the upper directory already has, so nothing else is copied up.
        for i, path in enumerate(walk(upper)):
            seen = mnt / path.relative_to(upper)
            if os.path.lexists(seen) and os.lstat(seen).st_mtime_ns % 10**9:
                set_mtime(seen, MTIME + 90_000 + i)
        merged_view = manifest(mnt, include_root=False)
    finally:
        run("umount", mnt)

    assert os.getxattr(upper / "tree", "trusted.overlay.opaque") == b"y"
    assert stat.S_ISCHR(os.lstat(upper / "keep/old").st_mode)
    # Go's rules: etc/ was copied up unchanged (same size, mode, mtime), so it is skipped,
    # and a modification does not report its directory; tree/ is opaque and was below, so
    # it is deleted, and its x, present below, is a modification.
    assert pairs(changes(upper, lowers=[lower])) == [
        ("/etc/passwd", M),
        ("/keep", M),
        ("/keep/new", A),
        ("/keep/old", D),
        ("/newdir", A),
        ("/newdir/f", A),
        ("/tree", D),
        ("/tree/only", A),
        ("/tree/x", M),
    ]
    layer = tmp_path / "layer.tar"
    diff(upper, layer, overlay=True, lowers=[lower])
    target = tmp_path / "target"
    run("cp", "-a", lower, target)
    apply_layer(layer, target, whiteouts="vfs")
    assert_same_tree(
        manifest(target, include_root=False), merged_view, "lower + overlay diff vs merged view"
    )


# --------------------------------------------------------------------------------------
# 4. diff_size


@pytest.fixture
def sized_layers(tmp_path: Path) -> tuple[Path, Path]:
    parent = tmp_path / "parent"
    b = TreeBuilder(parent)
    b.file("keep", b"k" * 100)
    b.file("mod", b"m" * 50)
    b.file("gone", b"g" * 70)
    b.file("old", b"o" * 40)
    b.dir("d")
    b.finish()
    child = tmp_path / "child"
    run("cp", "-a", parent, child)
    (child / "mod").write_bytes(b"M" * 60)
    (child / "gone").unlink()
    (child / "add").write_bytes(b"a" * 10)
    (child / "hl1").write_bytes(b"h" * 30)
    os.link(child / "hl1", child / "hl2")
    os.symlink("keep", child / "sym")  # a symlink's size is its target's length
    (child / "d/f").write_bytes(b"f" * 5)
    os.link(child / "old", child / "old_link")  # old itself is unchanged
    return parent, child


def test_diff_size_naive(sized_layers: tuple[Path, Path]) -> None:
    parent, child = sized_layers
    assert as_set(changes(child, parent)) == {
        ("/mod", M),
        ("/gone", D),
        ("/add", A),
        ("/hl1", A),
        ("/hl2", A),
        ("/sym", A),
        ("/d", M),
        ("/d/f", A),
        ("/old_link", A),
    }
    # mod 60 + add 10 + hl1/hl2 30 once + sym 4 + d/f 5 + old_link 40; deletions count 0.
    assert diff_size(child, parent) == 60 + 10 + 30 + 4 + 5 + 40
    # Without a parent, everything is added: every non-directory, each inode once.
    assert diff_size(child) == 100 + 60 + 10 + 30 + 4 + 5 + 40


def test_diff_size_is_the_diff_content(sized_layers: tuple[Path, Path]) -> None:
    """The regular-file bytes of the diff are diff_size minus the symlinks' lengths."""
    parent, child = sized_layers
    recs = members(diff_bytes(child, parent))
    content = sum(int(str(r["size"])) for r in recs if r["type"] == "file")
    assert content == diff_size(child, parent) - len("keep")
    assert [r["name"] for r in recs if r["type"] == "hardlink"] == ["hl2"]


@pytest.mark.root
def test_diff_size_overlay(tmp_path: Path) -> None:
    lower = tmp_path / "lower"
    lower.mkdir()
    (lower / "f").write_bytes(b"x" * 1000)
    upper = tmp_path / "upper"
    upper.mkdir()
    (upper / "f").write_bytes(b"y" * 7)
    whiteout(upper / "gone")
    (upper / "dir").mkdir()
    (upper / "dir/a").write_bytes(b"a" * 11)
    os.link(upper / "dir/a", upper / "dir/b")
    os.symlink("dir/a", upper / "sym")
    assert diff_size(upper, lowers=[lower]) == 7 + 11 + len("dir/a")


# --------------------------------------------------------------------------------------
# 5. compression and sinks


@pytest.fixture
def no_deletions(tmp_path: Path) -> tuple[Path, Path]:
    """Layers whose diff has no whiteouts (their mtime is the time of the diff), so two
    diffs are byte for byte equal."""
    parent = tmp_path / "parent"
    b = TreeBuilder(parent)
    b.dir("etc")
    b.file("etc/conf", b"conf")
    b.finish()
    child = tmp_path / "child"
    run("cp", "-a", parent, child)
    (child / "etc/conf").write_bytes(b"changed " * 1000)
    (child / "etc/new").write_bytes(bytes(range(256)) * 40)
    os.makedirs(child / "var/lib")
    (child / "var/lib/db").write_bytes(b"db" * 5000)
    settle_mtimes(child, MTIME + 1000)
    return parent, child


def test_diff_uncompressed_is_a_tar(no_deletions: tuple[Path, Path]) -> None:
    parent, child = no_deletions
    data = diff_bytes(child, parent)
    assert names(data) == ["etc", "etc/conf", "etc/new", "var", "var/lib", "var/lib/db"]
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tf:
        f = tf.extractfile("var/lib/db")
        assert f is not None and f.read() == b"db" * 5000
    assert diff_bytes(child, parent) == data  # deterministic


def test_diff_gzip(no_deletions: tuple[Path, Path], tmp_path: Path) -> None:
    parent, child = no_deletions
    plain = diff_bytes(child, parent)
    out = tmp_path / "layer.tar.gz"
    diff(child, out, parent, compression="gzip")
    data = out.read_bytes()
    assert data[:2] == b"\x1f\x8b"
    assert len(data) < len(plain)
    assert gzip.decompress(data) == plain
    assert run("gzip", "-dc", out) == plain


def test_diff_zstd(no_deletions: tuple[Path, Path], tmp_path: Path) -> None:
    parent, child = no_deletions
    plain = diff_bytes(child, parent)
    out = tmp_path / "layer.tar.zst"
    diff(child, out, parent, compression="zstd")
    data = out.read_bytes()
    assert data[:4] == b"\x28\xb5\x2f\xfd"
    assert run("zstd", "-q", "-d", "-c", out) == plain


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_diff_compressed_applies(
    no_deletions: tuple[Path, Path], tmp_path: Path, compression: Any
) -> None:
    parent, child = no_deletions
    out = tmp_path / "layer"
    diff(child, out, parent, compression=compression)
    target = tmp_path / "target"
    run("cp", "-a", parent, target)
    res = apply_layer(out, target)
    assert res.compression == compression
    assert_same_tree(
        manifest(target, include_root=False), manifest(child, include_root=False), compression
    )


@pytest.mark.parametrize("compression", ["bzip2", "xz"])
def test_diff_bzip2_xz_refused(no_deletions: tuple[Path, Path], compression: Any) -> None:
    parent, child = no_deletions
    with pytest.raises(ArchiveError):
        diff(child, io.BytesIO(), parent, compression=compression)


def test_diff_sinks(no_deletions: tuple[Path, Path], tmp_path: Path) -> None:
    parent, child = no_deletions
    want = diff_bytes(child, parent)
    diff(child, tmp_path / "path.tar", parent)
    diff(child, os.fspath(tmp_path / "str.tar"), parent)
    with open(tmp_path / "fd.tar", "wb") as f:
        diff(child, f.fileno(), parent)
    with open(tmp_path / "fobj.tar", "wb") as f:
        diff(child, f, parent)

    sink = WriteOnly()
    diff(child, sink, parent)
    for name in ("path.tar", "str.tar", "fd.tar", "fobj.tar"):
        assert (tmp_path / name).read_bytes() == want, name
    assert b"".join(sink.chunks) == want


# --------------------------------------------------------------------------------------
# the naive diff's members


@pytest.mark.root
def test_diff_members(tmp_path: Path) -> None:
    parent = tmp_path / "parent"
    b = TreeBuilder(parent)
    b.dir("a")
    b.file("a/gone", b"g")
    b.dir("gone_dir")
    b.file("gone_dir/f", b"f")
    b.finish()
    child = tmp_path / "child"
    run("cp", "-a", parent, child)
    (child / "a/gone").unlink()
    (child / "a/b").write_bytes(b"b")
    (child / "a-b").write_bytes(b"sorts before a/b")
    shutil.rmtree(child / "gone_dir")
    (child / "h1").write_bytes(b"linked")
    os.link(child / "h1", child / "h2")
    (child / "caps").write_bytes(b"\x7fELF")
    os.chown(child / "caps", 123, 456)
    os.setxattr(child / "caps", "security.capability", CAPABILITY)
    os.setxattr(child / "caps", "user.note", b"kept")
    os.setxattr(child / "caps", "trusted.secret", b"not in layers")
    os.mkfifo(child / "fifo", 0o640)
    os.mknod(child / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    os.symlink("h1", child / "sym")
    set_mtime(child / "h1", MTIME + 5)

    data = diff_bytes(child, parent)
    recs = members(data)
    by_name = {str(r["name"]): r for r in recs}
    # Sorted by path as Go's sort.Sort(changesByPath): "/a-b" < "/a/b".
    # A whiteout sits where the deleted path sorts.
    assert list(by_name) == [
        "a",
        "a-b",
        "a/b",
        "a/.wh.gone",
        "caps",
        "fifo",
        ".wh.gone_dir",
        "h1",
        "h2",
        "null",
        "sym",
    ]
    for name in (".wh.gone_dir", "a/.wh.gone"):
        assert by_name[name]["type"] == "file" and by_name[name]["size"] == 0
    assert by_name["h2"]["type"] == "hardlink" and by_name["h2"]["linkname"] == "h1"
    assert by_name["h1"]["mtime"] == MTIME + 5
    assert (by_name["caps"]["uid"], by_name["caps"]["gid"]) == (123, 456)
    xattrs = by_name["caps"]["xattrs"]
    assert isinstance(xattrs, dict)
    assert sorted(xattrs) == ["SCHILY.xattr.security.capability", "SCHILY.xattr.user.note"]
    assert by_name["fifo"]["type"] == "fifo" and by_name["fifo"]["mode"] == "0640"
    assert by_name["null"]["dev"] == (1, 3)
    assert by_name["sym"]["linkname"] == "h1"
    raw = [name for name, _ in raw_typeflags(data)]
    assert b"a/" in raw, raw

    target = tmp_path / "target"
    run("cp", "-a", parent, target)
    apply_layer(io.BytesIO(data), target)
    want = manifest(child, include_root=False)
    caps_xattrs = cast(dict[str, str], want["caps"]["xattrs"])
    want["caps"]["xattrs"] = {k: v for k, v in caps_xattrs.items() if k != "trusted.secret"}
    # A diff's headers carry whole seconds (Go truncates ModTime likewise): the edits above
    # stamped sub-second times, so compare at the precision the tar can hold.
    assert_same_tree(
        whole_seconds(manifest(target, include_root=False)),
        whole_seconds(want),
        "parent + diff vs child",
    )


def whole_seconds(m: Manifest) -> Manifest:
    for entry in m.values():
        if isinstance(entry.get("mtime_ns"), int):
            entry["mtime_ns"] = cast(int, entry["mtime_ns"]) // 10**9 * 10**9
    return m


# --------------------------------------------------------------------------------------
# 6. ID mappings


@pytest.mark.root
def test_owner_mapping(tmp_path: Path) -> None:
    host = 100000
    uid_map = [(0, host, 65536)]
    gid_map = [(0, host + 1000, 65536)]
    layer = tmp_path / "layer"
    b = TreeBuilder(layer)
    b.dir("d", owner=(host + 5, host + 1000 + 6))
    b.file("d/f", b"f", owner=(host + 1000, host + 1000 + 1000))
    b.file("rootfile", b"r", owner=(host, host + 1000))
    b.symlink("link", "rootfile", owner=(host + 7, host + 1000 + 8))
    b.finish()
    recs = {
        str(r["name"]): (r["uid"], r["gid"])
        for r in members(diff_bytes(layer, uid_map=uid_map, gid_map=gid_map))
    }
    assert recs == {"d": (5, 6), "d/f": (1000, 1000), "rootfile": (0, 0), "link": (7, 8)}


@pytest.mark.root
def test_owner_mapping_in_changes(tmp_path: Path) -> None:
    """Owners are compared as container IDs: a parent and a child with different host
    ranges but the same container owners have no changes."""
    parent = tmp_path / "parent"
    b = TreeBuilder(parent)
    b.dir("d", owner=(200000 + 5, 200000 + 5))
    b.file("d/f", b"f", owner=(200000 + 1000, 200000 + 1000))
    b.file("g", b"g", owner=(200000, 200000))
    b.finish()
    child = tmp_path / "child"
    run("cp", "-a", parent, child)
    for path in walk(child):
        st_ = os.lstat(path)
        os.chown(path, st_.st_uid - 100000, st_.st_gid - 100000, follow_symlinks=False)
    maps: dict[str, Any] = {
        "uid_map": [(0, 100000, 65536)],
        "gid_map": [(0, 100000, 65536)],
        "parent_uid_map": [(0, 200000, 65536)],
        "parent_gid_map": [(0, 200000, 65536)],
    }
    assert changes(child, parent, **maps) == []
    assert diff_size(child, parent, **maps) == 0
    # Without the maps, every host owner differs.
    assert as_set(changes(child, parent)) == {("/d", M), ("/d/f", M), ("/g", M)}
    # A real owner change is one.
    os.chown(child / "g", 100000 + 7, 100000)
    assert as_set(changes(child, parent, **maps)) == {("/g", M)}
    recs = {str(r["name"]): r for r in members(diff_bytes(child, parent, **maps))}
    assert (recs["g"]["uid"], recs["g"]["gid"]) == (7, 0)


def test_change_kind_strings() -> None:
    assert [str(k) for k in (M, A, D)] == ["C", "A", "D"]
    assert [int(k) for k in (M, A, D)] == [0, 1, 2]
