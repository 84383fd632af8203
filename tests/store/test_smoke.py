"""The smallest end-to-end check: a layer we put is listed by the Go tool."""

from __future__ import annotations

import io
from pathlib import Path

import containers_storage as cs
import pytest

from tests.store.helpers import go_json
from tests.tars import f, make_tar

pytestmark = [pytest.mark.root, pytest.mark.gotools]


def test_put_layer_seen_by_go(store: cs.Store, roots: tuple[Path, Path], driver: str) -> None:
    tar = make_tar([f("hello.txt", b"hi\n")])
    layer, size = store.put_layer(diff=io.BytesIO(tar), names=["smoke"])
    assert size == 3
    listed = go_json(roots, driver, "layers", "-j")
    assert [entry["id"] for entry in listed] == [layer.id]
    assert listed[0]["names"] == ["smoke"]
    assert listed[0]["diff-digest"] == layer.diff_digest
