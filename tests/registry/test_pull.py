"""Issue 15, pull: what skopeo pushed to the real registry (each of its four forms), pulled
into our store, is what ``skopeo copy docker://... containers-storage:...`` writes into a twin
store (layer and image records, big data, digests, names), on both drivers; podman pulling
after us downloads no layer, nor we after podman; podman runs what we pulled; bad blobs,
configs and layers are refused and leave the store as it was."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import containers_storage as cs
import pytest
from containers_storage import errors
from containers_storage.archive import Limits
from containers_storage.registry import errors as rerrors

from tests.helpers import SKOPEO
from tests.registry.helpers import PASSWORD, USER, Registry
from tests.store.helpers import (
    INDEX_TYPE,
    LAYER_TYPE,
    MANIFEST_TYPE,
    PODMAN,
    Roots,
    StoreSet,
    assert_nothing_mounted_under,
    compact,
    cs_ref,
    go,
    go_json,
    podman_args,
    put_blob,
    release_mounts,
    require,
    tool_env,
)
from tests.tars import d, f, gz, make_tar, sha256

pytestmark = [pytest.mark.root, pytest.mark.gotools, pytest.mark.skopeo]

ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
PLAIN = "application/vnd.oci.image.layer.v1.tar"
FOREIGN = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
CREATED = "2024-05-06T07:08:09Z"


# -- images to push ----------------------------------------------------------------------


def zst(data: bytes) -> bytes:
    return subprocess.run(
        ["zstd", "-q", "-c", "-3"], input=data, capture_output=True, check=True
    ).stdout


def compress(tar: bytes, media_type: str) -> bytes:
    if media_type == ZSTD:
        return zst(tar)
    return tar if media_type == PLAIN else gz(tar)


def add_image(
    layout: Path,
    tars: Sequence[bytes],
    media_types: Sequence[str],
    *,
    arch: str = "amd64",
    diff_ids: Sequence[str] | None = None,
) -> bytes:
    """Blobs, config and manifest of one image in the layout; returns the manifest."""
    blobs = [compress(t, mt) for t, mt in zip(tars, media_types, strict=True)]
    config = compact(
        {
            "created": CREATED,
            "architecture": arch,
            "os": "linux",
            "config": {"Cmd": ["/bin/sh"]},
            "rootfs": {
                "type": "layers",
                "diff_ids": list(diff_ids or [sha256(t) for t in tars]),
            },
        }
    )
    return compact(
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST_TYPE,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": put_blob(layout, config),
                "size": len(config),
            },
            "layers": [
                {"mediaType": mt, "digest": put_blob(layout, b), "size": len(b)}
                for b, mt in zip(blobs, media_types, strict=True)
            ],
        }
    )


def write_layout(layout: Path, tag: str, top: bytes, media_type: str = MANIFEST_TYPE) -> str:
    """Tag ``top`` (a manifest or an index) in the layout; returns ``oci:DIR:TAG``."""
    digest = put_blob(layout, top)
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": media_type,
                "digest": digest,
                "size": len(top),
                "annotations": {"org.opencontainers.image.ref.name": tag},
            }
        ],
    }
    (layout / "index.json").write_bytes(compact(index))
    (layout / "oci-layout").write_bytes(compact({"imageLayoutVersion": "1.0.0"}))
    return f"oci:{layout}:{tag}"


def new_layout(path: Path) -> Path:
    (path / "blobs" / "sha256").mkdir(parents=True)
    return path


BASE = make_tar([d("etc"), f("etc/hello", b"hello\n"), d("home"), f("home/x", b"x" * 5000)])
UPPER = make_tar([d("etc"), f("etc/.wh.hello"), d("usr"), f("usr/greeting", b"second\n" * 99)])
THIRD = make_tar([d("opt"), f("opt/owned", b"owned\n", uid=1000, gid=1001)])


def skopeo_push(reg: Registry, src: str, repo: str, *extra: str) -> None:
    require(SKOPEO)
    env = {**os.environ, "REGISTRY_AUTH_FILE": "/nonexistent/auth.json"}
    cmd = [SKOPEO, "--insecure-policy", "copy", "--quiet", *extra, *reg.skopeo_args("dest")]
    p = subprocess.run([*cmd, src, reg.ref(repo)], capture_output=True, env=env, check=False)
    assert p.returncode == 0, p.stderr


def push_image(
    reg: Registry,
    tmp: Path,
    repo: str,
    tars: Sequence[bytes] = (BASE, UPPER, THIRD),
    media_types: Sequence[str] = (LAYER_TYPE, LAYER_TYPE, LAYER_TYPE),
    **kw: Any,
) -> bytes:
    """Push one image (gzip layers unless said) as ``repo`` (with its tag); its manifest."""
    layout = new_layout(tmp / f"layout-{repo.replace('/', '-').replace(':', '-')}")
    manifest = add_image(layout, tars, media_types, **kw)
    skopeo_push(reg, write_layout(layout, "t", manifest), repo)
    return manifest


# -- stores ------------------------------------------------------------------------------


class Twins(StoreSet):
    """Our store and skopeo's and podman's, under one directory, all shut down at the end."""

    def __init__(self, base: Path, driver: str, reg: Registry) -> None:
        super().__init__(base, driver)
        self.reg = reg
        self.home = base / "home"
        (self.home / ".config").mkdir(parents=True)
        if reg.certs_d is not None:
            shutil.copytree(reg.certs_d, self.home / ".config/containers/certs.d")

    def pull_kw(self) -> dict[str, Any]:
        """How to reach the registry: plain HTTP needs --tls-verify=false; the TLS form's CA
        is in $HOME's certs.d; the basic form gets --creds, the token form an auth file."""
        kw: dict[str, Any] = {}
        if self.reg.form != "tls":
            kw["tls_verify"] = False
        if self.reg.form == "basic":
            kw["creds"] = f"{USER}:{PASSWORD}"
        elif self.reg.form == "token":
            authfile = self.base / "auth.json"
            token = __import__("base64").b64encode(f"{USER}:{PASSWORD}".encode()).decode()
            authfile.write_text(json.dumps({"auths": {self.reg.host: {"auth": token}}}))
            kw["authfile"] = str(authfile)
        return kw

    def skopeo_pull(self, r: Roots, repo: str, name: str) -> None:
        env = {**tool_env(r, self.driver), "REGISTRY_AUTH_FILE": "/nonexistent/auth.json"}
        cmd = [SKOPEO, "--insecure-policy", "copy", "--quiet", *self.reg.skopeo_args("src")]
        p = subprocess.run(
            [*cmd, self.reg.ref(repo), cs_ref(r, self.driver, name)],
            capture_output=True,
            env=env,
            check=False,
        )
        assert p.returncode == 0, p.stderr

    def podman(self, r: Roots, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        require(PODMAN)
        env = {**tool_env(r, self.driver), "HOME": str(self.home)}
        cmd = [PODMAN, *podman_args(r), f"--storage-driver={self.driver}", *args]
        p = subprocess.run(cmd, capture_output=True, env=env, text=True, check=False)
        assert not check or p.returncode == 0, p.stderr
        return p

    def podman_reg_args(self) -> list[str]:
        args = [] if self.reg.form == "tls" else ["--tls-verify=false"]
        if self.reg.creds:
            args += ["--creds", ":".join(self.reg.creds)]
        return args

    def close(self) -> None:
        super().close()
        release_mounts(self.base)


@pytest.fixture
def twins(
    short_dir: Path, driver: str, registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Twins]:
    t = Twins(short_dir, driver, registry)
    monkeypatch.setenv("HOME", str(t.home))
    # An empty auth file of its own (podman insists that it exists).
    (short_dir / "auth-none.json").write_text('{"auths":{}}')
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(short_dir / "auth-none.json"))
    yield t
    t.close()
    assert_nothing_mounted_under(short_dir)


