"""Where an image is pulled from and pushed to, as containers/image v5.23 reads
``registries.conf`` and ``registries.conf.d`` (``pkg/sysregistriesv2``) and podman 4.3
resolves short names (``pkg/shortnames``, c/common's ``libimage``).

This is the interface pull and push use: :func:`load`, then :meth:`RegistriesConf.candidates`
for a user's name, :meth:`RegistriesConf.pull_sources` for each candidate and
:meth:`RegistriesConf.push_destination` for a push. podman first looks the name up in local
storage by :meth:`RegistriesConf.local_candidates` and, when an image is there, pulls by that
image's name instead of resolving the short name.

- Files: ``path``, else ``$CONTAINERS_REGISTRIES_CONF`` (or ``$REGISTRIES_CONFIG_PATH``), both
  with the drop-ins of ``/etc/containers/registries.conf.d`` then
  ``~/.config/containers/registries.conf.d``; else ``~/.config/containers/registries.conf`` if
  it exists, with only the user's drop-ins; else ``/etc/containers/registries.conf`` (missing:
  empty) with both drop-in directories. Drop-ins are ``*.conf`` files in lexical order, v2
  only; a later ``[[registry]]`` with the same prefix replaces the earlier one whole,
  ``unqualified-search-registries``, ``credential-helpers`` and ``short-name-mode`` are
  replaced when set, ``[aliases]`` merge per name. A v1 file (``[registries.search]``...) is
  converted; v1 and v2 keys together are refused.
- Short names (podman only; skopeo normalises to docker.io): an alias (the user's
  ``short-name-aliases.conf`` first, then ``[aliases]``) is the only candidate, else one per
  unqualified-search registry. Nothing here prompts: with two or more candidates,
  ``enforcing`` fails as podman does without a TTY, ``permissive`` and ``disabled`` try all.
- Pull: the longest matching ``prefix`` (``*.example.com`` matches subdomains) gives the
  mirrors (filtered by ``pull-from-mirror`` / ``mirror-by-digest-only``) then the location, the
  prefix replaced by each endpoint's location. An endpoint whose rewritten name falls in a
  ``blocked`` entry is not tried (c/image fails that attempt without contacting it).
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .._strconv import go_quote
from ..errors import InvalidReferenceError
from ..reference import _DOMAIN, Reference, _parse, parse_docker_reference, parse_normalized_named
from .errors import RegistryBlockedError, RegistryConfigError

__all__ = [
    "Endpoint",
    "RegistriesConf",
    "Registry",
    "Source",
    "load",
    "short_name_aliases_path",
]

SYSTEM_CONF = Path("/etc/containers/registries.conf")
SYSTEM_CONF_DIR = Path("/etc/containers/registries.conf.d")
USER_CONF = Path(".config/containers/registries.conf")
USER_CONF_DIR = Path(".config/containers/registries.conf.d")
AUTH_FILE_HELPER = "containers-auth.json"
SHORT_NAME_MODES = ("enforcing", "permissive", "disabled")
PULL_FROM_MIRROR = ("all", "digest-only", "tag-only")
_ANCHORED_DOMAIN = re.compile(rf"^{_DOMAIN}$", re.ASCII)


@dataclasses.dataclass(frozen=True)
class Source:
    """One place to fetch or send an image: ``ref`` rewritten to the endpoint (its
    ``domain`` is the host[:port] to contact, its ``path`` the repository there, with any
    location prefix), and whether TLS verification is off for it (``insecure``)."""

    ref: Reference
    insecure: bool = False


@dataclasses.dataclass(frozen=True)
class Endpoint:
    """A registry's location or one of its mirrors (``pull_from_mirror`` only on mirrors)."""

    location: str
    insecure: bool = False
    pull_from_mirror: str = ""


