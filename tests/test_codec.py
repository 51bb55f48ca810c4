"""End-to-end coding properties with real bitstreams."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import slimfast
from slimfast.format import container
from slimfast.codec import pad_image, to_input

from .conftest import KODAK, SAMPLE

MODELS = ["test-l", "test-h"]


@pytest.mark.parametrize("name", MODELS)
def test_decoded_latents_equal_encoded_latents_exactly(model_dir, sample_rgb, name):
    codec = slimfast.load(name)
    m = codec.model
    x = to_input(pad_image(sample_rgb, m.pad_multiple))
    sym = m.encode_symbols(x)
    lat = m.compress(x)
    dec = m.decode_symbols(lat.strings, lat.shape)
    assert set(dec) == set(sym)
    for k in sym:
        assert dec[k].dtype == np.int32 and np.array_equal(dec[k], sym[k]), k


@pytest.mark.parametrize("name", MODELS)
def test_payload_size_matches_the_discrete_rate_estimate(model_dir, name):
    """Real payload within 1% of -log2 of the frozen tables' probabilities, plus the header."""
    img = np.asarray(Image.open(SAMPLE).convert("RGB"))  # kodim23, a Kodak image
    codec = slimfast.load(name)
    m = codec.model
    data = codec.compress(img)
    hdr = container.unpack(data)
    payload = sum(len(s) for s in hdr.streams)
    x = to_input(pad_image(img, m.pad_multiple))
    est_bytes = m.estimate_bits(m.encode_symbols(x)) / 8
    assert abs(payload - est_bytes) / est_bytes < 0.01
    assert len(data) - payload < 64 + 17  # fixed header + CRC (model name included), v2 framing and LAYT


@pytest.mark.parametrize("name", MODELS)
def test_bpp_is_file_size(model_dir, small_rgb, name):
    data = slimfast.load(name).compress(small_rgb)
    h, w = small_rgb.shape[:2]
    assert container.unpack(data).bpp == len(data) * 8 / (h * w)


@pytest.mark.parametrize("size", [(1, 1), (1, 7), (17, 1), (33, 65), (64, 64)])
def test_any_size_round_trips(model_dir, size):
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, size=(*size, 3), dtype=np.uint8)
    for name in MODELS:
        out = slimfast.decompress(slimfast.load(name).compress(a))
        assert out.size == (size[1], size[0]) and out.mode == "RGB"


def test_greyscale_stays_greyscale(model_dir, small_rgb):
    grey = small_rgb[:, :, 0]
    out = slimfast.decompress(slimfast.load("test-l").compress(grey))
    assert out.mode == "L" and out.size == (grey.shape[1], grey.shape[0])


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_alpha_is_lossless(model_dir, small_rgb, mode):
    rng = np.random.default_rng(3)
    alpha = rng.integers(0, 256, size=small_rgb.shape[:2], dtype=np.uint8)
    im = Image.fromarray(np.dstack([small_rgb, alpha]), "RGBA")
    if mode == "LA":
        im = im.convert("LA")
    out = slimfast.decompress(slimfast.load("test-h").compress(im))
    assert out.mode == mode
    assert np.array_equal(np.asarray(out)[..., -1], np.asarray(im)[..., -1])


def test_palette_and_one_bit_images(model_dir, small_rgb):
    p = Image.fromarray(small_rgb).convert("P")
    assert slimfast.decompress(slimfast.load("test-l").compress(p)).mode == "RGB"
    b = Image.fromarray(small_rgb[:, :, 0]).convert("1")
    assert slimfast.decompress(slimfast.load("test-l").compress(b)).mode == "L"


def test_sixteen_bit_input_is_reduced_to_8_bits(model_dir):
    from slimfast.format.imageio import canonicalize

    a16 = (np.arange(64 * 32, dtype=np.uint16).reshape(32, 64) * 32)
    im = Image.fromarray(a16)
    assert im.mode == "I;16"
    c = canonicalize(im)
    assert c.mode == "L" and np.array_equal(c.rgb[:, :, 0], np.rint(a16 / 257).astype(np.uint8))


def test_exif_orientation_applied_and_icc_carried(model_dir, small_rgb, tmp_path):
    im = Image.fromarray(small_rgb)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW on display
    icc = b"\x00\x00\x02\x0cfake-icc-profile" * 10
    path = tmp_path / "rot.jpg"
    im.save(path, exif=exif, icc_profile=icc, quality=95)
    from slimfast.format.imageio import open_image

    c = open_image(path)
    assert c.size == (small_rgb.shape[0], small_rgb.shape[1])  # width/height swapped
    out = slimfast.decompress(slimfast.load("test-l").compress(c))
    assert out.size == c.size and out.info.get("icc_profile") == icc


def test_numpy_input_shapes_and_errors(model_dir, small_rgb):
    codec = slimfast.load("test-l")
    rgba = np.dstack([small_rgb, np.full(small_rgb.shape[:2], 200, np.uint8)])
    assert slimfast.decompress(codec.compress(rgba)).mode == "RGBA"
    for bad in (small_rgb.astype(np.float32), small_rgb[:, :, :2], np.zeros((0, 5, 3), np.uint8)):
        with pytest.raises(slimfast.SlimfastError):
            codec.compress(bad)


def test_quality_and_width_validation(model_dir, small_rgb):
    codec = slimfast.load("test-l")
    with pytest.raises(slimfast.SlimfastError, match="slimmable"):
        codec.compress(small_rgb, width=96)
    with pytest.raises(slimfast.SlimfastError, match="quality"):
        codec.compress(small_rgb, quality=150)
    assert codec.compress(small_rgb, quality=0) == codec.compress(small_rgb)


