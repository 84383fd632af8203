"""Diffs of layers without tar-split are byte for byte Go's (issue 14, item 7).

A container's layer, or a layer made with ``create-layer``, has no tar-split: Go's ``diff``
(and so podman's and buildah's commit) asks the driver for its changes and writes them with
its own tar writer. Ours must give the same bytes, so the same DiffID. The reference is
Debian's Go ``containers-storage diff -u`` of the same layer in the same store, after the
layer was changed through a mount: files added, rewritten and deleted, a directory made
opaque, a symlink, a hard link, xattrs, owners with and without a name in /etc/passwd, long
and non-ASCII names, a FIFO and a device.

Go's naive diff (vfs, and overlay against a layer that is not the parent) stamps each
whiteout with the time of the diff: those headers' time and checksum fields are compared
after blanking them, everything else byte for byte.
"""

from __future__ import annotations

import io
import os
import shutil
import stat
from pathlib import Path

import containers_storage as cs
import pytest

from tests.store.helpers import go
from tests.tars import d, f, hard, make_tar, sym

pytestmark = [pytest.mark.root, pytest.mark.gotools]

BLOCK = 512

#: A capability set (cap_net_raw+ep), as setcap writes it.
CAPABILITY = bytes.fromhex("0100000200200000000000000000000000000000")

BASE = [
    d("etc"),
    f("etc/motd", b"hello\n"),
    f("etc/gone", b"to be deleted\n"),
    d("etc/gone.d"),
    f("etc/gone.d/x", b"x"),
    d("opt"),
    d("opt/app"),
    f("opt/app/old.txt", b"old\n"),
    d("opt/app/sub"),
    f("opt/app/sub/deep", b"deep\n"),
    f("bin-tool", b"\x7fELF", mode=0o755),
    sym("etc/alias", "motd"),
    hard("etc/motd.hard", "etc/motd"),
]

LONG = "l" * 70 + "/" + "m" * 70  # a USTAR prefix and name
LONGER = "n" * 40 + "/" + "o" * 120  # a base name over 100 bytes: a PAX path


