"""Push from the store to a real registry (Debian's docker-registry): what we push is what
skopeo pushes for the same image (config bytes, manifest layout and media types; the gzip
bytes differ by implementation), skopeo and podman pull it and podman runs it, a second push
uploads no layer, layers in another repository of the registry are mounted, and hostile
answers fail clearly."""

from __future__ import annotations

import gzip
import http.server
import json
import re
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import containers_storage as cs
import pytest
from containers_storage.cli.main import main
from containers_storage.registry.blobcache import BlobInfoCache
from containers_storage.registry.client import Client, Retry
from containers_storage.registry.errors import HTTPStatusError, RegistryError
from containers_storage.registry.push import push_image

from tests.registry.fakeserver import FakeServer, reply
from tests.registry.helpers import Registry, make_layout, skopeo
from tests.store.helpers import (
    LAYER_TYPE,
    MANIFEST_TYPE,
    PODMAN,
    Layout,
    Roots,
    cs_ref,
    podman_args,
    require,
    tool_env,
)
from tests.tars import d, f, make_tar, sha256

pytestmark = [pytest.mark.skopeo, pytest.mark.root]

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"


@pytest.fixture(autouse=True)
def blob_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test has its own blob info cache."""
    path = tmp_path / "blob-cache"
    monkeypatch.setenv("CONTAINERS_STORAGE_BLOB_INFO_CACHE_DIR", str(path))
    return path


def runnable_layout(path: Path, tag: str = "1") -> Path:
    """An OCI layout of a runnable image: /bin/echo and the libraries it needs, in two
    gzip layers; ``Cmd`` prints a greeting."""
    libs = [d("lib"), d("lib/x86_64-linux-gnu"), d("lib64")]
    libs.append(
        f(
            "lib/x86_64-linux-gnu/libc.so.6",
            Path("/lib/x86_64-linux-gnu/libc.so.6").read_bytes(),
            0o755,
        )
    )
    libs.append(
        f("lib64/ld-linux-x86-64.so.2", Path("/lib64/ld-linux-x86-64.so.2").read_bytes(), 0o755)
    )
    tars = [
        make_tar(libs),
        make_tar([d("bin"), f("bin/echo", Path("/bin/echo").read_bytes(), 0o755)]),
    ]
    fields = {
        "created": "2024-01-02T03:04:05Z",
        "config": {"Cmd": ["/bin/echo", "pushed and run"], "Env": ["PATH=/bin"]},
    }
    Layout(path).add_configured(tag, tars, fields)
    return path


def push_opts(reg: Registry) -> dict[str, Any]:
    """push_image's options for a test registry."""
    opts: dict[str, Any] = {"tls_verify": False} if reg.form != "tls" else {}
    if reg.creds is not None:
        opts["creds"] = ":".join(reg.creds)
    return opts


def tls_client(reg: Registry) -> Client:
    """A client that trusts the TLS form's CA (push_image takes one for certs.d)."""
    return Client(reg.host, cert_dir=reg.cert_dir)


def raw_manifest(reg: Registry, ref: str) -> bytes:
    return skopeo("inspect", "--raw", *reg.skopeo_args(""), ref).stdout


def requests_in_log(reg: Registry, method: str, since: int = 0) -> list[str]:
    """The request lines of the registry's access log for ``method``, after ``since``
    characters of the log."""
    return re.findall(rf'\] "{method} (\S+) HTTP', reg.log()[since:])


def masked(manifest: bytes) -> Any:
    """A manifest with the layer digests and sizes left out (they depend on the gzip
    implementation)."""
    m = json.loads(manifest)
    for layer in m["layers"]:
        layer["digest"] = layer["size"] = None
    return m


def decompressed(blob: bytes) -> bytes:
    if blob[:4] == b"\x28\xb5\x2f\xfd":
        return subprocess.run(["zstd", "-dc"], input=blob, capture_output=True, check=True).stdout
    return gzip.decompress(blob)


