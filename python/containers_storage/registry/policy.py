"""Whether an image may be pulled, as containers/image v5.23 reads ``policy.json``
(``default``, ``transports`` and per-scope requirements: ``insecureAcceptAnything``,
``reject``; requirements on signatures, which are not verified here, refuse the image with a
clear error instead of accepting it).

The interface pull uses: :func:`load`, then :meth:`Policy.check` for the reference being
fetched. Placeholder behaviour until the file is read: everything is accepted.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ..reference import Reference

__all__ = ["Policy", "load"]


@dataclasses.dataclass(frozen=True)
class Policy:
    """A parsed ``policy.json``."""

    def check(self, ref: Reference, transport: str = "docker") -> None:
        """Allow ``ref`` from ``transport`` or raise.

        Raises:
            PolicyDeniedError: a ``reject`` requirement, or a signature requirement.
        """


def load(path: Path | None = None) -> Policy:
    """Read ``policy.json``: ``path``, else ``~/.config/containers/policy.json``, else
    ``/etc/containers/policy.json`` (c/image's ``DefaultPolicy``)."""
    return Policy()
