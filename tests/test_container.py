"""The .sfi container: every malformed file fails with the one clear error."""
from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import slimfast
from slimfast import container
from slimfast.errors import SlimfastError


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
    return [slimfast.load(n).compress(img) for n in ("test-l", "test-h")]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(which=st.integers(0, 1), ops=st.lists(st.tuples(st.integers(0, 3), st.integers(0, 10 ** 6),
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
