"""Helpers shared by the archive tests: tree manifests, tar headers as written, CRC-64 as Go
computes it (the tar builder is :mod:`tests.tars`).

A manifest maps each path of a tree (relative, ``"."`` for the root) to what an extraction
must reproduce: type, permission bits (with setuid/setgid/sticky), owner, size and SHA-256 of
content, symlink target, device numbers, every extended attribute, mtime in nanoseconds, and
which paths share an inode (hard links). Two extractions of one layer must have equal
manifests.
"""

from __future__ import annotations

import hashlib
import os
import stat

Entry = dict[str, object]
Manifest = dict[str, Entry]

_KINDS = {
    stat.S_IFDIR: "dir",
    stat.S_IFREG: "file",
    stat.S_IFLNK: "symlink",
    stat.S_IFCHR: "char",
    stat.S_IFBLK: "block",
    stat.S_IFIFO: "fifo",
    stat.S_IFSOCK: "socket",
}


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's content."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def xattrs(path: str | os.PathLike[str]) -> dict[str, str]:
    """Every extended attribute of ``path`` (not following symlinks), values in hex."""
    names = sorted(os.listxattr(path, follow_symlinks=False))
    return {name: os.getxattr(path, name, follow_symlinks=False).hex() for name in names}


def manifest(
    root: str | os.PathLike[str], *, include_root: bool = True, mtimes: bool = True
) -> Manifest:
    """The manifest of the tree under ``root`` (see the module docstring)."""
    base = os.fspath(root)
    out: Manifest = {}
    by_inode: dict[tuple[int, int], list[str]] = {}

    def visit(rel: str) -> None:
        full = base if rel == "." else os.path.join(base, rel)
        st = os.lstat(full)
        fmt = stat.S_IFMT(st.st_mode)
        entry: Entry = {
            "type": _KINDS.get(fmt, oct(fmt)),
            "mode": f"{stat.S_IMODE(st.st_mode):04o}",
            "uid": st.st_uid,
            "gid": st.st_gid,
            "xattrs": xattrs(full),
        }
        if fmt == stat.S_IFREG:
            entry["size"] = st.st_size
            entry["sha256"] = sha256_file(full)
        elif fmt == stat.S_IFLNK:
            entry["target"] = os.readlink(full)
        elif fmt in (stat.S_IFCHR, stat.S_IFBLK):
            entry["major"] = os.major(st.st_rdev)
            entry["minor"] = os.minor(st.st_rdev)
        if fmt != stat.S_IFDIR:
            entry["nlink"] = st.st_nlink
            by_inode.setdefault((st.st_dev, st.st_ino), []).append(rel)
        if mtimes:
            entry["mtime_ns"] = st.st_mtime_ns
        if rel != "." or include_root:
            out[rel] = entry
        if fmt == stat.S_IFDIR:
            for name in sorted(os.listdir(full)):
                visit(name if rel == "." else f"{rel}/{name}")

    visit(".")
    for paths in by_inode.values():
        if len(paths) > 1:
            for path in paths:
                if path in out:
                    out[path]["hardlinks"] = sorted(paths)
    return out


def diff_manifests(got: Manifest, want: Manifest) -> list[str]:
    """Human-readable differences between two manifests (empty when equal)."""
    lines = [f"missing: {p}" for p in sorted(want.keys() - got.keys())]
    lines += [f"unexpected: {p}" for p in sorted(got.keys() - want.keys())]
    for path in sorted(got.keys() & want.keys()):
        g, w = got[path], want[path]
        for key in sorted(g.keys() | w.keys()):
            if g.get(key) != w.get(key):
                lines.append(f"{path}: {key}: got {g.get(key)!r}, want {w.get(key)!r}")
    return lines


def assert_same_tree(got: Manifest, want: Manifest, what: str) -> None:
    """Fail with a readable list of differences unless the manifests are equal."""
    diff = diff_manifests(got, want)
    assert not diff, f"{what}: {len(diff)} difference(s):\n" + "\n".join(diff[:80])


def _crc64_iso_table() -> list[int]:
    table = []
    for i in range(256):
        crc = i
        for _ in range(8):
            crc = (crc >> 1) ^ 0xD800000000000000 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC64_ISO_TABLE = _crc64_iso_table()
_MASK64 = 0xFFFF_FFFF_FFFF_FFFF


def crc64_iso(data: bytes) -> int:
    """``crc64.Checksum(data, crc64.MakeTable(crc64.ISO))`` as Go computes it.

    The reflected ISO polynomial (0xD800000000000000); Go's implementation starts from
    all-ones and inverts the result (CRC-64/GO-ISO), so ``crc64_iso(b"a")`` is
    0x3420000000000000, as in Go's own golden tests.
    """
    crc = _MASK64
    table = _CRC64_ISO_TABLE
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ _MASK64


def raw_typeflags(data: bytes) -> list[tuple[bytes, bytes]]:
    """(name field, typeflag) of every 512-byte header of an uncompressed tar, in order.

    Includes the extension headers (``L``, ``K``, ``x``, ``g``) that tarfile hides. Not for
    archives with old-GNU sparse extension blocks.
    """
    out = []
    offset = 0
    while offset + 512 <= len(data):
        block = data[offset : offset + 512]
        if block == b"\0" * 512:
            break
        field = block[124:136]
        if field[0] & 0x80:
            size = int.from_bytes(field[1:], "big")
        else:
            size = int(field.rstrip(b"\0 ").decode() or "0", 8)
        out.append((block[:100].rstrip(b"\0"), block[156:157]))
        offset += 512 + (size + 511) // 512 * 512
    return out
