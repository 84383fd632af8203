"""Malformed booleans, ID maps and digests: our command's exit code and message against
Debian's Go 1.43 binary, one test per shared parser (``_strconv.parse_bool``,
``idtools.parse_idmap``, ``digests.validate_digest``)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest

from tests.cli.helpers import GO
from tests.helpers import HANG_GUARD, OURS

pytestmark = [pytest.mark.root, pytest.mark.gotools]


class Sides:
    """Our command and Go's, each with its own store under ``tmp``."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.used: set[tuple[str, str]] = set()

    def root(self, name: str) -> Path:
        return self.tmp / name

    def run(
        self,
        name: str,
        argv: Sequence[str],
        args: Sequence[str],
        driver: str = "vfs",
        env: Mapping[str, str] | None = None,
    ) -> tuple[int, str, str]:
        """``(exit code, stdout, stderr)`` with the store's root replaced by ``ROOT``."""
        root = self.root(name)
        store = ["--graph", str(root / "g"), "--run", str(root / "r"), "-s", driver]
        if env is None:
            self.used.add((name, driver))
        else:
            store = []  # the store is the configuration file's
        p = subprocess.run(
            [*argv, *store, *args],
            capture_output=True,
            text=True,
            timeout=HANG_GUARD,
            env=env,
        )
        out, err = (text.replace(str(root), "ROOT") for text in (p.stdout, p.stderr))
        return p.returncode, out, err

    def same(
        self, *args: str, driver: str = "vfs", env: Mapping[str, Mapping[str, str]] | None = None
    ) -> tuple[int, str, str]:
        """Run both; assert the same exit code, stdout and stderr; return ours."""
        ours = self.run("ours", OURS, args, driver, env["ours"] if env else None)
        go = self.run("go", GO, args, driver, env["go"] if env else None)
        assert ours == go, f"{args}: ours {ours!r} vs Go {go!r}"
        return ours

    def cleanup(self) -> None:
        for name, driver in self.used:
            root = self.root(name)
            store = ["--graph", str(root / "g"), "--run", str(root / "r"), "-s", driver]
            subprocess.run([*GO, *store, "shutdown"], capture_output=True, timeout=HANG_GUARD)


@pytest.fixture
def sides(tmp_path: Path) -> Iterator[Sides]:
    s = Sides(tmp_path)
    yield s
    s.cleanup()


def test_driver_booleans_are_strconv_parsebool(sides: Sides) -> None:
    """vfs and overlay options read booleans as Go's ``strconv.ParseBool``: ``""`` and
    ``tRue`` are errors with its text; Go 1.43's overlay ignores a bad ``skip_mount_home``."""
    for value in ("", "maybe", "tRue", "yes", "TRUE", "True", "t", "F", "0"):
        r = sides.same("--storage-opt", f"vfs.ignore_chown_errors={value}", "layers")
        if value in ("", "maybe", "tRue", "yes"):
            # Go prints this one on stdout.
            assert r == (
                1,
                f'error initializing: strconv.ParseBool: parsing "{value}": invalid syntax\n',
                "",
            )
        else:
            assert r == (0, "", "")
    for option in ("overlay.ignore_chown_errors=", "overlay.skip_mount_home=maybe"):
        sides.same("--storage-opt", option, "layers", driver="overlay")


def test_id_maps_are_idtools_parseidmap(sides: Sides) -> None:
    """storage.conf's remap-uids/remap-gids and --uidmap/--gidmap: one parser, Go's text."""
    for uids, gids in (
        ("0:1", "0:1:1"),
        ("0:1:2,3:4:5", "0:1:1"),
        ("0:100000:65536", "a:b:c"),
        ("0:1:4294967296", "0:1:1"),
        ("-1:0:1", "0:1:1"),
        ("0:100000:65536:65536:1:1", "0:100000:65536"),
    ):
        env = {}
        for name in ("ours", "go"):
            root = sides.root(name)
            conf = root / "storage.conf"
            conf.parent.mkdir(exist_ok=True)
            conf.write_text(
                f'[storage]\ndriver = "vfs"\ngraphroot = "{root}/g"\nrunroot = "{root}/r"\n'
                f'[storage.options]\nremap-uids = "{uids}"\nremap-gids = "{gids}"\n'
            )
            env[name] = {
                **{k: v for k, v in os.environ.items() if not k.startswith("STORAGE_")},
                "CONTAINERS_STORAGE_CONF": str(conf),
            }
        code, out, _ = sides.same("layers", env=env)
        assert code == 0 or "setting is malformed" in out
    for flags in (["--uidmap", "0:1"], ["--gidmap", "0:1:2:3"], ["--uidmap", "0:1:x"]):
        code, _, err = sides.same("create-layer", *flags)
        assert code == 1 and err.startswith("initializing ID mappings: ")


def test_digests_are_go_digest_validate(sides: Sides) -> None:
    """create-image --digest and images-by-digest: go-digest's ``Validate`` texts; sha256
    is the only algorithm available."""
    for digest in (
        "sha256:zz",
        "sha256:",
        "nodigest",
        "sha1:abc",
        "sha512:" + "a" * 128,
        "sha256:" + "A" * 64,
        "a..b:x",
        "sha256:" + "a" * 64,
    ):
        create = sides.same("create-image", "--id", "a" * 64, "--digest", digest)
        lookup = sides.same("images-by-digest", digest)
        if digest == "sha256:" + "a" * 64:
            assert create[0] == lookup[0] == 0
        else:
            assert create[2].startswith("validating digests for new image: ")
            assert lookup[2].startswith(f"{digest}: ")
