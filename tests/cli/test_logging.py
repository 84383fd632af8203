"""Debug events on the ``containers_storage`` logger: captured by a program that configures
logging, silent otherwise, printed by ``--debug`` as Go's logrus lines."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
from pathlib import Path

import pytest
from containers_storage import _log
from containers_storage.cli.main import _debug_to_stderr, main

STORE_EVENTS = ["Root: {g}", "Run Root: {r}", "Driver Name: vfs", "Driver Options: []"]


def _args(tmp_path: Path) -> list[str]:
    return ["-g", str(tmp_path / "g"), "-R", str(tmp_path / "r"), "-s", "vfs"]


def test_events_reach_a_configured_logger(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG, logger="containers_storage")
    assert main([*_args(tmp_path), "layers"]) == 0
    records = [r for r in caplog.records if r.name.startswith("containers_storage")]
    assert [(r.name, r.levelno) for r in records] == [("containers_storage.cli", logging.DEBUG)] * 4
    g, r = tmp_path / "g", tmp_path / "r"
    assert [r.getMessage() for r in records] == [e.format(g=g, r=r) for e in STORE_EVENTS]
    # Without --debug, nothing on the terminal.
    assert capsys.readouterr().err == ""


def test_silent_by_default(tmp_path: Path) -> None:
    """A program that imports logging but configures nothing sees no output, and the package
    logger carries its NullHandler whichever was imported first."""
    code = (
        "import sys, logging, containers_storage as cs; "
        "from containers_storage.cli.main import main; "
        "assert any(isinstance(h, logging.NullHandler) "
        "for h in logging.getLogger('containers_storage').handlers); "
        "sys.exit(main(sys.argv[1:]))"
    )
    p = subprocess.run(
        [sys.executable, "-c", code, *_args(tmp_path), "layers"], capture_output=True, text=True
    )
    assert (p.returncode, p.stderr) == (0, "")
    late = (
        "import containers_storage, logging; from containers_storage import _log; "
        "_log.debug('containers_storage.store', 'x'); "
        "assert any(isinstance(h, logging.NullHandler) "
        "for h in logging.getLogger('containers_storage').handlers)"
    )
    p = subprocess.run([sys.executable, "-c", late], capture_output=True, text=True)
    assert (p.returncode, p.stderr) == (0, "")


def test_debug_prints_logrus_lines_and_undoes_itself(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    logger = logging.getLogger("containers_storage")
    before = (list(logger.handlers), logger.level)
    assert main(["--debug", *_args(tmp_path), "layers"]) == 0
    lines = capsys.readouterr().err.splitlines()
    g, r = tmp_path / "g", tmp_path / "r"
    want = [e.format(g=g, r=r) for e in STORE_EVENTS]
    pattern = re.compile(r'time="[0-9T:+-]+" level=debug msg="(.*)"')
    assert [m.group(1) for m in map(pattern.fullmatch, lines) if m] == want
    assert (list(logger.handlers), logger.level) == before
    # Any child's records go the same way while --debug is on.
    undo = _debug_to_stderr()
    try:
        _log.debug("containers_storage.store", "opened %s", "x")
    finally:
        undo()
    assert capsys.readouterr().err.endswith('level=debug msg="opened x"\n')