@dataclasses.dataclass(frozen=True)
class Registry:
    """One ``[[registry]]`` entry after c/image's post-processing (``prefix`` defaulted to the
    location, trailing ``/`` trimmed)."""

    prefix: str
    endpoint: Endpoint
    mirrors: tuple[Endpoint, ...] = ()
    blocked: bool = False
    mirror_by_digest_only: bool = False


@dataclasses.dataclass(frozen=True)
class _Alias:
    value: Reference | None  # None: reset by an empty value
    origin: str


@dataclasses.dataclass(frozen=True)
class RegistriesConf:
    """The merged configuration (``registries.conf`` then its drop-ins in lexical order)."""

    unqualified_search_registries: tuple[str, ...] = ()
    registries: tuple[Registry, ...] = ()
    short_name_mode: str = "permissive"
    credential_helpers: tuple[str, ...] = (AUTH_FILE_HELPER,)
    aliases: Mapping[str, _Alias] = dataclasses.field(default_factory=dict)
    #: The file that set ``unqualified_search_registries`` ("" when no file was found).
    search_origin: str = ""
    #: The main file and the drop-in directory named in a ``blocked`` error, as c/image does.
    config_path: str = str(SYSTEM_CONF)
    config_dir: str = ""
    #: The machine-written ``short-name-aliases.conf`` (read on each resolution).
    aliases_file: Path | None = None

    def candidates(self, name: str) -> list[Reference]:
        """The fully-qualified references a user's ``name`` may mean, in the order podman
        tries them: ``docker://NAME`` and qualified names as they are (normalised, ``:latest``
        added); a short name's alias alone, else one per unqualified-search registry. A
        tag and a digest together keep only the digest (podman's Docker compatibility).

        Raises:
            InvalidReferenceError: ``name`` does not parse.
            RegistryConfigError: a short name and no search registries, an ambiguous one in
                ``enforcing`` mode, or an invalid ``short-name-aliases.conf``.
        """
        if name.startswith("docker://"):
            return [parse_docker_reference(name)]
        name, ref, alias = self._short(name)
        if ref is not None:
            return [ref]
        if alias is not None:
            return [alias]
        if not self.unqualified_search_registries:
            if self.search_origin:
                raise RegistryConfigError(
                    f"short-name {go_quote(name)} did not resolve to an alias and no "
                    f"unqualified-search registries are defined in {go_quote(self.search_origin)}"
                )
            raise RegistryConfigError(
                f"short-name {go_quote(name)} did not resolve to an alias and no "
                "containers-registries.conf(5) was found"
            )
        out = []
        for reg in self.unqualified_search_registries:
            try:
                out.append(parse_normalized_named(f"{reg}/{name}").with_tag_or_default())
            except InvalidReferenceError as e:
                raise InvalidReferenceError(
                    f"creating reference with unqualified-search registry {go_quote(reg)}: {e}"
                ) from None
        if len(out) > 1 and self.short_name_mode == "enforcing":
            raise RegistryConfigError(
                "short-name resolution enforced but cannot prompt without a TTY"
            )
        return out

    def local_candidates(self, name: str) -> list[Reference]:
        """The names podman looks ``name`` up by in local storage before pulling
        (``shortnames.ResolveLocally`` then libimage's docker.io fallback): a qualified
        name as it is; for a short name its alias, ``localhost/NAME``, one per
        unqualified-search registry, then ``docker.io/library/NAME``. When one of them is
        in the store, podman pulls by that image's name instead of resolving ``name``.

        Raises:
            InvalidReferenceError: ``name`` does not parse.
            RegistryConfigError: an invalid ``short-name-aliases.conf``.
        """
        name, ref, alias = self._short(name)
        if ref is not None:
            return [ref]
        out = [] if alias is None else [alias]
        for reg in ("localhost", *self.unqualified_search_registries):
            out.append(parse_normalized_named(f"{reg}/{name}").with_tag_or_default())
        out.append(parse_normalized_named(name).with_tag_or_default())
        return out

    def _short(self, name: str) -> tuple[str, Reference | None, Reference | None]:
        """``name`` without the tag when it also has a digest, and either its qualified
        reference (not a short name) or its alias (None without one)."""
        if name.startswith("sha256:") or (len(name) == 64 and not any(c in name for c in "/.:@")):
            # podman looks these up in local storage only, never in a registry.
            raise InvalidReferenceError(
                f"{go_quote(name)} refers to a local image by ID or digest, not to a registry"
            )
        ref = _parse(name)
        if ref.tag is not None and ref.digest is not None:
            name = name[: name.rfind(":", 0, name.rfind("@"))] + "@" + ref.digest
            ref = dataclasses.replace(ref, tag=None)
        if _is_qualified_domain(ref.domain):
            return name, parse_normalized_named(name).with_tag_or_default(), None
        repo = Reference(ref.domain, ref.path).name.lstrip("/")
        alias = _read_aliases(self.aliases_file).get(repo) or self.aliases.get(repo)
        if alias is None or alias.value is None:
            return name, None, None
        value = dataclasses.replace(alias.value, tag=ref.tag, digest=ref.digest)
        return name, None, value.with_tag_or_default()

    def find(self, name: str) -> Registry | None:
        """``FindRegistry``: the entry with the longest prefix matching ``name`` (a registry,
        namespace, repository or full reference string), or None."""
        best: Registry | None = None
        for reg in self.registries:
            if _match_prefix(name, reg.prefix) != -1 and (
                best is None or len(reg.prefix) > len(best.prefix)
            ):
                best = reg
        return best

    def pull_sources(self, ref: Reference) -> list[Source]:
        """Where to fetch ``ref`` from, in order: the matching entry's mirrors, then its
        location (the reference itself when no entry matches).

        Raises:
            RegistryBlockedError: every endpoint is ``blocked`` (the text of the location's).
            RegistryConfigError: a location rewrites the reference into an invalid one.
        """
        reg = self.find(ref.name)
        if reg is None:
            reg = Registry(prefix=str(ref), endpoint=Endpoint(str(ref)))
        endpoints = [reg.endpoint]
        if reg.mirror_by_digest_only:
            if ref.digest is not None:
                endpoints[:0] = reg.mirrors
        else:
            endpoints[:0] = [
                m
                for m in reg.mirrors
                if not (m.pull_from_mirror == "digest-only" and ref.digest is None)
                and not (m.pull_from_mirror == "tag-only" and ref.digest is not None)
            ]
        sources = []
        blocked: RegistryBlockedError | None = None
        for ep in endpoints:
            physical = _rewrite(ref, reg.prefix, ep.location)
            try:
                self._check_blocked(physical)
            except RegistryBlockedError as e:
                blocked = e
                continue
            sources.append(Source(physical, ep.insecure))
        if not sources:
            assert blocked is not None
            raise blocked
        return sources

    def push_destination(self, ref: Reference) -> Source:
        """Where to push ``ref``: the reference itself (locations and mirrors are never
        used for a push), insecure as the matching entry says.

        Raises:
            RegistryBlockedError: the matching entry is ``blocked``.
        """
        reg = self._check_blocked(ref)
        return Source(ref, reg is not None and reg.endpoint.insecure)

    def _check_blocked(self, ref: Reference) -> Registry | None:
        reg = self.find(ref.name)
        if reg is not None and reg.blocked:
            raise RegistryBlockedError(
                f"registry {reg.prefix} is blocked in {self.config_path} or {self.config_dir}"
            )
        return reg


