"""Fault injection: each fault damages a populated store (see :mod:`tests.check.layout`) one
way and returns exactly what ``check`` must report for it."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from containers_storage import check as chk
from containers_storage._recordstore import big_data_file_name

from tests.check.layout import Populated
from tests.store.helpers import Roots

#: (section, ID, problem class): ``section`` is a CheckReport field name.
Finding = tuple[str, str, type[chk.CheckProblem]]

FIRST = "localhost/first:1"
SECOND = "localhost/second:1"
ORPHAN = "f" * 64


@dataclass
class Ctx:
    roots: Roots
    driver: str
    ids: Populated

    @property
    def a(self) -> str:
        return self.ids.images[FIRST]

    @property
    def b(self) -> str:
        return self.ids.images[SECOND]

    def layer(self, name: str, n: int) -> str:
        return self.ids.layers[name][n]

    @property
    def l1(self) -> str:
        return self.layer(FIRST, 0)

    @property
    def l2(self) -> str:
        return self.layer(FIRST, 1)

    @property
    def l3(self) -> str:
        return self.layer(FIRST, 2)

    @property
    def l4(self) -> str:
        return self.layer(SECOND, 1)

    @property
    def c(self) -> str:
        return self.ids.container

    @property
    def graph(self) -> Path:
        return self.roots[0]

    def home(self) -> Path:
        return self.graph / self.driver

    def layer_dir(self, layer_id: str) -> Path:
        """The layer's driver directory."""
        if self.driver == "vfs":
            return self.home() / "dir" / layer_id
        return self.home() / layer_id

    def content(self, layer_id: str) -> Path:
        """Where the layer's files are."""
        d = self.layer_dir(layer_id)
        return d if self.driver == "vfs" else d / "diff"

    def json_file(self, kind: str) -> Path:
        return self.graph / f"{self.driver}-{kind}" / f"{kind}.json"

    def edit(self, kind: str, fn: Callable[[list[dict[str, Any]]], list[dict[str, Any]]]) -> None:
        path = self.json_file(kind)
        path.write_text(json.dumps(fn(json.loads(path.read_text()))))

    def drop(self, kind: str, item_id: str) -> None:
        self.edit(kind, lambda recs: [r for r in recs if r["id"] != item_id])

    def image_data(self, image_id: str, key: str) -> Path:
        return self.graph / f"{self.driver}-images" / image_id / big_data_file_name(key)

    def link_of(self, layer_id: str) -> str:
        return (self.layer_dir(layer_id) / "link").read_text().strip()

    def damage_images(self, layer_ids: list[str]) -> set[str]:
        """The images made with any of ``layer_ids``."""
        out = set()
        for name, chain in self.ids.layers.items():
            if any(i in chain for i in layer_ids):
                out.add(self.ids.images[name])
        return out


def _layer_damage(ctx: Ctx, layer_id: str, cls: type[chk.CheckProblem]) -> set[Finding]:
    """A damaged layer: reported with the images made with it and their container."""
    found: set[Finding] = {("layers", layer_id, cls)}
    for image in ctx.damage_images([layer_id]):
        found.add(("images", image, cls))
        if image == ctx.b:
            found.add(("containers", ctx.c, cls))
    return found


def modify(ctx: Ctx) -> set[Finding]:
    """Same size, other content: only the CRC-64 sees it."""
    (ctx.content(ctx.l3) / "srv/top.txt").write_bytes(b"TOP LAYER\n")
    return _layer_damage(ctx, ctx.l3, chk.LayerContentModifiedError)


def resize(ctx: Ctx) -> set[Finding]:
    with open(ctx.content(ctx.l2) / "etc/hostname", "ab") as f:
        f.write(b"more\n")
    return _layer_damage(ctx, ctx.l2, chk.LayerContentModifiedError)


def remove_file(ctx: Ctx) -> set[Finding]:
    (ctx.content(ctx.l1) / "usr/share/big.bin").unlink()
    return _layer_damage(ctx, ctx.l1, chk.LayerContentModifiedError)


def extra_file(ctx: Ctx) -> set[Finding]:
    (ctx.content(ctx.l4) / "home/intruder").write_bytes(b"x")
    return _layer_damage(ctx, ctx.l4, chk.LayerContentModifiedError)


def no_directory(ctx: Ctx) -> set[Finding]:
    shutil.rmtree(ctx.layer_dir(ctx.l3))
    found = _layer_damage(ctx, ctx.l3, chk.LayerDirectoryMissingError)
    if ctx.driver == "overlay":  # its l/ link now dangles
        found.add(("layers", ctx.l3, chk.LayerLinkError))
    return found


