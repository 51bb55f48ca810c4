"""Encoder effort (``effort=``, ``slimfast compress --effort``): effort 0 is today's encoder,
byte for byte; above 0 the latents are refined per image (slimfast.models.refine) and the file
kept never costs more, in real bits + lambda * MSE, than effort 0's; the same input gives the
same file; bad values and a missing torch are one-line errors."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import slimfast
from slimfast.errors import SlimfastError
from tests.conftest import SAMPLE
from tests.test_cli import _run_without_torch

pytest.importorskip("torch")


@pytest.fixture(scope="module")
def crop() -> np.ndarray:
    return np.asarray(Image.open(SAMPLE).convert("RGB"))[200:264, 300:364].copy()


@pytest.fixture(scope="module")
def codec():
    return slimfast.load("fasinet-h-mse-q4", threads=1, engine="ort")


def real_cost(data: bytes, rgb: np.ndarray, lmbda: float) -> float:
    """The file's bits per pixel + lambda * MSE of what a decoder makes of it (8 bits, 0..255)."""
    out = np.asarray(slimfast.decompress(data, threads=1).convert("RGB"), dtype=np.float64)
    return len(data) * 8 / (rgb.shape[0] * rgb.shape[1]) + lmbda * np.mean((out - rgb) ** 2)


def test_levels_cover_the_range():
    from slimfast.codec import MAX_EFFORT
    from slimfast.models.refine import LEVELS

    assert len(LEVELS) == MAX_EFFORT
    assert [lv.iterations for lv in LEVELS] == sorted(lv.iterations for lv in LEVELS)


def test_effort_zero_is_todays_encoder(codec):
    """The golden file of the bundled sample, where this machine wrote it, and the call without effort."""
    from tests import golden_files

    rgb = np.asarray(Image.open(SAMPLE).convert("RGB"))
    data = codec.compress(rgb, effort=0)
    assert data == codec.compress(rgb)
    golden = golden_files.GOLDEN / "sample" / "fasinet-h-mse-q4.sfi"
    encoded = golden_files.json.loads(golden_files.MANIFEST.read_text())["files"]["sample/fasinet-h-mse-q4.sfi"]
    if golden_files.fingerprint() in encoded.get("encoded", {}):
        assert data == golden.read_bytes()


def test_effort_never_costs_more_and_is_deterministic(codec, crop):
    lmbda = codec.info.card["lambda"]
    base = codec.compress(crop)
    for effort in (1, 3):
        data = codec.compress(crop, effort=effort)
        assert data == codec.compress(crop, effort=effort)  # the same image, effort and threads: the same file
        assert real_cost(data, crop, lmbda) <= real_cost(base, crop, lmbda)
    assert real_cost(data, crop, lmbda) < real_cost(base, crop, lmbda)  # effort 3 finds a better one here


def test_effort_at_a_quality_between_rate_points(codec, crop):
    """At a quantization step Delta other than 1 (the quality knob), refinement scores with the
    lambda the point stands in for, lambda / Delta^2, and never does worse by it."""
    from slimfast.codec import _step
    from slimfast.coding.intmath import STEP_ONE
    from slimfast.format import container

    for quality in (40, 90):
        base = codec.compress(crop, quality=quality)
        step = _step(container.unpack(base))
        hdr = container.unpack(base)
        lmbda = slimfast.zoo.get(hdr.model).card["lambda"] * (STEP_ONE / step) ** 2
        data = codec.compress(crop, quality=quality, effort=1)
        assert _step(container.unpack(data)) == step and container.unpack(data).model == hdr.model
        assert real_cost(data, crop, lmbda) <= real_cost(base, crop, lmbda)
    assert step != STEP_ONE


def test_refine_scores_the_real_file(codec, crop):
    """What refine reports as an iterate's cost is the decoded file's, less the container's fixed bytes."""
    from slimfast.codec import _refinement_model, pad_image, to_input
    from slimfast.format import container
    from slimfast.models.refine import refine

    x = to_input(pad_image(crop, codec.model.pad_multiple))
    lmbda = codec.info.card["lambda"]
    best = refine(codec.model, _refinement_model(str(codec.info.path), codec.info.sha256), x, crop.shape[:2],
                  None, lmbda, 1, threads=1)
    assert best.cost <= best.start_cost == best.trace[0][1]
    hdr = container.unpack(codec.compress(crop))
    hdr.streams = best.strings
    data = container.pack(hdr)
    overhead_bpp = (len(data) - sum(map(len, best.strings))) * 8 / crop.shape[0] / crop.shape[1]
    assert real_cost(data, crop, lmbda) - overhead_bpp == pytest.approx(best.cost, rel=1e-9)


