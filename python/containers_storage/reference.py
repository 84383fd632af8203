"""Docker image references, parsed and normalised as containers/image v5.23's
``docker/reference`` does (``ParseNormalizedNamed``, ``TagNameOnly``), as its docker
transport accepts them (``docker://`` references: a tag or a digest, not both) and as its
storage transport names images (:func:`storage_name`).

One parser serves image names in the store, registry references and the CLI; an invalid
reference raises :class:`~containers_storage.errors.InvalidReferenceError` with c/image's
words.
"""

from __future__ import annotations

import dataclasses
import re

from . import errors as cs_errors
from ._strconv import go_quote
from .digests import validate_digest
from .errors import InvalidReferenceError

__all__ = [
    "DEFAULT_DOMAIN",
    "NAME_TOTAL_LENGTH_MAX",
    "Reference",
    "parse_docker_reference",
    "parse_normalized_named",
    "storage_name",
]

DEFAULT_DOMAIN = "docker.io"
LEGACY_DEFAULT_DOMAIN = "index.docker.io"
OFFICIAL_REPO_NAME = "library"
DEFAULT_TAG = "latest"
#: The host Docker Hub's API is served from (credentials and certs.d stay keyed docker.io).
DOCKER_HUB_API_HOST = "registry-1.docker.io"
NAME_TOTAL_LENGTH_MAX = 255

_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]*)"
_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9A-Fa-f]{32,}"
_NAME = rf"(?:{_DOMAIN}/)?{_COMPONENT}(?:/{_COMPONENT})*"
_REFERENCE = re.compile(rf"^({_NAME})(?::({_TAG}))?(?:@({_DIGEST}))?$", re.ASCII)
_ANCHORED_NAME = re.compile(rf"^(?:({_DOMAIN})/)?({_COMPONENT}(?:/{_COMPONENT})*)$", re.ASCII)
_IDENTIFIER = re.compile(r"^[a-f0-9]{64}$")


@dataclasses.dataclass(frozen=True)
class Reference:
    """A named reference: ``domain/path[:tag][@digest]``, normalised (``docker.io/library/``
    for Docker Hub)."""

    domain: str
    path: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        """``domain/path``, the repository's full name."""
        return f"{self.domain}/{self.path}"

    def __str__(self) -> str:
        out = self.name
        if self.tag is not None:
            out += ":" + self.tag
        if self.digest is not None:
            out += "@" + self.digest
        return out

    @property
    def familiar(self) -> str:
        """The short form Docker shows (``busybox:latest``, ``user/app``): docker.io and
        ``library/`` dropped."""
        path = self.path
        if self.domain == DEFAULT_DOMAIN:
            if path.startswith(OFFICIAL_REPO_NAME + "/") and path.count("/") == 1:
                path = path[len(OFFICIAL_REPO_NAME) + 1 :]
            out = path
        else:
            out = f"{self.domain}/{path}"
        if self.tag is not None:
            out += ":" + self.tag
        if self.digest is not None:
            out += "@" + self.digest
        return out

    @property
    def api_host(self) -> str:
        """The host[:port] requests go to (Docker Hub's API host for docker.io)."""
        return DOCKER_HUB_API_HOST if self.domain == DEFAULT_DOMAIN else self.domain

    @property
    def tag_or_digest(self) -> str:
        """What follows ``/manifests/`` in a request: the digest if any, else the tag."""
        if self.digest is not None:
            return self.digest
        if self.tag is not None:
            return self.tag
        raise InvalidReferenceError(
            f"Docker reference {self.familiar} has neither a tag nor a digest"
        )

    def with_tag_or_default(self) -> Reference:
        """``TagNameOnly``: ``:latest`` added to a reference with neither tag nor digest."""
        if self.tag is None and self.digest is None:
            return dataclasses.replace(self, tag=DEFAULT_TAG)
        return self


