"""A store shared live with the Go tools (issue 14): what another process does beside us
must not surprise a program using the package."""

from __future__ import annotations

import json
from pathlib import Path

import containers_storage as cs
import pytest

from tests.store.helpers import Roots, go, ours

pytestmark = [pytest.mark.root, pytest.mark.gotools]


# -- leaving a Store ------------------------------------------------------------------------


def test_leaving_a_store_while_another_tool_has_a_layer_mounted(
    roots: Roots, driver: str, no_leaked_mounts: None
) -> None:
    """Go's CLI mounts a layer (as a running podman container would): a ``with`` block on
    the store ends without an error, and an error raised inside it is the one that
    surfaces."""
    base = go(roots, driver, "create-layer", "-n", "base").stdout.decode().split()[0]
    path = go(roots, driver, "mount", base).stdout.decode().strip()  # Go mounts IDs only
    with cs.Store(*roots, driver) as s:
        assert s.layer("base").mount_count == 1
    with pytest.raises(cs.errors.ImageUnknownError), cs.Store(*roots, driver) as s:
        s.image("nope")
    # The other tool's mount is left as it was.
    assert go(roots, driver, "mounted", base).stdout.decode().strip() != ""
    assert Path(path).is_dir()
    # An explicit shutdown keeps Go's semantics.
    s = cs.Store(*roots, driver)
    with pytest.raises(cs.errors.LayerUsedByContainerError, match="a layer is mounted"):
        s.shutdown(False)
    go(roots, driver, "unmount", base)
    assert s.shutdown(False) == []


def test_leaving_a_store_keeps_the_error_raised_inside(
    roots: Roots, driver: str, no_leaked_mounts: None
) -> None:
    """Our own mount still counted at the end of the block: the block's error wins."""
    with pytest.raises(ValueError, match="inside"), cs.Store(*roots, driver) as s:
        layer = s.create_layer(names=["base"])
        s.mount(layer.id)
        raise ValueError("inside")
    s = cs.Store(*roots, driver)
    assert s.mounted("base") == 1
    assert s.shutdown(True) == [s.layer("base").id]
    assert s.mounted("base") == 0


def test_shutdown_force_unmounts_everything(
    roots: Roots, driver: str, no_leaked_mounts: None
) -> None:
    """``shutdown -f`` (Go's ``Shutdown(true)``) unmounts what is mounted and succeeds;
    without ``-f`` it refuses as Go does."""
    assert ours(roots, driver, "create-layer", "-n", "base").returncode == 0
    assert ours(roots, driver, "create-container", "-n", "ctr", "").returncode == 0
    mounted = [ours(roots, driver, "mount", x).stdout.strip() for x in ("base", "ctr", "ctr")]
    assert all(Path(p).is_dir() for p in mounted)
    r = ours(roots, driver, "shutdown")
    assert (r.returncode, r.stderr) == (
        1,
        "shutdown: a layer is mounted: layer is in use by a container\n",
    )
    r = ours(roots, driver, "shutdown", "-f")
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")
    assert go(roots, driver, "mounted", "base").stdout.decode().strip() == ""
    assert ours(roots, driver, "mounted", "ctr").stdout.strip() == ""
    assert ours(roots, driver, "shutdown").returncode == 0


def test_a_stage_survives_go_commands_beside_it(roots: Roots, no_leaked_mounts: None) -> None:
    """Go 1.43's overlay Cleanup(), at the end of every Go CLI or podman command, removes
    the driver's staging/ directory: a layer we staged meanwhile is still adopted."""
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("hello")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))
    s = cs.Store(*roots, "overlay")
    staged = s.stage_layer(io.BytesIO(buf.getvalue()))
    for _ in range(3):
        go(roots, "overlay", "layers")
        go(roots, "overlay", "shutdown")
    layer, _ = s.put_layer(staged=staged, names=["staged"])
    path = s.mount(layer.id)
    assert (Path(path) / "hello").read_bytes() == b"hi"
    s.unmount(layer.id)
    s.shutdown(False)


# -- records that do not load ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "why"),
    [
        ("digest", "sha256:" + "A" * 64, 'validating image digest "sha256:{v}"'),
        (
            "big-data-digests",
            "sha256:abc",
            'validating digest "{v}" for big data item "manifest-x"',
        ),
    ],
)
def test_an_invalid_image_digest_stops_the_store_opening_as_in_go(
    roots: Roots, driver: str, field: str, value: str, why: str
) -> None:
    """Go's GetStore loads images.json and checks every image's digests
    (``recomputeDigests``): a store with an invalid one does not open, for any command, and
    ours says so in Go's words. A valid store written by Go opens again after the fix."""
    layer = go(roots, driver, "create-layer").stdout.decode().split()[0]
    image = go(roots, driver, "create-image", "-n", "foo", layer).stdout.decode().split()[0]
    path = roots[0] / f"{driver}-images" / "images.json"
    records = json.loads(path.read_text())
    good = path.read_text()
    if field == "digest":
        records[0]["digest"] = value
    else:
        records[0]["big-data-names"] = ["manifest-x"]
        records[0]["big-data-digests"] = {"manifest-x": value}
    path.write_text(json.dumps(records))

    for command in ("layers", "images", "containers"):
        theirs = go(roots, driver, command, check=False)
        mine = ours(roots, driver, command)
        assert theirs.returncode == mine.returncode == 1
        assert mine.stdout == theirs.stdout.decode(), command
    reason = why.format(v=value.removeprefix("sha256:") if field == "digest" else value)
    assert f'image with ID "{image}" ([foo]): {reason}' in mine.stdout
    with pytest.raises(cs.errors.InvalidDigestError, match="invalid checksum digest"):
        cs.Store(roots[0], roots[1], driver)

    path.write_text(good)
    assert ours(roots, driver, "images").returncode == 0