def without_created(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k != "created"} for r in records]


def assert_same_as_skopeo(t: Twins, ours: Roots, sk: Roots, image: cs.Image) -> None:
    """Layer records but their times, the image record, every big data item."""
    want_layers = go_json(sk, t.driver, "layers", "-j")
    assert without_created(go_json(ours, t.driver, "layers", "-j")) == without_created(want_layers)
    (want,) = go_json(sk, t.driver, "images", "-j")
    assert go_json(ours, t.driver, "images", "-j") == [want]
    assert image.id == want["id"]
    for key in want["big-data-names"]:
        a = go(ours, t.driver, "get-image-data", image.id, key).stdout
        assert a == go(sk, t.driver, "get-image-data", image.id, key).stdout, key


def blob_gets(reg: Registry, digests: Sequence[str]) -> int:
    """How many blob GETs for ``digests`` the registry's access log shows."""
    return sum(
        1
        for line in reg.log().splitlines()
        if '"GET /v2/' in line and any(f"/blobs/{dg} " in line for dg in digests)
    )


# -- 1. the same records as skopeo -------------------------------------------------------


def test_pull_matches_skopeo(twins: Twins, tmp_path: Path) -> None:
    reg = twins.reg
    manifest = push_image(reg, tmp_path, "ns/app:t")
    name = f"{reg.host}/ns/app:t"
    sk = twins.roots("skopeo")
    twins.skopeo_pull(sk, "ns/app:t", name)
    ours = twins.roots("ours")
    s = twins.open(ours)
    image = s.pull_image(f"docker://{name}", **twins.pull_kw())
    assert image.names == (name,)
    assert image.digest == sha256(manifest)
    assert image.created == CREATED
    s.shutdown(True)
    assert_same_as_skopeo(twins, ours, sk, image)
    # Go reproduces the layers' tars from what we stored.
    top = go_json(ours, twins.driver, "layers", "-j")
    for layer, tar in zip(top, (BASE, UPPER, THIRD), strict=True):
        assert go(ours, twins.driver, "diff", "-u", layer["id"]).stdout == tar


