"""Whether an image may be pulled, as containers/image v5.23 reads ``policy.json``
(``signature/policy_config.go``, ``policy_eval.go``).

- File: ``path``, else ``~/.config/containers/policy.json`` if it exists, else
  ``/etc/containers/policy.json``; a missing or malformed file is an error (c/image never
  falls back to a built-in policy).
- Format: ``{"default": [...], "transports": {"docker": {"SCOPE": [...]}}}``; ``default`` is
  required, unknown and duplicate keys are errors, a list of requirements must not be empty.
- Lookup for the ``docker`` transport: the exact ``name:tag`` / ``name@digest``, then the
  repository and its parent namespaces down to ``host[:port]``, then ``*.domain`` wildcards
  (port stripped), then ``""``, then ``default``. Other transports: ``""``, then ``default``.
- Every requirement must allow: ``insecureAcceptAnything`` allows, ``reject`` and
  ``signedBaseLayer`` deny (c/image's texts); ``signedBy`` and ``sigstoreSigned`` demand
  signatures, which are not verified here, so they deny with a clear error instead of
  accepting.

The interface pull uses: :func:`load`, then :meth:`Policy.check` for the reference being
fetched.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .._strconv import go_quote
from ..reference import Reference
from .errors import PolicyDeniedError, RegistryConfigError

__all__ = ["Policy", "load"]

SYSTEM_POLICY = Path("/etc/containers/policy.json")
USER_POLICY = Path(".config/containers/policy.json")

_SIGNATURE_TYPES = ("signedBy", "sigstoreSigned")
#: The keys each requirement type may have (``type`` is required for all).
_KEYS: dict[str, frozenset[str]] = {
    "insecureAcceptAnything": frozenset({"type"}),
    "reject": frozenset({"type"}),
    "signedBy": frozenset({"type", "keyType", "keyPath", "keyPaths", "keyData", "signedIdentity"}),
    "sigstoreSigned": frozenset({"type", "keyPath", "keyData", "signedIdentity"}),
    "signedBaseLayer": frozenset({"type", "baseLayerIdentity"}),
}


@dataclasses.dataclass(frozen=True)
class Policy:
    """A parsed ``policy.json``: ``default`` and, per transport, per scope, the lists of
    requirement types."""

    default: tuple[str, ...] = ("insecureAcceptAnything",)
    transports: Mapping[str, Mapping[str, tuple[str, ...]]] = dataclasses.field(
        default_factory=dict
    )

    def requirements(self, ref: Reference, transport: str = "docker") -> tuple[str, ...]:
        """The requirement types that apply to ``ref``: the most specific scope first."""
        scopes = self.transports.get(transport)
        if scopes is not None:
            names = _docker_scopes(ref) if transport == "docker" else []
            for scope in [*names, ""]:
                if scope in scopes:
                    return scopes[scope]
        return self.default

    def check(self, ref: Reference, transport: str = "docker") -> None:
        """Allow ``ref`` from ``transport`` or raise.

        Raises:
            PolicyDeniedError: a ``reject`` requirement (``Source image rejected: Running
                image docker://busybox:latest is rejected by policy.``), or a signature
                requirement.
        """
        for req in self.requirements(ref, transport):
            if req == "insecureAcceptAnything":
                continue
            if req == "reject":
                name = f"//{ref.familiar}" if transport == "docker" else str(ref)
                why = f"Running image {transport}:{name} is rejected by policy."
            elif req == "signedBaseLayer":
                why = "signedBaseLayer not implemented yet!"
            else:
                why = (
                    f"policy requirement {go_quote(req)} needs a verified signature, and "
                    "containers-storage does not verify signatures (use a policy without it, "
                    "or pull with skopeo/podman)"
                )
            raise PolicyDeniedError(f"Source image rejected: {why}")


def _docker_scopes(ref: Reference) -> list[str]:
    """``PolicyConfigurationIdentity`` then ``DockerReferenceNamespaces``."""
    out = [str(ref)] if ref.tag is not None or ref.digest is not None else []
    name = ref.name
    while True:
        out.append(name)
        slash = name.rfind("/")
        if slash == -1:
            break
        name = name[:slash]
    name = name.split(":", 1)[0]
    while "." in name:
        name = name[name.index(".") + 1 :]
        out.append("*." + name)
    return out


class _InvalidPolicyError(ValueError):
    pass


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _InvalidPolicyError(f'Duplicate key "{key}"')
        out[key] = value
    return out


def _requirements(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise _InvalidPolicyError("json: cannot unmarshal into Go value of type []json.RawMessage")
    if not value:
        raise _InvalidPolicyError("List of verification policy requirements must not be empty")
    out = []
    for req in value:
        if not isinstance(req, dict):
            raise _InvalidPolicyError("JSON object expected")
        kind = req.get("type")
        if not isinstance(kind, str) or kind not in _KEYS:
            raise _InvalidPolicyError(
                f'Unknown policy requirement type "{kind if kind is not None else ""}"'
            )
        for key in req:
            if key not in _KEYS[kind]:
                raise _InvalidPolicyError(f'Unknown key "{key}"')
        if kind == "signedBy":
            keys = [k for k in ("keyPath", "keyPaths", "keyData") if k in req]
            if not keys:
                raise _InvalidPolicyError(
                    "Exactly one of keyPath, keyPaths and keyData must be specified, none of "
                    "them present"
                )
            if len(keys) > 1:
                raise _InvalidPolicyError(
                    "Exactly one of keyPath, keyPaths and keyData must be specified, more "
                    "than one present"
                )
            if "keyType" not in req:
                raise _InvalidPolicyError('Key "keyType" missing in a JSON object')
        elif kind == "sigstoreSigned" and "keyPath" in req and "keyData" in req:
            raise _InvalidPolicyError("keyType and keyData cannot be used simultaneously")
        elif kind == "signedBaseLayer" and "baseLayerIdentity" not in req:
            raise _InvalidPolicyError("baseLayerIdentity not specified")
        out.append(kind)
    return tuple(out)


def parse(data: bytes) -> Policy:
    """A policy from the bytes of a ``policy.json``.

    Raises:
        ValueError: the text is not valid JSON or not a valid policy.
    """
    try:
        doc = json.loads(data, object_pairs_hook=_object)
    except json.JSONDecodeError as e:
        raise _InvalidPolicyError(str(e)) from None
    except UnicodeDecodeError as e:
        raise _InvalidPolicyError(str(e)) from None
    if not isinstance(doc, dict):
        raise _InvalidPolicyError("JSON object expected")
    for key in doc:
        if key not in ("default", "transports"):
            raise _InvalidPolicyError(f'Unknown key "{key}"')
    if doc.get("default") is None:
        raise _InvalidPolicyError("Default policy is missing")
    transports = doc.get("transports") or {}
    if not isinstance(transports, dict):
        raise _InvalidPolicyError("JSON object expected")
    parsed: dict[str, dict[str, tuple[str, ...]]] = {}
    for name, scopes in transports.items():
        if not isinstance(scopes, dict):
            raise _InvalidPolicyError("JSON object expected")
        parsed[name] = {scope: _requirements(reqs) for scope, reqs in scopes.items()}
    return Policy(_requirements(doc["default"]), parsed)


def default_path() -> Path:
    """``~/.config/containers/policy.json`` if it exists, else ``/etc/containers/policy.json``
    (c/image's ``DefaultPolicy``)."""
    user = Path(os.environ.get("HOME") or Path.home()) / USER_POLICY
    return user if user.exists() else SYSTEM_POLICY


def load(path: Path | None = None) -> Policy:
    """Read ``policy.json``: ``path``, else :func:`default_path`.

    Raises:
        RegistryConfigError: the file cannot be read (``open PATH: no such file or
            directory``) or is invalid (``invalid policy in "PATH": Unknown key "x"``).
    """
    if path is None:
        path = default_path()
    try:
        data = path.read_bytes()
    except OSError as e:
        raise RegistryConfigError(f"open {path}: {os.strerror(e.errno or 0).lower()}") from None
    try:
        return parse(data)
    except _InvalidPolicyError as e:
        raise RegistryConfigError(f"invalid policy in {go_quote(str(path))}: {e}") from None
