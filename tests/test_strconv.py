"""``_strconv.go_quote`` against Go's ``strconv.Quote``, seen through the Go CLI's message
for a malformed ``--debug=VALUE`` (``parsing "VALUE": invalid syntax``). The Rust twin
(``rust/src/strconv.rs``) tests the same table."""

from __future__ import annotations

import os
import subprocess

import pytest
from containers_storage._strconv import go_quote

from tests.helpers import GO_CONTAINERS_STORAGE, HANG_GUARD

# (the string, as bytes; Go's %q of it)
CASES: list[tuple[bytes, str]] = [
    (b"", '""'),
    (b"plain/path.txt", '"plain/path.txt"'),
    (b'a "q" \\ b', r'"a \"q\" \\ b"'),
    (b"a\x07b\x08c\x0cd\x0be\nf\rg\th", r'"a\ab\bc\fd\ve\nf\rg\th"'),
    (b"\x00\x01\x1b\x7f", r'"\x00\x01\x1b\x7f"'),
    (b"\xff\xfe", r'"\xff\xfe"'),
    (b"ok\xc3", r'"ok\xc3"'),
    ("é\u00a0\u200b\u0301x".encode(), '"é\\u00a0\\u200b\u0301x"'),
    ("\u0301x".encode(), '"\u0301x"'),
    ("\u0085\u00ad".encode(), r'"\u0085\u00ad"'),
    ("\U0001f600\U000e0001".encode(), '"\U0001f600\\U000e0001"'),
    ("\u2028日本".encode(), '"\\u2028日本"'),
]


@pytest.mark.parametrize(("raw", "quoted"), CASES)
def test_go_quote_table(raw: bytes, quoted: str) -> None:
    assert go_quote(os.fsdecode(raw)) == quoted


@pytest.mark.gotools
@pytest.mark.parametrize(("raw", "quoted"), [c for c in CASES if b"\x00" not in c[0]])
def test_table_is_gos(raw: bytes, quoted: str) -> None:
    """Each row is what Go prints (a NUL cannot be passed in argv)."""
    p = subprocess.run(
        [GO_CONTAINERS_STORAGE, b"--debug=" + raw, "layers"],
        capture_output=True,
        timeout=HANG_GUARD,
    )
    assert p.returncode != 0
    assert f"strconv.ParseBool: parsing {quoted}: invalid syntax".encode() in p.stderr
