"""The .sfi container: every malformed file fails with the one clear error."""
from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import slimfast
from slimfast.format import container
from slimfast.errors import SlimfastError
from slimfast.settings import Settings


def _header(**kw):
    d = dict(model="m", weights_version="1", weights_id=b"\x01" * 8, width=192, image_size=(5, 7),
             mode="RGB", streams=[b"abc", b""], alpha=None, icc=None)
    d.update(kw)
    return container.Header(**d)


def _recrc(data: bytes) -> bytes:
    return data[:-4] + struct.pack("<I", zlib.crc32(data[:-4]) & 0xFFFFFFFF)


def test_pack_unpack_round_trip_with_alpha_and_icc():
    h = _header(alpha=b"zz", icc=b"profile", mode="RGBA")
    out = container.unpack(container.pack(h))
    assert (out.model, out.weights_version, out.weights_id, out.width, out.image_size, out.mode) == \
        ("m", "1", b"\x01" * 8, 192, (5, 7), "RGBA")
    assert out.streams == [b"abc", b""] and out.alpha == b"zz" and out.icc == b"profile"


def test_every_truncation_is_rejected():
    data = container.pack(_header(alpha=b"zz", icc=b"p"))
    for n in range(len(data)):
        with pytest.raises(SlimfastError):
            container.unpack(data[:n])


def test_crc_catches_a_flipped_bit():
    data = bytearray(container.pack(_header()))
    data[-6] ^= 0x10
    with pytest.raises(SlimfastError, match="CRC"):
        container.unpack(bytes(data))


def test_wrong_magic_and_version():
    data = container.pack(_header())
    with pytest.raises(SlimfastError, match="magic"):
        container.unpack(b"\x89PNG" + data[4:])
    with pytest.raises(SlimfastError, match="version 9"):
        container.unpack(_recrc(data[:4] + b"\x09" + data[5:]))


@pytest.mark.parametrize("w,h", [(65536, 1), (1, 70000), (0, 5), (5, 0), (60000, 60000)])
def test_dimensions_beyond_limits_rejected_before_decoding(w, h):
    data = container.pack(_header())
    off = 4 + 3 + 1 + 1 + 1 + 1 + 8 + 2  # magic, version/flags/mode, name, version, id, width
    bad = data[:off] + struct.pack("<II", w, h) + data[off + 8:]
    with pytest.raises(SlimfastError, match="limit"):
        container.unpack(_recrc(bad), header_only=True)
    with pytest.raises(SlimfastError, match="limit"):
        container.unpack(_recrc(bad))


def test_pack_refuses_oversized_images():
    with pytest.raises(SlimfastError):
        container.pack(_header(image_size=(70000, 2)))


def test_unknown_model_and_wrong_weights_are_named(model_dir, small_rgb):
    data = slimfast.load("test-l").compress(small_rgb)
    hdr = container.unpack(data)
    hdr.model = "no-such-model"
    with pytest.raises(SlimfastError, match="no-such-model"):
        slimfast.decompress(container.pack(hdr))
    hdr = container.unpack(data)
    hdr.weights_id = b"\xee" * 8
    with pytest.raises(SlimfastError, match="version 1"):
        slimfast.decompress(container.pack(hdr))
    hdr = container.unpack(data)
    hdr.weights_version = "7"
    with pytest.raises(SlimfastError, match="version 7"):
        slimfast.decompress(container.pack(hdr))


def test_width_and_stream_count_are_checked(model_dir, small_rgb):
    data = slimfast.load("test-h").compress(small_rgb)
    hdr = container.unpack(data)
    hdr.width = 77
    with pytest.raises(SlimfastError):
        slimfast.decompress(container.pack(hdr))
    hdr = container.unpack(data)
    hdr.streams = hdr.streams[:1]
    with pytest.raises(SlimfastError, match="streams"):
        slimfast.decompress(container.pack(hdr))


def test_decoder_pixel_limit_refuses_huge_claims(model_dir, small_rgb, monkeypatch):
    data = slimfast.load("test-l").compress(small_rgb)
    hdr = container.unpack(data)
    hdr.image_size = (65535, 4096)
    with pytest.raises(SlimfastError, match="limit"):
        slimfast.decompress(container.pack(hdr))


@pytest.fixture(scope="module")
def valid_files(model_dir):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, size=(40, 70, 4), dtype=np.uint8)
    v1 = [slimfast.load(n).compress(img) for n in ("test-l", "test-h")]
    v2 = []
    for data in v1:
        hdr = container.unpack(data)
        hdr.chunks = [("abcd", b"metadata")]
        v2.append(container.pack(hdr))
    return v1 + v2


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(which=st.integers(0, 3), ops=st.lists(st.tuples(st.integers(0, 3), st.integers(0, 10 ** 6),
                                                       st.integers(0, 255)), min_size=1, max_size=6),
       fix_crc=st.booleans())
