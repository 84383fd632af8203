"""Which image of an index or manifest list is pulled, as containers/image v5.23 chooses:
the wanted platform (this machine unless given as ``OS/ARCH[/VARIANT]``), each candidate
matched by exact equality of ``os``, ``architecture`` and ``variant`` (``os.version`` and
``features`` ignored), list order breaking ties; an OCI index falls back to its first entry
without a ``platform``, a Docker list has no fallback."""

from __future__ import annotations

import platform as _host
from typing import Any

from . import errors
from ._strconv import go_quote

__all__ = ["Platform", "choose_instance", "host_platform", "parse_platform"]

#: Older variants an architecture variant can run, newest first (c/image's compatibility).
_COMPATIBLE = {"arm": ("v8", "v7", "v6", "v5"), "arm64": ("v8",)}

#: ``(os, architecture, variant)``; an empty variant means "not given".
Platform = tuple[str, str, str]


def _go_arch(machine: str) -> str:
    return {
        "x86_64": "amd64",
        "aarch64": "arm64",
        "armv7l": "arm",
        "armv6l": "arm",
        "i686": "386",
        "i386": "386",
        "ppc64le": "ppc64le",
        "s390x": "s390x",
    }.get(machine, machine)


def _cpu_variant(arch: str) -> str:
    """The variant of this machine's arm CPU, from ``/proc/cpuinfo`` ("Cpu architecture")."""
    if arch not in _COMPATIBLE:
        return ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "Cpu architecture":
                    v = value.strip()
                    return "v8" if arch == "arm64" else f"v{v}"
    except OSError:
        pass
    return "v8" if arch == "arm64" else ""


def host_platform() -> Platform:
    """This machine's platform, as Go's ``runtime.GOOS``/``GOARCH`` and c/image's variant."""
    arch = _go_arch(_host.machine())
    return ("linux", arch, _cpu_variant(arch))


def parse_platform(text: str) -> Platform:
    """``OS/ARCH[/VARIANT]`` (podman's ``--platform``).

    Raises:
        ValueError: not two or three non-empty parts.
    """
    parts = text.split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise ValueError(f"invalid platform syntax for --platform={go_quote(text)}")
    return (parts[0], parts[1], parts[2] if len(parts) == 3 else "")


def _variants(arch: str, variant: str) -> list[str]:
    compatible = list(_COMPATIBLE.get(arch, ()))
    if variant:
        older = compatible[compatible.index(variant) :] if variant in compatible else [variant]
        return [*older, ""]
    return ["", *compatible]


def choose_instance(index: dict[str, Any], wanted: Platform | None, *, oci: bool) -> dict[str, Any]:
    """The descriptor of ``index`` (a parsed OCI index or Docker list) to pull for
    ``wanted`` (None: this machine).

    Raises:
        ImageUnknownError: nothing matches (c/image's text).
    """
    os_name, arch, variant = wanted or host_platform()
    entries = [m for m in index.get("manifests") or [] if isinstance(m, dict)]
    for v in _variants(arch, variant):
        for m in entries:
            p = m.get("platform")
            if not isinstance(p, dict):
                continue
            if (p.get("os"), p.get("architecture"), p.get("variant") or "") == (os_name, arch, v):
                return m
    if oci:
        for m in entries:
            if not m.get("platform"):
                return m
    shown = f"{os_name}/{arch}" + (f"/{variant}" if variant else "")
    raise errors.ImageUnknownError(
        f"no image found in {'image index' if oci else 'manifest list'} for architecture "
        f"{arch}, variant {go_quote(variant)}, OS {os_name} ({shown})"
    )
