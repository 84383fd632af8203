"""The commands Go's CLI does not have (apply-layer, import-image, export-image,
unpack-image): errors in the one-line style of the rest, ``--json`` compact as Go's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from containers_storage.cli.main import main
from containers_storage.cli.output import go_json

from tests.cli.test_oci_cmd import _layout
from tests.tars import f, make_tar


def _store(tmp_path: Path) -> list[str]:
    return ["-g", str(tmp_path / "g"), "-R", str(tmp_path / "r"), "-s", "vfs"]


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["apply-layer", "-f", "{t}/nope.tar", "{t}/root"], "open {t}/nope.tar: {enoent}"),
        (["import-image", "docker-archive:{t}/nope.tar"], "open {t}/nope.tar: {enoent}"),
        (["import-image", "oci-archive:{t}/nope.tar"], "open {t}/nope.tar: {enoent}"),
        (
            ["apply-layer", "--whiteouts", "wrong", "{t}/root"],
            'invalid --whiteouts "wrong": want vfs, overlay or aufs',
        ),
    ],
)
def test_errors_are_one_go_style_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], line: str
) -> None:
    argv = [a.format(t=tmp_path) for a in args]
    assert main([*_store(tmp_path), *argv]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == line.format(t=tmp_path, enoent="no such file or directory") + "\n"


def test_write_errors_name_the_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _layout(tmp_path / "layout")
    assert (
        main(
            [*_store(tmp_path), "import-image", "-n", "localhost/t:1", f"oci:{tmp_path}/layout:t:1"]
        )
        == 0
    )
    capsys.readouterr()
    (tmp_path / "file").write_text("")
    assert main([*_store(tmp_path), "unpack-image", "localhost/t:1", f"{tmp_path}/file/x"]) == 1
    assert capsys.readouterr().err == f"open {tmp_path}/file/x: not a directory\n"


@pytest.mark.parametrize("sample", [True, False])
def test_apply_layer_json_is_compact(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], sample: bool
) -> None:
    layer = [] if sample else ["-f", str(_layer(tmp_path))]
    assert main(["apply-layer", "--json", *layer, str(tmp_path / "root")]) == 0
    out = capsys.readouterr().out
    doc = json.loads(out)
    assert out == go_json(doc) + "\n"
    first = doc[0] if sample else doc
    assert first["uncompressed_digest"].startswith("sha256:") and "tar_split" not in first


def test_import_export_json_is_compact(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _layout(tmp_path / "layout")
    store = _store(tmp_path)
    assert (
        main(
            [*store, "import-image", "--json", "-n", "localhost/t:1", f"oci:{tmp_path}/layout:t:1"]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert out == go_json(json.loads(out)) + "\n" and json.loads(out)["names"] == ["localhost/t:1"]
    assert main([*store, "export-image", "--json", "localhost/t:1", f"oci:{tmp_path}/out:x"]) == 0
    out = capsys.readouterr().out
    assert out == go_json(json.loads(out)) + "\n"
    assert json.loads(out)["digest"].startswith("sha256:")


def _layer(tmp_path: Path) -> Path:
    path = tmp_path / "l.tar"
    path.write_bytes(make_tar([f("hello.txt", b"hello\n")]))
    return path
