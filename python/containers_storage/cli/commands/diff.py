"""Layer contents: changes, diffsize, diff, applydiff."""

from __future__ import annotations

import os
import sys
import threading
from typing import TYPE_CHECKING

from ..._strconv import go_quote
from ..output import emit_json, error_text, nil_if_empty, stderr, stdout

if TYPE_CHECKING:
    from ..context import Context
    from ..progress import ProgressBar

__all__ = ["apply_diff", "changes", "diff", "diff_size"]

_KIND = {0: "Modify", 1: "Add", 2: "Delete"}


def _from_to(ctx: Context) -> tuple[str | None, str]:
    return (ctx.args[1] if len(ctx.args) > 1 and ctx.args[1] else None), ctx.args[0]


def changes(ctx: Context) -> int:
    """List a layer's changes against its parent (or the layer given)."""
    from_layer, to_layer = _from_to(ctx)
    found = ctx.store.changes(from_layer, to_layer)
    if ctx.json:
        emit_json(nil_if_empty([{"Path": c.path, "Kind": int(c.kind)} for c in found]))
    else:
        for c in found:
            stdout(f"{_KIND.get(int(c.kind), '?')} {go_quote(c.path)}")
    return 0


def diff_size(ctx: Context) -> int:
    """Print the size of a layer's changes."""
    from_layer, to_layer = _from_to(ctx)
    stdout(str(ctx.store.diff_size(from_layer, to_layer)))
    return 0


def _compression(ctx: Context) -> str | None:
    chosen: str | None = None
    for dest, name in (
        ("uncompressed", "none"),
        ("gzip", "gzip"),
        ("bzip2", "bzip2"),
        ("xz", "xz"),
    ):
        if ctx.flag(dest):
            chosen = name
    return chosen


class _SizeTicker:
    """Feeds a progress bar the growing size of a file being written."""

    def __init__(self, fd: int, bar: ProgressBar) -> None:
        self.fd, self.bar = fd, bar
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, name="cs-progress", daemon=True)
        if bar.enabled:
            self.thread.start()

    def _run(self) -> None:
        while not self.done.wait(0.1):
            try:
                self.bar(os.fstat(self.fd).st_size, None)
            except OSError:
                return

    def stop(self) -> None:
        self.done.set()
        if self.thread.is_alive():
            self.thread.join()
        self.bar.close()


def diff(ctx: Context) -> int:
    """Write a layer's changes as a tarball to --file or stdout."""
    from_layer, to_layer = _from_to(ctx)
    path = ctx.text("file")
    if not path:
        sys.stdout.flush()
        ctx.store.diff_to(from_layer, to_layer, sys.stdout.fileno(), _compression(ctx))
        return 0
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666)
    except OSError as e:
        from ..output import os_error_text

        stderr(os_error_text(e))
        return 1
    from ..progress import ProgressBar

    ticker = _SizeTicker(fd, ProgressBar("writing"))
    try:
        ctx.store.diff_to(from_layer, to_layer, fd, _compression(ctx))
    finally:
        ticker.stop()
        os.close(fd)
    return 0


def apply_diff(ctx: Context) -> int:
    """Apply a tarball from --file or stdin to a layer, with a progress bar on a terminal."""
    from ..progress import ProgressBar

    path = ctx.text("file")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC) if path else sys.stdin.fileno()
    except OSError as e:
        from ..output import os_error_text

        stderr(os_error_text(e))
        return 1
    bar = ProgressBar("applying")
    try:
        ctx.store.apply_diff(ctx.args[0], fd, progress=bar)
    except Exception as e:
        bar.close()
        stderr(error_text(e))
        return 1
    finally:
        if path:
            os.close(fd)
    bar.close()
    return 0
