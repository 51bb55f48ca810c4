"""Hostile files and inputs (issue "Hostile files", bugs 1, 2, 5 and 9), through the public API.

1. The work a file causes is bounded by its size: a stream too short for the latent its header
   declares, or one the range decoder would read past, is corrupt; ``max_pixels`` is an API knob.
2. The encoder refuses what the decoder would refuse, from the input's header, before pixels.
5. The decoder enforces every limit of docs/format.md, each tested at the limit and just past.
9. Reads are bounded: an .sfi by what its header declares (never past 1 GiB), an image input
   by ``imageio.max_input_bytes``.
"""
from __future__ import annotations

import io
import os
import resource
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

import slimfast
from slimfast.format import container, imageio
from slimfast.errors import SlimfastError

from .fuzzing import _uvarint, stream_parts

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "slimfast" / "data" / "kodim23.png"
MODELS = ("fasinet-l-msssim-q2", "fasinet-h-mse-q1")  # a factorized and a hyperprior stream layout


def _recrc(data: bytes) -> bytes:
    return data[:-4] + struct.pack("<I", zlib.crc32(data[:-4]) & 0xFFFFFFFF)


def _photo(mode: str = "RGB") -> Image.Image:
    im = Image.open(SAMPLE).convert("RGBA").crop((300, 200, 396, 264))  # 96 x 64
    return im.convert(mode)


def _with(data: bytes, **changes) -> bytes:
    hdr = container.unpack(data)
    for k, v in changes.items():
        setattr(hdr, k, v)
    return container.pack(hdr, version=data[4])


@pytest.fixture(scope="module")
def files() -> dict[str, bytes]:
    return {m: slimfast.load(m, threads=1).compress(_photo()) for m in MODELS}


@pytest.fixture(scope="module")
def range_files() -> dict[str, bytes]:
    """The same files range-coded, as slimfast wrote them before LAYT."""
    from slimfast.settings import Settings

    settings = Settings.from_env().replace(threads=1, coder="range")
    return {m: slimfast.load(m, settings=settings).compress(_photo()) for m in MODELS}


def _words(stream: bytes, unit: int) -> tuple[int, bytes, bytes]:
    """(word count, words, escape part) of a stream (docs/format.md, "Streams")."""
    words, rest = stream_parts(stream, unit)
    return len(words) // unit, words, rest


# -- bug 1: work bounded by the file ---------------------------------------------------------------
@pytest.mark.parametrize("size", [(1024, 1024), (8192, 8192), (65535, 1024)], ids=["1k", "8k", "64kx1k"])
@pytest.mark.parametrize("model", MODELS)
def test_empty_streams_cannot_declare_a_large_image(files, model, size):
    """61 bytes used to decode to 8192 x 8192 (2.3 GB, ~30 s); now refused before any allocation."""
    data = _with(files[model], image_size=size, streams=[b"\0\0"] * len(container.unpack(files[model]).streams))
    assert len(data) < 80
    with pytest.raises(SlimfastError, match=r"^corrupt \.sfi file: .*cannot hold"):
        slimfast.decompress(data, threads=1)


@pytest.mark.parametrize("model", MODELS)
def test_a_larger_claim_than_the_stream_holds_is_refused(files, model):
    hdr = container.unpack(files[model])
    w, h = hdr.image_size
    with pytest.raises(SlimfastError, match="cannot hold|past the end"):
        slimfast.decompress(_with(files[model], image_size=(w * 40, h * 40)), threads=1)


@pytest.mark.parametrize("coder", ["range", "rans"])
@pytest.mark.parametrize("cut", ["one word", "half"])
@pytest.mark.parametrize("model", MODELS)
def test_a_stream_whose_words_run_out_is_corrupt(files, range_files, model, cut, coder):
    """The range decoder reads zeros past its words instead of failing: that must be caught;
    the rANS decoder must not read past its bytes."""
    data = range_files[model] if coder == "range" else files[model]
    hdr = container.unpack(data)
    unit = 4 if coder == "range" else 1
    i = len(hdr.streams) - 1  # y: the long one
    n, words, rest = _words(hdr.streams[i], unit)
    keep = n - 1 if cut == "one word" else n // 2
    assert n >= 4
    streams = list(hdr.streams)
    streams[i] = _uvarint(keep) + words[: unit * keep] + rest
    # One word less still passes the size bound: the decoder itself must notice.
    reason = "past the end|do not end" if cut == "one word" else "past the end|do not end|cannot hold"
    with pytest.raises(SlimfastError, match=rf"^corrupt \.sfi file: .*({reason})"):
        slimfast.decompress(_with(data, streams=streams), threads=1)


