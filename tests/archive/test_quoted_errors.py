"""Archive errors quote member names as Go's ``%q`` does (``rust/src/strconv.rs``, the twin
of ``_strconv.go_quote``): control characters by name or ``\\xNN``, invalid UTF-8 byte by
byte, never Rust's ``{:?}`` (``\\u{1}``, U+FFFD)."""

from __future__ import annotations

import io
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests.helpers import HANG_GUARD
from tests.store.helpers import go, go_argv, ours, ours_argv

pytestmark = [pytest.mark.root, pytest.mark.gotools]

NAME = "bad\x01\tname\udcff"  # bytes b"bad\x01\tname\xff"


def _tar(name: str, typeflag: bytes, linkname: str = "") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(
        fileobj=buf, mode="w", format=tarfile.GNU_FORMAT, errors="surrogateescape"
    ) as tar:
        info = tarfile.TarInfo(name)
        info.type = typeflag
        info.linkname = linkname
        tar.addfile(info)
    return buf.getvalue()


@pytest.mark.parametrize("typeflag", [b"Z", b"7"])
@pytest.mark.parametrize("driver", ["vfs", "overlay"])
def test_unhandled_type_in_gos_words(tmp_path: Path, driver: str, typeflag: bytes) -> None:
    """A member of a type no layer holds (an unknown one, or ``7``, a contiguous file, which
    Go's pkg/archive does not extract either): Go's ``unhandled tar header type N``, with the
    member's name quoted as Go would."""
    archive = tmp_path / "z.tar"
    archive.write_bytes(_tar(NAME, typeflag))
    stderr = {}
    for side, argv in (("go", go_argv), ("ours", ours_argv)):
        roots = (tmp_path / side / "g", tmp_path / side / "r")
        try:
            layer = go(roots, driver, "create-layer").stdout.split()[-1].decode()
            p = subprocess.run(
                argv(roots, driver, "applydiff", "-f", archive, layer),
                capture_output=True,
                timeout=HANG_GUARD,
            )
        finally:
            go(roots, driver, "shutdown", check=False)
        assert p.returncode == 1, p
        stderr[side] = p.stderr
    want = b"unhandled tar header type %d" % typeflag[0]
    assert want in stderr["go"]
    assert stderr["ours"].splitlines()[-1] == b'member "bad\\x01\\tname\\xff": ' + want


def test_unsafe_hardlink_name_quoted(tmp_path: Path) -> None:
    """Our refusal of a hard link out of the layer quotes the member as ``%q``."""
    archive = tmp_path / "h.tar"
    archive.write_bytes(_tar("é\x07link\udcfe", tarfile.LNKTYPE, "../../etc/passwd"))
    roots = (tmp_path / "g", tmp_path / "r")
    try:
        layer = ours(roots, "vfs", "create-layer").stdout.split()[-1]
        p = ours(roots, "vfs", "applydiff", "-f", str(archive), layer)
    finally:
        go(roots, "vfs", "shutdown", check=False)
    assert p.returncode == 1
    assert p.stderr.splitlines()[-1].endswith(
        '"é\\alink\\xfe": hardlink target escapes the layer directory'
    ), p.stderr
