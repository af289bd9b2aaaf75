"""collector.compression: the parallel gzip body is one ordinary gzip member of the text."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector import compression
from collector.compression import gzip_parts


@settings(max_examples=200, deadline=None)
@given(
    parts=st.lists(st.binary(max_size=3000), max_size=12),
    slice_bytes=st.integers(min_value=1, max_value=4096),
    level=st.integers(min_value=0, max_value=9),
)
def test_any_parts_any_slicing_inflate_to_their_concatenation(
    parts: list[bytes], slice_bytes: int, level: int
) -> None:
    body = gzip_parts(parts, level=level, slice_bytes=slice_bytes)
    text = b"".join(parts)
    assert gzip.decompress(body) == text
    # One member, nothing after it: a reader that stops at the first member's end (a
    # browser, zlib with wbits 31) sees all of the text too, and checks CRC and length.
    inflate = zlib.decompressobj(31)
    assert inflate.decompress(body) == text
    assert inflate.eof and inflate.unused_data == b""


def test_a_corrupted_body_fails_its_checksum() -> None:
    parts = [b'preflight_agent_up{node="n%d"} 1\n' % i for i in range(5000)]
    body = bytearray(gzip_parts(parts, slice_bytes=4096))
    body[-8] ^= 0xFF  # the CRC-32 of the trailer
    try:
        gzip.decompress(bytes(body))
    except gzip.BadGzipFile as error:
        assert "CRC" in str(error)
    else:
        raise AssertionError("a wrong CRC-32 was accepted")


def test_many_slices_compress_about_as_well_as_one_stream() -> None:
    # Exposition-like text: a dictionary restart per slice must cost little in size.
    text = b"".join(
        b'preflight_egress_phase_seconds{node="node-%05d",target="t%d",phase="tls"} 0.0%d\n'
        % (i, i % 7, i % 97)
        for i in range(60000)
    )
    parts = [text[i : i + 70000] for i in range(0, len(text), 70000)]
    sliced = gzip_parts(parts, slice_bytes=1 << 20)
    single = gzip.compress(text, compresslevel=1)
    assert gzip.decompress(sliced) == text
    assert len(sliced) < 1.05 * len(single)


def test_lazy_parts_are_compressed_as_they_come(monkeypatch: pytest.MonkeyPatch) -> None:
    # Exposition.render_parts makes its pieces as they are asked for: gzip_parts must
    # not read them all first (the whole text alive at once stayed with the allocator).
    done = 0
    deflate = compression._deflate

    def counted(run: list[memoryview], level: int) -> bytes:
        nonlocal done
        out = deflate(run, level)
        done += 1
        return out

    monkeypatch.setattr(compression, "_deflate", counted)
    behind: list[int] = []

    def parts() -> Iterator[bytes]:
        for k in range(200):
            # k slices were cut before this part (one part, one slice): how many of
            # them still wait to be compressed.
            behind.append(k - done)
            yield b"%03d" % k + b"x" * 97

    body = gzip_parts(parts(), slice_bytes=100)
    assert gzip.decompress(body) == b"".join(b"%03d" % k + b"x" * 97 for k in range(200))
    assert max(behind) <= compression.IN_FLIGHT + 1