@pytest.mark.parametrize("coder", ["range", "rans"])
@pytest.mark.parametrize("model", MODELS)
def test_words_left_after_the_last_symbol_are_corrupt(files, range_files, model, coder):
    data = range_files[model] if coder == "range" else files[model]
    hdr = container.unpack(data)
    unit = 4 if coder == "range" else 1
    streams = list(hdr.streams)
    for i, s in enumerate(hdr.streams):
        n, words, rest = _words(s, unit)
        streams[i] = _uvarint(n + 8 // unit) + words + b"\x5a" * 8 + rest
        with pytest.raises(SlimfastError, match=r"^corrupt \.sfi file: .*(words left|bytes are left|do not end)"):
            slimfast.decompress(_with(data, streams=streams), threads=1)
        streams[i] = s


def test_valid_files_still_decode(files):
    for data in files.values():
        assert slimfast.decompress(data, threads=1).size == (96, 64)


def test_max_pixels_is_an_api_setting(files):
    data = files["fasinet-l-msssim-q2"]
    assert slimfast.decompress(data, threads=1, max_pixels=96 * 64).size == (96, 64)
    with pytest.raises(SlimfastError, match="limit of 6143 pixels"):
        slimfast.decompress(data, threads=1, max_pixels=96 * 64 - 1)
    at, below = (slimfast.load("fasinet-l-msssim-q2", threads=1, max_pixels=n) for n in (96 * 64, 96 * 64 - 1))
    assert slimfast.decompress(at.compress(_photo()), threads=1).size == (96, 64)
    with pytest.raises(SlimfastError, match="6143 pixels"):
        below.compress(_photo())
    with pytest.raises(SlimfastError, match="6143 pixels"):
        below.decompress(data)
    with pytest.raises(SlimfastError, match="max_pixels must be an integer >= 1"):
        slimfast.decompress(data, max_pixels=0)


# -- bug 2: the encoder's pixel cap, from the header -----------------------------------------------
@pytest.fixture(scope="module")
def huge_png(tmp_path_factory) -> Path:
    """12000 x 12000 (144 M pixels, over the default 64 Mi) in about 20 KB."""
    path = tmp_path_factory.mktemp("huge") / "huge.png"
    Image.new("1", (12000, 12000)).save(path)
    assert path.stat().st_size < 200_000
    return path


@pytest.fixture
def no_pixel_decoding(monkeypatch):
    def refuse(self, *a, **k):
        raise AssertionError("the encoder decoded the pixels of an image it must refuse")
    monkeypatch.setattr(Image.Image, "load", refuse)
    monkeypatch.setattr(ImageFile.ImageFile, "load", refuse)


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_encoder_refuses_a_huge_png_before_decoding_it(huge_png, no_pixel_decoding):
    codec = slimfast.load("fasinet-l-msssim-q2", threads=1)
    with Image.open(huge_png) as im:
        with pytest.raises(SlimfastError, match="12000x12000 is above the limit of 67108864 pixels"):
            codec.compress(im)
    with pytest.raises(SlimfastError, match="12000x12000"):
        imageio.open_image(huge_png)
    with pytest.raises(SlimfastError, match="12000x12000"):
        imageio.open_image(io.BytesIO(huge_png.read_bytes()))


def test_encoder_refuses_what_the_default_decoder_would():
    """8200 x 8200 used to take 43 s and write a file the default decoder refused."""
    big = np.broadcast_to(np.zeros((1, 1, 3), np.uint8), (8200, 8200, 3))  # no memory behind it
    with pytest.raises(SlimfastError, match="8200x8200 is above the limit"):
        slimfast.load("fasinet-l-msssim-q2", threads=1).compress(big)
    assert 8192 * 8192 == slimfast.Settings().max_pixels  # the largest square both sides accept


def _address_space_3g():
    resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))  # the old encoder then fails fast


@pytest.mark.slow  # starts subprocesses or trains
def test_the_command_refuses_a_huge_png_in_one_line(huge_png, tmp_path):
    out = tmp_path / "out.sfi"
    r = subprocess.run([sys.executable, "-m", "slimfast", "compress", str(huge_png), str(out), "--threads", "1"],
                       capture_output=True, text=True, timeout=120, cwd=ROOT, preexec_fn=_address_space_3g,
                       env={**os.environ, "PYTHONWARNINGS": "ignore"})  # Pillow's bomb warning is not ours
    assert r.returncode != 0 and not out.exists()
    assert len(r.stderr.splitlines()) == 1 and "12000x12000" in r.stderr, r.stderr[-2000:]


