"""Mounting: mount, unmount (umount), mounted."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..output import emit_json, error_text, stderr, stdout

if TYPE_CHECKING:
    from ..context import Context

__all__ = ["mount", "mounted", "unmount"]


def mount(ctx: Context) -> int:
    """Mount layers or containers (images read-only with --ro); print the mount points."""
    store = ctx.store
    label = ctx.text("label")
    results: list[dict[str, str]] = []
    for arg in ctx.args:
        try:
            if ctx.flag("ro"):
                point = store.mount_image(arg, ["noexec", "nosuid"], label)
            else:
                point = store.mount(arg, label)
            results.append({"id": arg, "mountpoint": point, "error": ""})
        except Exception as e:
            results.append({"id": arg, "mountpoint": "", "error": error_text(e)})
    if ctx.json:
        emit_json(results)
    else:
        for r in results:
            if r["error"]:
                stderr(f"{r['error']} while mounting {r['id']}")
            stdout(r["mountpoint"])
    return 1 if any(r["error"] for r in results) else 0


def unmount(ctx: Context) -> int:
    """Undo one mount of each (all of them with --force); say when one is fully unmounted."""
    store = ctx.store
    force = ctx.flag("force")
    results: list[dict[str, str]] = []
    for arg in ctx.args:
        error = ""
        try:
            if not store.unmount(arg, force):
                stdout(f"{arg} mountpoint unmounted")
        except Exception as e:
            try:
                store.unmount_image(arg, force)
            except Exception:
                error = error_text(e)
        results.append({"id": arg, "error": error})
    if ctx.json:
        emit_json(results)
    else:
        for r in results:
            if r["error"]:
                stderr(f"{r['error']} while unmounting {r['id']}")
    return 1 if any(r["error"] for r in results) else 0


def mounted(ctx: Context) -> int:
    """Print ``<arg> mounted`` for each layer or container that is mounted."""
    results: list[dict[str, str]] = []
    for arg in ctx.args:
        error = ""
        try:
            if ctx.store.mounted(arg) > 0:
                stdout(f"{arg} mounted")
        except Exception as e:
            error = error_text(e)
        results.append({"id": arg, "error": error})
    if ctx.json:
        emit_json(results)
    else:
        for r in results:
            if r["error"]:
                stderr(f"{r['error']} checking if {r['id']} is mounted")
    return 1 if any(r["error"] for r in results) else 0