def _is_qualified_domain(domain: str) -> bool:
    return any(c in domain for c in ".:") or domain == "localhost"


def _match_prefix(ref: str, prefix: str) -> int:
    """``refMatchingPrefix``: the length of ``ref`` matched by ``prefix``, or -1. A plain
    prefix matches when followed by the end, ``:``, ``/`` or ``@`` (so ``example.com`` also
    matches ``example.com:5000``, as in c/image); ``*.example.com`` matches a subdomain."""
    if prefix.startswith("*."):
        index = ref.find(prefix[1:])
        if index == -1 or "/" in ref[:index]:
            return -1
        index += len(prefix) - 1
    elif ref.startswith(prefix):
        index = len(prefix)
    else:
        return -1
    if index == len(ref) or ref[index] in ":/@":
        return index
    return -1


def _rewrite(ref: Reference, prefix: str, location: str) -> Reference:
    """The reference with ``prefix`` replaced by ``location`` (unchanged for an empty
    location, which only a wildcard prefix may have)."""
    text = str(ref)
    if location == "":
        return ref
    rewritten = location + text[_match_prefix(text, prefix) :]
    try:
        out = parse_normalized_named(rewritten)
    except InvalidReferenceError as e:
        raise RegistryConfigError(f"rewriting reference: {e}") from None
    if str(out) != rewritten:
        raise RegistryConfigError("rewriting reference: repository name must be canonical")
    return out