_DECODE_SCRIPT = """
import sys, json, hashlib, numpy as np, torch
torch.set_num_threads(int(sys.argv[2]))
import slimfast
from slimfast.format import container
data = open(sys.argv[1], 'rb').read()
hdr = container.unpack(data)
codec = slimfast.load(hdr.model)
sym = codec.model.decode_symbols(hdr.streams, tuple(int(v) for v in sys.argv[3:5]))
img = np.asarray(slimfast.decompress(data))
print(json.dumps({k: hashlib.sha256(v.tobytes()).hexdigest() for k, v in sym.items()} |
                 {"pixels": hashlib.sha256(img.tobytes()).hexdigest()}))
"""


@pytest.mark.slow  # starts subprocesses or trains
@pytest.mark.parametrize("name", MODELS)
def test_decoding_is_deterministic_across_threads_and_processes(model_dir, sample_rgb, tmp_path, name):
    codec = slimfast.load(name)
    data = codec.compress(sample_rgb)
    path = tmp_path / "x.sfi"
    path.write_bytes(data)
    m = codec.model.pad_multiple
    shape = [str(-(-sample_rgb.shape[0] // m)), str(-(-sample_rgb.shape[1] // m))]

    def run(threads):
        out = subprocess.run([sys.executable, "-c", _DECODE_SCRIPT, str(path), str(threads), *shape],
                             capture_output=True, text=True, check=True)
        return json.loads(out.stdout)

    one_a, one_b, two = run(1), run(1), run(2)
    assert one_a == one_b  # fresh processes, same thread count: identical symbols and pixels
    assert {k: v for k, v in two.items() if k != "pixels"} == {k: v for k, v in one_a.items() if k != "pixels"}
    # Across thread counts only the synthesis may differ (float summation order), and by little.
    a1 = np.asarray(slimfast.decompress(data))
    torch.set_num_threads(2)
    try:
        a2 = np.asarray(slimfast.decompress(data))
    finally:
        torch.set_num_threads(1)
    assert np.abs(a1.astype(int) - a2.astype(int)).max() <= 1


def test_hyperprior_entropy_parameters_are_integer_exact(model_dir, monkeypatch):
    """The scale indices come from integer arithmetic, so thread count cannot change them."""
    monkeypatch.setenv("SLIMFAST_BACKEND", "torch")  # looks inside the torch model
    m = slimfast.load("test-h").model.engine.model
    rng = np.random.default_rng(0)
    z = rng.integers(-4, 5, size=(1, 192, 5, 7)).astype(np.int32)
    torch.set_num_threads(2)
    try:
        means2, idx2 = m.entropy_parameters(z)
    finally:
        torch.set_num_threads(1)
    means1, idx1 = m.entropy_parameters(z)
    assert np.array_equal(means1, means2) and np.array_equal(idx1, idx2)
    # and they track the float hyper-synthesis closely
    with torch.no_grad():
        zt = torch.from_numpy(z.astype(np.float32)) + m.entropy_bottleneck._medians.view(1, -1, 1, 1)
        mean_f = m.hyper_synthesis(zt)[1].double().numpy()
    assert np.abs(mean_f - means1).max() < 0.05


@pytest.mark.skipif(not KODAK.is_dir(), reason="Kodak not available at ../shared/data/kodak")
def test_unseen_kodak_photo_round_trips_with_the_default_model():
    import os

    path = KODAK / "kodim05.png"
    env_path = os.environ.pop("SLIMFAST_MODEL_PATH", None)  # the bundled models only
    try:
        info = slimfast.zoo.get()
        codec = slimfast.load()
        img = Image.open(path).convert("RGB")
        data = codec.compress(img)
        out = np.asarray(slimfast.decompress(data), dtype=np.float64)
    finally:
        if env_path is not None:
            os.environ["SLIMFAST_MODEL_PATH"] = env_path
    a = np.asarray(img, dtype=np.float64)
    psnr = 10 * np.log10(255 ** 2 / np.mean((a - out) ** 2))
    bpp = len(data) * 8 / (a.shape[0] * a.shape[1])
    point = next(p for p in info.points if p.get("width") == info.default_width)
    # One image against the Kodak mean from the card: same ballpark.
    assert 0.3 * point["bpp"] < bpp < 3 * point["bpp"]
    assert abs(psnr - point["psnr"]) < 4


# Bundled families without a hyperprior (a ladder of points, no continuous knob): two rate points,
# quality 0 and 50; five widths, quality 0, 20, 40, 60 and 80 (the first three asked for).
@pytest.mark.parametrize("model,qualities", [("fasinet-l-msssim-q4", (0, 50)), ("slim-fasinet-l-mse", (0, 20, 40))])
def test_rate_control_picks_the_best_point_that_fits(sample_rgb, model, qualities):
    """--max-bytes / --target-bpp: the largest file of the family that fits, else an error."""
    codec = slimfast.load(model)
    sizes = [len(codec.compress(sample_rgb, quality=q)) for q in qualities]
    assert sizes == sorted(set(sizes))
    for smaller, size in zip(sizes, sizes[1:]):
        assert len(codec.compress(sample_rgb, max_bytes=size)) == size
        assert len(codec.compress(sample_rgb, max_bytes=size - 1)) == smaller
    with pytest.raises(slimfast.SlimfastError, match=f"the smallest is {sizes[0]} bytes"):
        codec.compress(sample_rgb, max_bytes=10)
    h, w = sample_rgb.shape[:2]
    assert len(codec.compress(sample_rgb, target_bpp=(sizes[-1] + 0.5) * 8 / (h * w))) == sizes[-1]
