"""Tiled coding (slimfast.coding.tiling): the same latents and pixels as untiled, in bounded memory."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from slimfast.coding import tiling
from slimfast.models import build

ARCHS = ["fasinet-l", "fasinet-h", "slimcae", "slimcae-hyper", "slim-fasinet-l", "slim-fasinet-h"]


def test_tiled_matches_direct_on_a_toy_strided_network():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(2, 4, 5, stride=2, padding=2), torch.nn.ReLU(),
                              torch.nn.Conv2d(4, 3, 3, stride=2, padding=1))
    x = torch.rand(1, 2, 40, 56)
    with torch.no_grad():
        ref = net(x)
        out = tiling.tiled(net, x, down=4, tile=16, halo=8)
    assert out.shape == ref.shape
    assert torch.allclose(out, ref, atol=1e-6)
    # A halo narrower than the receptive field shows up: the test above could fail.
    with torch.no_grad():
        bad = tiling.tiled(net, x, down=4, tile=16, halo=0)
    assert not torch.allclose(bad, ref, atol=1e-3)


def test_tiled_numpy_upsampling_and_single_tile_passthrough():
    calls = []

    def up2(a):
        calls.append(a.shape)
        return np.repeat(np.repeat(a, 2, axis=-2), 2, axis=-1)

    a = np.arange(2 * 7 * 9, dtype=np.float32).reshape(1, 2, 7, 9)
    assert np.array_equal(tiling.tiled(up2, a, up=2, tile=3, halo=1), up2(a))
    calls.clear()
    tiling.tiled(up2, a, up=2, tile=9, halo=1)
    assert calls == [a.shape]  # fits one tile: one direct call
    with pytest.raises(ValueError):
        tiling.tiled(up2, a, down=2, tile=3, halo=1)


@pytest.fixture
def small_tiles(monkeypatch):
    # Tiles far smaller than the image force several tiles with halos on every side.
    monkeypatch.setattr(tiling, "ANALYSIS_TILE", 64)
    monkeypatch.setattr(tiling, "SYNTHESIS_TILE", 4)


def _transforms(m, c):
    return (lambda t: m.analysis(t, c)), (lambda t: m.synthesis(t, c))


@pytest.mark.parametrize("arch", ARCHS)
def test_halos_cover_the_receptive_fields_of_every_architecture(arch, small_tiles):
    # On the float transforms (random weights quantize to almost nothing, so compare before Q).
    torch.manual_seed(0)
    m = build(arch).eval()
    for c in (m.widths or (None,)):
        g_a, g_s = _transforms(m, c)
        x = torch.rand(1, 3, 192, 256)
        y_hat = 4 * torch.randn(1, c or m.latent_channels, 12, 16)
        with torch.no_grad():
            y, y_t = g_a(x), tiling.tiled(g_a, x, down=tiling.STRIDE, tile=tiling.ANALYSIS_TILE,
                                          halo=tiling.ANALYSIS_HALO)
            x_hat, x_hat_t = g_s(y_hat), tiling.tiled(g_s, y_hat, up=tiling.STRIDE, tile=tiling.SYNTHESIS_TILE,
                                                      halo=tiling.SYNTHESIS_HALO)
        assert y_t.shape == y.shape and x_hat_t.shape == x_hat.shape
        assert torch.allclose(y_t, y, rtol=0, atol=1e-5 * float(y.abs().max())), (arch, c)
        assert torch.allclose(x_hat_t, x_hat, rtol=0, atol=1e-5 * float(x_hat.abs().max())), (arch, c)


@pytest.mark.parametrize("name", ["fasinet-l-msssim-q4", "fasinet-h-mse-q4"])
def test_tiled_coding_of_a_photo_equals_untiled(name, monkeypatch):
    from slimfast import zoo
    from slimfast.models.weights import load_model

    m = load_model(zoo.get(name).path)
    x = torch.from_numpy(_photo(192, 256)).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        sym = m.encode_symbols(x)
        ref = m.synthesize(sym)
        monkeypatch.setattr(tiling, "ANALYSIS_TILE", 64)
        monkeypatch.setattr(tiling, "SYNTHESIS_TILE", 4)
        sym_t = m.encode_symbols(x)
        out = m.synthesize(sym)
        # The halos matter: without them the seams show.
        monkeypatch.setattr(tiling, "ANALYSIS_HALO", 16)
        monkeypatch.setattr(tiling, "SYNTHESIS_HALO", 1)
        seamy = m.synthesize(sym)
    assert np.mean(sym["y"] != 0) > 0.02  # a real latent, not all zeros
    for k in sym:
        assert np.mean(sym[k] != sym_t[k]) <= 1e-3, k  # summation order may flip a rare rounding tie
    assert float((out - ref).abs().max()) < 1e-4
    assert float((seamy - ref).abs().max()) > 1e-3


def _photo(h, w):
    """A bundled natural image, cropped: trained weights need real content to produce symbols."""
    from slimfast.tools.bench import PACKAGE_SAMPLE
    from PIL import Image

    return np.asarray(Image.open(PACKAGE_SAMPLE).convert("RGB"))[:h, :w].copy()


def test_runtime_tiled_equals_untiled(small_tiles):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from slimfast import zoo
    from slimfast.runtime import load_model

    for name in ("fasinet-l-msssim-q4", "fasinet-h-mse-q4"):
        info = zoo.get(name)
        rt = load_model(info.path)
        x = _photo(192, 256).transpose(2, 0, 1)[None].astype(np.float32) / 255
        lat = rt.compress(x)
        tiled = rt.decompress(lat.strings, lat.shape)
        tiling.ANALYSIS_TILE, tiling.SYNTHESIS_TILE = 4096, 4096
        lat_u = rt.compress(x)
        untiled = rt.decompress(lat.strings, lat.shape)
        assert abs(sum(map(len, lat.strings)) - sum(map(len, lat_u.strings))) <= 0.01 * sum(map(len, lat_u.strings)) + 8
        assert np.abs(tiled - untiled).max() < 1e-4, name
        tiling.ANALYSIS_TILE, tiling.SYNTHESIS_TILE = 64, 4


_MEMORY_SCRIPT = r"""
import json, sys
import numpy as np
from slimfast.tools import bench
import slimfast