# --- reading the files --------------------------------------------------------------------


@dataclasses.dataclass
class _Parsed:
    registries: dict[str, Registry]
    search: list[str] | None
    helpers: list[str] | None
    mode: str | None
    aliases: dict[str, _Alias]
    origin: str


def _location(text: str) -> str:
    trimmed = text.rstrip("/")
    if trimmed.startswith(("http://", "https://")):
        raise RegistryConfigError(f"invalid location '{text}': URI schemes are not supported")
    return trimmed


def _typed(table: Mapping[str, Any], key: str, kind: type, what: str) -> Any:
    value = table.get(key)
    if value is not None and not isinstance(value, kind):
        raise RegistryConfigError(
            f"toml: {what}{key}: incompatible types: TOML value has type "
            f"{type(value).__name__}; destination has type {kind.__name__}"
        )
    return value


def _strings(table: Mapping[str, Any], key: str) -> list[str] | None:
    value = _typed(table, key, list, "")
    if value is not None and not all(isinstance(v, str) for v in value):
        raise RegistryConfigError(f"toml: {key}: expected an array of strings")
    return None if value is None else [str(v) for v in value]


def _v1_conf(data: Mapping[str, Any]) -> dict[str, list[str]] | None:
    v1 = _typed(data, "registries", dict, "")
    if v1 is None:
        return None
    out = {}
    for kind in ("search", "insecure", "block"):
        section = _typed(v1, kind, dict, "registries.")
        if section is not None:
            out[kind] = _strings(section, "registries") or []
    return out if any(out.values()) else None


def _v2_nonempty(data: Mapping[str, Any]) -> bool:
    return bool(
        data.get("registry")
        or data.get("unqualified-search-registries")
        or data.get("credential-helpers")
        or data.get("aliases")
        or data.get("short-name-mode")
    )


def _registry(table: Mapping[str, Any]) -> Registry:
    location = _location(_typed(table, "location", str, "registry.") or "")
    prefix = _typed(table, "prefix", str, "registry.") or ""
    if prefix == "":
        if location == "":
            raise RegistryConfigError("invalid condition: both location and prefix are unset")
        prefix = location
    else:
        prefix = _location(prefix)
        if not prefix.startswith("*.") and location == "":
            raise RegistryConfigError(
                "invalid condition: location is unset and prefix is not in the format: "
                "*.example.com"
            )
    if _typed(table, "pull-from-mirror", str, "registry."):
        raise RegistryConfigError(
            f"pull-from-mirror must not be set for a non-mirror registry {go_quote(prefix)}"
        )
    by_digest = bool(_typed(table, "mirror-by-digest-only", bool, "registry."))
    mirrors = []
    for m in _typed(table, "mirror", list, "registry.") or []:
        # c/image validates the trimmed location but keeps the mirror's as written.
        raw = _typed(m, "location", str, "registry.mirror.") or ""
        if _location(raw) == "":
            raise RegistryConfigError("invalid condition: mirror location is unset")
        pull_from = _typed(m, "pull-from-mirror", str, "registry.mirror.") or ""
        if by_digest and pull_from:
            raise RegistryConfigError(
                "cannot set mirror usage mirror-by-digest-only for the registry "
                f"({go_quote(prefix)}) and pull-from-mirror for per-mirror ({go_quote(raw)}) "
                "at the same time"
            )
        if pull_from and pull_from not in PULL_FROM_MIRROR:
            raise RegistryConfigError(
                f"unsupported pull-from-mirror value {go_quote(pull_from)} for mirror "
                f"{go_quote(raw)}"
            )
        insecure = bool(_typed(m, "insecure", bool, "registry.mirror."))
        mirrors.append(Endpoint(raw, insecure, pull_from))
    return Registry(
        prefix=prefix,
        endpoint=Endpoint(location, bool(_typed(table, "insecure", bool, "registry."))),
        mirrors=tuple(mirrors),
        blocked=bool(_typed(table, "blocked", bool, "registry.")),
        mirror_by_digest_only=by_digest,
    )


