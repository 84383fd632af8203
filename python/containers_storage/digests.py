"""Content digests: ``sha256:<hex>`` of bytes or a file, and go-digest's ``Validate``.

sha256 is the one algorithm available, as in the Go tools (Debian's ``containers-storage``
links no other hash): any other well-formed algorithm is unsupported, as there.
"""

from __future__ import annotations

from . import errors

__all__ = ["sha256_digest", "sha256_file", "sha256_hex", "validate_digest"]

_HEX = frozenset("0123456789abcdef")
# go-digest's DigestRegexp, for telling an unknown algorithm from a malformed digest.
_WELL_FORMED = r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+"


def sha256_hex(data: bytes) -> str:
    """The sha256 of ``data`` in lowercase hex (a chain ID's or a blob file's name)."""
    import hashlib  # imported on first use: listing a store never needs it

    return hashlib.sha256(data).hexdigest()


def sha256_digest(data: bytes) -> str:
    """``sha256:<hex>`` of ``data``."""
    return "sha256:" + sha256_hex(data)


def sha256_file(path: str) -> tuple[str, int]:
    """``(sha256:<hex>, size)`` of a file's contents, read in 1 MiB pieces."""
    import hashlib

    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
            size += len(chunk)
    return "sha256:" + h.hexdigest(), size


def validate_digest(digest: str) -> None:
    """go-digest's ``Digest.Validate``.

    Raises:
        InvalidDigestError: With go-digest's text alone (``invalid checksum digest format``,
            ``invalid checksum digest length`` or ``unsupported digest algorithm``); callers
            add the digest as Go's do.
    """
    i = digest.find(":")
    if i <= 0 or i + 1 == len(digest):
        raise errors.InvalidDigestError("invalid checksum digest format")
    algorithm, encoded = digest[:i], digest[i + 1 :]
    if algorithm != "sha256":
        import re

        if re.fullmatch(_WELL_FORMED, digest):
            raise errors.InvalidDigestError("unsupported digest algorithm")
        raise errors.InvalidDigestError("invalid checksum digest format")
    if len(encoded) != 64:
        raise errors.InvalidDigestError("invalid checksum digest length")
    if not _HEX.issuperset(encoded):
        raise errors.InvalidDigestError("invalid checksum digest format")