name, h, w = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
big = bench.tile_to(bench._load(bench.PACKAGE_SAMPLE), h, w)
codec = slimfast.load(name)
codec.decompress(codec.compress(big[:64, :64]))  # graphs built and weights converted: the load, not the coding
base = bench._status_mb("VmRSS")
if not bench._reset_peak():
    print(json.dumps(None)); sys.exit(0)
data = codec.compress(big)
out = np.asarray(codec.decompress(data))
peak = bench._status_mb("VmHWM") - base
print(json.dumps({"peak_mb": peak, "bytes": len(data), "shape": list(out.shape),
                  "mse": float(np.mean((out[:512, :768].astype(float) - big[:512, :768]) ** 2))}))
"""


@pytest.mark.slow  # starts subprocesses or trains
@pytest.mark.parametrize("name", ["fasinet-l-msssim-q4", "fasinet-h-mse-q4"])
def test_24_megapixel_photo_codes_within_64_bytes_per_pixel(name, tmp_path):
    """The issue's bound: peak RSS at most ~64 B/px above the process after imports and model load."""
    if not sys.platform.startswith("linux"):
        pytest.skip("needs /proc/self/clear_refs")
    h, w = 4000, 6000
    script = tmp_path / "mem.py"
    script.write_text(_MEMORY_SCRIPT)
    r = subprocess.run([sys.executable, str(script), name, str(h), str(w)], capture_output=True, text=True,
                       timeout=600, env={**__import__("os").environ, "OPENBLAS_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    if res is None:
        pytest.skip("this kernel cannot reset the peak-RSS mark")
    assert res["shape"] == [h, w, 3]
    assert res["mse"] < 0.1 * 255 ** 2  # a real picture came back, not noise
    assert res["peak_mb"] * 2 ** 20 <= 64 * h * w, res
