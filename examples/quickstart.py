"""A store in a temporary directory: a layer from a tarball built here, an image and a
container on it, the container's root file system mounted and read, then everything
removed again.

    python3 examples/quickstart.py [vfs|overlay]
"""

from __future__ import annotations

import io
import sys
import tarfile
import tempfile
from pathlib import Path

import containers_storage as cs


def layer_tar() -> bytes:
    """A one-file layer: /etc/motd."""
    data = b"hello from a layer\n"
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        etc = tarfile.TarInfo("etc")
        etc.type, etc.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(etc)
        motd = tarfile.TarInfo("etc/motd")
        motd.size, motd.mode = len(data), 0o644
        tar.addfile(motd, io.BytesIO(data))
    return out.getvalue()


def main(driver: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        graph, run = Path(tmp, "graph"), Path(tmp, "run")
        with cs.Store(graph, run, driver) as store:
            layer, _size = store.put_layer(None, io.BytesIO(layer_tar()), names=["base"])
            print(f"layer {layer.id[:12]}: {layer.diff_size} bytes, {layer.diff_digest}")
            image = store.create_image(layer.id, names=["localhost/demo:latest"])
            container = store.create_container(image.id, names=["demo"])
            rootfs = Path(store.mount("demo"))
            print("motd:", (rootfs / "etc" / "motd").read_text().strip())
            store.unmount("demo")
            store.delete_container(container.id)
            store.delete_image(image.id)  # and its top layer, no longer used
            print("left:", len(store.layers()), "layers", len(store.images()), "images")
            store.shutdown(True)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "vfs")
