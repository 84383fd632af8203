"""Streams written by a function turned into iterators of chunks, through a pipe and a thread."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Generator

__all__ = ["iter_written"]


def iter_written(
    write: Callable[[int], object], chunk_size: int, name: str = "cs-iter"
) -> Generator[bytes, None, None]:
    """Run ``write(fd)`` on a thread into a pipe and yield what it writes.

    ``write`` owns (and closes) the pipe's write end; an error it raises is re-raised after
    the last chunk. Closing the iterator early makes the writer fail with a broken pipe,
    which is then ignored.
    """
    read_fd, write_fd = os.pipe()
    failure: list[BaseException] = []

    def run() -> None:
        try:
            write(write_fd)
        except BaseException as e:  # re-raised in the consumer
            failure.append(e)

    worker = threading.Thread(target=run, daemon=True, name=name)
    worker.start()
    finished = False
    try:
        while chunk := os.read(read_fd, chunk_size):
            yield chunk
        finished = True
    finally:
        os.close(read_fd)
        worker.join()
    if finished and failure:
        raise failure[0]
