"""registries.conf as c/image v5.23 reads it and podman 4.3 resolves short names: tables
from c/image's own semantics (``pkg/sysregistriesv2``, ``pkg/shortnames``), then twins
against skopeo (``--registries-conf``) and podman (``CONTAINERS_REGISTRIES_CONF``) on
loopback registries."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from containers_storage.errors import InvalidReferenceError
from containers_storage.reference import Reference, parse_docker_reference
from containers_storage.registry import registries_conf
from containers_storage.registry.errors import RegistryBlockedError, RegistryConfigError
from containers_storage.registry.registries_conf import RegistriesConf, Source, load

from tests.helpers import SKOPEO
from tests.registry.helpers import Registry, make_layout, push
from tests.store.helpers import PODMAN, podman_args, require
from tests.tars import sha256

DIGEST = "sha256:" + "a" * 64
SHORTNAMES_CONF = Path("/etc/containers/registries.conf.d/shortnames.conf")


def conf(tmp_path: Path, text: str, *drop_ins: str, aliases: str | None = None) -> RegistriesConf:
    """Load ``text`` as registries.conf with ``drop_ins`` as ``NN.conf`` drop-ins (and no
    system ones), the alias cache ``aliases`` (or none)."""
    path = tmp_path / "registries.conf"
    path.write_text(text)
    d = tmp_path / "registries.conf.d"
    d.mkdir(exist_ok=True)
    for i, t in enumerate(drop_ins):
        (d / f"{i:02}.conf").write_text(t)
    cache = tmp_path / "short-name-aliases.conf"
    if aliases is not None:
        cache.write_text(aliases)
    return load(path, drop_in_dirs=[d], aliases_file=cache)


def ref(s: str) -> Reference:
    return parse_docker_reference(s)


def refs(*s: str) -> list[Reference]:
    return [ref(x) for x in s]


# --- prefixes -----------------------------------------------------------------------------

# c/image's TestRefMatchingPrefix and TestRefMatchingSubdomainPrefix.
A = "@sha256:" + "a" * 64
MATCHES = [
    ("docker.io", "docker.io", 9),
    ("docker.io", "example.com", -1),
    ("example.com:5000", "example.com:5000", 16),
    ("example.com:50000", "example.com:5000", -1),
    ("example.com:5000", "example.com", 11),  # c/image's (unintended) behaviour
    ("example.com/foo", "example.com", 11),
    ("example.com/foo/bar:baz", "example.com", 11),
    ("example.com/foo/bar" + A, "example.com", 11),
    ("docker.io", "docker.io/library", -1),
    ("docker.io/libraryy", "docker.io/library", -1),
    ("docker.io/library/busybox", "docker.io/library", 17),
    ("docker.io/library/busybox2", "docker.io/library/busybox", -1),
    ("example.com/foo", "example.com/foo:bar", -1),
    ("example.com/foo:bar", "example.com/foo:bar", 19),
    ("example.com/foo:bar2", "example.com/foo:bar", -1),
    ("example.com/foo" + A, "example.com/foo" + A, 15 + len(A)),
    ("example.com/foo", "*", -1),
    ("docker.io", "*.io", 9),
    ("docker.io/foo", "*.com", -1),
    ("example.com/foo", "*.co", -1),
    ("example.com/foo", "*.example.com", -1),
    ("example.com/foo:bar", "*.com", 11),
    ("yet.another.example.com/foo", "**.example.com", -1),
    ("yet.another.example.com/foo/bar", "*.another.example.com", 23),
    ("another.example.com/namespace.com/foo/bar/bbq:baz", "*.example.com", 19),
    ("example.net/namespace-ends-in.com/foo/bar/bbq:baz", "*.com", -1),
    ("another.example.com/namespace.com/foo/bar/bbq:baz", "*.namespace.com", -1),
    ("another.sub.example.com/foo/bar/bbq:baz", "*.sub.example.com", 23),
    ("yet.another.example.com/foo/bar" + A, "*.example.com", 23),
]


@pytest.mark.parametrize(("name", "prefix", "want"), MATCHES)
def test_prefix_matching_as_c_image(name: str, prefix: str, want: int) -> None:
    assert registries_conf._match_prefix(name, prefix) == want


def test_longest_prefix_wins_and_is_rewritten_to_its_location(tmp_path: Path) -> None:
    c = conf(
        tmp_path,
        """
