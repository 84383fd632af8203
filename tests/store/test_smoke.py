"""The smallest end-to-end check: a layer we put is listed by the Go tool."""

# ruff: noqa: F811  (pytest fixtures imported from storefix are redefined as parameters)

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import containers_storage as cs
import pytest
from storefix import driver, go_json, roots, store  # noqa: F401

pytestmark = [pytest.mark.root, pytest.mark.gotools]


def test_put_layer_seen_by_go(store: cs.Store, roots: tuple[Path, Path], driver: str) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        data = b"hi\n"
        info = tarfile.TarInfo("hello.txt")
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))
    layer, size = store.put_layer(diff=io.BytesIO(buf.getvalue()), names=["smoke"])
    assert size == 3
    listed = go_json(roots, driver, "layers", "-j")
    assert [entry["id"] for entry in listed] == [layer.id]
    assert listed[0]["names"] == ["smoke"]
    assert listed[0]["diff-digest"] == layer.diff_digest
