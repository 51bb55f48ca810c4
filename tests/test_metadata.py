"""EXIF and XMP travel through compress / decompress (issue "Behave like the image tools", item 7)."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageOps

import slimfast
from slimfast.format import container
from slimfast.cli import main
from slimfast.errors import CorruptFileError, SlimfastError

ORIENTATION, MAKE, GPS = 0x0112, 0x010F, 0x8825
XMP = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
       b'<rdf:Description xmlns:dc="http://purl.org/dc/elements/1.1/" dc:format="image/png"/>'
       b'</rdf:RDF></x:xmpmeta>')


def _exif(orientation: int = 6) -> Image.Exif:
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    exif[MAKE] = "slimfast-test-camera"
    exif[GPS] = {1: "N", 2: (51.0, 30.0, 12.5), 3: "W", 4: (0.0, 7.0, 39.0)}
    return exif


def _jpeg_with_metadata(rgb: np.ndarray, orientation: int = 6) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=95, exif=_exif(orientation).tobytes(), xmp=XMP)
    return buf.getvalue()


def _check_exif(raw: bytes) -> None:
    exif = Image.Exif()
    exif.load(raw)
    assert exif[ORIENTATION] == 1
    assert exif[MAKE] == "slimfast-test-camera"
    gps = exif.get_ifd(GPS)
    assert gps[1] == "N" and tuple(map(float, gps[2])) == (51.0, 30.0, 12.5)


@pytest.fixture
def photo(small_rgb) -> Image.Image:
    """A 56x40 JPEG with EXIF (orientation 6, GPS) and XMP, opened as Pillow opens files."""
    return Image.open(io.BytesIO(_jpeg_with_metadata(small_rgb)))


def test_api_round_trip_resets_orientation_and_turns_the_pixels(model_dir, photo):
    data = slimfast.compress(photo, model="test-h", threads=1)
    hdr = container.unpack(data)
    assert hdr.format_version == 2 and [t for t, _ in hdr.chunks] == ["LAYT", "exif", "xmpd"]
    assert not hdr.chunk("exif").startswith(b"Exif")  # stored TIFF-structured, no JPEG prefix
    assert hdr.image_size == (40, 56)  # orientation 6: the pixels are turned
    upright = np.asarray(ImageOps.exif_transpose(photo))
    plain = container.unpack(slimfast.compress(upright, model="test-h", threads=1))
    assert plain.streams == hdr.streams and [t for t, _ in plain.chunks] == ["LAYT"]
    img = slimfast.decompress(data, threads=1)
    assert img.size == (40, 56)
    assert img.info["exif"].startswith(b"Exif\x00\x00")
    _check_exif(img.info["exif"])
    assert img.info["xmp"] == XMP
    assert img.getexif()[ORIENTATION] == 1


@pytest.mark.parametrize("ext", ["png", "jpg", "webp"])
def test_cli_round_trip_into_outputs(model_dir, photo, small_rgb, tmp_path, ext):
    src = tmp_path / "in.jpg"
    src.write_bytes(_jpeg_with_metadata(small_rgb))
    sfi, out = tmp_path / "x.sfi", tmp_path / f"y.{ext}"
    assert main(["compress", str(src), str(sfi), "-m", "test-h", "--threads", "1", "--quiet"]) == 0
    assert main(["decompress", str(sfi), str(out), "--quiet"]) == 0
    with Image.open(out) as back:
        back.load()
        assert back.size == (40, 56)
        _check_exif(back.info["exif"])
        xmp = back.info.get("xmp")
        assert (xmp.encode() if isinstance(xmp, str) else xmp) == XMP


def test_png_input_with_exif_and_xmp(model_dir, small_rgb, tmp_path):
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_itxt("XML:com.adobe.xmp", XMP.decode(), zip=False)
    src = tmp_path / "in.png"
    Image.fromarray(small_rgb).save(src, exif=_exif(6).tobytes(), pnginfo=info)
    with Image.open(src) as im:
        hdr = container.unpack(slimfast.compress(im, model="test-h", threads=1))
    assert hdr.image_size == (40, 56) and hdr.chunk("xmpd") == XMP
    _check_exif(hdr.chunk("exif"))


@pytest.mark.parametrize("level", ["icc", "none"])
def test_metadata_option_drops_exif_and_xmp(model_dir, small_rgb, tmp_path, level):
    icc = b"\0" * 128  # carried as bytes; no colour management happens here
    src = tmp_path / "in.jpg"
    src.write_bytes(_jpeg_with_metadata(small_rgb))
    with Image.open(src) as im:
        im.load()
        im.info["icc_profile"] = icc
        hdr = container.unpack(slimfast.compress(im, model="test-h", threads=1, metadata=level))
        assert [t for t, _ in hdr.chunks] == ["LAYT"]
        assert hdr.icc == (icc if level == "icc" else None)
        assert hdr.image_size == (40, 56)  # the orientation is still applied to the pixels
    sfi = tmp_path / "x.sfi"
    assert main(["compress", str(src), str(sfi), "-m", "test-h", "--threads", "1", "--quiet",
                 "--metadata", level]) == 0
    hdr = container.unpack(sfi.read_bytes())
    assert [t for t, _ in hdr.chunks] == ["LAYT"]
    img = slimfast.decompress(sfi, threads=1)
    assert "exif" not in img.info and "xmp" not in img.info


def test_invalid_metadata_value_is_one_line(model_dir, small_rgb, capsys):
    with pytest.raises(SlimfastError, match="metadata must be 'all', 'icc' or 'none'"):
        slimfast.compress(small_rgb, model="test-h", metadata="gps")
    codec = slimfast.load("test-h", threads=1)
    with pytest.raises(SlimfastError, match="metadata must be"):
        codec.compress(small_rgb, metadata=None)
    with pytest.raises(SystemExit) as exc:
        main(["compress", "in.png", "x.sfi", "--metadata", "gps"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--metadata" in err[0]


def test_files_without_metadata_carry_only_the_layout(model_dir, small_rgb, tmp_path):
    assert [t for t, _ in container.unpack(slimfast.compress(small_rgb, model="test-h", threads=1)).chunks] == ["LAYT"]
    src = tmp_path / "in.png"
    Image.fromarray(small_rgb).save(src)
    with Image.open(src) as im:
        hdr = container.unpack(slimfast.compress(im, model="test-h", threads=1))
    assert hdr.format_version == 2 and [t for t, _ in hdr.chunks] == ["LAYT"]
    img = slimfast.decompress(container.pack(hdr), threads=1)
    assert "exif" not in img.info and "xmp" not in img.info


def _header(**kw) -> container.Header:
    return container.Header("m", "1", b"\0" * 8, 0, (4, 4), "RGB", streams=[b"s"], **kw)


def test_exif_chunk_over_its_limit_is_corrupt(monkeypatch):
    data = container.pack(_header(chunks=[("exif", b"II*\0" + b"\0" * 60)]))
    assert container.unpack(data).chunk("exif").startswith(b"II*\0")
    monkeypatch.setitem(container.CHUNK_TYPES, "exif", container.ChunkType(max_len=16))
    with pytest.raises(CorruptFileError, match="'exif' chunk of 64 bytes is over its limit of 16"):
        container.unpack(data)
    with pytest.raises(ValueError, match="over its limit"):
        container.pack(_header(chunks=[("exif", b"\0" * 17)]))


def test_exif_limit_is_16_mib_and_one_chunk_each(monkeypatch):
    assert container.CHUNK_TYPES["exif"].max_len == 1 << 24 == container.CHUNK_TYPES["xmpd"].max_len
    with monkeypatch.context() as m:  # a writer that allowed two
        m.setitem(container.CHUNK_TYPES, "exif", container.ChunkType(max_count=2, max_len=1 << 24))
        twice = container.pack(_header(chunks=[("exif", b"a"), ("exif", b"b")]))
    with pytest.raises(CorruptFileError, match="2 'exif' chunks where at most 1"):
        container.unpack(twice)


def test_an_older_reader_skips_the_metadata_chunks(monkeypatch):
    data = container.pack(_header(chunks=[("exif", b"II*\0"), ("xmpd", XMP)]))
    for t in ("exif", "xmpd"):  # as a reader from before they were defined
        monkeypatch.delitem(container.CHUNK_TYPES, t)
    hdr = container.unpack(data)
    assert hdr.streams == [b"s"] and [t for t, _ in hdr.chunks] == ["exif", "xmpd"]


def test_compressing_leaves_the_callers_image_as_it_was(model_dir, photo):
    """The orientation is reset in the file's copy of the EXIF, never in the caller's image."""
    before = dict(photo.getexif())
    first = slimfast.compress(photo, model="test-h", threads=1)
    assert dict(photo.getexif()) == before and photo.getexif()[ORIENTATION] == 6
    assert slimfast.compress(photo, model="test-h", threads=1) == first  # so a second call turns it again
