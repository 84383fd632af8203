"""Images in and out of stores: an OCI layout written here is imported as skopeo would,
copied to a second store with a store reference
(``containers-storage:[DRIVER@GRAPHROOT+RUNROOT]NAME``, skopeo's spelling), exported from
there as an OCI layout and flattened into a directory.

    python3 examples/copy_between_stores.py
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import tempfile
from pathlib import Path

import containers_storage as cs

LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar"


def blob(layout: Path, data: bytes) -> dict[str, object]:
    """Store ``data`` in the layout; its descriptor (without media type)."""
    digest = hashlib.sha256(data).hexdigest()
    (layout / "blobs" / "sha256" / digest).write_bytes(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def write_layout(layout: Path, tag: str) -> None:
    """A one-layer image (/hello.txt) as an OCI layout, tagged ``tag``."""
    (layout / "blobs" / "sha256").mkdir(parents=True)
    text = b"hello from an OCI image\n"
    tar = io.BytesIO()
    with tarfile.open(fileobj=tar, mode="w", format=tarfile.PAX_FORMAT) as t:
        info = tarfile.TarInfo("hello.txt")
        info.size, info.mode = len(text), 0o644
        t.addfile(info, io.BytesIO(text))
    layer = tar.getvalue()
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [blob(layout, layer)["digest"]]},
        }
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json"}
            | blob(layout, config),
            "layers": [
                {"mediaType": "application/vnd.oci.image.layer.v1.tar"} | blob(layout, layer)
            ],
        }
    ).encode()
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "annotations": {"org.opencontainers.image.ref.name": tag},
            }
            | blob(layout, manifest)
        ],
    }
    (layout / "index.json").write_text(json.dumps(index))
    (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        write_layout(base / "layout", "v1")
        first = cs.Store(base / "a" / "graph", base / "a" / "run", "vfs")
        second = cs.Store(base / "b" / "graph", base / "b" / "run", "vfs")
        with first, second:
            image = first.import_image(f"oci:{base / 'layout'}:v1", names=["localhost/hello:v1"])
            print("imported", image.id[:12], image.names)
            ref = f"containers-storage:[vfs@{base / 'b' / 'graph'}+{base / 'b' / 'run'}]"
            digest = first.export_image("localhost/hello:v1", ref + "localhost/hello:copy")
            copy = second.image("localhost/hello:copy")
            print("copied", copy.id[:12], copy.names, "manifest", digest[:19])
            second.export_image("localhost/hello:copy", f"oci:{base / 'out'}:copy")
            second.unpack_image("localhost/hello:copy", base / "rootfs")
            print("hello.txt:", (base / "rootfs" / "hello.txt").read_text().strip())
            first.shutdown(True)
            second.shutdown(True)


if __name__ == "__main__":
    main()
