"""Helpers the Store tests import by name: the Go CLI, skopeo's and podman's view of a store,
OCI layouts to copy images from, and what is left mounted (fixtures are in this directory's
conftest.py)."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import containers_storage as cs
import pytest

from tests.helpers import GO_CONTAINERS_STORAGE, OURS
from tests.tars import gz, hexpart, sha256

#: Debian's podman 4.3 (built against containers/storage 1.43).
PODMAN = os.environ.get("PODMAN", "/usr/bin/podman")

#: A store's (graph root, run root).
Roots = tuple[Path, Path]


def go_argv(roots: Roots, driver: str, *args: str | os.PathLike[str]) -> list[str]:
    """The command line of Debian's Go containers-storage running ``args`` on the store."""
    return _store_argv((GO_CONTAINERS_STORAGE,), roots, driver, args)


def ours_argv(roots: Roots, driver: str, *args: str | os.PathLike[str]) -> list[str]:
    """The command line of our CLI running ``args`` on the store."""
    return _store_argv(OURS, roots, driver, args)


def _store_argv(
    cmd: Sequence[str], roots: Roots, driver: str, args: Sequence[str | os.PathLike[str]]
) -> list[str]:
    store = ["--graph", str(roots[0]), "--run", str(roots[1]), "--storage-driver", driver]
    return [*cmd, *store, *(os.fspath(a) for a in args)]


