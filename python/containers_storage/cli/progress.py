"""A progress bar for long commands: on a terminal only, silent when piped."""

from __future__ import annotations

import sys
import time
from typing import TextIO


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


class ProgressBar:
    """Draws ``[#####     ] 12.0 MiB / 40.0 MiB  8.1 MiB/s  ETA 3s`` on ``stream``.

    Does nothing unless ``stream`` is a terminal and ``enabled`` is true, so output that is
    piped or captured stays clean. Usable directly as an ``apply_layer`` progress callback.
    """

    def __init__(self, label: str, *, stream: TextIO | None = None, enabled: bool = True) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled and self.stream.isatty()
        self.label = label
        self.start = time.monotonic()
        self.drawn = False

    def __call__(self, done: int, total: int | None) -> None:
        if not self.enabled:
            return
        elapsed = max(time.monotonic() - self.start, 1e-6)
        rate = done / elapsed
        if total:
            frac = min(done / total, 1.0)
            width = 24
            filled = int(frac * width)
            eta = (total - done) / rate if rate > 0 else 0.0
            text = (
                f"{self.label} [{'#' * filled}{' ' * (width - filled)}] "
                f"{_size(done)} / {_size(total)}  {_size(rate)}/s  ETA {eta:.0f}s"
            )
        else:
            text = f"{self.label} {_size(done)}  {_size(rate)}/s"
        self.stream.write("\r" + text + "\x1b[K")
        self.stream.flush()
        self.drawn = True

    def close(self) -> None:
        """End the bar's line, if one was drawn."""
        if self.drawn:
            self.stream.write("\n")
            self.stream.flush()
            self.drawn = False


class MultiProgress:
    """One bar per item and a total, redrawn in place on a terminal (about ten times a
    second); silent when not a terminal. Feed it ``update(done, sizes)`` with the bytes done
    and the sizes, per item."""

    def __init__(self, label: str, *, stream: TextIO | None = None, enabled: bool = True) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled and self.stream.isatty()
        self.label = label
        self.start = time.monotonic()
        self.lines = 0
        self.last = 0.0

    def update(self, done: dict[str, int], sizes: dict[str, int], final: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not final and now - self.last < 0.1:
            return
        self.last = now
        elapsed = max(now - self.start, 1e-6)
        rows = [(key[:19], done.get(key, 0), size) for key, size in sizes.items()]
        total_done = sum(d for _k, d, _s in rows)
        total = sum(s for _k, _d, s in rows)
        rows.append((self.label, total_done, total))
        out = []
        if self.lines:
            out.append(f"\x1b[{self.lines}F")
        for name, d, size in rows:
            frac = min(d / size, 1.0) if size else 1.0
            filled = int(frac * 24)
            rate = d / elapsed
            out.append(
                f"{name:<19} [{'#' * filled}{' ' * (24 - filled)}] "
                f"{_size(d)} / {_size(size)}  {_size(rate)}/s\x1b[K\n"
            )
        self.stream.write("".join(out))
        self.stream.flush()
        self.lines = len(rows)
