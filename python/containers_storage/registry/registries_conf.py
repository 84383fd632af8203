"""Where an image is pulled from and pushed to, as containers/image v5.23 reads
``registries.conf`` (v2) and ``registries.conf.d``: short names through
``unqualified-search-registries``, ``[[registry]]`` ``prefix``/``location`` rewrites,
``insecure``, ``blocked`` and ``mirror``\\ s tried in order.

This is the interface pull and push use: :func:`load`, then :meth:`RegistriesConf.candidates`
for a user's name, :meth:`RegistriesConf.pull_sources` for each candidate and
:meth:`RegistriesConf.push_destination` for a push.

Placeholder behaviour until the configuration files are read: short names become
``docker.io/library/NAME`` (c/image's normalisation), each reference is reached at its own
registry, nothing is insecure or blocked.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from ..reference import Reference, parse_docker_reference

__all__ = ["RegistriesConf", "Source", "load"]


@dataclasses.dataclass(frozen=True)
class Source:
    """One place to fetch or send an image: ``ref`` rewritten to the endpoint (its
    ``domain`` is the host[:port] to contact, its ``path`` the repository there, with any
    location prefix), and whether TLS verification is off for it (``insecure``)."""

    ref: Reference
    insecure: bool = False


@dataclasses.dataclass(frozen=True)
class RegistriesConf:
    """The merged configuration (``registries.conf`` then its drop-ins in lexical order)."""

    unqualified_search_registries: tuple[str, ...] = ()

    def candidates(self, name: str) -> list[Reference]:
        """The fully-qualified references a user's ``name`` may mean, in the order podman
        tries them (one for a qualified name; one per search registry for a short name).

        Raises:
            InvalidReferenceError: ``name`` does not parse.
            RegistryConfigError: a short name and no search registries.
        """
        return [parse_docker_reference(name)]

    def pull_sources(self, ref: Reference) -> list[Source]:
        """Where to fetch ``ref`` from, in order: the matching entry's mirrors, then its
        location (the reference itself when no entry matches).

        Raises:
            RegistryBlockedError: the matching entry is ``blocked``.
        """
        return [Source(ref)]

    def push_destination(self, ref: Reference) -> Source:
        """Where to push ``ref`` (mirrors are never pushed to).

        Raises:
            RegistryBlockedError: the matching entry is ``blocked``.
        """
        return Source(ref)


def load(
    path: Path | None = None,
    *,
    drop_in_dirs: Sequence[Path] | None = None,
) -> RegistriesConf:
    """Read ``registries.conf`` as podman 4.3 does: ``path`` (default
    ``$CONTAINERS_REGISTRIES_CONF``, ``~/.config/containers/registries.conf`` for a
    rootless user, ``/etc/containers/registries.conf``) and its ``.d`` drop-ins."""
    return RegistriesConf()
