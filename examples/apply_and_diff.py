"""Layer tarballs without a store: apply two layers onto a directory (the second deletes a
file with a whiteout), list the changes between the two trees and write the difference
back out as a layer.

    python3 examples/apply_and_diff.py
"""

from __future__ import annotations

import gzip
import io
import shutil
import tarfile
import tempfile
from pathlib import Path

from containers_storage import archive


def tar_of(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        base, top = Path(tmp, "base"), Path(tmp, "top")
        lower = gzip.compress(tar_of({"a.txt": b"a\n", "b.txt": b"b\n"}))
        result = archive.apply_layer(io.BytesIO(lower), base)
        print("base layer:", result.compression, result.uncompressed_digest)
        shutil.copytree(base, top, symlinks=True)
        upper = tar_of({".wh.a.txt": b"", "c.txt": b"c\n"})
        archive.apply_layer(io.BytesIO(upper), top, whiteouts="vfs")
        print("top has:", sorted(p.name for p in top.iterdir()))
        for change in archive.changes(str(top), str(base)):
            print("change:", change.kind.name, change.path)
        archive.diff(str(top), str(Path(tmp, "diff.tar")), str(base))
        with tarfile.open(Path(tmp, "diff.tar")) as diff:
            print("diff members:", sorted(diff.getnames()))


if __name__ == "__main__":
    main()
