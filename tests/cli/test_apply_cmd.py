"""``containers-storage apply-layer``: the sample layer, files, stdin, errors, piping."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest
from containers_storage.cli.main import main

from tests.helpers import OURS
from tests.tars import f, make_tar


def make_layer(path: Path) -> Path:
    path.write_bytes(gzip.compress(make_tar([f("hello.txt", b"hello\n")])))
    return path


def test_sample_layer_applies_with_whiteouts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "root"
    assert main(["apply-layer", str(target)]) == 0
    assert (target / "usr/bin/hello").read_bytes().startswith(b"#!/bin/sh")
    assert (target / "usr/bin/hi").stat().st_ino == (target / "usr/bin/hello").stat().st_ino
    assert (target / "bin").readlink() == Path("usr/bin")
    # The sample's second layer whites out etc/hostname and makes opt/app opaque.
    assert not (target / "etc/hostname").exists()
    assert sorted(p.name for p in (target / "opt/app").iterdir()) == ["new.conf"]
    out = capsys.readouterr().out
    assert out.count("\ndiff-digest:") + out.startswith("diff-digest:") == 2


def test_file_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    layer = make_layer(tmp_path / "l.tar.gz")
    assert main(["apply-layer", "--json", "-f", str(layer), str(tmp_path / "t")]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["compression"] == "gzip"
    assert doc["entries"] == 1
    assert (tmp_path / "t/hello.txt").read_text() == "hello\n"


def test_missing_file_is_one_line_and_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["apply-layer", "-f", str(tmp_path / "nope.tar"), str(tmp_path / "t")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "nope.tar" in err


def test_corrupt_layer_is_one_line_and_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"\x01" * 2048)
    assert main(["apply-layer", "-f", str(junk), str(tmp_path / "t")]) == 1
    err = capsys.readouterr().err
    assert "invalid tar header" in err
    assert err.count("\n") == 1


def test_stdin_piped_has_no_progress_bar(tmp_path: Path) -> None:
    layer = make_layer(tmp_path / "l.tar.gz")
    with layer.open("rb") as stdin:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "containers_storage",
                "apply-layer",
                "-f",
                "-",
                str(tmp_path / "t"),
            ],
            stdin=stdin,
            capture_output=True,
            check=True,
        )
    assert proc.stderr == b""
    assert b"\r" not in proc.stdout
    assert (tmp_path / "t/hello.txt").exists()


def test_version_and_help() -> None:
    for argv in (["--version"], ["--help"]):
        proc = subprocess.run([*OURS, *argv], capture_output=True, text=True)
        assert proc.returncode == 0
    proc = subprocess.run([*OURS, "--version"], capture_output=True, text=True)
    assert proc.stdout.startswith("containers-storage ")
