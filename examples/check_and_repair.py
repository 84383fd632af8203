"""Damage found and mended: a store in a temporary directory, an image on one layer, a file
of the layer deleted behind the store's back, then ``Store.check`` and ``Store.repair``.

    python3 examples/check_and_repair.py
"""

from __future__ import annotations

import io
import tarfile
import tempfile
from pathlib import Path

import containers_storage as cs


def layer_tar() -> bytes:
    """A two-file layer: /a.txt and /b.txt."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in ("a.txt", "b.txt"):
            data = f"{name}\n".encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        graph, run = Path(tmp, "graph"), Path(tmp, "run")
        with cs.Store(graph, run, "vfs") as store:
            layer, _size = store.put_layer(None, io.BytesIO(layer_tar()))
            store.create_image(layer.id, names=["localhost/demo:latest"])
            print("sound:", not store.check())
            (graph / "vfs" / "dir" / layer.id / "b.txt").unlink()  # the damage
            report = store.check()
            for section, problems in report.sections():
                for key, found in problems.items():
                    print(f"{section} {key[:12]}: {'; '.join(str(p) for p in found)}")
            print("found:", report.summary())
            print("not repaired:", store.repair(report))
            print("left:", len(store.layers()), "layers", len(store.images()), "images")
            print("sound:", not store.check())
            store.shutdown(True)


if __name__ == "__main__":
    main()
