"""Every script in examples/ runs to completion and prints what it says it does."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

#: A line each example must print (the part after its fixed prefix is data).
EXPECTED = {
    "quickstart.py": ["motd: hello from a layer", "left: 0 layers 0 images"],
    "copy_between_stores.py": ["hello.txt: hello from an OCI image"],
    "apply_and_diff.py": [
        "top has: ['b.txt', 'c.txt']",
        "change: DELETE /a.txt",
        "diff members: ['.wh.a.txt', 'c.txt']",
    ],
    "check_and_repair.py": [
        "found: 1 layer errors, 0 read-only layer errors, 1 image errors, "
        "0 read-only image errors, 0 container errors",
        "not repaired: []",
        "left: 0 layers 0 images",
        "sound: True",
    ],
}


def test_every_example_is_checked() -> None:
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == sorted(EXPECTED)


@pytest.mark.root
@pytest.mark.parametrize(
    ("script", "args"),
    [
        ("quickstart.py", []),
        ("quickstart.py", ["overlay"]),
        ("copy_between_stores.py", []),
        ("apply_and_diff.py", []),
        ("check_and_repair.py", []),
    ],
)
def test_example_runs(script: str, args: list[str], tmp_path: Path) -> None:
    p = subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    assert (p.returncode, p.stderr) == (0, ""), p.stderr
    lines = p.stdout.splitlines()
    for want in EXPECTED[script]:
        assert want in lines, p.stdout
    assert list(tmp_path.iterdir()) == []