def incomplete(ctx: Ctx) -> set[Finding]:
    def flag(recs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for r in recs:
            if r["id"] == ctx.l3:
                r.setdefault("flags", {})["incomplete"] = True
        return recs

    ctx.edit("layers", flag)
    return _layer_damage(ctx, ctx.l3, chk.LayerIncompleteError)


def tar_split_damaged(ctx: Ctx) -> set[Finding]:
    path = ctx.graph / f"{ctx.driver}-layers" / f"{ctx.l3}.tar-split.gz"
    path.write_bytes(path.read_bytes()[:40])
    return _layer_damage(ctx, ctx.l3, chk.LayerTarSplitError)


def tar_split_missing(ctx: Ctx) -> set[Finding]:
    (ctx.graph / f"{ctx.driver}-layers" / f"{ctx.l4}.tar-split.gz").unlink()
    return _layer_damage(ctx, ctx.l4, chk.LayerTarSplitError)


def parent_missing(ctx: Ctx) -> set[Finding]:
    ctx.drop("layers", ctx.l2)
    return {
        ("layers", ctx.l3, chk.LayerMissingError),
        ("images", ctx.a, chk.LayerMissingError),
        ("images", ctx.a, chk.ImageLayerMissingError),
        ("layers", ctx.l2, chk.LayerUnaccountedError),
        ("layers", ctx.l2, chk.TarSplitUnaccountedError),
    }


def top_missing(ctx: Ctx) -> set[Finding]:
    ctx.drop("layers", ctx.l3)
    return {
        ("images", ctx.a, chk.ImageLayerMissingError),
        ("layers", ctx.l3, chk.LayerUnaccountedError),
        ("layers", ctx.l3, chk.TarSplitUnaccountedError),
    }


def data_missing(ctx: Ctx) -> set[Finding]:
    ctx.image_data(ctx.a, "manifest").unlink()
    return {("images", ctx.a, chk.ImageDataMissingError)}


def data_digest(ctx: Ctx) -> set[Finding]:
    path = ctx.image_data(ctx.a, "manifest")
    data = path.read_bytes()
    path.write_bytes(data.replace(b"schemaVersion", b"schemaVERSION"))
    return {("images", ctx.a, chk.ImageDataIncorrectDigestError)}


def data_size(ctx: Ctx) -> set[Finding]:
    with open(ctx.image_data(ctx.b, "manifest"), "ab") as f:
        f.write(b"\n")
    return {
        ("images", ctx.b, chk.ImageDataIncorrectSizeError),
        ("containers", ctx.c, chk.ImageDataIncorrectSizeError),
    }


def container_image_missing(ctx: Ctx) -> set[Finding]:
    ctx.drop("images", ctx.b)
    return {("containers", ctx.c, chk.ContainerImageMissingError)}


def container_layer_missing(ctx: Ctx) -> set[Finding]:
    ctx.drop("layers", ctx.ids.container_layer)
    return {
        ("containers", ctx.c, chk.ContainerLayerMissingError),
        ("layers", ctx.ids.container_layer, chk.LayerUnaccountedError),
    }


def orphan_directory(ctx: Ctx) -> set[Finding]:
    content = ctx.content(ORPHAN)
    content.mkdir(parents=True)
    (content / "file").write_bytes(b"left behind")
    return {("layers", ORPHAN, chk.LayerUnaccountedError)}


def orphan_tar_split(ctx: Ctx) -> set[Finding]:
    path = ctx.graph / f"{ctx.driver}-layers" / f"{ORPHAN}.tar-split.gz"
    path.write_bytes(b"\x1f\x8b")
    return {("layers", ORPHAN, chk.TarSplitUnaccountedError)}


def link_dangling(ctx: Ctx) -> set[Finding]:
    os.symlink(f"../{ORPHAN}/diff", ctx.home() / "l" / "DANGLINGLINKDANGLINGLINK12")
    return {("layers", ORPHAN, chk.LayerLinkError)}


def link_missing(ctx: Ctx) -> set[Finding]:
    (ctx.home() / "l" / ctx.link_of(ctx.l2)).unlink()
    return {("layers", ctx.l2, chk.LayerLinkError), ("layers", ctx.l3, chk.LayerLowerError)}


def link_file_missing(ctx: Ctx) -> set[Finding]:
    (ctx.layer_dir(ctx.l1) / "link").unlink()
    return {("layers", ctx.l1, chk.LayerLinkError)}


def lower_bad(ctx: Ctx) -> set[Finding]:
    lower = ctx.layer_dir(ctx.l3) / "lower"
    lower.write_text("l/NOSUCHLINKNOSUCHLINK1234:" + lower.read_text())
    return {("layers", ctx.l3, chk.LayerLowerError)}


def stale_mount(ctx: Ctx) -> set[Finding]:
    path = ctx.roots[1] / f"{ctx.driver}-layers" / "mountpoints.json"
    merged = ctx.layer_dir(ctx.l3) / "merged"
    path.write_text(json.dumps([{"id": ctx.l3, "path": str(merged), "count": 2}]))
    return {("layers", ctx.l3, chk.LayerMountStaleError)}


#: Faults for both drivers.
COMMON = [
    modify,
    resize,
    remove_file,
    extra_file,
    no_directory,
    incomplete,
    tar_split_damaged,
    tar_split_missing,
    parent_missing,
    top_missing,
    data_missing,
    data_digest,
    data_size,
    container_image_missing,
    container_layer_missing,
    orphan_directory,
    orphan_tar_split,
]
#: Faults of the overlay driver's own files.
OVERLAY = [link_dangling, link_missing, link_file_missing, lower_bad, stale_mount]


def findings(report: chk.CheckReport) -> set[Finding]:
    """A report as a set of findings (section by CheckReport field name)."""
    fields = {
        "layers": report.layers,
        "ro_layers": report.ro_layers,
        "images": report.images,
        "ro_images": report.ro_images,
        "containers": report.containers,
    }
    return {
        (name, key, type(p))
        for name, section in fields.items()
        for key, ps in section.items()
        for p in ps
    }
