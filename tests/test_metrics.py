"""Quality metrics and Bjontegaard deltas."""
from __future__ import annotations

import importlib.util
import math

import numpy as np
import pytest

from slimfast.tools import bdrate
from slimfast import metrics


def _image(h=192, w=256, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x, y, (x + y) / 2], axis=2) * (200.0 / max(h, w))
    return np.clip(base + 30 + rng.normal(0, 10, base.shape), 0, 255).astype(np.uint8)


# -- PSNR / MS-SSIM / bpp -----------------------------------------------------------------------
def test_psnr_of_a_constant_error_matches_the_formula():
    a = _image()
    b = (a.astype(np.int16) + np.where(a < 128, 3, -3)).astype(np.uint8)  # |error| = 3 everywhere
    assert metrics.mse(a, b) == pytest.approx(9.0)
    assert metrics.psnr(a, b) == pytest.approx(10 * math.log10(255 ** 2 / 9))


def test_psnr_identical_is_inf_and_shapes_must_match():
    a = _image()
    assert metrics.psnr(a, a) == math.inf
    with pytest.raises(ValueError):
        metrics.psnr(a, a[:-1])
    with pytest.raises(ValueError):
        metrics.psnr(a.astype(np.float32), a)


def test_bpp_counts_real_bytes():
    assert metrics.bpp(1000, 100, 80) == pytest.approx(1.0)
    assert metrics.bpp(768 * 512 // 8, 512, 768) == pytest.approx(1.0)


def test_ms_ssim_db():
    assert metrics.ms_ssim_db(0.99) == pytest.approx(20.0)
    assert metrics.ms_ssim_db(0.9) == pytest.approx(10.0)
    assert metrics.ms_ssim_db(1.0) == math.inf


def test_ms_ssim_is_one_for_identical_and_falls_with_noise():
    pytest.importorskip("pytorch_msssim", reason="pytorch_msssim not installed")
    a = _image()
    rng = np.random.default_rng(5)
    assert metrics.ms_ssim(a, a) == pytest.approx(1.0, abs=1e-6)
    values = []
    for sigma in (2, 8, 24):
        b = np.clip(a + rng.normal(0, sigma, a.shape), 0, 255).astype(np.uint8)
        values.append(metrics.ms_ssim(a, b))
    assert 1.0 > values[0] > values[1] > values[2] > 0.0
    q = metrics.quality(a, b)
    assert q["msssim_db"] == pytest.approx(metrics.ms_ssim_db(q["msssim"]))


def test_ms_ssim_rejects_small_images_clearly():
    a = _image(100, 300)
    with pytest.raises(ValueError, match="161"):
        metrics.ms_ssim(a, a)
    q = metrics.quality(a, a)  # the combined helper leaves MS-SSIM out instead
    assert q["msssim"] is None and q["psnr"] == math.inf


# -- BD-rate ------------------------------------------------------------------------------------
needs_scipy = pytest.mark.skipif(importlib.util.find_spec("scipy") is None, reason="scipy not installed")

R = [0.12, 0.25, 0.5, 0.9, 1.6]
Q = [27.0, 29.6, 32.4, 35.1, 38.0]


@needs_scipy
def test_identical_curves_give_zero():
    assert bdrate.bd_rate(R, Q, R, Q) == pytest.approx(0.0, abs=1e-9)
    assert bdrate.bd_quality(R, Q, R, Q) == pytest.approx(0.0, abs=1e-9)


@needs_scipy
def test_rates_scaled_by_0_8_give_minus_20_percent():
    assert bdrate.bd_rate(R, Q, [0.8 * r for r in R], Q) == pytest.approx(-20.0, abs=1e-6)
    assert bdrate.bd_rate([0.8 * r for r in R], Q, R, Q) == pytest.approx(25.0, abs=1e-6)


@needs_scipy
def test_analytic_linear_curves():
    # ref: log r = q / a, test: log r = q / b. PCHIP reproduces straight lines exactly, so over
    # the overlap [lo, hi] the mean log-rate difference is (1/b - 1/a) * (lo + hi) / 2.
    a, b = 10.0, 12.0
    qr = np.linspace(20, 40, 6)
    qt = np.linspace(25, 45, 7)
    lo, hi = 25.0, 40.0
    want = (math.exp((1 / b - 1 / a) * (lo + hi) / 2) - 1) * 100
    got = bdrate.bd_rate(np.exp(qr / a), qr, np.exp(qt / b), qt)
    assert got == pytest.approx(want, rel=1e-9)
    # quality shifted by c at every rate: BD-PSNR is c, BD-rate is exp(-c / a) - 1
    c = 0.7
    assert bdrate.bd_quality(np.exp(qr / a), qr, np.exp(qr / a), qr + c) == pytest.approx(c, abs=1e-9)
    assert bdrate.bd_rate(np.exp(qr / a), qr, np.exp(qr / a), qr + c) == pytest.approx(
        (math.exp(-c / a) - 1) * 100, rel=1e-9)


@needs_scipy
def test_non_overlapping_ranges_give_none():
    assert bdrate.bd_rate(R, Q, R, [q + 20 for q in Q]) is None
    assert bdrate.bd_quality(R, Q, [r * 100 for r in R], Q) is None
    assert bdrate.bd_rate(R[:1], Q[:1], R, Q) is None  # one point is not a curve


@needs_scipy
def test_unsorted_duplicate_and_non_monotonic_points_are_cleaned():
    r, q = bdrate.clean_curve([0.5, 0.12, 0.25, 0.25, 0.9, 1.2, 1.6, float("nan")],
                              [32.4, 27.0, 29.0, 29.6, 35.1, 34.0, 38.0, 40.0])
    assert list(r) == [0.12, 0.25, 0.5, 0.9, 1.6]  # 0.25 keeps its better point, 1.2 gains nothing
    assert list(q) == Q
    messy_r = [1.6, 0.9, 1.2, 0.5, 0.25, 0.25, 0.12]
    messy_q = [38.0, 35.1, 34.0, 32.4, 29.0, 29.6, 27.0]
    assert bdrate.bd_rate(R, Q, messy_r, messy_q) == pytest.approx(0.0, abs=1e-9)


@needs_scipy
def test_rate_delta_at_point():
    assert bdrate.rate_delta_at_point(R, Q, 0.8 * 0.5, 32.4) == pytest.approx(-20.0, abs=1e-9)
    assert bdrate.rate_delta_at_point(R, Q, 0.5, 50.0) is None
