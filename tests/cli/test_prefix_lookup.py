"""ID prefixes across kinds, resolved as Go 1.43 resolves them (issue 14, item 15).

Go looks a reference up kind by kind (layers, then images, then containers, each in its
stores): a prefix two layer IDs start with is no layer (truncindex's ambiguity is a miss in
``lookup``), so the search goes on, and the one image or container it starts names it. Two
stores, ours and Go's, built alike with chosen IDs; each command that takes such a prefix
must exit alike and leave the same names and metadata behind.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.cli.helpers import GO, Side
from tests.helpers import OURS

pytestmark = [pytest.mark.root, pytest.mark.gotools]


def ident(prefix: str, n: int) -> str:
    """A 64-hex ID starting with ``prefix``, then the digit ``n``."""
    return (prefix + str(n)).ljust(64, "0")


#: prefix -> (layer IDs, image IDs, container IDs) starting with it, and what Go finds.
CASES = {
    # Ambiguous among layers, unique among images: the image.
    "aaaaaa": (2, 1, 0, "image"),
    # Ambiguous among layers and images, unique among containers: the container.
    "bbbbbb": (2, 2, 1, "container"),
    # Ambiguous among all three: nothing.
    "cccccc": (2, 2, 2, None),
    # Unique among layers, ambiguous among images: the layer.
    "dddddd": (1, 2, 0, "layer"),
    # Ambiguous among layers, none among images, unique among containers: the container.
    "eeeeee": (2, 0, 1, "container"),
    # Ambiguous among images only: nothing.
    "ffffff": (0, 2, 0, None),
}

#: A base layer for the images, and its image for the containers (prefixes of their own).
BASE_LAYER = ident("1234", 0)
BASE_IMAGE = ident("5678", 0)
#: Every ID the test chooses (containers' layers get random ones).
CHOSEN = {BASE_LAYER, BASE_IMAGE} | {
    ident(prefix, n) for prefix, counts in CASES.items() for n in range(1, 1 + sum(counts[:3]))
}


def build(side: Side) -> None:
    def ok(*args: str) -> None:
        r = side(*args)
        assert r.code == 0, (args, r)

    ok("create-layer", "-i", BASE_LAYER)
    ok("create-image", "-i", BASE_IMAGE, BASE_LAYER)
    for prefix, (layers, images, containers, _found) in CASES.items():
        n = 0
        for _ in range(layers):
            n += 1
            ok("create-layer", "-i", ident(prefix, n), BASE_LAYER)
        for _ in range(images):
            n += 1
            ok("create-image", "-i", ident(prefix, n), BASE_LAYER)
        for _ in range(containers):
            n += 1
            ok("create-container", "-i", ident(prefix, n), BASE_IMAGE)


def state(side: Side) -> dict[str, Any]:
    """Every record's names and metadata (containers' layers are random: left out)."""
    out = {}
    for kind in ("layers", "images", "containers"):
        r = side(kind, "-j")
        assert r.code == 0, r
        out[kind] = {
            x["id"]: (x.get("names"), x.get("names-history"), x.get("metadata"))
            for x in json.loads(r.out)
            if x["id"] in CHOSEN
        }
    return out


@pytest.fixture(scope="module")
def sides(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Side, Side]]:
    """Ours and Go's store, built once: each case works on IDs of its own prefix."""
    top = tmp_path_factory.mktemp("prefixes")
    pair = []
    for name, argv in (("ours", OURS), ("go", GO)):
        (top / name).mkdir()
        side = Side(argv, top / name, "vfs")
        build(side)
        pair.append(side)
    yield pair[0], pair[1]
    for side in pair:
        side("wipe")
        side("shutdown")


@pytest.mark.parametrize("prefix", list(CASES))
def test_prefix_resolves_across_kinds_as_go(sides: tuple[Side, Side], prefix: str) -> None:
    ours, go = sides
    assert state(ours) == state(go)
    found = CASES[prefix][3]
    commands = [
        ("exists", prefix),
        ("exists", "-l", prefix),
        ("exists", "-i", prefix),
        ("exists", "-c", prefix),
        ("metadata", prefix),
        ("set-metadata", "-m", f"meta-{prefix}", prefix),
        ("metadata", prefix),
        ("get-names", prefix),
        ("add-names", "-n", f"added-{prefix}", prefix),
        ("set-names", "-n", f"set-{prefix}", "-n", f"other-{prefix}", prefix),
        ("add-names", "-j", "-n", f"json-{prefix}", prefix),
        ("get-names", "-j", prefix),
    ]
    for args in commands:
        o, g = ours(*args), go(*args)
        # Go prints nothing on stderr that names the kind of miss; ours may say the prefix
        # is ambiguous: exit codes and stdout must agree.
        assert (o.code, o.out) == (g.code, g.out), f"{args}: ours {o!r} vs Go {g!r}"
        assert state(ours) == state(go), args
    # The commands did what the case says: on the item Go finds, or on nothing.
    after = state(go)
    named = {
        kind: [i for i, (names, _h, meta) in recs.items() if meta == f"meta-{prefix}"]
        for kind, recs in after.items()
    }
    if found is None:
        assert all(not ids for ids in named.values()), named
        assert ours("set-metadata", "-m", "x", prefix).code == 1
    else:
        (hit,) = named[f"{found}s"]
        assert hit.startswith(prefix)
        assert after[f"{found}s"][hit][0] == [f"set-{prefix}", f"other-{prefix}", f"json-{prefix}"]


def test_ambiguity_error_only_where_go_finds_nothing(sides: tuple[Side, Side]) -> None:
    """Where Go finds nothing (its ``layer not known``), ours says why: the prefix is
    ambiguous."""
    ours, _go = sides
    r = ours("set-metadata", "-m", "x", "cccccc")
    assert r.code == 1
    assert re.search(r"multiple IDs found with provided prefix", r.err), r
