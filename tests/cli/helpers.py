"""What the CLI tests share: the two commands, each run on a store of its own
(:class:`Side`), their results, and how outputs are made comparable."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from tests.helpers import GO_CONTAINERS_STORAGE, HANG_GUARD

GO = (GO_CONTAINERS_STORAGE,)

L1 = "1" * 64
L2 = "2" * 64
L3 = "3" * 64
I1 = "a" * 64
I2 = "b" * 64
C1 = "c" * 64
FIXED_IDS = {L1, L2, L3, I1, I2, C1, I2[:-1] + "0", C1[:-1] + "0"}


class Result(NamedTuple):
    code: int
    out: str
    err: str


class Side:
    """One implementation with its own store."""

    def __init__(self, argv: Sequence[str], root: Path, driver: str) -> None:
        self.argv = tuple(argv)
        self.root = root
        self.graph = root / "root"
        self.run_root = root / "runroot"
        self.driver = driver

    def globals(self) -> list[str]:
        return [
            "--graph",
            str(self.graph),
            "--run",
            str(self.run_root),
            "--storage-driver",
            self.driver,
        ]

    def __call__(
        self, *args: str, stdin: bytes | None = None, store: bool = True, debug: bool = False
    ) -> Result:
        cmd = [*self.argv]
        if store:
            cmd += ["--debug" if debug else "--debug=false", *self.globals()]
        cmd += list(args)
        p = subprocess.run(cmd, input=stdin, capture_output=True, timeout=HANG_GUARD, cwd=self.root)
        return Result(
            p.returncode,
            p.stdout.decode("utf-8", "replace"),
            p.stderr.decode("utf-8", "replace"),
        )

    def normalise(self, text: str) -> str:
        text = text.replace(str(self.run_root), "RUNROOT").replace(str(self.graph), "GRAPH")
        text = text.replace(str(self.root), "TOP")
        text = re.sub(r'"created":"[^"]*"', '"created":"T"', text)
        # IDs the test did not choose (a container's layer) are random on both sides.
        text = re.sub(r"[0-9a-f]{64}", lambda m: m[0] if m[0] in FIXED_IDS else "RANDOM", text)
        # mflag's "See '<argv0> <command> --help'." names the program as invoked.
        text = re.sub(r"See '[^']*--help'\.", "See HELP", text)
        # Flag tables are aligned to their longest cell, which holds a root.
        text = re.sub(r"(?m)^(  -[^\n]*?\S) {3,}", r"\1   ", text)
        # Our additions to the usage: our commands and --version (Go lists --help only
        # once it has registered it).
        ours = "|".join(
            (
                *("apply-layer", "import-image", "export-image", "unpack-image"),
                *("pull", "push", "login", "logout", "unshare", "check", "completion"),
                *("--help", "--version"),
            )
        )
        return re.sub(rf"(?m)^  ({ours}) .*\n", "", text)


def unordered_form(text: str) -> str:
    try:
        doc = json.loads(text)
    except ValueError:
        return "\n".join(sorted(text.splitlines()))
    if isinstance(doc, list):
        doc = sorted(doc, key=lambda item: json.dumps(item, sort_keys=True))
    return json.dumps(doc, sort_keys=True)
