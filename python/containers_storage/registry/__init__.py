"""A client of OCI distribution registries, as containers/image v5.23 talks to them.

Modules, each holding one thing: :mod:`.registries_conf` (``registries.conf`` and its drop-ins:
short names, prefixes, mirrors, ``blocked``, ``insecure``), :mod:`.policy` (``policy.json``),
:mod:`.certs` (``certs.d`` into an SSL context), :mod:`.auth` (auth files, credential helpers,
``WWW-Authenticate`` challenges, basic and bearer authentication), :mod:`.client` (ping,
manifests and blobs, with retries, redirects and digest checks), :mod:`.upload` (blob
existence, cross-repository mounts, uploads, manifest PUT) and :mod:`.errors`.

HTTP and TLS come from urllib3 (chosen by measurement: benches/README.md, "Registry client").
"""

from __future__ import annotations

from ..reference import Reference, parse_docker_reference, parse_normalized_named
from .errors import RegistryError

__all__ = ["Reference", "RegistryError", "parse_docker_reference", "parse_normalized_named"]
