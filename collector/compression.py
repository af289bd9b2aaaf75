"""One gzip member from many pieces, compressed on several threads at once.

The /metrics body at 10,000 nodes is ~120 MB of text; gzip level 1 of it is a quarter
of a second of one core, most of a cold scrape's own work. zlib releases the GIL while
it compresses, so slices of the text compress in parallel, each with its own
compressor: a slice ends with a sync flush (byte-aligned, not the final block) and
refers to nothing before it, so the slices' deflate data concatenate into one valid
stream. Only the CRC-32 runs over the text in order (zlib.crc32 releases the GIL too).
The result is one ordinary gzip member: every client that reads gzip reads it.

The same property lets text be compressed long before it is sent: `deflate_fragment`
compresses a piece on its own (a fresh compressor, a sync flush), and `GzipBody` lays
such fragments, in any order, next to text compressed at the last moment, with the
CRC-32 of the whole combined from each fragment's own (`crc32_combine`). The /metrics
cache keeps each node's lines that way (collector.exposition), so a scrape copies
compressed bytes instead of inflating and compressing again.
"""

from __future__ import annotations

import os
import struct
import threading
import zlib
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor

__all__ = [
    "SLICE_BYTES",
    "GzipBody",
    "combined_crc",
    "crc32_combine",
    "deflate_fragment",
    "gzip_parts",
]

# Big enough that restarting the dictionary per slice costs little in size (+0.7 % on
# 60 MB of exposition text, measured), small enough that 120 MB spreads over every worker.
SLICE_BYTES = 1 << 20
# One compressor per core, at most four: beyond that a scrape would take the cores
# ingest needs.
WORKERS = max(1, min(4, os.cpu_count() or 1))
# The gzip header of RFC 1952: deflate, no name, no mtime (a body that depends only on
# the text), "unknown" operating system.
_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
# An empty final block, as zlib's flush writes it for a raw stream with nothing pending.
_FINAL_BLOCK = zlib.compressobj(1, zlib.DEFLATED, -15).flush()

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _executor() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(WORKERS, thread_name_prefix="gzip")
        return _pool


def _slices(parts: Sequence[bytes], size: int) -> list[list[memoryview]]:
    """The parts, in order, cut and grouped into runs of about `size` bytes (no copies)."""
    out: list[list[memoryview]] = []
    run: list[memoryview] = []
    held = 0
    for part in parts:
        view = memoryview(part)
        while view:
            take = view[: size - held]
            run.append(take)
            held += len(take)
            view = view[len(take) :]
            if held >= size:
                out.append(run)
                run, held = [], 0
    if run:
        out.append(run)
    return out


def _deflate(run: list[memoryview], level: int) -> bytes:
    compressor = zlib.compressobj(level, zlib.DEFLATED, -15)
    pieces = [compressor.compress(view) for view in run]
    pieces.append(compressor.flush(zlib.Z_SYNC_FLUSH))
    return b"".join(pieces)


def gzip_parts(parts: Sequence[bytes], level: int = 1, slice_bytes: int = SLICE_BYTES) -> bytes:
    """One gzip member whose content is the concatenation of `parts`."""
    runs = _slices(parts, slice_bytes)
    pending = [_executor().submit(_deflate, run, level) for run in runs[1:]]
    # The calling thread takes the first slice and the checksum while the pool works.
    first = _deflate(runs[0], level) if runs else b""
    crc = 0
    length = 0
    for part in parts:
        crc = zlib.crc32(part, crc)
        length += len(part)
    deflated = [first, *(future.result() for future in pending)]
    trailer = struct.pack("<II", crc, length & 0xFFFFFFFF)
    return b"".join([_HEADER, *deflated, _FINAL_BLOCK, trailer])


_MASK = 0xFFFFFFFF
# Zeros for crc32_combine (the longest fragment it has been asked about; grown on need).
_zeros = memoryview(bytes(1 << 16))