# -- bug 5: every limit of the format, at the limit and just past it -------------------------------
def _raw(version: int = 1, name: bytes = b"m", ver: bytes = b"1", size=(5, 7), streams=(b"s",),
         icc: bytes | None = None, mode: int = 1, chunks: tuple[bytes, ...] = ()) -> bytes:
    """A CRC-valid file built by hand, so that pack's own checks do not stop it being written."""
    out = container.MAGIC + bytes([version, 0, mode, len(name)]) + name + bytes([len(ver)]) + ver + b"\1" * 8
    out += struct.pack("<HII", 192, *size)
    if version == 1:
        if icc is not None:
            out = out[:5] + b"\x02" + out[6:]
        out += bytes([len(streams)]) + b"".join(struct.pack("<I", len(s)) for s in streams)
        out += struct.pack("<I", len(icc)) if icc is not None else b""
        out += b"".join(streams) + (icc or b"")
    else:
        parts = [b"STRM" + struct.pack("<I", len(s)) + s for s in streams]
        parts += [b"iccp" + struct.pack("<I", len(icc)) + icc] if icc is not None else []
        parts += list(chunks)
        out += bytes([len(parts)]) + b"".join(parts)
    return _recrc(out + b"\0" * 4)


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("field,limit", [("name", 64), ("ver", 16)])
def test_name_and_version_lengths(version, field, limit):
    ok = container.unpack(_raw(version, **{field: b"a" * limit}))
    assert len(ok.model if field == "name" else ok.weights_version) == limit
    what = "model name" if field == "name" else "weights version"
    for n in (limit + 1, 200, 0):
        for header_only in (False, True):
            with pytest.raises(SlimfastError, match=f"{what} of {n} bytes"):
                container.unpack(_raw(version, **{field: b"a" * n}), header_only=header_only)


@pytest.mark.parametrize("version", [1, 2])
def test_icc_profile_limit(version):
    assert len(container.unpack(_raw(version, icc=b"\0" * container.MAX_ICC)).icc) == container.MAX_ICC == 1 << 24
    with pytest.raises(SlimfastError, match="ICC|iccp"):
        container.unpack(_raw(version, icc=b"\0" * (container.MAX_ICC + 1)))


def test_v1_icc_length_is_checked_from_the_header_alone():
    data = _raw(1, icc=b"\0" * (container.MAX_ICC + 1))
    with pytest.raises(SlimfastError, match="ICC profile of 16777217 bytes"):
        container.unpack(data[:60], header_only=True)


@pytest.mark.parametrize("version", [1, 2])
def test_image_size_limits(version):
    for size in ((65535, 1), (1, 65535), (16384, 16384), (65535, 4096)):
        assert container.unpack(_raw(version, size=size), header_only=True).image_size == size
    for size in ((65536, 1), (1, 65536), (16385, 16384), (65535, 4097), (0, 1), (1, 0)):
        with pytest.raises(SlimfastError, match="limit"):
            container.unpack(_raw(version, size=size))


@pytest.mark.parametrize("version", [1, 2])
def test_stream_count_limit(version):
    assert len(container.unpack(_raw(version, streams=(b"",) * 8)).streams) == 8
    with pytest.raises(SlimfastError, match="stream count|at most 8"):
        container.unpack(_raw(version, streams=(b"",) * 9))


def test_chunk_count_limit():
    extra = (b"abcd" + b"\0" * 4,) * 63
    assert len(container.unpack(_raw(2, chunks=extra)).chunks) == 63  # 64 chunks
    with pytest.raises(SlimfastError, match="chunk count"):
        container.unpack(_raw(2, chunks=extra + extra[:1]))


@pytest.mark.parametrize("version", [1, 2])
def test_file_size_limit(version, monkeypatch, tmp_path):
    data = _raw(version)
    assert container.MAX_FILE_BYTES == 1 << 30
    monkeypatch.setattr(container, "MAX_FILE_BYTES", len(data))
    path = tmp_path / "f.sfi"
    path.write_bytes(data)
    hdr = container.unpack(data)
    assert hdr.streams == [b"s"] and container.read_file(path) == data == container.pack(hdr, version=version)
    monkeypatch.setattr(container, "MAX_FILE_BYTES", len(data) - 1)
    for read in (container.unpack, lambda d: container.read_file(io.BytesIO(d))):
        with pytest.raises(SlimfastError, match="limit"):
            read(data)
    with pytest.raises(SlimfastError, match="limit"):
        container.pack(hdr, version=version)


@pytest.fixture(scope="module")
def rgba_file() -> bytes:
    return slimfast.load("fasinet-l-msssim-q2", threads=1).compress(_photo("RGBA"))


