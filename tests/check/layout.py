"""The image set the check tests damage: an OCI layout of two images sharing a base layer,
written into a store by us (``Store.import_image``) or by skopeo, plus a container."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import containers_storage as cs

from tests.helpers import SKOPEO
from tests.store.helpers import CREATED, Layout, Roots, cs_ref, require, run, tool_env
from tests.tars import d, f, hard, make_tar, sym

BASE = make_tar(
    [
        d("bin/"),
        f("bin/tool", b"#!/bin/sh\necho tool\n", mode=0o755),
        sym("bin/sh", "tool"),
        d("etc/"),
        f("etc/hostname", b"base\n"),
        f("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n"),
        f("etc/gone.txt", b"bye\n"),
        d("opt/"),
        d("opt/app/"),
        f("opt/app/old.txt", b"old\n"),
        d("usr/"),
        d("usr/share/"),
        f("usr/share/big.bin", bytes(range(256)) * 64),
    ]
)
MIDDLE = make_tar(
    [
        d("etc/"),
        f("etc/.wh.gone.txt"),
        f("etc/hostname", b"middle\n"),
        d("opt/"),
        d("opt/app/"),
        f("opt/app/.wh..wh..opq"),
        f("opt/app/new.txt", b"new\n"),
        d("srv/"),
        f("srv/data.txt", b"shared data\n"),
        hard("srv/data-link.txt", "srv/data.txt"),
    ]
)
TOP = make_tar([d("srv/"), f("srv/top.txt", b"top layer\n"), sym("srv/abs", "/etc/hostname")])
OTHER = make_tar([d("home/"), f("home/other.txt", b"the other image\n")])

#: image name -> its layers' tars, base first.
IMAGES = {"localhost/first:1": (BASE, MIDDLE, TOP), "localhost/second:1": (BASE, OTHER)}


def build_layout(layout: Path, images: dict[str, tuple[bytes, ...]] = IMAGES) -> None:
    """An OCI layout holding ``images`` (name -> layer tars), each tagged with its
    :func:`tag`."""
    oci = Layout(layout)
    for name, tars in images.items():
        oci.add_configured(tag(name), tars, {"created": CREATED, "config": {"Cmd": ["/bin/sh"]}})


def tag(name: str) -> str:
    """The layout tag of an image name (``first``)."""
    return name.rsplit("/", 1)[1].split(":")[0]


@dataclass(frozen=True)
class Populated:
    """IDs in a populated store."""

    images: dict[str, str]  # name -> image ID
    layers: dict[str, list[str]]  # name -> layer IDs, base first
    container: str  # made from the second image
    container_layer: str


def populate(layout: Path, roots: Roots, driver: str, writer: str) -> Populated:
    """Write :data:`IMAGES` into the store at ``roots`` (``writer``: "ours" or "skopeo")
    and make a container from the second image."""
    roots[0].parent.mkdir(parents=True, exist_ok=True)
    if writer == "skopeo":
        require(SKOPEO)
        policy = layout.parent / "policy.json"
        policy.write_text(json.dumps({"default": [{"type": "insecureAcceptAnything"}]}))
        for name in IMAGES:
            run(
                [
                    SKOPEO,
                    "--policy",
                    str(policy),
                    "copy",
                    "--quiet",
                    f"oci:{layout}:{tag(name)}",
                    cs_ref(roots, driver, name),
                ],
                tool_env(roots, driver),
            )
    store = cs.Store(roots[0], roots[1], driver)
    try:
        if writer == "ours":
            for name in IMAGES:
                store.import_image(f"oci:{layout}:{tag(name)}", [name])
        images = {name: store.image(name).id for name in IMAGES}
        layers = {}
        for name, image_id in images.items():
            chain = []
            layer_id = store.image(image_id).layer
            while layer_id:
                chain.append(layer_id)
                layer_id = store.layer(layer_id).parent
            layers[name] = chain[::-1]
        ctr = store.create_container(image="localhost/second:1", names=["ctr"])
    finally:
        store.shutdown(True)
    return Populated(images, layers, ctr.id, ctr.layer)


def runnable_tar() -> bytes:
    """A layer with ``/bin/sleep`` and the libraries it loads (for ``podman run``)."""
    files = {
        "bin/sleep": "/bin/sleep",
        "lib/x86_64-linux-gnu/libc.so.6": "/lib/x86_64-linux-gnu/libc.so.6",
        "lib64/ld-linux-x86-64.so.2": "/lib64/ld-linux-x86-64.so.2",
    }
    entries = [d("bin/"), d("lib/"), d("lib/x86_64-linux-gnu/"), d("lib64/")]
    for name, host in files.items():
        entries.append(f(name, Path(host).read_bytes(), mode=0o755))
    return make_tar(entries)