def test_effort_within_a_size_limit(codec, crop):
    limit = len(codec.compress(crop)) + 4
    base = codec.compress(crop, max_bytes=limit)
    data = codec.compress(crop, max_bytes=limit, effort=2)
    assert len(data) <= limit
    lmbda = codec.info.card["lambda"]
    assert real_cost(data, crop, lmbda) <= real_cost(base, crop, lmbda)


# a slimmable hyperprior model and a factorized one (slim-fasinet-l-mse: the bundle's factorized MSE models)
@pytest.mark.parametrize("model,width", [("slim-fasinet-h-mse", 72), ("slim-fasinet-l-mse", 96)])
def test_slimmable_and_factorized_models(crop, model, width):
    c = slimfast.load(model, threads=1)
    lmbda = c.info.card["lambdas"][c.info.widths.index(width)] if width else c.info.card["lambda"]
    base = c.compress(crop, width=width)
    data = c.compress(crop, width=width, effort=1)
    assert slimfast.decompress(data).size == (64, 64)
    assert real_cost(data, crop, lmbda) <= real_cost(base, crop, lmbda)


@pytest.mark.parametrize("bad", [-1, 4, 1.5, True, "1", None])
def test_bad_effort_is_one_line(crop, bad):
    with pytest.raises(SlimfastError, match="effort must be a whole number from 0 to 3") as e:
        slimfast.compress(crop, effort=bad)
    assert "\n" not in str(e.value)


def test_images_above_the_refinement_limit_are_refused(codec, crop, monkeypatch):
    import slimfast.codec as codec_module

    monkeypatch.setattr(codec_module, "EFFORT_MAX_PIXELS", 64 * 63)
    with pytest.raises(SlimfastError, match="64x64: use effort 0"):
        codec.compress(crop, effort=1)
    assert codec.compress(crop, effort=0)


def test_report_shows_the_benchmark(tmp_path):
    import json

    from slimfast.tools.report import effort_section

    assert "Not measured" in effort_section(tmp_path)[0]
    level = {"bpp": 0.5, "psnr": 32.0, "j": 1.0, "seconds": 2.0, "images": []}
    change = {"bpp_change": -0.05, "psnr_change_db": 0.1, "j_change": -0.04, "seconds": 2.0,
              "rate_change_at_quality": -6.0}
    r = {"images": 2, "threads": 1, "load_average_before": 1.0, "command": "python benchmarks/effort.py",
         "compare": {"0": {"bd_rate_percent": None, "models": {"m": {**change, "rate_change_at_quality": None}}},
                     "1": {"bd_rate_percent": -5.5, "models": {"m": change}}},
         "models": {"m": {"lambda": 0.01, "levels": {"0": level, "1": level}}}}
    (tmp_path / "effort.json").write_text(json.dumps(r))
    text = "\n".join(effort_section(tmp_path))
    assert "effort 1 -5.50%" in text and "| m | 1 | 0.5000 | 32.00 | -5.00% | +0.100 dB | -6.00% | -4.00% | 2.00 |" in text


def test_models_effort_cannot_refine(crop, model_dir):
    for name, needle in (("fasinet-l-msssim-q2", "trained for ms-ssim"), ("test-h", "records none")):
        with pytest.raises(SlimfastError, match=needle) as e:
            slimfast.compress(crop, model=name, effort=1, threads=1)
        assert "\n" not in str(e.value)


def test_cli_effort(tmp_path, crop, capsys):
    from slimfast.cli import main

    png = tmp_path / "crop.png"
    Image.fromarray(crop).save(png)
    assert main(["compress", str(png), "-o", str(tmp_path / "a.sfi"), "--effort", "1", "--threads", "1", "--quiet"]) == 0
    assert slimfast.decompress(tmp_path / "a.sfi").size == (64, 64)
    for bad in ("-1", "4", "1.5", "two"):
        with pytest.raises(SystemExit) as e:
            main(["compress", str(png), "-o", str(tmp_path / "b.sfi"), "--effort", bad])
        assert e.value.code != 0
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "effort must be a whole number from 0 to 3" in err and "Traceback" not in err
    assert not (tmp_path / "b.sfi").exists()


@pytest.mark.slow  # starts subprocesses or trains
def test_effort_without_torch_is_one_line(tmp_path, crop):
    png = tmp_path / "crop.png"
    Image.fromarray(crop).save(png)
    r = _run_without_torch("compress", png, "-o", tmp_path / "a.sfi", "--effort", "2")
    assert r.returncode == 1, r.stderr
    assert r.stderr.count("\n") == 1 and "needs PyTorch" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "a.sfi").exists()
