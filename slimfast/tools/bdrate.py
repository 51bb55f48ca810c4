"""Bjontegaard deltas between two rate-distortion curves.

* :func:`bd_rate` - average rate change at equal quality, in percent; negative means the test
  curve needs fewer bits than the reference. Log-rate is interpolated as a function of quality
  with a piecewise cubic Hermite interpolant (``scipy.interpolate.PchipInterpolator``, the
  "piecewise cubic" variant of the BD metric, shape preserving and without the overshoot of a
  global cubic fit), both interpolants are integrated exactly over the overlapping quality
  range, and the mean log-rate difference ``d`` is reported as ``(exp(d) - 1) * 100``.
* :func:`bd_quality` (alias :func:`bd_psnr`) - average quality difference at equal rate
  (test minus reference, in the quality's unit, e.g. dB), with quality interpolated as a
  function of log-rate over the overlapping log-rate range.
* :func:`rate_delta_at_point` - the one-point version for a single operating point: the rate
  change of the point against the reference curve interpolated at the point's quality.

Cleaning of input points (:func:`clean_curve`): points with a non-finite value or a rate
``<= 0`` are dropped; the rest are sorted by rate (ties by quality) and a point is kept only
if its quality is strictly higher than that of the last kept point. This removes duplicates
and the non-monotonic tails real codecs produce (e.g. a higher setting giving more bits for
no gain), leaving a strictly increasing curve in both rate and quality, which both
interpolation directions need. A curve with fewer than two points left, or two curves whose
ranges do not overlap (an empty or single-value overlap), give ``None`` instead of a number.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def clean_curve(rates: Sequence[float], qualities: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Sort by rate and keep only points that strictly increase quality (see module doc)."""
    r = np.asarray(rates, dtype=np.float64).ravel()
    q = np.asarray(qualities, dtype=np.float64).ravel()
    if r.shape != q.shape:
        raise ValueError(f"rates and qualities differ in length: {r.size} vs {q.size}")
    ok = np.isfinite(r) & np.isfinite(q) & (r > 0)
    r, q = r[ok], q[ok]
    order = np.lexsort((q, r))
    keep_r, keep_q = [], []
    for ri, qi in zip(r[order], q[order]):
        if not keep_q or qi > keep_q[-1]:
            if keep_r and ri == keep_r[-1]:  # same rate, better quality: replace
                keep_r.pop()
                keep_q.pop()
            keep_r.append(ri)
            keep_q.append(qi)
    return np.asarray(keep_r), np.asarray(keep_q)


def _mean_over(x: np.ndarray, y: np.ndarray, lo: float, hi: float) -> float:
    from scipy.interpolate import PchipInterpolator

    return float(PchipInterpolator(x, y).integrate(lo, hi)) / (hi - lo)


def bd_rate(ref_rates: Sequence[float], ref_quality: Sequence[float],
            test_rates: Sequence[float], test_quality: Sequence[float]) -> float | None:
    """BD-rate of the test curve against the reference, in percent (negative = fewer bits).

    ``None`` when a curve has fewer than two usable points or the quality ranges do not overlap.
    """
    r1, q1 = clean_curve(ref_rates, ref_quality)
    r2, q2 = clean_curve(test_rates, test_quality)
    if r1.size < 2 or r2.size < 2:
        return None
    lo, hi = max(q1[0], q2[0]), min(q1[-1], q2[-1])
    if not hi > lo:
        return None
    d = _mean_over(q2, np.log(r2), lo, hi) - _mean_over(q1, np.log(r1), lo, hi)
    return (math.exp(d) - 1.0) * 100.0


def bd_quality(ref_rates: Sequence[float], ref_quality: Sequence[float],
               test_rates: Sequence[float], test_quality: Sequence[float]) -> float | None:
    """BD-quality (BD-PSNR for PSNR): mean quality gain of test over reference at equal rate."""
    r1, q1 = clean_curve(ref_rates, ref_quality)
    r2, q2 = clean_curve(test_rates, test_quality)
    if r1.size < 2 or r2.size < 2:
        return None
    l1, l2 = np.log(r1), np.log(r2)
    lo, hi = max(l1[0], l2[0]), min(l1[-1], l2[-1])
    if not hi > lo:
        return None
    return _mean_over(l2, q2, lo, hi) - _mean_over(l1, q1, lo, hi)


bd_psnr = bd_quality


def rate_delta_at_point(ref_rates: Sequence[float], ref_quality: Sequence[float],
                        rate: float, quality: float) -> float | None:
    """Rate change (percent) of one point against the reference curve at the point's quality.

    ``None`` when the reference has fewer than two usable points or does not reach ``quality``.
    """
    from scipy.interpolate import PchipInterpolator

    r1, q1 = clean_curve(ref_rates, ref_quality)
    if r1.size < 2 or not (math.isfinite(rate) and math.isfinite(quality)) or rate <= 0:
        return None
    if not q1[0] <= quality <= q1[-1]:
        return None
    ref_log_rate = float(PchipInterpolator(q1, np.log(r1))(quality))
    return (math.exp(math.log(rate) - ref_log_rate) - 1.0) * 100.0
