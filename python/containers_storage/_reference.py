"""Image names as containers/image 5.23 writes them into containers-storage.

skopeo's ``containers-storage:NAME`` destination parses ``NAME`` with docker/reference's
``ParseNormalizedNamed`` and adds ``:latest`` with ``TagNameOnly``; the image gets the string
of the result: ``myimg`` -> ``docker.io/library/myimg:latest``, ``quay.io/x/y`` ->
``quay.io/x/y:latest``, ``localhost/x:1`` unchanged, ``myimg@sha256:<hex>`` ->
``docker.io/library/myimg@sha256:<hex>`` (no tag added to a digested name). An invalid name
fails with c/image's words (``parsing named reference "MyImg": invalid reference format:
repository name must be lowercase``).
"""

from __future__ import annotations

import re

from . import errors
from ._strconv import go_quote
from .digests import validate_digest

__all__ = ["storage_name"]

# docker/reference's regexp.go, as RE2 reads them (``\w`` is ASCII there).
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|[-]*)[a-z0-9]+)*"
_DOMAIN_PART = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"{_DOMAIN_PART}(?:\.{_DOMAIN_PART})*(?::[0-9]+)?"
_NAME = rf"(?:{_DOMAIN}/)?{_COMPONENT}(?:/{_COMPONENT})*"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*[:][0-9a-fA-F]{32,}"
_REFERENCE = re.compile(rf"({_NAME})(?::({_TAG}))?(?:@({_DIGEST}))?", re.ASCII)
_IDENTIFIER = re.compile(r"[a-f0-9]{64}")
_NAME_MAX = 255


def _invalid(name: str, why: str) -> errors.InvalidReferenceError:
    return errors.InvalidReferenceError(f"parsing named reference {go_quote(name)}: {why}")


def _split_domain(name: str) -> tuple[str, str]:
    """docker/reference's ``splitDockerDomain``: ``docker.io`` unless the first component
    looks like a host (has ``.`` or ``:``, or is ``localhost``); ``library/`` for a
    one-component docker.io path."""
    first, slash, rest = name.partition("/")
    if not slash or ("." not in first and ":" not in first and first != "localhost"):
        domain, remainder = "docker.io", name
    else:
        domain, remainder = first, rest
    if domain == "index.docker.io":
        domain = "docker.io"
    if domain == "docker.io" and "/" not in remainder:
        remainder = "library/" + remainder
    return domain, remainder


def storage_name(name: str) -> tuple[str, str]:
    """``name`` as c/image's storage transport stores it, and the digest it carries
    (``""`` without one): ``ParseNormalizedNamed`` then ``TagNameOnly``.

    Raises:
        InvalidReferenceError: ``name`` is empty or not a valid reference, with c/image's
            text.
    """
    invalid = errors.InvalidReferenceError.go_message
    if not name:
        raise errors.InvalidReferenceError(f'"" is an empty reference: {invalid}')
    at = name.rfind("@")
    if at != -1:
        # The transport peels a trailing image ID off (``NAME@ID``); digests stay.
        suffix = name[at + 1 :]
        if not suffix:
            raise errors.InvalidReferenceError(
                f"empty trailing digest or ID in {go_quote(name)}: {invalid}"
            )
        try:
            validate_digest(suffix)
        except errors.InvalidDigestError:
            why = "does not look like an image ID or digest"
            if _IDENTIFIER.fullmatch(suffix):
                why = "is an image ID: an imported image's ID is its config's digest"
            raise errors.InvalidReferenceError(f"{go_quote(suffix)} {why}: {invalid}") from None
    if _IDENTIFIER.fullmatch(name):
        raise _invalid(
            name, f"invalid repository name ({name}), cannot specify 64-byte hexadecimal strings"
        )
    domain, remainder = _split_domain(name)
    repository = remainder.partition(":")[0]
    if repository.lower() != repository:
        raise _invalid(name, "invalid reference format: repository name must be lowercase")
    full = f"{domain}/{remainder}"
    match = _REFERENCE.fullmatch(full)
    if match is None:
        if _REFERENCE.fullmatch(full.lower()) is not None:
            raise _invalid(name, "invalid reference format: repository name must be lowercase")
        raise _invalid(name, "invalid reference format")
    repo, tag, digest = match.group(1), match.group(2) or "", match.group(3) or ""
    if len(repo) > _NAME_MAX:
        raise _invalid(name, f"repository name must not be more than {_NAME_MAX} characters")
    if digest:
        try:
            validate_digest(digest)
        except errors.InvalidDigestError as e:
            raise _invalid(name, str(e)) from None
    if not tag and not digest:
        tag = "latest"
    return repo + (f":{tag}" if tag else "") + (f"@{digest}" if digest else ""), digest