[[registry]]
prefix = "example.com"
location = "one.test"
[[registry]]
prefix = "example.com/ns"
location = "two.test:5000/mirrored/ns/"
insecure = true
[[registry]]
location = "example.com/ns/other"
""",
    )
    assert c.pull_sources(ref("example.com/ns/app:1")) == [
        Source(ref("two.test:5000/mirrored/ns/app:1"), True)
    ]
    assert c.pull_sources(ref("example.com/nsx/app" + A)) == [Source(ref("one.test/nsx/app" + A))]
    assert c.pull_sources(ref("example.com/ns/other:2")) == [Source(ref("example.com/ns/other:2"))]
    assert c.pull_sources(ref("elsewhere.test/a")) == [Source(ref("elsewhere.test/a:latest"))]
    # A push never goes to a location or a mirror; insecure and blocked still apply.
    assert c.push_destination(ref("example.com/ns/app:1")) == Source(
        ref("example.com/ns/app:1"), True
    )
    assert [r.prefix for r in c.registries] == sorted(r.prefix for r in c.registries)


def test_docker_hub_prefix_and_wildcards(tmp_path: Path) -> None:
    c = conf(
        tmp_path,
        """
[[registry]]
prefix = "docker.io"
location = "hub-mirror.test"
[[registry]]
prefix = "*.corp.test"
location = ""
insecure = true
[[registry]]
prefix = "*.other.test"
location = "central.test/other"
""",
    )
    assert c.pull_sources(ref("busybox")) == [Source(ref("hub-mirror.test/library/busybox:latest"))]
    assert c.pull_sources(ref("a.b.corp.test/x:1")) == [Source(ref("a.b.corp.test/x:1"), True)]
    assert c.pull_sources(ref("corp.test/x:1")) == [Source(ref("corp.test/x:1"))]
    assert c.pull_sources(ref("eu.other.test/x/y:1")) == [Source(ref("central.test/other/x/y:1"))]


def test_mirrors_in_order_and_filtered_by_pull_from_mirror(tmp_path: Path) -> None:
    c = conf(
        tmp_path,
        """
[[registry]]
prefix = "example.com/app"
location = "primary.test/app"
[[registry.mirror]]
location = "m-all.test/app"
insecure = true
[[registry.mirror]]
location = "m-digest.test/app"
pull-from-mirror = "digest-only"
[[registry.mirror]]
location = "m-tag.test/tagged"
pull-from-mirror = "tag-only"

[[registry]]
prefix = "example.com/old"
location = "primary.test/old"
mirror-by-digest-only = true
[[registry.mirror]]
location = "m-old.test/old"
""",
    )
    assert c.pull_sources(ref("example.com/app:1")) == [
        Source(ref("m-all.test/app:1"), True),
        Source(ref("m-tag.test/tagged:1")),
        Source(ref("primary.test/app:1")),
    ]
    assert c.pull_sources(ref("example.com/app" + A)) == [
        Source(ref("m-all.test/app" + A), True),
        Source(ref("m-digest.test/app" + A)),
        Source(ref("primary.test/app" + A)),
    ]
    assert c.pull_sources(ref("example.com/old:1")) == [Source(ref("primary.test/old:1"))]
    assert c.pull_sources(ref("example.com/old" + A)) == [
        Source(ref("m-old.test/old" + A)),
        Source(ref("primary.test/old" + A)),
    ]


def test_blocked_endpoints_are_not_tried(tmp_path: Path) -> None:
    path = tmp_path / "registries.conf"
    c = conf(
        tmp_path,
        """
[[registry]]
location = "blocked.test"
blocked = true
[[registry.mirror]]
location = "mirror.test"
[[registry.mirror]]
location = "blocked-mirror.test"

[[registry]]
location = "blocked-mirror.test"
blocked = true

