"""The registry client's exceptions. Their texts follow containers/image v5.23's, so scripts
matching skopeo's and podman's messages keep working."""

from __future__ import annotations

from ..errors import InvalidReferenceError, StorageError

__all__ = [
    "AuthenticationError",
    "BlobDigestMismatchError",
    "HTTPStatusError",
    "InvalidReferenceError",
    "ManifestError",
    "PolicyDeniedError",
    "RedirectError",
    "RegistryBlockedError",
    "RegistryConfigError",
    "RegistryError",
    "TooManyRequestsError",
    "TruncatedBodyError",
]


class RegistryError(StorageError):
    """Base class of the registry client's errors."""

    go_message = "registry error"


class RegistryConfigError(RegistryError, ValueError):
    """registries.conf, an auth file or a certs.d directory is invalid."""


class RegistryBlockedError(RegistryError, PermissionError):
    """registries.conf marks the registry ``blocked``."""


class PolicyDeniedError(RegistryError, PermissionError):
    """``policy.json`` rejects the image, or demands signatures that are not verified here."""


class HTTPStatusError(RegistryError):
    """The registry answered with an unexpected status; ``status`` is the HTTP status and
    ``codes`` the distribution error codes of the body (``MANIFEST_UNKNOWN``...)."""

    def __init__(self, message: str, status: int, codes: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.codes = codes


class AuthenticationError(HTTPStatusError, PermissionError):
    """401: the credentials were refused or are missing (Go: ``ErrUnauthorizedForCredentials``:
    ``unable to retrieve auth token: invalid username/password: ...``)."""


class TooManyRequestsError(HTTPStatusError):
    """429 after the retries (Go: ``ErrTooManyRequests``)."""


class ManifestError(RegistryError, ValueError):
    """A manifest that cannot be used: schema 1, too big, of an unknown type."""


class BlobDigestMismatchError(RegistryError, ValueError):
    """The bytes of a blob do not match its digest."""


class TruncatedBodyError(RegistryError):
    """A body ended before its Content-Length, and resuming it failed."""


class RedirectError(RegistryError):
    """Too many redirects (Go's http.Client: ``stopped after 10 redirects``)."""
