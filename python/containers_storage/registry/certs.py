"""``certs.d`` directories into an SSL context, as containers/image v5.23 reads them
(``dockerCertDir`` and ``tlsclientconfig.SetupCertificates``)."""

from __future__ import annotations

import os
import ssl
from collections.abc import Sequence
from pathlib import Path

from .errors import RegistryConfigError

__all__ = ["PER_HOST_CERT_DIRS", "find_cert_dir", "ssl_context"]

#: The system-wide certs.d roots, after ``$HOME/.config/containers/certs.d``.
PER_HOST_CERT_DIRS = (Path("/etc/containers/certs.d"), Path("/etc/docker/certs.d"))


def find_cert_dir(
    host: str, *, cert_dir: Path | None = None, roots: Sequence[Path] | None = None
) -> Path:
    """The one directory whose certificates apply to ``host`` (``host[:port]`` as written in
    the reference: ``docker.io``, not its API host): ``cert_dir`` alone when given, else the
    first existing ``ROOT/host`` of ``$HOME/.config/containers/certs.d`` and
    :data:`PER_HOST_CERT_DIRS` (``roots`` replaces that list); the last candidate when none
    exists, as Go returns it."""
    if cert_dir is not None:
        return cert_dir
    if roots is None:
        home = Path(os.environ.get("HOME") or Path.home())
        roots = (home / ".config/containers/certs.d", *PER_HOST_CERT_DIRS)
    path = Path(host)
    for root in roots:
        path = root / host
        try:
            path.stat()
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            continue
        break
    return path


def ssl_context(directory: Path | None, *, verify: bool = True) -> ssl.SSLContext:
    """A client context: the system roots plus every ``*.crt`` of ``directory``, the client
    certificate of each ``*.cert`` with its ``*.key``; no verification with ``verify=False``
    (registries.conf ``insecure``, ``--tls-verify=false``).

    Raises:
        RegistryConfigError: A ``*.cert`` without its ``*.key`` or the reverse (Go's texts).
    """
    ctx = ssl.create_default_context()
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if directory is None:
        return ctx
    try:
        names = sorted(os.listdir(directory))
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return ctx
    present = set(names)
    for name in names:
        full = directory / name
        if name.endswith(".crt"):
            try:
                ctx.load_verify_locations(cafile=str(full))
            except FileNotFoundError:
                continue
            except ssl.SSLError as e:
                raise RegistryConfigError(f"reading certificate {full}: {e}") from e
        if name.endswith(".cert"):
            key = name[: -len(".cert")] + ".key"
            if key not in present:
                raise RegistryConfigError(
                    f"missing key {key} for client certificate {name}. "
                    "Note that CA certificates should use the extension .crt"
                )
            ctx.load_cert_chain(str(full), str(directory / key))
        if name.endswith(".key"):
            cert = name[: -len(".key")] + ".cert"
            if cert not in present:
                raise RegistryConfigError(f"missing client certificate {cert} for key {name}")
    return ctx