[[registry]]
location = "alone.test"
blocked = true
""",
    )
    # The primary and the second mirror are blocked: only the first mirror remains.
    assert c.pull_sources(ref("blocked.test/a:1")) == [Source(ref("mirror.test/a:1"))]
    want = f"registry alone.test is blocked in {path} or {tmp_path / 'registries.conf.d'}"
    with pytest.raises(RegistryBlockedError) as e:
        c.pull_sources(ref("alone.test/a:1"))
    assert str(e.value) == want
    with pytest.raises(RegistryBlockedError, match=r"^registry blocked\.test is blocked"):
        c.push_destination(ref("blocked.test/a:1"))


def test_rewrites_into_invalid_references_are_refused(tmp_path: Path) -> None:
    c = conf(
        tmp_path,
        """
[[registry]]
prefix = "example.com"
location = "docker.io"
[[registry]]
prefix = "slash.test"
location = "ok.test"
[[registry.mirror]]
location = "mirror.test/"
""",
    )
    with pytest.raises(
        RegistryConfigError, match=r"^rewriting reference: repository name must be canonical$"
    ):
        c.pull_sources(ref("example.com/busybox:1"))
    # A mirror's trailing "/" is checked but kept, as c/image keeps it.
    with pytest.raises(
        RegistryConfigError, match=r"^rewriting reference: invalid reference format$"
    ):
        c.pull_sources(ref("slash.test/a:1"))


# --- files, merging, validation ------------------------------------------------------------


def test_drop_ins_merge_in_lexical_order(tmp_path: Path) -> None:
    d = tmp_path / "registries.conf.d"
    d.mkdir()
    (d / "sub").mkdir()
    (d / "sub" / "00.conf").write_text('unqualified-search-registries = ["never.test"]')
    (d / "zz.conf.disabled").write_text('unqualified-search-registries = ["never.test"]')
    c = conf(
        tmp_path,
        """
unqualified-search-registries = ["main.test"]
short-name-mode = "enforcing"
credential-helpers = ["pass"]
[aliases]
"app" = "main.test/app"
"tool" = "main.test/tool"
[[registry]]
location = "a.test"
insecure = true
[[registry.mirror]]
location = "a-mirror.test"
[[registry]]
location = "b.test"
""",
        # 00: replaces a.test whole (no mirror, not insecure), resets "tool", adds "new".
        """
[aliases]
"tool" = ""
"new" = "quay.io/new"
[[registry]]
location = "a.test"
""",
        # 01: an empty list replaces the search registries; a missing key keeps them.
        """
unqualified-search-registries = []
short-name-mode = "disabled"
""",
        # 02: sets them again.
        'unqualified-search-registries = ["two.test", "three.test:5000"]',
    )
    assert c.unqualified_search_registries == ("two.test", "three.test:5000")
    assert c.search_origin == str(d / "02.conf")
    assert c.short_name_mode == "disabled"
    assert c.credential_helpers == ("pass",)
    assert c.pull_sources(ref("a.test/x:1")) == [Source(ref("a.test/x:1"))]
    assert c.candidates("app") == refs("main.test/app:latest")
    assert c.candidates("new:2") == refs("quay.io/new:2")
    assert c.candidates("tool") == refs("two.test/tool:latest", "three.test:5000/tool:latest")
    (tmp_path / "e").mkdir()
    empty = conf(tmp_path / "e", "", "unqualified-search-registries = []")
    assert empty.unqualified_search_registries == ()
    assert empty.short_name_mode == "permissive"
    assert empty.credential_helpers == ("containers-auth.json",)


def test_v1_files_are_converted_and_refused_as_drop_ins(tmp_path: Path) -> None:
    v1 = """