def test_push_to_every_form_pulled_by_skopeo(
    registry: Registry, tmp_path: Path, store: cs.Store
) -> None:
    layout = make_layout(tmp_path / "layout")
    image = store.import_image(layout.ref, names=["localhost/x:1"])
    client = tls_client(registry) if registry.form == "tls" else None
    if client is not None and registry.creds is None:
        digest = push_image(store, image.id, registry.ref("ns/x:1"), client=client)
    else:
        digest = store.push_image(image.id, registry.ref("ns/x:1"), **push_opts(registry))
    raw = raw_manifest(registry, registry.ref("ns/x:1"))
    assert sha256(raw) == digest
    m = json.loads(raw)
    assert list(m) == ["schemaVersion", "mediaType", "config", "layers"]
    assert m["config"]["digest"] == sha256(layout.config)
    assert [x["mediaType"] for x in m["layers"]] == [LAYER_TYPE, LAYER_TYPE]
    # skopeo pulls it; each layer decompresses to the layer's exact tar (the DiffID).
    out = tmp_path / "pulled"
    skopeo("copy", "--quiet", *registry.skopeo_args("src"), registry.ref("ns/x:1"), f"oci:{out}:1")
    diff_ids = json.loads(layout.config)["rootfs"]["diff_ids"]
    for layer, diff_id in zip(m["layers"], diff_ids, strict=True):
        blob = (out / "blobs/sha256" / layer["digest"].split(":")[1]).read_bytes()
        assert sha256(decompressed(blob)) == diff_id
    assert (
        out / "blobs/sha256" / sha256(layout.config).split(":")[1]
    ).read_bytes() == layout.config