def test_fuzzed_files_only_ever_raise_the_clear_error(valid_files, which, ops, fix_crc):
    data = bytearray(valid_files[which])
    for op, pos, val in ops:
        if not data:
            break
        pos %= len(data)
        if op == 0:
            data[pos] = val
        elif op == 1:
            del data[pos:]
        elif op == 2:
            data[pos:pos] = bytes([val])
        else:
            data[pos] ^= 1 << (val % 8)
    data = bytes(data)
    if fix_crc and len(data) > 4:
        data = _recrc(data)  # get past the CRC to exercise the deeper parsers
    try:
        img = slimfast.decompress(data)
    except SlimfastError as exc:
        assert "\n" not in str(exc)
    else:
        assert img.size[0] * img.size[1] <= 40 * 70 * 4 or fix_crc


# --- format version 2: typed chunks -------------------------------------------------------------

_FIXED_LEN = 4 + 3 + 1 + 1 + 1 + 1 + 8 + 2 + 8  # magic..img_h for model "m", weights version "1"


def _chunk(ctype: bytes, payload: bytes) -> bytes:
    return ctype + struct.pack("<I", len(payload)) + payload


def _v2(*chunks: bytes, count: int | None = None) -> bytes:
    """A v2 file built by hand (not by pack), with a valid CRC."""
    fixed = container.pack(_header(), version=2)[:_FIXED_LEN]
    body = fixed + bytes([len(chunks) if count is None else count]) + b"".join(chunks)
    return _recrc(body + b"\0" * 4)


def test_v2_round_trip_with_streams_alpha_icc_and_extra_chunks():
    h = _header(alpha=b"zz", icc=b"profile", mode="RGBA", chunks=[("abcd", b"x"), ("abcd", b""), ("xmpd", b"<x/>")])
    data = container.pack(h)
    assert data[4] == 2
    out = container.unpack(data)
    assert out.format_version == 2 and out.total_bytes == len(data)
    assert (out.model, out.weights_version, out.weights_id, out.width, out.image_size, out.mode) == \
        ("m", "1", b"\x01" * 8, 192, (5, 7), "RGBA")
    assert out.streams == [b"abc", b""] and out.alpha == b"zz" and out.icc == b"profile"
    assert out.chunks == [("abcd", b"x"), ("abcd", b""), ("xmpd", b"<x/>")] and out.chunk("xmpd") == b"<x/>"
    assert container.pack(out) == data  # kept chunks survive a re-pack


def test_v1_is_still_written_by_default_and_parsed():
    h = _header(alpha=b"zz", icc=b"p", mode="LA")
    data = container.pack(h)
    assert data[4] == 1 == container.FORMAT_VERSION and data == container.pack(h, version=1)
    assert len(container.pack(_header(streams=[b""]))) == container.MIN_SIZE
    out = container.unpack(data)
    assert out.format_version == 1 and out.chunks == []
    assert (out.streams, out.alpha, out.icc, out.mode) == ([b"abc", b""], b"zz", b"p", "LA")
    assert container.pack(container.unpack(container.pack(h, version=2))) == data  # no extra chunks: back to v1


def test_explicit_v2_and_the_versions_pack_refuses():
    data = container.pack(_header(), version=2)
    assert data[4] == 2 and data[5] == 0 and data[_FIXED_LEN] == 2  # reserved flags, two STRM chunks
    assert data == _v2(_chunk(b"STRM", b"abc"), _chunk(b"STRM", b""))
    assert container.unpack(data).streams == [b"abc", b""]
    with pytest.raises(ValueError, match="version 1"):
        container.pack(_header(chunks=[("abcd", b"")]), version=1)
    with pytest.raises(ValueError):
        container.pack(_header(), version=3)
    assert container.SUPPORTED_VERSIONS == (1, 2) and container.LATEST_VERSION == 2


def test_header_only_reads_a_v2_header():
    out = container.unpack(container.pack(_header(mode="L"), version=2), header_only=True)
    assert (out.image_size, out.mode, out.format_version, out.streams) == ((5, 7), "L", 2, [])


def test_unknown_ancillary_chunk_is_skipped_and_kept():
    data = _v2(_chunk(b"zzzz", b"whatever"), _chunk(b"STRM", b"s0"), _chunk(b"qqqq", b""), _chunk(b"STRM", b"s1"))
    out = container.unpack(data)
    assert out.streams == [b"s0", b"s1"] and out.chunks == [("zzzz", b"whatever"), ("qqqq", b"")]


def test_unknown_critical_chunk_needs_a_newer_slimfast():
    with pytest.raises(SlimfastError, match="newer slimfast: unknown critical chunk 'XYZW'"):
        container.unpack(_v2(_chunk(b"STRM", b"s"), _chunk(b"XYZW", b"")))
    with pytest.raises(ValueError, match="critical"):  # never written: no slimfast could read it
        container.pack(_header(chunks=[("XYZW", b"")]))
    data = _v2(_chunk(b"STRM", b"s"))
    with pytest.raises(SlimfastError, match="newer slimfast.*version 3"):
        container.unpack(_recrc(data[:4] + b"\x03" + data[5:]))