[registries.search]
registries = ["one.test", "two.test"]
[registries.insecure]
registries = ["insecure.test"]
[registries.block]
registries = ["blocked.test", "insecure.test"]
"""
    c = conf(tmp_path, v1)
    assert c.unqualified_search_registries == ("one.test", "two.test")
    assert c.pull_sources(ref("one.test/a:1")) == [Source(ref("one.test/a:1"))]
    with pytest.raises(RegistryBlockedError):
        c.pull_sources(ref("insecure.test/a:1"))
    assert [(r.prefix, r.endpoint.insecure, r.blocked) for r in c.registries] == [
        ("blocked.test", False, True),
        ("insecure.test", True, True),
    ]
    with pytest.raises(RegistryConfigError) as e:
        conf(tmp_path, 'short-name-mode = "disabled"\n' + v1)
    assert str(e.value).endswith(": mixing sysregistry v1/v2 is not supported")
    with pytest.raises(RegistryConfigError) as e:
        conf(tmp_path, "", v1)
    assert str(e.value) == (
        f'loading drop-in registries configuration "{tmp_path}/registries.conf.d/00.conf": '
        "registry must be in v2 format but is in v1"
    )


INVALID = [
    (
        '[[registry]]\nlocation = "https://x.test"',
        "invalid location 'https://x.test': URI schemes are not supported",
    ),
    ("[[registry]]\ninsecure = true", "invalid condition: both location and prefix are unset"),
    (
        '[[registry]]\nprefix = "x.test"',
        "invalid condition: location is unset and prefix is not in the format: *.example.com",
    ),
    (
        '[[registry]]\nprefix = "*.x.test:5000"\nlocation = "y.test"',
        "Wildcarded prefix should be in the format: *.example.com. "
        'Current prefix "*.x.test:5000" is incorrectly formatted',
    ),
    (
        '[[registry]]\nlocation = "x.test"\npull-from-mirror = "all"',
        'pull-from-mirror must not be set for a non-mirror registry "x.test"',
    ),
    (
        '[[registry]]\nlocation = "x.test"\n[[registry.mirror]]\ninsecure = true',
        "invalid condition: mirror location is unset",
    ),
    (
        '[[registry]]\nlocation = "x.test"\nmirror-by-digest-only = true\n'
        '[[registry.mirror]]\nlocation = "m.test"\npull-from-mirror = "all"',
        'cannot set mirror usage mirror-by-digest-only for the registry ("x.test") and '
        'pull-from-mirror for per-mirror ("m.test") at the same time',
    ),
    (
        '[[registry]]\nlocation = "x.test"\n'
        '[[registry.mirror]]\nlocation = "m.test"\npull-from-mirror = "sometimes"',
        'unsupported pull-from-mirror value "sometimes" for mirror "m.test"',
    ),
    (
        '[[registry]]\nlocation = "x.test"\n'
        '[[registry]]\nprefix = "y.test"\nlocation = "x.test"\ninsecure = true',
        "registry 'x.test' is defined multiple times with conflicting 'insecure' setting",
    ),
    (
        'unqualified-search-registries = ["x.test/ns"]',
        'Invalid unqualified-search-registries entry "x.test/ns"',
    ),
    ('short-name-mode = "prompt"', 'invalid short-name mode: "prompt"'),
    (
        '[aliases]\n"x.test/app" = "x.test/app"',
        'validating short-name aliases: invalid short name "x.test/app": must not contain registry',
    ),
    (
        '[aliases]\n"app:1" = "x.test/app"',
        'validating short-name aliases: invalid short name "app:1": must not contain tag',
    ),
    (
        '[aliases]\n"app" = "app"',
        'validating short-name aliases: invalid alias "app": must contain registry and repository',
    ),
    (
        '[aliases]\n"app" = "x.test/app@' + DIGEST + '"',
        'validating short-name aliases: invalid alias "x.test/app@'
        + DIGEST
        + '": must not contain digest',
    ),
    (
        '[aliases]\n"App" = "x.test/App"',
        'validating short-name aliases: parsing alias "x.test/App": repository name must be '
        'lowercase\n: cannot parse short name: "App": repository name must be lowercase',
    ),
]


@pytest.mark.parametrize(("text", "want"), INVALID)
def test_invalid_files_fail_with_c_image_texts(tmp_path: Path, text: str, want: str) -> None:
    with pytest.raises(RegistryConfigError) as e:
        conf(tmp_path, text)
    assert str(e.value) == f'loading registries configuration "{tmp_path}/registries.conf": {want}'


def test_missing_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # An explicit file must exist (also from the environment); the default one may be missing.
    missing = tmp_path / "nope.conf"
    with pytest.raises(RegistryConfigError) as e:
        load(missing, drop_in_dirs=[])
    assert str(e.value) == (
        f'loading registries configuration "{missing}": open {missing}: no such file or directory'
    )
    monkeypatch.setenv("CONTAINERS_REGISTRIES_CONF", str(missing))
    with pytest.raises(RegistryConfigError):
        load(drop_in_dirs=[])
    monkeypatch.delenv("CONTAINERS_REGISTRIES_CONF")
    monkeypatch.setattr(registries_conf, "SYSTEM_CONF", missing)
    monkeypatch.setenv("HOME", str(tmp_path))
    c = load(drop_in_dirs=[])
    assert c.unqualified_search_registries == () and c.registries == ()
    with pytest.raises(RegistryConfigError) as e:
        c.candidates("app")
    assert str(e.value) == (
        'short-name "app" did not resolve to an alias and no containers-registries.conf(5) '
        "was found"
    )


def test_which_files_are_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The user's file, when it exists, comes with the user's drop-ins only; an explicit
    file (here from the environment) with the system's and the user's."""
    if not SHORTNAMES_CONF.exists():
        pytest.skip(f"needs {SHORTNAMES_CONF} (Debian's containers-common)")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("CONTAINERS_REGISTRIES_CONF", raising=False)
    monkeypatch.delenv("REGISTRIES_CONFIG_PATH", raising=False)
    user = tmp_path / ".config/containers"
    (user / "registries.conf.d").mkdir(parents=True)
    (user / "registries.conf.d" / "50-user.conf").write_text(
        '[aliases]\n"mine" = "user.test/mine"\n'
    )
    explicit = tmp_path / "explicit.conf"
    explicit.write_text('unqualified-search-registries = ["explicit.test"]\n')

    c = load()  # /etc/containers/registries.conf, both drop-in directories
    assert c.config_path == "/etc/containers/registries.conf"
    assert "fedora" in c.aliases and "mine" in c.aliases
    monkeypatch.setenv("CONTAINERS_REGISTRIES_CONF", str(explicit))
    c = load()
    assert c.unqualified_search_registries == ("explicit.test",)
    assert "fedora" in c.aliases and "mine" in c.aliases
    assert c.config_dir == str(user / "registries.conf.d")
    monkeypatch.delenv("CONTAINERS_REGISTRIES_CONF")
    (user / "registries.conf").write_text('unqualified-search-registries = ["user.test"]\n')
    c = load()
    assert c.config_path == str(user / "registries.conf")
    assert "fedora" not in c.aliases and "mine" in c.aliases