@pytest.mark.parametrize("source", ["oci", "docker-archive"])
@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_same_as_skopeo(
    plain_registry: Registry,
    tmp_path: Path,
    roots: Roots,
    driver: str,
    compression: str,
    source: str,
) -> None:
    """skopeo copy containers-storage:IMAGE docker://... and our push of the same image give
    the same config blob and the same manifest but for the compressed layers' digests and
    sizes; both decompress to the layers' tars. A Docker schema 2 image pushed with zstd
    becomes an OCI image with its config converted, as skopeo converts it."""
    layout = make_layout(tmp_path / "layout")
    ref = layout.ref
    if source == "docker-archive":
        archive = tmp_path / "x.tar"
        skopeo("copy", "--quiet", layout.ref, f"docker-archive:{archive}:localhost/x:1")
        ref = f"docker-archive:{archive}"
    with cs.Store(roots[0], roots[1], driver) as st:
        image = st.import_image(ref, names=["localhost/x:1"])
        ours = st.push_image(
            image.id, plain_registry.ref("ours:1"), tls_verify=False, compression=compression
        )
        st.shutdown(True)
    args = ["--dest-compress-format", "zstd"] if compression == "zstd" else []
    p = subprocess.run(
        ["skopeo", "--insecure-policy", "copy", "--quiet", "--dest-tls-verify=false", *args,
         cs_ref(roots, driver, "localhost/x:1"), plain_registry.ref("theirs:1")],
        env=tool_env(roots, driver), capture_output=True, check=False,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    mine = raw_manifest(plain_registry, plain_registry.ref("ours:1"))
    theirs = raw_manifest(plain_registry, plain_registry.ref("theirs:1"))
    assert sha256(mine) == ours
    assert masked(mine) == masked(theirs)
    want_type = (
        DOCKER_MANIFEST if (source, compression) == ("docker-archive", "gzip") else MANIFEST_TYPE
    )
    assert json.loads(mine)["mediaType"] == want_type
    # Byte for byte the same JSON once the compressed layers' digests and sizes agree.
    m, t = json.loads(mine), json.loads(theirs)
    for a, b in zip(m["layers"], t["layers"], strict=True):
        mine = mine.replace(a["digest"].encode(), b["digest"].encode())
        mine = mine.replace(f'"size":{a["size"]}'.encode(), f'"size":{b["size"]}'.encode())
    assert mine == theirs


def test_second_push_uploads_no_layer_and_mounts_across_repos(
    plain_registry: Registry, tmp_path: Path, store: cs.Store
) -> None:
    layout = make_layout(tmp_path / "layout")
    image = store.import_image(layout.ref, names=["localhost/x:1"])
    first = store.push_image(image.id, plain_registry.ref("a:1"), tls_verify=False)
    assert len(requests_in_log(plain_registry, "PATCH")) == 3  # two layers and the config
    mark = len(plain_registry.log())
    again = store.push_image(image.id, plain_registry.ref("a:1"), tls_verify=False)
    assert again == first
    assert requests_in_log(plain_registry, "PATCH", mark) == []
    assert requests_in_log(plain_registry, "POST", mark) == []
    # Another repository of the same registry: the layers are mounted, not sent.
    mark = len(plain_registry.log())
    other = store.push_image(image.id, plain_registry.ref("b/c:2"), tls_verify=False)
    assert other == first
    posts = requests_in_log(plain_registry, "POST", mark)
    assert sum("mount=" in p and "from=a" in p for p in posts) == 2, posts
    # Only the config is uploaded (c/image does not mount configs).
    assert len(requests_in_log(plain_registry, "PATCH", mark)) == 1


def test_push_mounts_from_the_repository_the_image_was_pulled_from(
    plain_registry: Registry, tmp_path: Path, roots: Roots, driver: str, blob_cache: Path
) -> None:
    """skopeo pushed the image to repo ``src`` and pulled it into the store: its layers
    record the compressed digests, its name the repository, so our push into ``dst`` mounts
    them from ``src`` with nothing in our cache."""
    layout = make_layout(tmp_path / "layout")
    skopeo("copy", "--quiet", "--dest-tls-verify=false", layout.ref, plain_registry.ref("src:1"))
    name = f"{plain_registry.host}/src:1"
    p = subprocess.run(
        ["skopeo", "--insecure-policy", "copy", "--quiet", "--src-tls-verify=false",
         plain_registry.ref("src:1"), cs_ref(roots, driver, name)],
        env=tool_env(roots, driver), capture_output=True, check=False,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    mark = len(plain_registry.log())
    with cs.Store(roots[0], roots[1], driver) as st:
        digest = st.push_image(name, plain_registry.ref("dst:1"), tls_verify=False)
        st.shutdown(True)
    assert not blob_cache.joinpath("blob-info-cache-python-v1.json").read_text() == "{}"
    posts = requests_in_log(plain_registry, "POST", mark)
    assert sum("mount=" in p and "from=src" in p for p in posts) == 2, posts
    assert len(requests_in_log(plain_registry, "PATCH", mark)) == 1  # the config
    # The layer digests are the ones skopeo pushed (the original gzip blobs).
    m = json.loads(raw_manifest(plain_registry, plain_registry.ref("dst:1")))
    assert [x["digest"] for x in m["layers"]] == [sha256(b) for b in layout.layers]
    mine = raw_manifest(plain_registry, plain_registry.ref("dst:1"))
    assert sha256(mine) == digest
    # Where c/image's output is deterministic (no layer compressed anew), skopeo pushes the
    # very same manifest.
    p = subprocess.run(
        ["skopeo", "--insecure-policy", "copy", "--quiet", "--dest-tls-verify=false",
         cs_ref(roots, driver, name), plain_registry.ref("dst-skopeo:1")],
        env=tool_env(roots, driver), capture_output=True, check=False,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert raw_manifest(plain_registry, plain_registry.ref("dst-skopeo:1")) == mine


def test_podman_pulls_and_runs_what_we_pushed(
    plain_registry: Registry, tmp_path: Path, store: cs.Store, short_dir: Path
) -> None:
    require(PODMAN)
    layout = runnable_layout(tmp_path / "layout")
    image = store.import_image(f"oci:{layout}:1", names=["localhost/run:1"])
    digest = store.push_image(image.id, plain_registry.ref("run:1"), compression="zstd",
                              tls_verify=False)  # fmt: skip
    pod: Roots = (short_dir / "r", short_dir / "s")
    env = tool_env(pod, "vfs")
    base = [PODMAN, *podman_args(pod), "--storage-driver=vfs"]
    ref = f"{plain_registry.host}/run:1"
    p = subprocess.run([*base, "pull", "--tls-verify=false", ref], env=env, capture_output=True,
                       check=False)  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip().decode() == image.id
    p = subprocess.run([*base, "--runtime", "runc", "run", "--rm", "--network=none",
                        "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024", ref],
                       env=env, capture_output=True, check=False)  # fmt: skip
    try:
        assert p.returncode == 0, p.stderr
        assert p.stdout == b"pushed and run\n"
        info = subprocess.run([*base, "image", "inspect", ref], env=env, capture_output=True,
                              check=True)  # fmt: skip
        assert json.loads(info.stdout)[0]["Digest"] == digest
    finally:
        subprocess.run([*base, "rmi", "-af"], env=env, capture_output=True, check=False)
        subprocess.run([*base, "system", "reset", "-f"], env=env, capture_output=True, check=False)


def test_cli_push(plain_registry: Registry, tmp_path: Path, roots: Roots, driver: str,
                  capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    layout = make_layout(tmp_path / "layout")
    with cs.Store(roots[0], roots[1], driver) as st:
        image = st.import_image(layout.ref, names=["localhost/x:1"])
        st.shutdown(True)
    g = ["--graph", str(roots[0]), "--run", str(roots[1]), "--storage-driver", driver]
    capsys.readouterr()
    ref = f"{plain_registry.host}/cli:1"  # without docker://
    flags = ["--tls-verify=false", "--compression", "zstd"]
    assert main([*g, "push", *flags, "localhost/x:1", ref]) == 0
    out = capsys.readouterr().out
    raw = raw_manifest(plain_registry, f"docker://{ref}")
    assert out == sha256(raw) + "\n"
    assert json.loads(raw)["layers"][0]["mediaType"].endswith("+zstd")
    # Without --tls-verify=false, the plain-HTTP registry is refused.
    assert main([*g, "push", "localhost/x:1", ref]) != 0
    assert "pinging container registry" in capsys.readouterr().err
    assert image.id


# -- hostile registries ----------------------------------------------------------------------


class Hostile:
    """A fake registry: ``/v2/`` answers, blobs are absent, uploads go through ``upload``
    (a handler per attempt), manifests are accepted."""

    def __init__(
        self,
        upload: list[Callable[[http.server.BaseHTTPRequestHandler], None]],
        extra: dict[str, Callable[[http.server.BaseHTTPRequestHandler], None]] | None = None,
    ) -> None:
        self.upload = upload
        self.extra = extra or {}
        self.attempts = 0
        self.server = FakeServer({})
        self.server.routes = _Routes(self)

    def close(self) -> None:
        self.server.close()


class _Routes(dict[str, Any]):
    def __init__(self, hostile: Hostile) -> None:
        super().__init__()
        self.hostile = hostile

    def get(self, path: str, default: Any = None) -> Any:
        h = self.hostile
        if path in h.extra:
            return h.extra[path]
        if path == "/v2/":
            return lambda r: reply(r, 200, b"{}")
        if "/blobs/uploads/" in path:

            def upload(r: http.server.BaseHTTPRequestHandler) -> None:
                if r.command == "POST":
                    h.attempts += 1
                    step = h.upload[min(h.attempts, len(h.upload)) - 1]
                    step(r)
                    return
                _drain(r)
                if r.command == "PATCH":
                    reply(r, 202, b"", {"Location": path})
                else:
                    reply(r, 201, b"")

            return upload
        if "/blobs/" in path:
            return lambda r: reply(r, 404, b"")
        if "/manifests/" in path:

            def manifest(r: http.server.BaseHTTPRequestHandler) -> None:
                _drain(r)
                reply(r, 201, b"")

            return manifest
        return None


def _drain(r: http.server.BaseHTTPRequestHandler) -> None:
    if r.headers.get("Transfer-Encoding") == "chunked":
        while True:
            size = int(r.rfile.readline().split(b";")[0], 16)
            r.rfile.read(size + 2)
            if size == 0:
                break
    elif r.headers.get("Content-Length"):
        r.rfile.read(int(r.headers["Content-Length"]))


@pytest.fixture
def hostile_store(tmp_path: Path) -> Iterator[cs.Store]:
    layout = make_layout(tmp_path / "layout")
    with cs.Store(tmp_path / "root", tmp_path / "run", "vfs") as st:
        st.import_image(layout.ref, names=["localhost/x:1"])
        yield st
        st.shutdown(True)


def _push_to(st: cs.Store, fake: Hostile) -> str:
    client = Client(fake.server.host, tls_verify=False, retry=Retry(attempts=3, initial=0.01))
    cache = BlobInfoCache(Path(st.graph_root()) / "cache")
    dest = f"docker://{fake.server.host}/x:1"
    return push_image(st, "localhost/x:1", dest, client=client, workers=1, cache=cache)


def test_5xx_then_success(hostile_store: cs.Store) -> None:
    ok = lambda r: reply(r, 202, b"", {"Location": "/v2/x/blobs/uploads/u1"})  # noqa: E731
    fake = Hostile([lambda r: reply(r, 503, b""), ok])
    try:
        digest = _push_to(hostile_store, fake)
    finally:
        fake.close()
    assert digest.startswith("sha256:")
    assert fake.attempts == 4  # one 503, then the two layers and the config


def test_5xx_forever_is_a_clear_error(hostile_store: cs.Store) -> None:
    fake = Hostile([lambda r: reply(r, 500, b'{"errors":[{"code":"UNKNOWN","message":"boom"}]}')])
    try:
        with pytest.raises(HTTPStatusError) as e:
            _push_to(hostile_store, fake)
    finally:
        fake.close()
    assert e.value.status == 500
    assert "initiating layer upload to /v2/x/blobs/uploads/" in str(e.value)
    assert "unknown: boom" in str(e.value)
    assert fake.attempts == 3


def test_wrong_location_is_a_clear_error(hostile_store: cs.Store) -> None:
    fake = Hostile([lambda r: reply(r, 202, b"", {"Location": "/elsewhere/nothing"})])
    try:
        with pytest.raises(RegistryError) as e:
            _push_to(hostile_store, fake)
    finally:
        fake.close()
    assert "uploading layer chunked" in str(e.value)
    assert "404" in str(e.value) or "name unknown" in str(e.value)


def test_401_mid_upload_is_a_clear_error(hostile_store: cs.Store) -> None:
    def deny(r: http.server.BaseHTTPRequestHandler) -> None:
        _drain(r)
        reply(r, 401, b'{"errors":[{"code":"UNAUTHORIZED","message":"token expired"}]}')

    fake = Hostile([lambda r: reply(r, 202, b"", {"Location": "/deny"})], {"/deny": deny})
    try:
        with pytest.raises(RegistryError) as e:
            _push_to(hostile_store, fake)
    finally:
        fake.close()
    assert str(e.value) == "uploading layer chunked: unauthorized: token expired"


def test_export_image_to_docker_with_progress(
    start: Callable[[str], Registry],
    tmp_path: Path,
    store: cs.Store,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``export_image(image, "docker://...")`` pushes with the defaults: TLS verified with
    the CA of ``~/.config/containers/certs.d/HOST``; push_image's callback sees every
    layer's bytes."""
    reg = start("tls")
    assert reg.cert_dir is not None
    home = tmp_path / "home"
    certs = home / ".config/containers/certs.d" / reg.host
    certs.mkdir(parents=True)
    (certs / "ca.crt").write_bytes((reg.cert_dir / "ca.crt").read_bytes())
    monkeypatch.setenv("HOME", str(home))
    layout = make_layout(tmp_path / "layout")
    image = store.import_image(layout.ref, names=["localhost/x:1"])
    digest = store.export_image(image.id, reg.ref("e:1"))
    assert sha256(raw_manifest(reg, reg.ref("e:1"))) == digest
    seen: list[tuple[dict[str, int], set[str]]] = []

    def progress(state: Any) -> None:
        seen.append((dict(state.done), set(state.finished)))

    assert store.push_image(image.id, reg.ref("e:2"), progress=progress) == digest
    diff_ids = set(json.loads(layout.config)["rootfs"]["diff_ids"])
    done, finished = seen[-1]
    assert finished == diff_ids
    m = json.loads(raw_manifest(reg, reg.ref("e:2")))
    assert sorted(done.values()) == sorted(x["size"] for x in m["layers"])


def test_push_finds_a_short_name_as_podman_does(
    plain_registry: Registry, tmp_path: Path, store: cs.Store
) -> None:
    """``push app:1`` pushes the image stored as ``localhost/app:1`` (podman's local lookup
    of a short name); a name no image has is refused with Go's text."""
    layout = make_layout(tmp_path / "layout")
    image = store.import_image(layout.ref, names=["localhost/app:1"])
    digest = store.push_image("app:1", plain_registry.ref("ns/app:1"), tls_verify=False)
    assert sha256(raw_manifest(plain_registry, plain_registry.ref("ns/app:1"))) == digest
    assert digest == store.push_image(image.id, plain_registry.ref("ns/app:1"), tls_verify=False)
    with pytest.raises(cs.errors.ImageUnknownError, match="image not known"):
        store.push_image("other:1", plain_registry.ref("ns/other:1"), tls_verify=False)
