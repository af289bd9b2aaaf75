"""collector.compression: every body it builds is one ordinary gzip member of the text."""

from __future__ import annotations

import gzip
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.compression import (
    GzipBody,
    crc32_combine,
    deflate_fragment,
    gzip_parts,
)


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


@settings(max_examples=300, deadline=None)
@given(a=st.binary(max_size=5000), b=st.binary(max_size=70000))
def test_crc32_combine_is_the_crc_of_the_concatenation(a: bytes, b: bytes) -> None:
    assert crc32_combine(zlib.crc32(a), zlib.crc32(b), len(b)) == zlib.crc32(a + b)


# Exposition-like text, and text nothing like it (random bytes defeat compression).
_texts = st.one_of(
    st.binary(max_size=600),
    st.lists(
        st.sampled_from([b'x{node="n1"} 1.0\n', b"# HELP x\n", b"\xff\x00"]), max_size=400
    ).map(b"".join),
    st.binary(min_size=60000, max_size=70000),
)
# A body: a mix, in any order, of plain text and runs of fragments.
_pieces = st.lists(
    st.one_of(
        st.tuples(st.just("text"), _texts),
        st.tuples(st.just("fragments"), st.lists(_texts, max_size=6)),
    ),
    max_size=8,
)


@settings(max_examples=150, deadline=None)
@given(pieces=_pieces, level=st.integers(min_value=0, max_value=9))
def test_a_body_of_text_and_fragments_is_one_gzip_member_of_their_text(
    pieces: list[tuple[str, bytes | list[bytes]]], level: int
) -> None:
    body = GzipBody(level)
    expected = []
    for _kind, content in pieces:
        if isinstance(content, bytes):
            body.text(content)
            expected.append(content)
        else:
            # Fragments are compressed apart from each other and from the body, as the
            # /metrics cache compresses each node's lines long before a scrape.
            body.fragments(
                [deflate_fragment(t, level) for t in content],
                [zlib.crc32(t) for t in content],
                [len(t) for t in content],
            )
            expected.extend(content)
    gzipped = body.finish()
    text = b"".join(expected)
    assert body.size == len(text)
    # One member that a reader stopping at its end (a browser, wbits 31) reads whole,
    # CRC-32 and length checked.
    inflate = zlib.decompressobj(31)
    assert inflate.decompress(gzipped) == text
    assert inflate.eof and inflate.unused_data == b""
    assert gzip.decompress(gzipped) == text


def test_a_fragment_of_exposition_text_is_compressed() -> None:
    line = b'preflight_egress_up{node="gpu-node-00001",target="quay.io"} 1.0\n'
    assert len(deflate_fragment(line * 40)) < len(line * 40) / 5
    assert deflate_fragment(b"") == b""


def test_a_wrong_fragment_checksum_fails_the_body() -> None:
    text = b'preflight_agent_up{node="n1"} 1\n' * 50
    body = GzipBody()
    body.fragments([deflate_fragment(text)], [zlib.crc32(text) ^ 1], [len(text)])
    with pytest.raises(gzip.BadGzipFile, match="CRC"):
        gzip.decompress(body.finish())
