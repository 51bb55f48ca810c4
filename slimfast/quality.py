"""The continuous quality knob: quality 0..100 to a rate point and a quantization step.

A family's rate points (the models of a ladder, or a slimmable model's widths) were each
trained at one lambda. With a hyperprior, one point also codes at other rates by dividing y's
residuals by a quantization step ``Delta`` before rounding (:class:`slimfast.coding.latent_codecs.
HyperpriorCodec`): for an MSE model, ``Delta = sqrt(lambda_i / lambda)`` stands in for a model
trained at ``lambda`` (distortion grows as ``Delta**2``, and lambda trades it against the rate).

So quality names a target lambda, log-linearly: quality 75 is the family's default point at
step 1 (the files every earlier slimfast wrote), 0 the smallest point at step 4, 100 the
largest point at a step a little under 1. A target between two points is coded by one of them:
on validation training images a point coded finer than it was trained for (``Delta < 1``) loses
to the next point coded coarser, except close to its own lambda, and the two cross at about
``SWITCH`` of the log-lambda gap above the lower point. Every point thus covers
``[lambda_(i-1)**(1 - SWITCH) * lambda_i**SWITCH, lambda_i**(1 - SWITCH) * lambda_(i+1)**SWITCH]``.

The step is chosen here in floating point and travels in the file as an integer
(``step / STEP_ONE``, :mod:`slimfast.coding.intmath`), so decoding never repeats this arithmetic.
Families without a hyperprior keep the ladder: quality picks one of their ``n`` points evenly.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from .coding.intmath import STEP_MAX, STEP_MIN, STEP_ONE

DEFAULT_QUALITY = 75.0
SWITCH = 0.15
TOP_STEP = 2 ** -0.25  # the largest point's finest step: finer ones buy little (validation images)


@dataclass(frozen=True)
class Knob:
    """``lambdas``: the family's points from the smallest files to the largest (increasing);
    ``default``: the index of the point quality 75 (and no quality) codes at."""

    lambdas: tuple[float, ...]
    default: int

    def __post_init__(self):
        if not self.lambdas or any(b <= a for a, b in zip(self.lambdas, self.lambdas[1:])) or self.lambdas[0] <= 0:
            raise ValueError(f"a quality knob needs increasing positive lambdas, not {self.lambdas}")
        if not 0 <= self.default < len(self.lambdas):
            raise ValueError(f"default point {self.default} out of range")

    def _log_bounds(self) -> list[float]:
        """log lambda where each point's range starts, and where the last one ends."""
        logs = [math.log(v) for v in self.lambdas]
        inner = [(1 - SWITCH) * a + SWITCH * b for a, b in zip(logs, logs[1:])]
        return [logs[0] - 2 * math.log(STEP_MAX / STEP_ONE), *inner, logs[-1] - 2 * math.log(TOP_STEP)]

    def log_lambda(self, quality: float) -> float:
        """The target log lambda of ``quality`` (piecewise linear, the default point at 75)."""
        bounds = self._log_bounds()
        low, mid, high = bounds[0], math.log(self.lambdas[self.default]), bounds[-1]
        if quality <= DEFAULT_QUALITY:
            return low + (mid - low) * quality / DEFAULT_QUALITY
        return mid + (high - mid) * (quality - DEFAULT_QUALITY) / (100 - DEFAULT_QUALITY)

    def at(self, quality: float) -> tuple[int, int]:
        """``(point index, integer step)`` for ``quality`` in 0..100."""
        target = self.log_lambda(quality)
        bounds = self._log_bounds()
        i = max(0, min(len(self.lambdas) - 1, sum(1 for b in bounds[1:-1] if target > b)))
        step = round(STEP_ONE * math.exp((math.log(self.lambdas[i]) - target) / 2))
        return i, min(STEP_MAX, max(STEP_MIN, step))

    def quality_of(self, log_lambda: float) -> float:
        """The quality whose target is ``log_lambda`` (the inverse of :meth:`log_lambda`), in 0..100."""
        bounds = self._log_bounds()
        low, mid, high = bounds[0], math.log(self.lambdas[self.default]), bounds[-1]
        if log_lambda <= mid:
            q = DEFAULT_QUALITY * (log_lambda - low) / (mid - low)
        else:
            q = DEFAULT_QUALITY + (100 - DEFAULT_QUALITY) * (log_lambda - mid) / (high - mid)
        return min(100.0, max(0.0, q))

    def quality_range(self, index: int) -> tuple[float, float]:
        """The qualities ``[low, high)`` coded by point ``index`` (the last one includes 100)."""
        bounds = self._log_bounds()
        return self.quality_of(bounds[index]), self.quality_of(bounds[index + 1])


def ladder_index(quality: float, n: int) -> int:
    """The point (0 = smallest file) that ``quality`` picks among ``n`` without a knob: 0..100
    split evenly, so that 100 is the largest file and 0 the smallest."""
    return min(n - 1, math.floor(quality / 100 * n))