# --- short names ----------------------------------------------------------------------------


def test_candidates_as_podman_resolves_them(tmp_path: Path) -> None:
    c = conf(
        tmp_path,
        """
unqualified-search-registries = ["first.test", "docker.io", "third.test:5000"]
[aliases]
"app" = "aliased.test/ns/app"
"cached" = "config.test/cached"
"hidden" = "config.test/hidden"
"docker" = "docker.io/library/docker"
""",
        aliases='[aliases]\n"cached" = "cache.test/cached"\n"hidden" = ""\n',
    )
    assert c.candidates("app") == refs("aliased.test/ns/app:latest")
    assert c.candidates("app:2") == refs("aliased.test/ns/app:2")
    assert c.candidates("app@" + DIGEST) == refs("aliased.test/ns/app@" + DIGEST)
    # podman drops the tag of a tagged and digested name.
    assert c.candidates("app:2@" + DIGEST) == refs("aliased.test/ns/app@" + DIGEST)
    assert c.candidates("cached") == refs("cache.test/cached:latest")
    # An empty value in the cache file hides the configured alias: search registries.
    assert c.candidates("hidden:1") == refs(
        "first.test/hidden:1", "docker.io/library/hidden:1", "third.test:5000/hidden:1"
    )
    assert c.candidates("ns/tool") == refs(
        "first.test/ns/tool:latest", "docker.io/ns/tool:latest", "third.test:5000/ns/tool:latest"
    )
    # "docker:latest" is a short name, not the docker transport; docker:// is never resolved.
    assert c.candidates("docker:latest") == refs("docker.io/library/docker:latest")
    assert c.candidates("docker://app") == refs("docker.io/library/app:latest")
    for qualified in ("quay.io/a/b", "localhost/app:1", "first.test:5000/x@" + DIGEST):
        assert c.candidates(qualified) == [ref(qualified)]
    with pytest.raises(InvalidReferenceError, match=r"^repository name must be lowercase$"):
        c.candidates("App")
    for local in ("sha256:" + "a" * 64, "b" * 64, "sha256:abc"):
        with pytest.raises(InvalidReferenceError, match="refers to a local image by ID"):
            c.candidates(local)
    # Local storage is searched by the alias, localhost/, the search registries, docker.io.
    assert c.local_candidates("app:2") == refs(
        "aliased.test/ns/app:2",
        "localhost/app:2",
        "first.test/app:2",
        "docker.io/library/app:2",
        "third.test:5000/app:2",
        "docker.io/library/app:2",
    )
    assert c.local_candidates("quay.io/a/b") == refs("quay.io/a/b:latest")


