"""A seeded random sequence of commands, valid and invalid, run with our ``containers-storage``
and Debian's Go 1.43 binary on twin vfs stores: every command must give the same exit status,
stderr and stdout (roots, timestamps and IDs the test did not choose normalised).

The sequences are reproducible: each seed makes the same commands every run. They mix
creations with explicit IDs and with duplicate or unknown IDs and names, ID prefixes, empty
and missing big-data keys, bad digests, names that need ``%q`` escapes, and deletions; the
state they reach depends on which commands succeed, on both sides alike.

Left out on purpose (each is a deliberate difference of ours, tested elsewhere):
- ``delete-layer`` by name or ID prefix of a layer with children or used by an image or a
  container: ours refuses, Go deletes it and leaves the users orphaned.
- ``mount`` of a layer or container by name: ours mounts it, Go fails.
- ID prefixes that match items of two kinds: their resolution is tested with the name
  lookup (the IDs here start with a different digit for each kind, so prefixes never
  collide across kinds).
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest

from tests.cli.helpers import GO, Result, Side, unordered_form
from tests.helpers import OURS

pytestmark = [pytest.mark.root, pytest.mark.gotools]

#: IDs the sequence creates things with; each kind has its own first digits.
LAYERS = ["1" * 64, "12" * 32, "2" * 64, "3" * 64]
IMAGES = ["a" * 64, "ab" * 32, "b" * 64]
CONTAINERS = ["c" * 64, "cd" * 32, "d" * 64]
FIXED = set(LAYERS + IMAGES + CONTAINERS)
NAMES = ["alpha", "beta", "gamma", 'q"uote', "tab\there", "sp ace", "ünï", "x"]
KEYS = ["k1", "k2", "manifest", 'k"q', "", "sub/dir", "k\x01"]
DIGESTS = [
    "sha256:" + "0" * 64,
    "sha256:zz",
    "sha256:" + "A" * 64,
    "md5:abc",
    "nodigest",
    "",
    "sha512:" + "0" * 128,
]
#: Every command and the kinds of reference it takes (L layer, I image, C container, A any).
REFS = {"L": LAYERS, "I": IMAGES, "C": CONTAINERS}

LISTINGS = {"layers", "images", "containers"}


def _ref(rng: random.Random, kind: str) -> str:
    """A reference for ``kind``: mostly an ID of that kind (existing or not), else a name, a
    unique prefix, an ID of another kind, an unknown name or the empty string."""
    pool = [i for k, ids in REFS.items() for i in ids] if kind == "A" else REFS[kind]
    roll = rng.random()
    if roll < 0.55:
        return rng.choice(pool)
    if roll < 0.75:
        return rng.choice(NAMES)
    if roll < 0.85:
        return rng.choice(pool)[:12]
    if roll < 0.92:
        other = rng.choice([k for k in REFS if k != kind] or ["L"])
        return rng.choice(REFS[other])
    return rng.choice(["nosuch", "", "0" * 64])


def _names(rng: random.Random) -> list[str]:
    out: list[str] = []
    for _ in range(rng.choice([0, 0, 1, 1, 2])):
        out += ["-n", rng.choice(NAMES)]
    return out


def _command(rng: random.Random, files: dict[str, Path]) -> list[str]:
    """One random command line (without the global flags)."""
    what = rng.choice(
        [
            "create-layer",
            "create-layer",
            "create-image",
            "create-image",
            "create-container",
            "create-container",
            "examine",
            "listing",
            "metadata",
            "set-metadata",
            "names",
            "names",
            "exists",
            "delete",
            "data-set",
            "data-set",
            "data-get",
            "data-get",
            "data-list",
            "digest",
            "container-dirs",
            "owners",
            "mount",
            "contents",
            "missing-file",
        ]
    )
    if what == "create-layer":
        args = ["create-layer", *_names(rng)]
        if rng.random() < 0.9:
            args += ["-i", rng.choice(LAYERS)]
        if rng.random() < 0.4:
            args.append(_ref(rng, "L"))
        return args
    if what == "create-image":
        args = ["create-image", *_names(rng), "-i", rng.choice(IMAGES)]
        if rng.random() < 0.3:
            args += ["-d", rng.choice(DIGESTS)]
        if rng.random() < 0.2:
            args += ["-m", "meta"]
        if rng.random() < 0.8:
            args.append(_ref(rng, "L"))
        return args
    if what == "create-container":
        args = ["create-container", *_names(rng), "-i", rng.choice(CONTAINERS)]
        return [*args, _ref(rng, "I")]
    if what == "examine":
        kind = rng.choice("LIC")
        cmd = {"L": "layer", "I": "image", "C": "container"}[kind]
        return [cmd, *(["-j"] if rng.random() < 0.3 else []), _ref(rng, kind)]
    if what == "listing":
        return [rng.choice(sorted(LISTINGS)), *(["-j"] if rng.random() < 0.3 else [])]
    if what == "metadata":
        return ["metadata", *(["-q"] if rng.random() < 0.5 else []), _ref(rng, "A")]
    if what == "set-metadata":
        return ["set-metadata", "-m", rng.choice(["m1", "", 'm"2']), _ref(rng, "A")]
    if what == "names":
        cmd = rng.choice(["get-names", "add-names", "set-names"])
        extra = [] if cmd == "get-names" else _names(rng)
        return [cmd, *extra, _ref(rng, "A")]
    if what == "exists":
        flag = rng.choice([[], ["-l"], ["-i"], ["-c"], ["-q"]])
        return ["exists", *flag, _ref(rng, "A")]
    if what == "delete":
        kind = rng.choice("LIC")
        cmd = rng.choice(
            ["delete", {"L": "delete-layer", "I": "delete-image", "C": "delete-container"}[kind]]
        )
        return [cmd, _ref(rng, kind)]
    kind = rng.choice("LIC")
    noun = {"L": "layer", "I": "image", "C": "container"}[kind]
    if what == "data-set":
        return [
            f"set-{noun}-data",
            "-f",
            str(rng.choice(list(files.values()))),
            _ref(rng, kind),
            rng.choice(KEYS),
        ]
    if what == "data-get":
        if kind == "L":
            return ["get-layer-data", _ref(rng, kind), rng.choice(KEYS)]
        cmd = rng.choice([f"get-{noun}-data", f"get-{noun}-data-size", f"get-{noun}-data-digest"])
        return [cmd, _ref(rng, kind), rng.choice(KEYS)]
    if what == "data-list":
        return [f"list-{noun}-data", _ref(rng, kind)]
    if what == "digest":
        return ["images-by-digest", rng.choice(DIGESTS)]
    if what == "container-dirs":
        return [rng.choice(["get-container-dir", "get-container-run-dir"]), _ref(rng, "C")]
    if what == "owners":
        return [rng.choice(["layer-parent-owners", "container-parent-owners"]), _ref(rng, kind)]
    if what == "contents":
        return [rng.choice(["changes", "diffsize"]), _ref(rng, "L")]
    if what == "missing-file":
        missing = str(next(iter(files.values())).parent / "missing")
        return rng.choice(
            [
                ["import-layer", "-f", missing, "-i", rng.choice(LAYERS)],
                ["create-image", "-f", missing, "-i", rng.choice(IMAGES)],
                ["set-metadata", "-f", missing, _ref(rng, "A")],
                [f"set-{noun}-data", "-f", missing, _ref(rng, kind), "k1"],
            ]
        )
    # mount: IDs only (see the module docstring), then unmount or mounted.
    kind = rng.choice("LC")
    return [rng.choice(["mount", "unmount", "mounted"]), rng.choice(REFS[kind])]


def _normalise(side: Side, text: str) -> str:
    text = text.replace(str(side.run_root), "RUNROOT").replace(str(side.graph), "GRAPH")
    text = text.replace(str(side.root), "TOP")
    text = re.sub(r'"created":"[^"]*"', '"created":"T"', text)
    return re.sub(r"[0-9a-f]{64}", lambda m: m[0] if m[0] in FIXED else "RANDOM", text)


def _go_deletes_in_use_layer(go: Side, args: list[str]) -> bool:
    """Whether ``args`` is ``delete-layer REF`` with REF a name or ID prefix of a layer that
    has children or is used by an image or container: Go's ``DeleteLayer`` compares REF, not
    the layer's ID, with the users' IDs and so deletes it; ours refuses (a deliberate
    difference)."""
    if args[0] != "delete-layer" or args[1] in FIXED:
        return False
    listed = {kind: json.loads(go(kind, "-j").out) or [] for kind in sorted(LISTINGS)}
    layer = [
        x["id"]
        for x in listed["layers"]
        if args[1] in (x.get("names") or []) or (args[1] and x["id"].startswith(args[1]))
    ]
    if len(layer) != 1:
        return False
    users = {x.get("parent") for x in listed["layers"]}
    users |= {x.get("layer") for x in listed["images"] + listed["containers"]}
    return layer[0] in users


def run_sequence(tmp: Path, seed: int, count: int) -> tuple[list[str], list[str]]:
    """Run ``count`` commands from ``seed`` on both sides. Returns the differences, and each
    command run with Go's exit status and stderr."""
    rng = random.Random(seed)
    files = {}
    for name, data in (("small", b"data one"), ("empty", b""), ("other", b"\x00\x01" * 300)):
        files[name] = tmp / name
        files[name].write_bytes(data)
    sides = []
    for label, argv in (("ours", OURS), ("go", GO)):
        (tmp / label).mkdir()
        sides.append(Side(argv, tmp / label, "vfs"))
    ours, go = sides
    diffs: list[str] = []
    log: list[str] = []
    try:
        for n in range(count):
            args = _command(rng, files)
            if _go_deletes_in_use_layer(go, args):
                continue
            o, g = ours(*args), go(*args)
            o = Result(o.code, _normalise(ours, o.out), _normalise(ours, o.err))
            g = Result(g.code, _normalise(go, g.out), _normalise(go, g.err))
            if args[0] in LISTINGS:
                o, g = o._replace(out=unordered_form(o.out)), g._replace(out=unordered_form(g.out))
            log.append(f"{g.code} {args!r} {g.err.strip()!r}")
            if o != g:
                diffs.append(f"#{n} {args!r}:\n  ours {o!r}\n  go   {g!r}")
    finally:
        for side in sides:
            side("unmount", "--force", *LAYERS, *CONTAINERS)
            side("wipe")
            side("shutdown")
    return diffs, log


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_commands_match_go(tmp_path: Path, seed: int) -> None:
    diffs, log = run_sequence(tmp_path, seed, 150)
    assert not diffs, f"{len(diffs)} differences:\n" + "\n".join(diffs)
    # The sequence is not vacuous: it ran nearly every command, a good share succeeded, and
    # the failures said many different things.
    failed = [line for line in log if not line.startswith("0 ")]
    assert len(log) > 140 and 40 < len(failed) < 120
    assert len({line.rsplit("] ", 1)[1] for line in failed}) > 15