def deflate_fragment(text: bytes, level: int = 1) -> bytes:
    """`text` as raw deflate data that refers to nothing before it, byte-aligned and not
    final: fragments concatenate, in any order, into one valid deflate stream."""
    if not text:
        return b""
    compressor = zlib.compressobj(level, zlib.DEFLATED, -15)
    return compressor.compress(text) + compressor.flush(zlib.Z_SYNC_FLUSH)


def _zeros_of(length: int) -> memoryview:
    global _zeros
    if length > len(_zeros):
        _zeros = memoryview(bytes(max(length, 2 * len(_zeros))))
    return _zeros[:length]


def crc32_combine(crc1: int, crc2: int, length2: int) -> int:
    """The CRC-32 of A+B from crc32(A), crc32(B) and len(B), as zlib's crc32_combine
    (which Python does not expose): CRC-32 is affine in its input, so running A's CRC
    over len(B) zero bytes and adding B's gives A+B's. Costs one pass over len(B)."""
    return (zlib.crc32(_zeros_of(length2), crc1 ^ _MASK) ^ _MASK ^ crc2) & _MASK


def combined_crc(crcs: Sequence[int], sizes: Sequence[int]) -> tuple[int, int]:
    """(CRC-32, size) of texts one after another, from each one's CRC-32 and size."""
    crc = size = 0
    zeros = _zeros_of(max(sizes, default=0))
    # crc32_combine inlined, with one slice of zeros for all: a scrape runs this once
    # per changed fragment (tens of thousands at 10,000 nodes).
    for text_crc, length in zip(crcs, sizes, strict=True):
        if length:
            crc = zlib.crc32(zeros[:length], crc ^ _MASK) ^ _MASK ^ text_crc
            size += length
    return crc & _MASK, size


class GzipBody:
    """One gzip member built in order from plain text and pre-compressed fragments.

    `text` runs are compressed on the pool's threads while the caller goes on adding;
    `fragments` (from deflate_fragment) are copied as they are, their CRC-32 combined.
    """

    def __init__(self, level: int = 1) -> None:
        self.level = level
        self._pieces: list[bytes] = [_HEADER]
        # Where text runs go in _pieces, compressed on the pool meanwhile.
        self._pending: list[tuple[int, Future[bytes]]] = []
        self._run: list[bytes] = []
        self.crc = 0
        self.size = 0

    def text(self, text: bytes) -> None:
        """Appends plain text (compressed with its neighbours when a fragment follows)."""
        if text:
            self._run.append(text)
            self.crc = zlib.crc32(text, self.crc)
            self.size += len(text)

    def fragments(
        self, fragments: Sequence[bytes], crcs: Sequence[int], sizes: Sequence[int]
    ) -> None:
        """Appends deflate_fragment outputs whose texts had these CRC-32s and sizes."""
        self.run_of_fragments(fragments, *combined_crc(crcs, sizes))

    def run_of_fragments(self, fragments: Sequence[bytes], crc: int, size: int) -> None:
        """Appends deflate_fragment outputs whose texts, one after another, have this
        CRC-32 (combined_crc) and size."""
        self._flush_run()
        self._pieces.extend(fragments)
        if size:
            self.crc = crc32_combine(self.crc, crc, size)
            self.size += size

    def _flush_run(self) -> None:
        if self._run:
            run = [memoryview(t) for t in self._run]
            self._pending.append((len(self._pieces), _executor().submit(_deflate, run, self.level)))
            self._pieces.append(b"")
            self._run = []

    def finish(self) -> bytes:
        """The member: header, every piece in order, the final block, CRC and size.

        Call it once, after the last piece."""
        self._flush_run()
        trailer = struct.pack("<II", self.crc, self.size & _MASK)
        for position, future in self._pending:
            self._pieces[position] = future.result()
        self._pieces += (_FINAL_BLOCK, trailer)
        return b"".join(self._pieces)
