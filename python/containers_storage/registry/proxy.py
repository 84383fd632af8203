"""The proxy for a request, chosen as Go's ``http.ProxyFromEnvironment`` chooses it
(``golang.org/x/net/http/httpproxy``), which containers/image's transport uses:

- ``HTTPS_PROXY``/``https_proxy`` for https URLs, ``HTTP_PROXY``/``http_proxy`` for http ones
  (the upper-case name first); ``HTTP_PROXY`` is ignored when ``REQUEST_METHOD`` is set (CGI);
- a value without a scheme means ``http://``;
- ``localhost`` and loopback IP addresses are never proxied (a host name that merely
  resolves to loopback is);
- ``NO_PROXY``/``no_proxy``: ``*`` disables the proxy; otherwise comma-separated entries, each
  an IP address, a CIDR block, or a domain (``example.com`` matches it and its subdomains,
  ``.example.com`` or ``*.example.com`` only subdomains), optionally with ``:port``.
"""

from __future__ import annotations

import ipaddress
import os
import urllib.parse
from collections.abc import Mapping

__all__ = ["proxy_for"]


def _env(env: Mapping[str, str], *names: str) -> str:
    for n in names:
        v = env.get(n)
        if v:
            return v
    return ""


def _parse_proxy(value: str) -> str | None:
    if not value:
        return None
    parsed = urllib.parse.urlsplit(value)
    if parsed.scheme not in ("http", "https", "socks5") or not parsed.netloc:
        parsed = urllib.parse.urlsplit("http://" + value)
    return urllib.parse.urlunsplit(parsed) if parsed.netloc else None


def _split_host_port(netloc: str, scheme: str) -> tuple[str, str]:
    netloc = netloc.rsplit("@", 1)[-1]
    if netloc.startswith("["):
        host, _, rest = netloc[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif netloc.count(":") == 1:
        host, port = netloc.split(":")
    else:
        host, port = netloc, ""
    return host.lower(), port or ("443" if scheme == "https" else "80")


def _no_proxy_matches(no_proxy: str, host: str, port: str) -> bool:
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    for entry in no_proxy.split(","):
        entry = entry.strip().lower()
        if not entry:
            continue
        if entry == "*":
            return True
        if "/" in entry:
            try:
                if ip is not None and ip in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                pass
            continue
        ehost, eport = entry, ""
        if entry.startswith("["):
            ehost, _, rest = entry[1:].partition("]")
            eport = rest[1:] if rest.startswith(":") else ""
        elif entry.count(":") == 1:
            ehost, eport = entry.split(":")
        try:
            eip = ipaddress.ip_address(ehost)
        except ValueError:
            eip = None
        if eip is not None:
            if ip is not None and ip == eip and (not eport or eport == port):
                return True
            continue
        if eport and eport != port:
            continue
        if ehost.startswith("*."):
            ehost = ehost[1:]
        if ehost.startswith("."):
            if host.endswith(ehost):
                return True
        elif host == ehost or host.endswith("." + ehost):
            return True
    return False


def proxy_for(url: str, env: Mapping[str, str] | None = None) -> str | None:
    """The proxy URL to send ``url`` through, or None to connect directly."""
    env = os.environ if env is None else env
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "https":
        proxy = _parse_proxy(_env(env, "HTTPS_PROXY", "https_proxy"))
    elif parts.scheme == "http":
        if env.get("REQUEST_METHOD"):
            return None
        proxy = _parse_proxy(_env(env, "HTTP_PROXY", "http_proxy"))
    else:
        return None
    if proxy is None:
        return None
    host, port = _split_host_port(parts.netloc, parts.scheme)
    if host == "localhost":
        return None
    try:
        if ipaddress.ip_address(host).is_loopback:
            return None
    except ValueError:
        pass
    if _no_proxy_matches(_env(env, "NO_PROXY", "no_proxy"), host, port):
        return None
    return proxy