def _plane(n: int) -> bytes:
    return bytes(range(256)) * (n // 256) + bytes(n % 256)


def test_alpha_plane_exact_size_decodes(rgba_file):
    assert slimfast.decompress(_with(rgba_file, alpha=zlib.compress(_plane(96 * 64))), threads=1).mode == "RGBA"
    for n in (96 * 64 - 1, 96 * 64 + 1):
        with pytest.raises(SlimfastError, match="alpha plane has the wrong size"):
            slimfast.decompress(_with(rgba_file, alpha=zlib.compress(_plane(n))), threads=1)


def test_alpha_plane_must_be_one_complete_zlib_stream(rgba_file):
    plane = zlib.compress(_plane(96 * 64))
    z = zlib.compressobj()
    unfinished = z.compress(_plane(96 * 64)) + z.flush(zlib.Z_SYNC_FLUSH)  # all pixels, no end
    for bad in (plane + b"junk", plane + plane, plane + b"\0", unfinished):
        with pytest.raises(SlimfastError, match="alpha plane"):
            slimfast.decompress(_with(rgba_file, alpha=bad), threads=1)


def test_alpha_plane_only_where_the_mode_has_alpha(files):
    data = _with(files["fasinet-l-msssim-q2"], alpha=zlib.compress(_plane(96 * 64)))
    with pytest.raises(SlimfastError, match="alpha plane in a RGB image"):
        slimfast.decompress(data, threads=1)


# -- bug 9: bounded reads -------------------------------------------------------------------------
class Endless(io.RawIOBase):
    """``prefix``, then ``fill`` forever (like /dev/zero); counts the bytes handed out."""

    def __init__(self, prefix: bytes = b"", fill: int = 0):
        self.prefix, self.fill, self.served = prefix, fill, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:
        n = len(buf)
        head = self.prefix[self.served: self.served + n]
        buf[: len(head)] = head
        buf[len(head): n] = bytes([self.fill]) * (n - len(head))
        self.served += n
        return n


def test_read_file_stops_at_a_wrong_magic():
    src = Endless(fill=0x42)
    with pytest.raises(SlimfastError, match="wrong magic"):
        container.read_file(src)
    assert src.served <= 4


def test_read_file_refuses_lengths_past_the_limit_before_reading_them():
    count_at = 4 + 3 + 2 + 2 + 8 + 2 + 8  # magic, version/flags/mode, "m", "1", id, width, size
    lying = _raw(1, streams=(b"",) * 8)
    assert lying[count_at] == 8
    header = lying[: count_at + 1] + struct.pack("<I", 2 ** 32 - 1) * 8
    src = Endless(header)
    with pytest.raises(SlimfastError, match="limit of 1073741824 bytes"):
        container.read_file(src)
    assert src.served <= container.MAX_HEADER_BYTES == 148


@pytest.mark.parametrize("version", [1, 2])
def test_read_file_reads_exactly_the_file(version, tmp_path):
    data = _raw(version, streams=(b"abc", b"de"), icc=b"profile")
    path = tmp_path / "f.sfi"
    path.write_bytes(data)
    assert container.read_file(path) == container.read_file(str(path)) == data
    src = Endless(data, fill=7)  # the file, then more bytes
    with pytest.raises(SlimfastError, match="trailing bytes"):
        container.read_file(src)
    assert src.served <= len(data) + 1
    with pytest.raises(SlimfastError, match="truncated"):
        container.read_file(io.BytesIO(data[:-1]))
    head = container.read_file(Endless(data, fill=7), header_only=True)
    assert len(head) <= container.MAX_HEADER_BYTES and data.startswith(head)
    assert container.unpack(head, header_only=True).image_size == (5, 7)


def test_read_file_from_devices_and_missing_paths(tmp_path):
    if Path("/dev/urandom").exists():
        with pytest.raises(SlimfastError, match="wrong magic"):
            container.read_file("/dev/urandom")
    with pytest.raises(SlimfastError, match="no such file"):
        container.read_file(tmp_path / "missing.sfi")
    with pytest.raises(SlimfastError, match="is a directory"):
        container.read_file(tmp_path)


def test_read_bounded_stops_just_past_its_limit(tmp_path):
    src = Endless()
    with pytest.raises(SlimfastError, match="larger than 1000 bytes"):
        imageio.read_bounded(src, 1000)
    assert src.served <= 1001
    if Path("/dev/zero").exists():
        with pytest.raises(SlimfastError, match="larger than"):
            imageio.read_bounded("/dev/zero", 3 << 20)
    path = tmp_path / "a.png"
    _photo().save(path)
    size = path.stat().st_size
    assert imageio.read_bounded(path, size) == path.read_bytes()
    with pytest.raises(SlimfastError, match=f"larger than {size - 1} bytes"):
        imageio.read_bounded(path, size - 1)


def test_image_input_limit_is_documented_and_follows_max_pixels():
    assert imageio.max_input_bytes() == 8 * (64 << 20) + (64 << 20) == 576 << 20
    assert imageio.max_input_bytes(1000) == 8000 + (64 << 20)
