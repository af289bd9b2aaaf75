"""collector.compression: the parallel gzip body is one ordinary gzip member of the text."""

from __future__ import annotations

import gzip
import zlib

from hypothesis import given, settings
from hypothesis import strategies as st

from collector.compression import gzip_parts, inflate_all


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


@settings(max_examples=100, deadline=None)
@given(
    texts=st.lists(
        st.lists(st.binary(max_size=300).filter(lambda b: b"\xff" not in b)), max_size=40
    )
)
def test_inflate_all_gives_every_blob_back_split_and_in_order(texts: list[list[bytes]]) -> None:
    # The /metrics cache's shape: each node's family texts joined by a byte they lack.
    blobs = [zlib.compress(b"\xff".join(parts), 1) for parts in texts]
    expected = [b"\xff".join(parts).split(b"\xff") for parts in texts]
    assert inflate_all(blobs, b"\xff") == expected