@pytest.mark.parametrize("registry", ["http"], indirect=True)
@pytest.mark.parametrize(
    "media_types",
    [(ZSTD, PLAIN, LAYER_TYPE), (PLAIN, ZSTD, FOREIGN)],
    ids=["zstd-plain", "foreign"],
)
def test_compressions_match_skopeo(
    twins: Twins, tmp_path: Path, media_types: tuple[str, ...]
) -> None:
    reg = twins.reg
    push_image(reg, tmp_path, "ns/c:t", media_types=media_types)
    name = f"{reg.host}/ns/c:t"
    sk = twins.roots("skopeo")
    twins.skopeo_pull(sk, "ns/c:t", name)
    ours = twins.roots("ours")
    image = twins.open(ours).pull_image(name, tls_verify=False)
    assert_same_as_skopeo(twins, ours, sk, image)


@pytest.mark.parametrize("registry", ["http"], indirect=True)
@pytest.mark.parametrize("platform", [None, "linux/arm64"])
def test_index_platform_matches_skopeo(twins: Twins, tmp_path: Path, platform: str | None) -> None:
    reg = twins.reg
    layout = new_layout(tmp_path / "multi")
    amd = add_image(layout, (BASE, UPPER), (LAYER_TYPE, LAYER_TYPE), arch="amd64")
    arm = add_image(layout, (THIRD,), (LAYER_TYPE,), arch="arm64")
    index = compact(
        {
            "schemaVersion": 2,
            "mediaType": INDEX_TYPE,
            "manifests": [
                {
                    "mediaType": MANIFEST_TYPE,
                    "digest": sha256(m),
                    "size": len(m),
                    "platform": {"architecture": a, "os": "linux"},
                }
                for m, a in ((amd, "amd64"), (arm, "arm64"))
            ],
        }
    )
    for m in (amd, arm):
        put_blob(layout, m)
    skopeo_push(reg, write_layout(layout, "t", index, INDEX_TYPE), "ns/multi:t", "--all")
    name = f"{reg.host}/ns/multi:t"
    sk = twins.roots("skopeo")
    extra = [] if platform is None else ["--override-arch", "arm64"]
    env = {**tool_env(sk, twins.driver), "REGISTRY_AUTH_FILE": "/nonexistent/auth.json"}
    p = subprocess.run(
        [SKOPEO, "--insecure-policy", *extra, "copy", "--quiet", "--src-tls-verify=false",
         reg.ref("ns/multi:t"), cs_ref(sk, twins.driver, name)],
        capture_output=True, env=env, check=False,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    ours = twins.roots("ours")
    image = twins.open(ours).pull_image(name, tls_verify=False, platform=platform)
    assert image.digest == sha256(index)
    chosen = arm if platform else amd
    assert f"manifest-{sha256(chosen)}" in image.big_data_names
    assert f"manifest-{sha256(index)}" in image.big_data_names
    assert_same_as_skopeo(twins, ours, sk, image)


@pytest.mark.parametrize("registry", ["http"], indirect=True)
def test_pull_by_digest_and_names(twins: Twins, tmp_path: Path) -> None:
    reg = twins.reg
    manifest = push_image(reg, tmp_path, "ns/app:t")
    by_digest = f"{reg.host}/ns/app@{sha256(manifest)}"
    sk = twins.roots("skopeo")
    twins.skopeo_pull(sk, f"ns/app@{sha256(manifest)}", by_digest)
    ours = twins.roots("ours")
    s = twins.open(ours)
    image = s.pull_image(by_digest, tls_verify=False)
    assert image.names == (by_digest,)
    assert_same_as_skopeo(twins, ours, sk, image)
    again = s.pull_image(f"{reg.host}/ns/app:t", tls_verify=False, names=["mine"])
    assert again.id == image.id
    assert again.names == ("docker.io/library/mine:latest", by_digest)


# -- 2. no layer transferred twice ---------------------------------------------------------


def test_podman_after_us_and_us_after_podman_download_no_layer(
    twins: Twins, tmp_path: Path
) -> None:
    reg = twins.reg
    manifest = push_image(reg, tmp_path, "ns/app:t")
    layers = [x["digest"] for x in json.loads(manifest)["layers"]]
    name = f"{reg.host}/ns/app:t"
    r = twins.roots("shared")
    s = twins.open(r)
    image = s.pull_image(name, **twins.pull_kw())
    assert blob_gets(reg, layers) == len(layers)
    s.shutdown(True)
    out = twins.podman(r, "pull", "-q", *twins.podman_reg_args(), name).stdout
    assert out.strip() == image.id
    assert blob_gets(reg, layers) == len(layers)

    # The other way: podman first, then us.
    r2 = twins.roots("podman-first")
    push_image(
        reg, tmp_path, "ns/other:t", tars=(BASE, THIRD), media_types=(LAYER_TYPE, LAYER_TYPE)
    )
    other = json.loads(
        subprocess.run(
            [SKOPEO, "inspect", "--raw", *reg.skopeo_args(""), reg.ref("ns/other:t")],
            capture_output=True, check=True, env={**os.environ, "HOME": str(twins.home)},
        ).stdout
    )  # fmt: skip
    other_layers = [x["digest"] for x in other["layers"]]
    twins.podman(r2, "pull", "-q", *twins.podman_reg_args(), f"{reg.host}/ns/other:t")
    before = blob_gets(reg, other_layers)
    s2 = twins.open(r2)
    pulled = s2.pull_image(f"{reg.host}/ns/other:t", **twins.pull_kw())
    assert blob_gets(reg, other_layers) == before
    assert pulled.names == (f"{reg.host}/ns/other:t",)


def dash_layer() -> bytes:
    """/bin/sh (the host's dash) with the libraries it needs: an image podman can run."""
    entries = [d("bin"), d("lib"), d("lib64"), d("lib/x86_64-linux-gnu"), d("tmp", mode=0o1777)]
    for path in ("/lib/x86_64-linux-gnu/libc.so.6", "/lib64/ld-linux-x86-64.so.2"):
        entries.append(f(path.lstrip("/"), Path(path).read_bytes(), mode=0o755))
    entries.append(f("bin/sh", Path("/usr/bin/dash").read_bytes(), mode=0o755))
    return make_tar(entries)


@pytest.mark.parametrize("registry", ["http"], indirect=True)
def test_podman_runs_what_we_pulled(twins: Twins, tmp_path: Path) -> None:
    if not Path("/lib64/ld-linux-x86-64.so.2").exists():
        pytest.skip("needs an x86-64 host")
    reg = twins.reg
    push_image(
        reg, tmp_path, "ns/run:t", tars=(dash_layer(), UPPER), media_types=(LAYER_TYPE, ZSTD)
    )
    name = f"{reg.host}/ns/run:t"
    r = twins.roots("run")
    s = twins.open(r)
    s.pull_image(name, tls_verify=False)
    s.shutdown(True)
    p = twins.podman(
        r, "--runtime", "runc", "run", "--rm", "--net=none",
        # This machine refuses podman's raised default limits.
        "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024", name,
        "/bin/sh", "-c", "read -r l < /usr/greeting; echo $l; test ! -e /etc/hello && echo gone",
    )  # fmt: skip
    assert p.stdout.splitlines() == ["second", "gone"]


# -- 3. the CLI ----------------------------------------------------------------------------


@pytest.mark.parametrize("registry", ["basic"], indirect=True)
def test_cli_pull_prints_the_image_id(twins: Twins, tmp_path: Path) -> None:
    reg = twins.reg
    manifest = push_image(reg, tmp_path, "ns/app:t")
    r = twins.roots("cli")
    cmd = [
        sys.executable, "-m", "containers_storage", "--graph", str(r[0]), "--run", str(r[1]),
        "--storage-driver", twins.driver, "pull", "--tls-verify=false",
    ]  # fmt: skip
    p = subprocess.run([*cmd, f"docker://{reg.host}/ns/app:t"], capture_output=True, text=True)
    assert p.returncode == 1
    assert "unauthorized" in p.stderr
    p = subprocess.run(
        [*cmd, "--creds", f"{USER}:{PASSWORD}", "--name", "a", "--name", "b:2",
         f"{reg.host}/ns/app:t"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    config_digest = json.loads(manifest)["config"]["digest"]
    assert p.stdout == config_digest.removeprefix("sha256:") + "\n"
    assert p.stderr == ""  # no bars when not on a terminal
    (img,) = go_json(r, twins.driver, "images", "-j")
    assert img["names"] == ["docker.io/library/a:latest", "docker.io/library/b:2"]


# -- 4. refused: a clear error, the store unchanged -----------------------------------------


def store_state(r: Roots, driver: str) -> dict[str, Any]:
    """Records and every file but the lock files (what a failed pull must not change)."""
    files = sorted(
        str(p.relative_to(r[0]))
        for p in r[0].rglob("*")
        if not p.name.endswith(".lock") and "tempdirs" not in p.parts
    )
    return {
        "layers": go_json(r, driver, "layers", "-j"),
        "images": go_json(r, driver, "images", "-j"),
        "files": files,
    }


def corrupt_blob(reg: Registry, digest: str, replacement: bytes | None = None) -> None:
    """Edit a blob's bytes in the registry's storage: flip a byte in the middle, or
    replace them all."""
    path = reg.storage / "docker/registry/v2/blobs/sha256" / digest[7:9] / digest[7:] / "data"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data) if replacement is None else replacement)


@pytest.mark.parametrize("registry", ["http"], indirect=True)
@pytest.mark.parametrize(
    "case", ["blob-flipped", "blob-replaced", "diff_ids", "escape", "not-tar", "bomb", "404"]
)
def test_refused_leaves_the_store_unchanged(twins: Twins, tmp_path: Path, case: str) -> None:
    reg = twins.reg
    r = twins.roots("ours")
    s = twins.open(r)
    # A first image in the store, which must survive untouched.
    push_image(reg, tmp_path, "ns/ok:t", tars=(BASE,), media_types=(LAYER_TYPE,))
    s.pull_image(f"{reg.host}/ns/ok:t", tls_verify=False)
    s.shutdown(True)
    before = store_state(r, twins.driver)
    tars = (BASE, UPPER, THIRD)
    kw: dict[str, Any] = {}
    if case == "diff_ids":
        kw["diff_ids"] = [sha256(BASE), sha256(THIRD), sha256(UPPER)]
    if case == "escape":
        tars = (BASE, make_tar([f("../../escaped", b"out\n")]), THIRD)
    if case == "not-tar":
        tars = (BASE, b"this is not a tar archive" * 100, THIRD)
    pull_kw: dict[str, Any] = {}
    if case == "bomb":
        # 64 MiB of zeros in 65 KB of gzip, against a limit of 8 MiB.
        tars = (BASE, make_tar([f("zeros", bytes(64 << 20))]), THIRD)
        pull_kw["limits"] = Limits(max_uncompressed_bytes=8 << 20)
    expected: dict[str, tuple[type[BaseException], ...]] = {
        # Where the flipped byte breaks the gzip stream, that is what is reported first.
        "blob-flipped": (errors.DigestMismatchError, errors.ArchiveError),
        "blob-replaced": (errors.DigestMismatchError,),
        "diff_ids": (errors.DigestMismatchError,),
        "escape": (errors.UnsafePathError,),
        "not-tar": (errors.ArchiveError,),
        "bomb": (errors.ArchiveError,),
        "404": (rerrors.HTTPStatusError,),
    }
    manifest = push_image(reg, tmp_path, "ns/bad:t", tars=tars, **kw)
    if case.startswith("blob"):
        # A valid gzip tar of other bytes, or the same bytes with one flipped.
        other = gz(make_tar([d("etc"), f("etc/other", b"not what the manifest says\n")]))
        replacement = other if case == "blob-replaced" else None
        corrupt_blob(reg, json.loads(manifest)["layers"][1]["digest"], replacement)
    ref = f"{reg.host}/ns/bad:t"
    if case == "404":
        ref = f"{reg.host}/ns/missing:t"
    s = twins.open(r)
    with pytest.raises(expected[case]) as info:
        s.pull_image(ref, tls_verify=False, **pull_kw)
    if case == "escape":
        assert "escapes the layer directory" in str(info.value)
    if case == "bomb":
        assert "exceeds the limit of 8388608 bytes" in str(info.value)
    if case == "blob-replaced":
        assert "Digest did not match" in str(info.value)
    if case == "404":
        # podman says the same (after its "Error: " and its retries' log lines).
        p = twins.podman(twins.roots("podman"), "pull", "--tls-verify=false", ref, check=False)
        assert p.returncode != 0
        assert f"Error: {info.value}\n" in p.stderr, (str(info.value), p.stderr)
    s.shutdown(True)
    # Another open of the store cleans nothing up: nothing was left.
    cs.Store(r[0], r[1], twins.driver).shutdown(True)
    assert store_state(r, twins.driver) == before
    assert not list((r[0] / "tmp").iterdir()) if (r[0] / "tmp").exists() else True


@pytest.mark.parametrize("registry", ["basic"], indirect=True)
def test_unauthorized_and_tls_required(twins: Twins, tmp_path: Path) -> None:
    reg = twins.reg
    push_image(reg, tmp_path, "ns/app:t")
    r = twins.roots("ours")
    s = twins.open(r)
    with pytest.raises(rerrors.AuthenticationError, match="unauthorized"):
        s.pull_image(f"{reg.host}/ns/app:t", tls_verify=False)
    with pytest.raises(rerrors.AuthenticationError):
        s.pull_image(f"{reg.host}/ns/app:t", tls_verify=False, creds=f"{USER}:wrong")
    # Plain HTTP only when TLS verification is off (as c/image).
    with pytest.raises(rerrors.RegistryError, match="pinging container registry"):
        s.pull_image(f"{reg.host}/ns/app:t", creds=f"{USER}:{PASSWORD}")
    assert s.layers() == [] and s.images() == []


@pytest.mark.parametrize("registry", ["http"], indirect=True)
def test_cli_pull_draws_bars_on_a_terminal(twins: Twins, tmp_path: Path) -> None:
    """On a terminal: one bar per layer (bytes and bytes/s) and a total; stdout still holds
    only the image ID."""
    import pty

    reg = twins.reg
    manifest = push_image(reg, tmp_path, "ns/app:t")
    r = twins.roots("tty")
    main, secondary = pty.openpty()
    try:
        p = subprocess.run(
            [sys.executable, "-m", "containers_storage", "--graph", str(r[0]), "--run", str(r[1]),
             "--storage-driver", twins.driver, "pull", "--tls-verify=false",
             f"{reg.host}/ns/app:t"],
            stdout=subprocess.PIPE, stderr=secondary, check=False,
        )  # fmt: skip
        os.close(secondary)
        secondary = -1
        drawn = b""
        with contextlib.suppress(OSError):
            while chunk := os.read(main, 65536):
                drawn += chunk
    finally:
        os.close(main)
        if secondary != -1:
            os.close(secondary)
    assert p.returncode == 0, drawn
    config_digest = json.loads(manifest)["config"]["digest"]
    assert p.stdout == (config_digest.removeprefix("sha256:") + "\n").encode()
    text = drawn.decode()
    for layer in json.loads(manifest)["layers"]:
        assert layer["digest"][:19] in text
    assert "total" in text and "/s" in text


@pytest.mark.parametrize("registry", ["http"], indirect=True)
def test_progress_callback_reaches_the_total(twins: Twins, tmp_path: Path) -> None:
    from containers_storage.oci import ImageProgress

    manifest = json.loads(push_image(twins.reg, tmp_path, "ns/app:t"))
    sizes = {x["digest"]: x["size"] for x in manifest["layers"]}
    seen: list[tuple[int, int, int]] = []

    def progress(p: ImageProgress) -> None:
        seen.append((p.done_bytes, p.total_bytes, len(p.finished)))

    s = twins.open(twins.roots("ours"))
    s.pull_image(f"{twins.reg.host}/ns/app:t", tls_verify=False, progress=progress)
    assert seen[-1] == (sum(sizes.values()), sum(sizes.values()), len(sizes))
    assert [d for d, _t, _f in seen] == sorted(d for d, _t, _f in seen)
    # Pulled again: every layer is in the store, nothing is transferred, all is done.
    seen.clear()
    s.pull_image(f"{twins.reg.host}/ns/app:t", tls_verify=False, progress=progress)
    assert seen[-1] == (sum(sizes.values()), sum(sizes.values()), len(sizes))


@pytest.mark.parametrize("registry", ["http"], indirect=True)
def test_blob_in_the_store_under_another_parent_is_not_downloaded(
    twins: Twins, tmp_path: Path
) -> None:
    """c/image's reuse by compressed digest: B's top layer is A's top layer blob on another
    parent; it is applied from the store's copy, not downloaded again."""
    reg = twins.reg
    a = json.loads(
        push_image(reg, tmp_path, "ns/a:t", tars=(BASE, UPPER), media_types=(LAYER_TYPE,) * 2)
    )
    b = json.loads(
        push_image(reg, tmp_path, "ns/b:t", tars=(THIRD, UPPER), media_types=(LAYER_TYPE,) * 2)
    )
    shared = a["layers"][1]["digest"]
    assert b["layers"][1]["digest"] == shared
    sk = twins.roots("skopeo")
    for repo in ("ns/a:t", "ns/b:t"):
        twins.skopeo_pull(sk, repo, f"{reg.host}/{repo}")
    gets = blob_gets(reg, [shared])
    ours = twins.roots("ours")
    s = twins.open(ours)
    s.pull_image(f"{reg.host}/ns/a:t", tls_verify=False)
    image = s.pull_image(f"{reg.host}/ns/b:t", tls_verify=False)
    s.shutdown(True)
    assert blob_gets(reg, [shared]) == gets + 1  # for image A only
    want = {x["id"]: x for x in go_json(sk, twins.driver, "layers", "-j")}
    got = {x["id"]: x for x in go_json(ours, twins.driver, "layers", "-j")}
    assert got.keys() == want.keys()
    top = got[image.layer]
    # What differs from c/image: the record of the copied layer names the DiffID of what
    # was applied (the uncompressed export) where c/image keeps the blob's digest; the
    # size and compression are the export's in both.
    assert top["compressed-diff-digest"] == top["diff-digest"] == sha256(UPPER)
    assert want[image.layer]["compressed-diff-digest"] == shared
    for layer_id, rec in got.items():
        keep = ("created", "compressed-diff-digest")
        assert {k: v for k, v in rec.items() if k not in keep} == {
            k: v for k, v in want[layer_id].items() if k not in keep
        }
    assert go(ours, twins.driver, "diff", "-u", image.layer).stdout == UPPER
    assert not list((ours[0] / "tmp").iterdir())