def _check_conflicts(regs: list[Registry]) -> None:
    groups: dict[str, list[Registry]] = {}
    for reg in regs:
        groups.setdefault(reg.endpoint.location or reg.prefix, []).append(reg)
    for reg in regs:
        for other in groups[reg.endpoint.location or reg.prefix]:
            for what in ("insecure", "blocked"):
                mine = reg.endpoint.insecure if what == "insecure" else reg.blocked
                theirs = other.endpoint.insecure if what == "insecure" else other.blocked
                if mine != theirs:
                    raise RegistryConfigError(
                        f"registry '{reg.endpoint.location}' is defined multiple times with "
                        f"conflicting '{what}' setting"
                    )


def _validate_short_name(name: str) -> None:
    try:
        ref = _parse(name)
    except InvalidReferenceError as e:
        raise RegistryConfigError(f"cannot parse short name: {go_quote(name)}: {e}") from None
    if ref.digest is not None:
        raise RegistryConfigError(f"invalid short name {go_quote(name)}: must not contain digest")
    if ref.tag is not None:
        raise RegistryConfigError(f"invalid short name {go_quote(name)}: must not contain tag")
    if _is_qualified_domain(ref.domain):
        raise RegistryConfigError(f"invalid short name {go_quote(name)}: must not contain registry")


def _alias_value(value: str) -> Reference:
    try:
        ref = _parse(value)
    except InvalidReferenceError as e:
        raise RegistryConfigError(f"parsing alias {go_quote(value)}: {e}") from None
    if ref.digest is not None:
        raise RegistryConfigError(f"invalid alias {go_quote(value)}: must not contain digest")
    if ref.tag is not None:
        raise RegistryConfigError(f"invalid alias {go_quote(value)}: must not contain tag")
    if not _is_qualified_domain(ref.domain):
        raise RegistryConfigError(
            f"invalid alias {go_quote(value)}: must contain registry and repository"
        )
    return parse_normalized_named(value)


def _aliases(table: Mapping[str, Any], origin: str) -> dict[str, _Alias]:
    """``newShortNameAliasCache``: every entry checked, all errors reported (the last
    first, each followed by ``\\n: `` and the ones before, as c/image chains them)."""
    out: dict[str, _Alias] = {}
    errs: list[str] = []
    for name, value in table.items():
        try:
            _validate_short_name(name)
        except RegistryConfigError as e:
            errs.append(str(e))
        if not isinstance(value, str):
            errs.append(f"toml: aliases.{name}: expected a string")
            continue
        if value == "":
            out[name] = _Alias(None, origin)
            continue
        try:
            out[name] = _Alias(_alias_value(value), origin)
        except RegistryConfigError as e:
            errs.append(str(e))
    if errs:
        text = errs[0]
        for err in errs[1:]:
            text = f"{err}\n: {text}"
        raise RegistryConfigError(text)
    return out


