"""Registry commands (ours, as podman's): push, login, logout."""

from __future__ import annotations

import getpass
import sys
from typing import TYPE_CHECKING

from ..output import emit_json, stdout

if TYPE_CHECKING:
    from ...oci import ImageProgress
    from ..context import Context

__all__ = ["login", "logout", "push"]


def _ask(prompt: str, secret: bool) -> str:
    if secret:
        return getpass.getpass(prompt)
    sys.stdout.write(prompt)
    sys.stdout.flush()
    return sys.stdin.readline().rstrip("\n")


def push(ctx: Context) -> int:
    """Push an image to a registry; print the manifest digest. A bar per layer and a total
    on a terminal."""
    from ..progress import MultiProgress

    bars = MultiProgress("total", enabled=not ctx.json)

    def progress(state: ImageProgress) -> None:
        bars.update(state.done, state.sizes)

    creds = ctx.text("creds") or None
    if creds is not None and ":" not in creds:
        creds += ":" + getpass.getpass("Password: ")
    digest = ctx.store.push_image(
        ctx.args[0],
        ctx.args[1],
        compression=ctx.text("compression") or "gzip",
        compression_level=int(ctx.text("compression_level"))
        if ctx.text("compression_level")
        else None,
        creds=creds,
        authfile=ctx.text("authfile") or None,
        tls_verify=ctx.optbool("tls_verify"),
        progress=progress,
    )
    if ctx.json:
        emit_json({"digest": digest})
    else:
        stdout(digest)
    return 0


def login(ctx: Context) -> int:
    """Log in to a registry as podman login does."""
    from ...registry import login as api

    authfile = ctx.text("authfile") or None
    if ctx.flag("get_login"):
        stdout(api.get_login(ctx.args[0], authfile=authfile))
        return 0
    password = ctx.text("password")
    if ctx.flag("password_stdin"):
        if password:
            raise ValueError("Can't specify both --password-stdin and --password")
        if not ctx.text("username"):
            raise ValueError("Must provide --username with --password-stdin")
        password = "".join(line.rstrip("\r\n") for line in sys.stdin)
    api.login(
        ctx.args[0],
        ctx.text("username"),
        password,
        authfile=authfile,
        tls_verify=ctx.optbool("tls_verify"),
        ask=_ask,
        say=stdout,
    )
    return 0


def logout(ctx: Context) -> int:
    """Log out of a registry (or all with --all) as podman logout does."""
    from ...registry import login as api

    authfile = ctx.text("authfile") or None
    if ctx.flag("all"):
        if ctx.args:
            raise ValueError("--all takes no arguments")
        api.logout_all(authfile=authfile, say=stdout)
        return 0
    if len(ctx.args) != 1:
        raise ValueError("please provide a registry to logout from")
    api.logout(ctx.args[0], authfile=authfile, say=stdout)
    return 0