def go(
    roots: Roots,
    driver: str,
    *args: str,
    check: bool = True,
    input: bytes | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run Debian's Go containers-storage on the store."""
    cmd = go_argv(roots, driver, *args)
    p = subprocess.run(cmd, capture_output=True, input=input, check=False)
    if check and p.returncode != 0:
        raise AssertionError(f"{cmd} failed ({p.returncode}): {p.stdout!r} {p.stderr!r}")
    return p


def ours(roots: Roots, driver: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run our CLI on the store."""
    return subprocess.run(
        ours_argv(roots, driver, *args), capture_output=True, text=True, check=False
    )


def go_json(roots: Roots, driver: str, *args: str) -> Any:
    return json.loads(go(roots, driver, *args).stdout)


def run(
    cmd: Sequence[str], env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    """Run a tool; fail the test, with its output, when it fails."""
    p = subprocess.run(list(cmd), capture_output=True, env=env, check=False)
    if p.returncode != 0:
        raise AssertionError(f"{cmd} failed ({p.returncode}): {p.stdout!r} {p.stderr!r}")
    return p


def require(tool: str) -> None:
    """Skip (fail under CS_REQUIRE_ALL=1) when a Debian tool is missing."""
    if not os.access(tool, os.X_OK):
        if os.environ.get("CS_REQUIRE_ALL") == "1":
            pytest.fail(f"needs {tool}")
        pytest.skip(f"needs {tool}")


def tool_env(roots: Roots, driver: str) -> dict[str, str]:
    """The environment for skopeo and podman: a storage.conf of our own (the store's roots
    and driver) so that the host's default store is never touched."""
    conf = roots[0].parent / f"storage-{roots[0].name}.conf"
    conf.write_text(
        f'[storage]\ndriver = "{driver}"\ngraphroot = "{roots[0]}"\nrunroot = "{roots[1]}"\n'
    )
    return {**os.environ, "CONTAINERS_STORAGE_CONF": str(conf)}


def cs_ref(roots: Roots, driver: str, name: str) -> str:
    """containers/image's reference to image ``name`` in the store."""
    return f"containers-storage:[{driver}@{roots[0]}+{roots[1]}]{name}"


def podman(roots: Roots, driver: str, *args: str) -> subprocess.CompletedProcess[bytes]:
    """Run Debian's podman on the store."""
    require(PODMAN)
    cmd = [PODMAN, *podman_args(roots), f"--storage-driver={driver}", *args]
    return run(cmd, tool_env(roots, driver))


def podman_args(roots: Roots) -> list[str]:
    """podman's global options for a store: cgroupfs and file events (no systemd here), its
    tmpdir next to the store (its run root must be at most 50 characters long)."""
    tmpdir = roots[0].parent / f"podman-tmp-{roots[0].name}"
    tmpdir.mkdir(exist_ok=True)
    return [
        "--root",
        str(roots[0]),
        "--runroot",
        str(roots[1]),
        "--cgroup-manager=cgroupfs",
        "--events-backend=file",
        "--tmpdir",
        str(tmpdir),
    ]


def put_blob(layout: Path, blob: bytes) -> str:
    """Write ``blob`` into an OCI layout's ``blobs/sha256``; returns its digest."""
    digest = sha256(blob)
    (layout / "blobs" / "sha256" / hexpart(digest)).write_bytes(blob)
    return digest


def compact(obj: Any) -> bytes:
    """JSON as image configs, manifests and indexes are written: compact, keys sorted."""
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()


class StoreSet:
    """Stores of one driver under ``base``, by name; :meth:`close` shuts down every Store
    opened here, then runs Go's ``shutdown`` on every store whose graph root exists."""

    def __init__(self, base: Path, driver: str) -> None:
        self.base = base
        self.driver = driver
        self.opened: list[cs.Store] = []
        self.touched: list[Roots] = []

    def roots(self, name: str) -> Roots:
        """(graph root, run root) of the store ``name``; its directory is made."""
        r = (self.base / name / "root", self.base / name / "run")
        r[0].parent.mkdir(parents=True, exist_ok=True)
        if r not in self.touched:
            self.touched.append(r)
        return r

    def open(self, r: Roots) -> cs.Store:
        s = cs.Store(r[0], r[1], self.driver)
        self.opened.append(s)
        return s

    def close(self) -> None:
        for s in self.opened:
            with contextlib.suppress(cs.StorageError):
                s.shutdown(True)
        for r in self.touched:
            if r[0].exists():
                go(r, self.driver, "shutdown", check=False)


# -- OCI image layouts ----------------------------------------------------------------------

MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"
INDEX_TYPE = "application/vnd.oci.image.index.v1+json"
REF_NAME = "org.opencontainers.image.ref.name"

#: The image configs' ``created`` (skopeo copies it into the image record).
CREATED = "2023-01-02T00:00:00Z"


def write_policy(path: Path) -> Path:
    """Write a containers-policy.json that accepts any image (for ``skopeo --policy``)."""
    path.write_text(json.dumps({"default": [{"type": "insecureAcceptAnything"}]}))
    return path


def chain_ids(diff_ids: Sequence[str]) -> list[str]:
    """containers/image's layer IDs: the base's DiffID, then sha256(parentID + "+" + DiffID)."""
    out: list[str] = []
    for diff_id in diff_ids:
        h = hexpart(diff_id)
        out.append(h if not out else hashlib.sha256(f"{out[-1]}+{h}".encode()).hexdigest())
    return out


@dataclasses.dataclass
class Built:
    """One image in a layout: its uncompressed tars, gzip blobs, config and manifest."""

    tars: list[bytes]
    blobs: list[bytes]
    config: bytes
    manifest: bytes

    @property
    def diff_ids(self) -> list[str]:
        return [sha256(t) for t in self.tars]

    @property
    def layer_ids(self) -> list[str]:
        return chain_ids(self.diff_ids)

    @property
    def image_id(self) -> str:
        return hexpart(sha256(self.config))

    @property
    def manifest_digest(self) -> str:
        return sha256(self.manifest)


class Layout:
    """Writes OCI layout blobs, images and the index."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        (root / "oci-layout").write_bytes(compact({"imageLayoutVersion": "1.0.0"}))

    def blob(self, digest: str) -> Path:
        return self.root / "blobs" / "sha256" / hexpart(digest)

    def put(self, data: bytes) -> str:
        return put_blob(self.root, data)

    def add_image(
        self,
        tag: str,
        tars: Sequence[bytes],
        diff_ids: Sequence[str] = (),
        created: str = CREATED,
    ) -> Built:
        """Add an image (gzip layers) under ``tag``; ``diff_ids`` overrides the config's."""
        fields = {
            "created": created,
            "config": {"Env": ["PATH=/bin"], "Cmd": ["/bin/sh"]},
            "history": [{"created": CREATED, "created_by": f"layer {i}"} for i in range(len(tars))],
        }
        return self.add_configured(tag, tars, fields, diff_ids)

    def add_configured(
        self,
        tag: str,
        tars: Sequence[bytes],
        fields: dict[str, Any],
        diff_ids: Sequence[str] = (),
    ) -> Built:
        """Add an image (gzip layers) under ``tag`` whose config is ``fields`` plus amd64,
        linux and the rootfs of ``tars`` (``diff_ids`` overrides its DiffIDs)."""
        blobs = [gz(t) for t in tars]
        rootfs = {"type": "layers", "diff_ids": list(diff_ids) or [sha256(t) for t in tars]}
        config = compact({"architecture": "amd64", "os": "linux", **fields, "rootfs": rootfs})
        manifest = self.put_manifest(config, blobs)
        self.tag(tag, manifest)
        return Built(list(tars), blobs, config, manifest)

    def put_manifest(self, config: bytes, blobs: Sequence[bytes]) -> bytes:
        manifest = compact(
            {
                "schemaVersion": 2,
                "mediaType": MANIFEST_TYPE,
                "config": {
                    "mediaType": CONFIG_TYPE,
                    "digest": self.put(config),
                    "size": len(config),
                },
                "layers": [
                    {"mediaType": LAYER_TYPE, "digest": self.put(b), "size": len(b)} for b in blobs
                ],
            }
        )
        self.put(manifest)
        return manifest

    def add_index(self, tag: str, instances: Sequence[tuple[str, bytes]]) -> bytes:
        """Tag an image index of (architecture, manifest) instances."""
        index = compact(
            {
                "schemaVersion": 2,
                "mediaType": INDEX_TYPE,
                "manifests": [
                    {
                        "mediaType": MANIFEST_TYPE,
                        "digest": self.put(m),
                        "size": len(m),
                        "platform": {"architecture": arch, "os": "linux"},
                    }
                    for arch, m in instances
                ],
            }
        )
        self.put(index)
        self.tag(tag, index, INDEX_TYPE)
        return index

    def tag(self, tag: str, manifest: bytes, media_type: str = MANIFEST_TYPE) -> None:
        path = self.root / "index.json"
        index: dict[str, Any] = {"schemaVersion": 2}
        if path.exists():
            index = json.loads(path.read_bytes())
        entries = [
            m for m in index.get("manifests", []) if m.get("annotations", {}).get(REF_NAME) != tag
        ]
        entries.append(
            {
                "mediaType": media_type,
                "digest": sha256(manifest),
                "size": len(manifest),
                "annotations": {REF_NAME: tag},
            }
        )
        index["manifests"] = entries
        path.write_bytes(compact(index))


def mounted_under(path: Path) -> list[str]:
    """Mount points at or below ``path`` (from /proc/self/mountinfo)."""
    prefix = os.fspath(path)
    out = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point == prefix or point.startswith(prefix + "/"):
            out.append(point)
    return out


def assert_nothing_mounted_under(path: Path) -> None:
    """Fail when anything is mounted at or below ``path``, after detaching it all."""
    left = mounted_under(path)
    for point in sorted(left, reverse=True):
        subprocess.run(["umount", "-l", point], check=False)
    assert not left, f"left mounted: {left}"


def release_mounts(under: Path) -> list[str]:
    """Detach whatever is still mounted under ``under`` (a Go CLI run leaves the overlay
    home bind-mounted, as Go does); returns what was found, deepest first."""
    from containers_storage import _native
    from containers_storage.drivers.overlay import mountpoints

    prefix = str(under).rstrip("/") + "/"
    found = sorted((p for p in mountpoints() if p.startswith(prefix)), reverse=True)
    for path in found:
        _native.unmount(path)
    return found