def _load_file(path: Path, *, force_v2: bool) -> _Parsed:
    """``loadConfigFile``: one file, post-processed; OSError (missing file) passes through."""
    with open(path, "rb") as f:
        raw = f.read()
    try:
        data = tomllib.loads(raw.decode())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise RegistryConfigError(f"toml: {e}") from None
    v1 = _v1_conf(data)
    if v1 is not None:
        if force_v2:
            raise RegistryConfigError("registry must be in v2 format but is in v1")
        if _v2_nonempty(data):
            raise RegistryConfigError("mixing sysregistry v1/v2 is not supported")
        regs: dict[str, dict[str, Any]] = {}
        for kind in ("block", "insecure"):
            for loc in v1.get(kind, []):
                loc = _location(loc)
                entry = regs.setdefault(loc, {"location": loc, "prefix": loc})
                entry["blocked" if kind == "block" else "insecure"] = True
        data = {"registry": list(regs.values())}
        if "search" in v1:
            data["unqualified-search-registries"] = v1["search"]
    tables = _typed(data, "registry", list, "")
    if tables is not None and not all(isinstance(t, dict) for t in tables):
        raise RegistryConfigError("toml: registry: expected an array of tables")
    regs_list = [_registry(t) for t in tables or []]
    _check_conflicts(regs_list)
    search = _strings(data, "unqualified-search-registries")
    if search is not None:
        search = [_location(s) for s in search]
        for s in search:
            if not _ANCHORED_DOMAIN.match(s):
                raise RegistryConfigError(
                    f"Invalid unqualified-search-registries entry {go_quote(s)}"
                )
    registries: dict[str, Registry] = {}
    for reg in regs_list:  # the first entry of a prefix wins within one file
        registries.setdefault(reg.prefix, reg)
    mode = _typed(data, "short-name-mode", str, "") or None
    if mode is not None and mode not in SHORT_NAME_MODES:
        raise RegistryConfigError(f"invalid short-name mode: {go_quote(mode)}")
    for prefix in registries:
        if prefix.startswith("*.") and any(c in prefix for c in "/@:"):
            raise RegistryConfigError(
                "Wildcarded prefix should be in the format: *.example.com. Current prefix "
                f"{go_quote(prefix)} is incorrectly formatted"
            )
    try:
        aliases = _aliases(_typed(data, "aliases", dict, "") or {}, str(path))
    except RegistryConfigError as e:
        raise RegistryConfigError(f"validating short-name aliases: {e}") from None
    return _Parsed(
        registries=registries,
        search=search,
        helpers=_strings(data, "credential-helpers"),
        mode=mode,
        aliases=aliases,
        origin=str(path),
    )


def _read_aliases(path: Path | None) -> dict[str, _Alias]:
    """The machine-written ``short-name-aliases.conf`` (missing: no aliases)."""
    if path is None:
        return {}
    try:
        with open(path, "rb") as f:
            data = tomllib.loads(f.read().decode())
        return _aliases(_typed(data, "aliases", dict, "") or {}, str(path))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        raise RegistryConfigError(
            f"loading short-name aliases config file {go_quote(str(path))}: {e}"
        ) from None


def _home() -> Path:
    return Path(os.environ.get("HOME") or Path.home())


def _euid() -> int:
    env = os.environ.get("_CONTAINERS_ROOTLESS_UID", "")
    if env:
        try:
            return int(env)
        except ValueError:
            return 0  # Go's Atoi error leaves 0
    return os.geteuid()


def short_name_aliases_path() -> Path:
    """Where podman records short-name choices: ``/var/cache/containers/`` for root, else
    ``$XDG_CACHE_HOME/containers/`` (default ``~/.cache``), ``short-name-aliases.conf``."""
    if _euid() == 0:
        return Path("/var/cache/containers/short-name-aliases.conf")
    cache = os.environ.get("XDG_CACHE_HOME") or str(_home() / ".cache")
    return Path(cache) / "containers" / "short-name-aliases.conf"


