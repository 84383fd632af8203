"""Parallel gzip, as pigz and Go's klauspost/pgzip (which c/image pushes with) make it: the
input is cut into blocks compressed independently on a thread pool (zlib-rs in the native
module, with the GIL released; about half the CPU of Python's zlib at the same level),
each primed with the 32 KiB before it and ended with a sync flush, so that the blocks
concatenate into one ordinary deflate stream in one gzip member that any gunzip reads.

Memory stays bounded: at most ``depth`` blocks of one stream are in flight.
"""

from __future__ import annotations

import collections
import concurrent.futures
import struct
import zlib
from collections.abc import Generator, Iterable, Iterator

from .. import _native

__all__ = ["BLOCK_SIZE", "gzip_blocks"]

#: Uncompressed bytes per block (pgzip's default block size is 1 MB).
BLOCK_SIZE = 1 << 20
_WINDOW = 32 << 10
#: The gzip header Go's compress/gzip writes with no name, no time: OS 255 (unknown).
_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
#: An empty final deflate block (fixed Huffman, end of block).
_FINAL = b"\x03\x00"


def _compress(block: bytes, dictionary: bytes, level: int) -> bytes:
    return _native.deflate_block(block, dictionary, level)


def _blocks(chunks: Iterable[bytes], size: int) -> Iterator[bytes]:
    buf = bytearray()
    for chunk in chunks:
        buf += chunk
        while len(buf) >= size:
            yield bytes(buf[:size])
            del buf[:size]
    if buf:
        yield bytes(buf)


def gzip_blocks(
    chunks: Iterable[bytes],
    pool: concurrent.futures.Executor,
    *,
    level: int = 6,
    block_size: int = BLOCK_SIZE,
    depth: int = 4,
) -> Generator[bytes, None, None]:
    """Gzip ``chunks`` (uncompressed bytes) on ``pool``; yields the gzip stream in pieces.
    ``depth`` blocks are compressed ahead of the one being yielded."""
    yield _HEADER
    crc = 0
    total = 0
    pending: collections.deque[concurrent.futures.Future[bytes]] = collections.deque()
    previous = b""
    try:
        for block in _blocks(chunks, block_size):
            crc = zlib.crc32(block, crc)
            total += len(block)
            pending.append(pool.submit(_compress, block, previous[-_WINDOW:], level))
            previous = block
            while len(pending) > depth:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        for f in pending:
            f.cancel()
    yield _FINAL + struct.pack("<II", crc, total & 0xFFFFFFFF)