def _split_docker_domain(name: str) -> tuple[str, str]:
    i = name.find("/")
    if i == -1 or (not any(c in name[:i] for c in ".:") and name[:i] != "localhost"):
        domain, remainder = DEFAULT_DOMAIN, name
    else:
        domain, remainder = name[:i], name[i + 1 :]
    if domain == LEGACY_DEFAULT_DOMAIN:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in remainder:
        remainder = f"{OFFICIAL_REPO_NAME}/{remainder}"
    return domain, remainder


def _parse(s: str) -> Reference:
    """``reference.Parse`` of a string that has a domain."""
    m = _REFERENCE.match(s)
    if m is None:
        if s == "":
            raise InvalidReferenceError("repository name must have at least one component")
        if _REFERENCE.match(s.lower()) is not None:
            raise InvalidReferenceError("repository name must be lowercase")
        raise InvalidReferenceError("invalid reference format")
    name, tag, digest = m.group(1), m.group(2), m.group(3)
    if len(name) > NAME_TOTAL_LENGTH_MAX:
        raise InvalidReferenceError(
            f"repository name must not be more than {NAME_TOTAL_LENGTH_MAX} characters"
        )
    nm = _ANCHORED_NAME.match(name)
    assert nm is not None
    if digest is not None:
        try:
            validate_digest(digest)
        except cs_errors.InvalidDigestError as e:
            raise InvalidReferenceError(str(e)) from None
    return Reference(nm.group(1) or "", nm.group(2), tag, digest)


def parse_normalized_named(s: str) -> Reference:
    """``ParseNormalizedNamed``: a familiar or full name, normalised (``busybox`` ->
    ``docker.io/library/busybox``); no tag is added."""
    if _IDENTIFIER.match(s):
        raise InvalidReferenceError(
            f"invalid repository name ({s}), cannot specify 64-byte hexadecimal strings"
        )
    domain, remainder = _split_docker_domain(s)
    remote_name = remainder.split(":", 1)[0]
    if remote_name.lower() != remote_name:
        raise InvalidReferenceError("invalid reference format: repository name must be lowercase")
    return _parse(f"{domain}/{remainder}")


def parse_docker_reference(s: str) -> Reference:
    """A ``docker://`` reference (the transport prefix, or a leading ``//``, is optional):
    normalised, ``:latest`` when it has neither tag nor digest; both together are refused as
    containers/image refuses them."""
    if s.startswith("docker://"):
        s = s[len("docker://") :]
    elif s.startswith("//"):
        s = s[2:]
    ref = parse_normalized_named(s).with_tag_or_default()
    if ref.tag is not None and ref.digest is not None:
        raise InvalidReferenceError(
            "Docker references with both a tag and digest are currently not supported"
        )
    return ref


def storage_name(name: str) -> tuple[str, str]:
    """``name`` as c/image's storage transport stores it, and the digest it carries
    (``""`` without one): ``ParseNormalizedNamed`` then ``TagNameOnly``
    (``myimg`` -> ``docker.io/library/myimg:latest``, ``myimg@sha256:<hex>`` keeps no tag).

    Raises:
        InvalidReferenceError: ``name`` is empty or not a valid reference, with c/image's
            text (``parsing named reference "MyImg": invalid reference format: repository
            name must be lowercase``).
    """
    invalid = InvalidReferenceError.go_message
    if not name:
        raise InvalidReferenceError(f'"" is an empty reference: {invalid}')
    at = name.rfind("@")
    if at != -1:
        # The transport peels a trailing image ID off (``NAME@ID``); digests stay.
        suffix = name[at + 1 :]
        if not suffix:
            raise InvalidReferenceError(
                f"empty trailing digest or ID in {go_quote(name)}: {invalid}"
            )
        try:
            validate_digest(suffix)
        except cs_errors.InvalidDigestError:
            why = "does not look like an image ID or digest"
            if _IDENTIFIER.match(suffix):
                why = "is an image ID: an imported image's ID is its config's digest"
            raise InvalidReferenceError(f"{go_quote(suffix)} {why}: {invalid}") from None
    try:
        ref = parse_normalized_named(name).with_tag_or_default()
    except InvalidReferenceError as e:
        raise InvalidReferenceError(f"parsing named reference {go_quote(name)}: {e}") from None
    return str(ref), ref.digest or ""
