"""A :class:`~.client.Client` for one endpoint, configured as podman configures its
copies: credentials from ``--creds`` or the auth files (looked up by the endpoint's
repository, most specific key first), TLS verification from ``--tls-verify`` or else the
endpoint's registries.conf ``insecure``."""

from __future__ import annotations

import os

from ..reference import Reference
from .auth import Credentials, find_credentials
from .client import Client
from .errors import RegistryConfigError

__all__ = ["client_for", "parse_creds"]


def parse_creds(creds: str | Credentials | None) -> Credentials | None:
    """``USER[:PASSWORD]`` (``--creds``) as credentials; ``None`` stays ``None``.

    Raises:
        RegistryConfigError: an empty value or an empty user name (c/common's texts).
    """
    if creds is None or isinstance(creds, Credentials):
        return creds
    if creds == "":
        raise RegistryConfigError("credentials can't be empty")
    user, _, password = creds.partition(":")
    if user == "":
        raise RegistryConfigError("username can't be empty")
    return Credentials(user, password)


def client_for(
    ref: Reference,
    *,
    insecure: bool = False,
    creds: str | Credentials | None = None,
    authfile: str | os.PathLike[str] | None = None,
    tls_verify: bool | None = None,
) -> Client:
    """A client of ``ref``'s registry (``ref`` as rewritten to the endpoint)."""
    given = parse_creds(creds)
    found = given if given is not None else find_credentials(ref.name, authfile=authfile)
    verify = (not insecure) if tls_verify is None else tls_verify
    return Client(ref.domain, creds=found, tls_verify=verify)