@pytest.mark.parametrize(
    ("mode", "searched", "ok"),
    [
        ("enforcing", ["one.test", "two.test"], False),
        ("enforcing", ["one.test"], True),
        ("permissive", ["one.test", "two.test"], True),
        ("disabled", ["one.test", "two.test"], True),
    ],
)
def test_short_name_modes_without_a_tty(
    tmp_path: Path, mode: str, searched: list[str], ok: bool
) -> None:
    c = conf(
        tmp_path,
        f"short-name-mode = {json.dumps(mode)}\n"
        f"unqualified-search-registries = {json.dumps(searched)}\n"
        '[aliases]\n"app" = "one.test/app"\n',
    )
    assert c.candidates("app") == refs("one.test/app:latest")  # an alias is never ambiguous
    if ok:
        assert c.candidates("x") == [ref(f"{r}/x") for r in searched]
    else:
        with pytest.raises(RegistryConfigError) as e:
            c.candidates("x")
        assert str(e.value) == "short-name resolution enforced but cannot prompt without a TTY"


def test_a_broken_alias_cache_is_an_error(tmp_path: Path) -> None:
    c = conf(
        tmp_path, 'unqualified-search-registries = ["one.test"]', aliases='[aliases]\n"a" = "b"\n'
    )
    with pytest.raises(RegistryConfigError) as e:
        c.candidates("x")
    assert str(e.value) == (
        f'loading short-name aliases config file "{tmp_path}/short-name-aliases.conf": '
        'invalid alias "b": must contain registry and repository'
    )


def test_short_name_aliases_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("_CONTAINERS_ROOTLESS_UID", "0")
    assert registries_conf.short_name_aliases_path() == Path(
        "/var/cache/containers/short-name-aliases.conf"
    )
    monkeypatch.setenv("_CONTAINERS_ROOTLESS_UID", "1000")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert (
        registries_conf.short_name_aliases_path()
        == tmp_path / ".cache/containers/short-name-aliases.conf"
    )
    monkeypatch.setenv("XDG_CACHE_HOME", "/xdg")
    assert registries_conf.short_name_aliases_path() == Path(
        "/xdg/containers/short-name-aliases.conf"
    )


# --- twins: skopeo and podman on loopback registries ---------------------------------------


def skopeo_inspect(conf_file: Path, image: str) -> subprocess.CompletedProcess[bytes]:
    """``skopeo inspect --raw`` reading ``conf_file`` as registries.conf (no TLS options: the
    configuration alone decides)."""
    require(SKOPEO)
    env = {**os.environ, "REGISTRY_AUTH_FILE": "/nonexistent/auth.json"}
    cmd = [SKOPEO, "--registries-conf", str(conf_file), "inspect", "--raw", image]
    return subprocess.run(cmd, capture_output=True, env=env, check=False)


@pytest.fixture
def images(tmp_path: Path) -> Callable[[Registry, str, int], str]:
    """Push a distinct small image (``variant`` picks its content) to ``repo:1`` of a
    registry; returns its manifest digest."""

    def push_one(reg: Registry, repo: str, variant: int) -> str:
        layout = make_layout(
            tmp_path / f"layout-{reg.host.replace(':', '_')}-{repo.replace('/', '_')}-{variant}",
            layer_bytes=(b"v" * variant,),
        )
        push(reg, layout, repo)
        return layout.manifest_digest

    return push_one