def change(root: Path) -> None:
    """What a container does to its root file system."""
    (root / "etc/motd").write_bytes(b"hello, changed\n")
    (root / "etc/gone").unlink()
    shutil.rmtree(root / "etc/gone.d")
    shutil.rmtree(root / "opt/app")  # and made again: opaque on overlay
    (root / "opt/app").mkdir(mode=0o750)
    (root / "opt/app/new.txt").write_bytes(b"new\n")
    (root / "new").mkdir()
    (root / "new/file").write_bytes(b"a new file\n" * 100)
    os.link(root / "new/file", root / "new/file.link")
    os.symlink("../etc/motd", root / "new/symlink")
    (root / "new/caps").write_bytes(b"\x7fELF caps")
    os.setxattr(root / "new/caps", "security.capability", CAPABILITY)
    os.setxattr(root / "new/caps", "user.note", b"kept in the diff")
    owners = {"root": (0, 0), "daemon": (1, 1), "nobody-here": (4242, 4343), "mixed": (1, 4343)}
    for name, (uid, gid) in owners.items():
        (root / "new" / name).write_bytes(name.encode())
        os.chown(root / "new" / name, uid, gid)
    os.chown(root / "new", 2, 2)  # bin:bin
    os.chmod(root / "bin-tool", 0o4755)
    os.makedirs(root / "new" / os.path.dirname(LONG))
    (root / "new" / LONG).write_bytes(b"long")
    os.makedirs(root / "new" / os.path.dirname(LONGER))
    (root / "new" / LONGER).write_bytes(b"longer")
    (root / "new/café").write_bytes(b"non-ASCII name")
    os.mkfifo(root / "new/fifo", 0o640)
    os.mknod(root / "new/null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    os.utime(root / "new/file", ns=(1_600_000_000_999_999_999, 1_600_000_000_999_999_999))


def headers(data: bytes) -> list[tuple[int, bytes]]:
    """(offset, header block) of every member header, PAX headers included."""
    out = []
    off = 0
    while off + BLOCK <= len(data):
        blk = data[off : off + BLOCK]
        if blk == bytes(BLOCK):
            break
        out.append((off, blk))
        size = int(blk[124:136].rstrip(b"\0 ") or b"0", 8)
        off += BLOCK + (size + BLOCK - 1) // BLOCK * BLOCK
    return out


def blank_whiteout_times(data: bytes) -> tuple[bytes, int]:
    """``data`` with the time and checksum of each whiteout header Go stamps with the time
    of the diff (mode 0, no owner names) zeroed; and how many there were."""
    buf = bytearray(data)
    count = 0
    for off, blk in headers(data):
        base = blk[:100].rstrip(b"\0").rsplit(b"/", 1)[-1]
        if base.startswith(b".wh.") and blk[100:108] == b"0000000\0" and blk[265:266] == b"\0":
            buf[off + 136 : off + 156] = bytes(20)
            count += 1
    return bytes(buf), count


def describe(data: bytes) -> list[str]:
    """One line per header, for a readable failure."""
    return [f"{off}: {blk[:345]!r}" for off, blk in headers(data)]


def assert_go_bytes(roots: tuple[Path, Path], driver: str, ours: bytes, layer: str) -> int:
    """Our diff of ``layer`` is Go's; returns how many naive whiteouts were blanked."""
    theirs = go(roots, driver, "diff", "-u", layer).stdout
    mine, n_ours = blank_whiteout_times(ours)
    gos, n_go = blank_whiteout_times(theirs)
    assert n_ours == n_go
    if mine != gos:
        assert describe(mine) == describe(gos)
        pytest.fail("headers agree, contents differ")
    assert len(ours) % BLOCK == 0 and ours.endswith(bytes(2 * BLOCK))
    return n_go


def our_diff(store: cs.Store, layer: str) -> bytes:
    return b"".join(store.diff(None, layer, compression="none"))


def test_container_layer_diff_is_gos(
    store: cs.Store, roots: tuple[Path, Path], driver: str
) -> None:
    base, _ = store.put_layer(None, io.BytesIO(make_tar(BASE)))
    image = store.create_image(base.id, names=["diff-bytes:latest"])
    ctr = store.create_container(image.id)
    root = Path(store.mount(ctr.id))
    try:
        change(root)
    finally:
        store.unmount(ctr.id)
    ours = our_diff(store, ctr.layer)
    names = [blk[:100].rstrip(b"\0") for _, blk in headers(ours)]
    assert b"new/null" in names and b"new/file.link" in names
    blanked = assert_go_bytes(roots, driver, ours, ctr.layer)
    if driver == "vfs":
        assert blanked == 4  # etc/gone, etc/gone.d, opt/app/old.txt, opt/app/sub
    else:
        assert blanked == 0  # the kernel's whiteouts carry their own time
        assert b"opt/app/.wh..wh..opq" in names
    # A naive diff against another layer (overlay: not the parent, so not the native diff).
    theirs = go(roots, driver, "diff", "-u", ctr.layer, base.id).stdout
    mine = b"".join(store.diff(base.id, ctr.layer, compression="none"))
    assert blank_whiteout_times(mine)[0] == blank_whiteout_times(theirs)[0]


@pytest.mark.parametrize("with_parent", [False, True], ids=["no-parent", "parent"])
def test_created_layer_diff_is_gos(
    store: cs.Store, roots: tuple[Path, Path], driver: str, with_parent: bool
) -> None:
    parent = store.put_layer(None, io.BytesIO(make_tar(BASE)))[0].id if with_parent else None
    layer = store.create_layer(parent)
    root = Path(store.mount(layer.id))
    try:
        if not with_parent:
            for entry in BASE:  # what the parent would have held
                if entry.kind == "dir":
                    (root / entry.name).mkdir()
            for entry in BASE:
                if entry.kind == "file":
                    (root / entry.name).write_bytes(entry.data)
            os.symlink("motd", root / "etc/alias")
            os.link(root / "etc/motd", root / "etc/motd.hard")
        change(root)
    finally:
        store.unmount(layer.id)
    assert_go_bytes(roots, driver, our_diff(store, layer.id), layer.id)


def test_cli_diff_is_gos(
    store: cs.Store, roots: tuple[Path, Path], driver: str, tmp_path: Path
) -> None:
    """Our CLI's ``diff -u`` writes the same bytes."""
    layer = store.create_layer(None)
    root = Path(store.mount(layer.id))
    try:
        (root / "etc").mkdir()
        change_owned = root / "etc/daemon-file"
        change_owned.write_bytes(b"daemon's")
        os.chown(change_owned, 1, 1)
        os.symlink("daemon-file", root / "etc/link")
    finally:
        store.unmount(layer.id)
    store.shutdown(False)
    out = tmp_path / "ours.tar"
    from containers_storage.cli.main import main

    argv = ["--graph", str(roots[0]), "--run", str(roots[1]), "--storage-driver", driver]
    assert main([*argv, "diff", "-u", "-f", str(out), layer.id]) == 0
    assert out.read_bytes() == go(roots, driver, "diff", "-u", layer.id).stdout


def test_mapped_layer_diff_is_gos(store: cs.Store, roots: tuple[Path, Path], driver: str) -> None:
    """In a layer with ID maps, a header carries the container IDs and the names of the host
    IDs (Go names the owner lstat gives, then maps the numbers)."""
    layer = store.create_layer(None, uid_map=[(0, 1, 65536)], gid_map=[(0, 2, 65536)])
    root = Path(store.mount(layer.id))
    try:
        (root / "f").write_bytes(b"owned by container root")
        os.chown(root / "f", 1, 2)  # host daemon:bin
        (root / "d").mkdir()
        os.chown(root / "d", 4242, 4343)
    finally:
        store.unmount(layer.id)
    ours = our_diff(store, layer.id)
    assert_go_bytes(roots, driver, ours, layer.id)
    f_header = next(blk for _, blk in headers(ours) if blk[:2] == b"f\0")
    assert f_header[108:124] == b"0000000\0" * 2  # uid, gid 0
    assert f_header[265:273] == b"daemon\0\0" and f_header[297:301] == b"bin\0"