def _drop_ins(dirs: Sequence[Path]) -> list[Path]:
    out: list[Path] = []
    for d in dirs:
        try:
            with os.scandir(d) as it:
                entries = sorted(it, key=lambda e: e.name)
        except FileNotFoundError:
            continue
        except OSError as e:
            raise RegistryConfigError(f"reading registries.conf.d: {e}") from None
        out += [Path(e.path) for e in entries if e.name.endswith(".conf") and not e.is_dir()]
    return out


def load(
    path: Path | None = None,
    *,
    drop_in_dirs: Sequence[Path] | None = None,
    aliases_file: Path | None = None,
) -> RegistriesConf:
    """Read ``registries.conf`` as podman 4.3 does: ``path`` (default
    ``$CONTAINERS_REGISTRIES_CONF``, ``~/.config/containers/registries.conf`` for a
    rootless user, ``/etc/containers/registries.conf``) and its ``.d`` drop-ins
    (``drop_in_dirs`` replaces the directories c/image would choose). ``aliases_file`` is
    the machine-written alias file (default :func:`short_name_aliases_path`).

    Raises:
        RegistryConfigError: a file is invalid, or ``path`` (explicit or from the
            environment) does not exist; c/image's texts.
    """
    explicit = path is not None
    if path is None:
        # The first variable that is set wins, even when empty (then: the default files).
        env = os.environ.get("CONTAINERS_REGISTRIES_CONF", os.environ.get("REGISTRIES_CONFIG_PATH"))
        if env:
            path, explicit = Path(env), True
    home = _home()
    system_dir: Path | None = SYSTEM_CONF_DIR
    user_dir = home / USER_CONF_DIR
    if path is None:
        if (home / USER_CONF).exists():
            path, system_dir = home / USER_CONF, None
        else:
            path = SYSTEM_CONF
    dirs = [d for d in (system_dir, user_dir) if d is not None]
    if drop_in_dirs is not None:
        dirs = list(drop_in_dirs)
    try:
        base = _load_file(path, force_v2=False)
    except FileNotFoundError as e:
        if explicit:
            raise RegistryConfigError(
                f"loading registries configuration {go_quote(str(path))}: open {path}: "
                f"{os.strerror(e.errno or 2).lower()}"
            ) from None
        base = _Parsed({}, None, None, None, {}, "")
    except RegistryConfigError as e:
        raise RegistryConfigError(
            f"loading registries configuration {go_quote(str(path))}: {e}"
        ) from None
    except OSError as e:
        raise RegistryConfigError(
            f"loading registries configuration {go_quote(str(path))}: {e}"
        ) from None
    for drop_in in _drop_ins(dirs):
        try:
            upd = _load_file(drop_in, force_v2=True)
        except (OSError, RegistryConfigError) as e:
            raise RegistryConfigError(
                f"loading drop-in registries configuration {go_quote(str(drop_in))}: {e}"
            ) from None
        base.registries.update(upd.registries)
        if upd.search is not None:
            base.search, base.origin = upd.search, upd.origin
        if upd.helpers is not None:
            base.helpers = upd.helpers
        if upd.mode is not None:
            base.mode = upd.mode
        base.aliases.update(upd.aliases)
    return RegistriesConf(
        unqualified_search_registries=tuple(base.search or ()),
        registries=tuple(base.registries[p] for p in sorted(base.registries)),
        short_name_mode=base.mode or "permissive",
        credential_helpers=tuple(base.helpers or (AUTH_FILE_HELPER,)),
        aliases=base.aliases,
        search_origin=base.origin,
        config_path=str(path),
        config_dir=str(user_dir if drop_in_dirs is None else (dirs[-1] if dirs else "")),
        aliases_file=short_name_aliases_path() if aliases_file is None else aliases_file,
    )