def test_prefix_rewrite_and_insecure_as_skopeo(
    tmp_path: Path, plain_registry: Registry, images: Callable[[Registry, str, int], str]
) -> None:
    digest = images(plain_registry, "real/ns/img", 1)
    path = tmp_path / "registries.conf"
    host = plain_registry.host
    for insecure in (True, False):
        path.write_text(
            f'[[registry]]\nprefix = "example.test/ns"\nlocation = "{host}/real/ns"\n'
            f"insecure = {json.dumps(insecure)}\n"
        )
        c = load(path, drop_in_dirs=[])
        (src,) = c.pull_sources(ref("example.test/ns/img:1"))
        assert src == Source(ref(f"{host}/real/ns/img:1"), insecure)
        p = skopeo_inspect(path, "docker://example.test/ns/img:1")
        # A plain-HTTP registry is reachable only when the entry says insecure.
        assert (p.returncode == 0) == src.insecure, p.stderr
        if src.insecure:
            assert sha256(p.stdout) == digest


def test_blocked_as_skopeo(tmp_path: Path, plain_registry: Registry) -> None:
    path = tmp_path / "registries.conf"
    path.write_text(f'[[registry]]\nlocation = "{plain_registry.host}"\nblocked = true\n')
    c = load(path)
    image = f"{plain_registry.host}/a/b:1"
    with pytest.raises(RegistryBlockedError) as e:
        c.pull_sources(ref(image))
    p = skopeo_inspect(path, f"docker://{image}")
    assert p.returncode != 0
    assert str(e.value) in p.stderr.decode(), p.stderr


def test_mirror_order_and_fallback_as_skopeo(
    tmp_path: Path, start: Callable[[str], Registry], images: Callable[[Registry, str, int], str]
) -> None:
    primary, mirror = start("http"), start("http")
    on_primary = images(primary, "app", 1)
    on_mirror = images(mirror, "app", 2)
    only_primary = images(primary, "other", 3)
    path = tmp_path / "registries.conf"

    def configure(mirror_options: str) -> RegistriesConf:
        path.write_text(
            f'[[registry]]\nlocation = "{primary.host}"\ninsecure = true\n'
            f'[[registry.mirror]]\nlocation = "{mirror.host}"\n{mirror_options}\n'
        )
        return load(path, drop_in_dirs=[])

    def served(c: RegistriesConf, repo: str) -> str:
        """Which image skopeo gets, checked against the first of our sources holding it."""
        p = skopeo_inspect(path, f"docker://{primary.host}/{repo}:1")
        assert p.returncode == 0, p.stderr
        return sha256(p.stdout)

    c = configure("insecure = true")
    assert c.pull_sources(ref(f"{primary.host}/app:1")) == [
        Source(ref(f"{mirror.host}/app:1"), True),
        Source(ref(f"{primary.host}/app:1"), True),
    ]
    assert served(c, "app") == on_mirror
    assert served(c, "other") == only_primary  # not on the mirror: the primary serves it
    # A mirror is insecure only by its own setting: over plain HTTP it fails, the primary serves.
    c = configure("")
    assert c.pull_sources(ref(f"{primary.host}/app:1"))[0] == Source(ref(f"{mirror.host}/app:1"))
    assert served(c, "app") == on_primary
    # A digest-only mirror is skipped for a tag.
    c = configure('insecure = true\npull-from-mirror = "digest-only"')
    assert c.pull_sources(ref(f"{primary.host}/app:1")) == [
        Source(ref(f"{primary.host}/app:1"), True)
    ]
    assert served(c, "app") == on_primary


@pytest.fixture
def podman_store() -> Iterator[list[str]]:
    """podman's options for a throwaway vfs store with a short run root."""
    require(PODMAN)
    base = Path(tempfile.mkdtemp(prefix="cs-rc-", dir="/tmp"))
    try:
        yield [*podman_args((base / "root", base / "run")), "--storage-driver=vfs"]
    finally:
        subprocess.run(["rm", "-rf", str(base)], check=False)


