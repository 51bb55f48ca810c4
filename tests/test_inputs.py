"""Inputs a .sfi file cannot represent say so: animated images are refused unless the first
frame is asked for; premultiplied alpha (RGBa, La) keeps its alpha plane."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import slimfast
from slimfast.cli import main
from slimfast.errors import SlimfastError
from slimfast.format.imageio import canonicalize, open_image


def _frames(small_rgb):
    return [Image.fromarray(small_rgb), Image.fromarray(255 - small_rgb), Image.fromarray(small_rgb[::-1].copy())]


@pytest.fixture(params=["gif", "webp", "png"])
def animated(request, tmp_path, small_rgb) -> Path:
    fmt = request.param
    if fmt == "webp":
        from PIL import features

        if not features.check("webp"):
            pytest.skip("Pillow built without WebP")
    p = tmp_path / f"anim.{fmt}"
    first, *rest = _frames(small_rgb)
    first.save(p, save_all=True, append_images=rest, duration=100, loop=0,
               **({"lossless": True} if fmt == "webp" else {}))
    with Image.open(p) as im:
        assert getattr(im, "n_frames", 1) == 3
    return p


def test_open_image_refuses_an_animated_image(animated):
    with pytest.raises(SlimfastError) as e:
        open_image(animated)
    msg = str(e.value)
    assert msg == "animated image (3 frames): slimfast stores one frame; --first-frame codes the first"


def test_first_frame_reads_the_first_frame(animated):
    with Image.open(animated) as im:
        want = np.asarray(im.convert("RGB"))
    img = open_image(animated, first_frame=True)
    assert img.rgb.shape == want.shape
    np.testing.assert_array_equal(img.rgb, want)


def test_canonicalize_rewinds_to_the_first_frame(animated):
    with Image.open(animated) as im:
        want = np.asarray(im.convert("RGB"))
        im.seek(2)
        with pytest.raises(SlimfastError, match=r"animated image \(3 frames\).*first_frame=True"):
            canonicalize(im)
        np.testing.assert_array_equal(canonicalize(im, first_frame=True).rgb, want)


def test_a_single_frame_gif_is_not_animated(tmp_path, small_rgb):
    p = tmp_path / "one.gif"
    Image.fromarray(small_rgb).save(p)
    assert open_image(p).rgb.shape == small_rgb.shape


def test_api_refuses_animated_unless_first_frame(model_dir, animated):
    with Image.open(animated) as im:
        with pytest.raises(SlimfastError, match="animated image"):
            slimfast.compress(im, model="test-l", threads=1)
        data = slimfast.compress(im, model="test-l", threads=1, first_frame=True)
        codec = slimfast.load("test-l", threads=1)
        with pytest.raises(SlimfastError, match="animated image"):
            codec.compress(im)
        assert codec.compress(im, first_frame=True) == data
    assert slimfast.decompress(data).size == (56, 40)


def test_cli_refuses_animated_in_one_line(model_dir, tmp_path, small_rgb, capsys):
    p = tmp_path / "anim.gif"
    first, *rest = _frames(small_rgb)
    first.save(p, save_all=True, append_images=rest, duration=100, loop=0)
    out = tmp_path / "x.sfi"
    assert main(["compress", str(p), str(out), "-m", "test-l", "--threads", "1"]) != 0
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and "animated image (3 frames)" in err[0] and "--first-frame" in err[0], err
    assert not out.exists()
    assert main(["compress", str(p), str(out), "-m", "test-l", "--threads", "1", "--first-frame", "--quiet"]) == 0
    assert out.exists()


def _premultiplied(mode: str) -> Image.Image:
    rng = np.random.default_rng(3)
    if mode == "RGBa":
        a = rng.integers(0, 256, (12, 16, 4), dtype=np.uint8)
        return Image.fromarray(a, "RGBA").convert("RGBa")
    a = rng.integers(0, 256, (12, 16, 2), dtype=np.uint8)
    return Image.fromarray(a, "LA").convert("La")


@pytest.mark.parametrize("mode,canon", [("RGBa", "RGBA"), ("La", "LA")])
def test_premultiplied_alpha_is_kept(mode, canon):
    im = _premultiplied(mode)
    assert im.mode == mode
    want = np.asarray(im.convert(canon))
    c = canonicalize(im)
    assert c.mode == canon
    assert c.alpha is not None
    np.testing.assert_array_equal(c.alpha, want[:, :, -1])
    np.testing.assert_array_equal(c.rgb[:, :, 0], want[:, :, 0])


def test_premultiplied_round_trip_keeps_alpha(model_dir):
    im = _premultiplied("RGBa")
    want_alpha = np.asarray(im.convert("RGBA"))[:, :, 3]
    out = slimfast.decompress(slimfast.compress(im, model="test-l", threads=1))
    assert out.mode == "RGBA"
    np.testing.assert_array_equal(np.asarray(out)[:, :, 3], want_alpha)