@pytest.mark.parametrize("chunks,match", [
    ((), "chunk count"),
    ((_chunk(b"ALPH", b"a"),), "no 'STRM'"),
    ((_chunk(b"STRM", b""), _chunk(b"ALPH", b"a"), _chunk(b"ALPH", b"b")), "at most 1"),
    ((_chunk(b"STRM", b""), _chunk(b"iccp", b"a"), _chunk(b"iccp", b"b")), "at most 1"),
    (tuple(_chunk(b"STRM", b"") for _ in range(9)), "at most 8"),
    ((_chunk(b"STRM", b""), _chunk(b"iccp", b"\0" * (container.MAX_ICC + 1))), "limit"),
    ((_chunk(b"STRM", b""), _chunk(b"ab1d", b"")), "not 4 ASCII letters"),
    ((_chunk(b"STRM", b""), _chunk(b"ab d", b"")), "not 4 ASCII letters"),
    ((_chunk(b"STRM", b""), _chunk("abcé".encode("latin-1"), b"")), "not 4 ASCII letters"),
])
def test_bad_chunk_lists_are_rejected(chunks, match):
    with pytest.raises(SlimfastError, match=match):
        container.unpack(_v2(*chunks))


def test_chunk_count_limit():
    ok = [_chunk(b"STRM", b"")] + [_chunk(b"abcd", b"")] * (container.MAX_CHUNKS - 1)
    assert len(container.unpack(_v2(*ok)).chunks) == container.MAX_CHUNKS - 1
    with pytest.raises(SlimfastError, match="chunk count"):
        container.unpack(_v2(*ok, _chunk(b"abcd", b"")))
    with pytest.raises(ValueError, match="limit"):
        container.pack(_header(chunks=[("abcd", b"")] * (container.MAX_CHUNKS - 1)))


def test_pack_refuses_bad_extra_chunks():
    for bad in ("ab", "ab1d", "STRM", "ALPH", "iccp", b"abcd"):
        with pytest.raises(ValueError):
            container.pack(_header(chunks=[(bad, b"")]))


def test_chunk_lengths_must_tile_the_file():
    data = _v2(_chunk(b"STRM", b"abc"))
    with pytest.raises(SlimfastError, match="trailing"):
        container.unpack(_recrc(data[:-4] + b"\0" + data[-4:]))
    with pytest.raises(SlimfastError, match="truncated"):  # a length past the end of the file
        container.unpack(_recrc(data[:_FIXED_LEN + 5] + struct.pack("<I", 2 ** 32 - 1) + data[_FIXED_LEN + 9:]))
    with pytest.raises(SlimfastError, match="trailing"):  # a count too small for the chunks present
        container.unpack(_v2(_chunk(b"STRM", b"a"), _chunk(b"STRM", b"b"), count=1))
    with pytest.raises(SlimfastError, match="truncated"):  # a count too large
        container.unpack(_v2(_chunk(b"STRM", b"a"), count=2))


def test_a_v1_file_relabelled_v2_fails_naming_the_version():
    for h in (_header(), _header(alpha=b"zz", mode="RGBA")):
        data = container.pack(h)
        with pytest.raises(SlimfastError, match="version 2"):
            container.unpack(_recrc(data[:4] + b"\x02" + data[5:]))


def test_v2_reserved_flags_must_be_zero():
    data = _v2(_chunk(b"STRM", b"a"))
    with pytest.raises(SlimfastError, match="flags"):
        container.unpack(_recrc(data[:5] + b"\x01" + data[6:]))


def test_every_v2_truncation_and_bit_flip_is_a_clean_error():
    data = container.pack(_header(alpha=b"zz", icc=b"p", mode="RGBA", chunks=[("abcd", b"q")]), version=2)
    for n in range(len(data)):
        with pytest.raises(SlimfastError) as exc:
            container.unpack(data[:n])
        assert "\n" not in str(exc.value)
    for i in range(len(data)):
        for bit in range(8):
            bad = bytearray(data)
            bad[i] ^= 1 << bit
            bad = bytes(bad)
            for b in (bad, _recrc(bad)):
                try:
                    out = container.unpack(b)
                except SlimfastError as e:
                    assert "\n" not in str(e)
                else:  # the CRC catches every flip; past it, only some flips in names or payloads parse
                    assert b is not bad and out.format_version == 2


@pytest.mark.parametrize("name", ["test-l", "test-h"])
def test_v2_file_with_a_real_stream_decodes_like_v1(model_dir, name):
    rng = np.random.default_rng(3)
    img = rng.integers(0, 256, size=(24, 40, 4), dtype=np.uint8)
    data = slimfast.load(name, settings=Settings.from_env().replace(coder="range")).compress(img)  # range-coded files stay v1
    hdr = container.unpack(data)
    assert data[4] == 1 and hdr.format_version == 1 and hdr.alpha is not None
    v2 = container.pack(hdr, version=2)
    assert v2[4] == 2 and container.unpack(v2).streams == hdr.streams
    a, b = slimfast.decompress(data), slimfast.decompress(v2)
    assert a.mode == b.mode == "RGBA"
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