def podman_pull(args: list[str], conf_file: Path, name: str) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "CONTAINERS_REGISTRIES_CONF": str(conf_file)}
    return subprocess.run(
        [PODMAN, *args, "pull", "-q", name],
        capture_output=True,
        env=env,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def podman_names(args: list[str]) -> list[str]:
    out = subprocess.run(
        [PODMAN, *args, "images", "--format", "json"], capture_output=True, check=True
    )
    return sorted(n for img in json.loads(out.stdout) for n in img.get("Names") or [])


def test_short_names_as_podman(
    tmp_path: Path,
    start: Callable[[str], Registry],
    images: Callable[[Registry, str, int], str],
    podman_store: list[str],
) -> None:
    empty, full = start("http"), start("http")
    images(full, "img", 1)
    images(full, "ns/aliased", 2)
    path = tmp_path / "registries.conf"
    text = (
        f'unqualified-search-registries = ["{empty.host}", "{full.host}"]\n'
        f'[aliases]\n"myalias" = "{full.host}/ns/aliased"\n'
        f'[[registry]]\nlocation = "{empty.host}"\ninsecure = true\n'
        f'[[registry]]\nlocation = "{full.host}"\ninsecure = true\n'
    )
    path.write_text(text)
    # podman reads the system drop-ins too (CONTAINERS_REGISTRIES_CONF replaces only the file).
    c = load(path)
    assert c.candidates("img:1") == refs(f"{empty.host}/img:1", f"{full.host}/img:1")
    assert c.candidates("myalias:1") == refs(f"{full.host}/ns/aliased:1")
    # Permissive: the first candidate fails, the second is pulled and named.
    p = podman_pull(podman_store, path, "img:1")
    assert p.returncode == 0, p.stderr
    p = podman_pull(podman_store, path, "myalias:1")
    assert p.returncode == 0, p.stderr
    assert podman_names(podman_store) == sorted(
        [str(c.candidates("img:1")[1]), str(c.candidates("myalias:1")[0])]
    )
    # Enforcing with two search registries and no TTY: the same error...
    path.write_text('short-name-mode = "enforcing"\n' + text)
    c = load(path)
    with pytest.raises(RegistryConfigError) as e:
        c.candidates("other:1")
    p = podman_pull(podman_store, path, "other:1")
    assert p.returncode != 0
    assert f"Error: {e.value}" in p.stderr.decode(), p.stderr
    # ... but a short name already in the store (one of its local candidates) is pulled by
    # that image's name, without resolution.
    assert ref(f"{full.host}/img:1") in c.local_candidates("img:1")
    with pytest.raises(RegistryConfigError):
        c.candidates("img:1")
    p = podman_pull(podman_store, path, "img:1")
    assert p.returncode == 0, p.stderr
    # No search registries: the same error.
    path.write_text("")
    c = load(path)
    with pytest.raises(RegistryConfigError) as e:
        c.candidates("other:1")
    p = podman_pull(podman_store, path, "other:1")
    assert p.returncode != 0
    assert f"Error: {e.value}" in p.stderr.decode(), p.stderr


def test_drop_ins_and_wildcards_as_skopeo(
    tmp_path: Path,
    plain_registry: Registry,
    images: Callable[[Registry, str, int], str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The main file blocks the registry; the user's drop-in (read also with an explicit
    main file) replaces that entry; a wildcard prefix rewrites subdomains to it."""
    digest = images(plain_registry, "img", 1)
    host = plain_registry.host
    monkeypatch.setenv("HOME", str(tmp_path))
    drop_ins = tmp_path / ".config/containers/registries.conf.d"
    drop_ins.mkdir(parents=True)
    path = tmp_path / "registries.conf"
    path.write_text(f'[[registry]]\nlocation = "{host}"\nblocked = true\n')
    with pytest.raises(RegistryBlockedError):
        load(path).pull_sources(ref(f"{host}/img:1"))
    assert skopeo_inspect(path, f"docker://{host}/img:1").returncode != 0
    (drop_ins / "50-unblock.conf").write_text(
        f'[[registry]]\nlocation = "{host}"\ninsecure = true\n'
        f'[[registry]]\nprefix = "*.example.test"\nlocation = "{host}"\ninsecure = true\n'
    )
    c = load(path)
    for name in (f"{host}/img:1", "a.b.example.test/img:1"):
        assert c.pull_sources(ref(name)) == [Source(ref(f"{host}/img:1"), True)]
        p = skopeo_inspect(path, f"docker://{name}")
        assert p.returncode == 0, p.stderr
        assert sha256(p.stdout) == digest
    # example.test itself is not a subdomain of example.test: nothing rewrites it.
    assert c.pull_sources(ref("example.test/img:1")) == [Source(ref("example.test/img:1"))]
