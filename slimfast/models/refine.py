"""Encoder effort: per-image refinement of the latents, with the decoder fixed.

Higher effort (``slimfast compress --effort N``, :meth:`slimfast.codec.Codec.compress`)
spends encoding time to find, for one image, latents that code it better than the analysis
transform's own: stochastic Gumbel annealing (SGA; Yang, Marino & Mandt 2020, "Improving
inference for neural image compression") of ``y`` (and ``z`` for a hyperprior model), started
from the analysis' output, with the torch model of the same weights as the differentiable proxy.

Contract:

* The decoder and the bitstream do not change: the result is a set of symbols that the one
  coding path (:mod:`slimfast.coding`) quantizes and codes as it codes any image's.
* Iterates are scored by their *real* cost, ``J = bits / pixels + lambda * 255^2 * MSE``: the
  bits of the strings the latent codec writes for them and the MSE of the 8-bit image the
  decoder makes from them (fp32 synthesis, on the unpadded image), ``lambda`` the one the
  model was trained with (``D = 255^2 * MSE``, rate in bits per pixel, as
  ``slimfast.tools.training.objective``). At a quality-knob step ``Delta`` other than 1 the
  residuals are quantized at that step, as the coding path does, and ``lambda`` is the one the
  point stands in for (the trained one over ``Delta^2``, :mod:`slimfast.quality`). The proxy
  only proposes iterates.
* The result is the iterate of lowest real ``J`` among those scored, the unrefined start
  included: never worse in ``J`` than effort 0 on the image (under ``max_stream_bytes``, among
  the iterates whose strings fit; the start must fit).
* Deterministic: the noise comes from a generator seeded here, never the global one; the same
  image, effort, machine and thread count give the same symbols.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from ..coding.intmath import STEP_ONE
from ..coding.latent_codecs import DEFAULT_CODER


@dataclass(frozen=True)
class Level:
    """One effort level: ``iterations`` Adam steps at ``lr``; the real cost scored every
    ``every`` steps (and after the last); the temperature ``0.5 * exp(-decay * max(0, t/N - hold))``."""

    iterations: int
    lr: float
    every: int
    hold: float = 0.6
    decay: float = 8.0
    lr_end: float = 0.1  # the step size falls linearly to lr * lr_end


# Effort 1.. (0 is no refinement). Step sizes and temperatures chosen on images of the training
# folder's validation split (never trained on; never Kodak), iteration counts for the time:
# about 3, 9 and 21 s for a 768x512 image on one core.
LEVELS = (
    Level(iterations=30, lr=0.06, every=5),
    Level(iterations=100, lr=0.05, every=5),
    Level(iterations=250, lr=0.04, every=10),
)
MAX_EFFORT = len(LEVELS)


@dataclass
class Refined:
    """What :func:`refine` found: the symbols and strings of the best iterate, its real cost and the start's."""

    symbols: dict
    strings: list
    cost: float
    start_cost: float
    trace: list = field(default_factory=list)  # (iteration, real J, bits per pixel, MSE), one per scored iterate


def temperature(level: Level, t: int) -> float:
    return 0.5 * math.exp(-level.decay * max(0.0, t / level.iterations - level.hold))


def sga_round(v: torch.Tensor, tau: float, gen: torch.Generator) -> torch.Tensor:
    """A relaxed sample of ``floor(v)`` or ``ceil(v)``: the nearer is likelier, and as
    ``tau`` falls the sample tends to ``round(v)`` (SGA's two-class Gumbel-softmax)."""
    fl = torch.floor(v).detach()
    d = v - fl
    eps = 1e-5
    logits = torch.stack([-torch.atanh(d.clamp(0, 1 - eps)), -torch.atanh((1 - d).clamp(0, 1 - eps))]) / tau
    u = torch.rand(logits.shape, generator=gen).clamp_(1e-10, 1 - 1e-10)
    p = torch.softmax((logits - torch.log(-torch.log(u))) / tau, dim=0)
    return fl + p[1]


class _Proxy:
    """The differentiable cost of continuous latents, in torch: rate from the float entropy
    models, distortion from the float synthesis, on the unpadded ``size``; y's residuals
    quantized at step ``delta`` (the quality knob's, :mod:`slimfast.quality`)."""

    def __init__(self, model, x: np.ndarray, size: tuple[int, int], width: int, lmbda: float, delta: float):
        self.model, self.c, self.lmbda, self.delta = model, width, lmbda, delta
        self.h, self.w = size
        self.x = torch.from_numpy(np.ascontiguousarray(x[..., : self.h, : self.w]))
        eb = model.entropy_model(width)
        self.eb = eb
        med = eb._medians if eb._medians.numel() else eb.medians()
        self.med = med[:width].reshape(1, -1, 1, 1).float()

    def _factorized_bits(self, v: torch.Tensor) -> torch.Tensor:
        c = v.shape[1]
        lik = self.eb.likelihood(v.transpose(0, 1).reshape(c, 1, -1))
        return -torch.log2(lik.clamp_min(1e-9)).sum()

    def cost(self, lat: dict, tau: float, gen: torch.Generator) -> torch.Tensor:
        m = self.model
        if not m.hyper:
            y_hat = self.med + sga_round(lat["y"] - self.med, tau, gen)
            bits = self._factorized_bits(y_hat)
        else:
            z_hat = self.med + sga_round(lat["z"] - self.med, tau, gen)
            y = lat["y"]
            scales, means = m.hyper_synthesis(z_hat, self.c)
            scales = scales[..., : y.shape[2], : y.shape[3]]
            means = torch.zeros_like(y) if means is None else means[..., : y.shape[2], : y.shape[3]]
            v = sga_round((y - means) / self.delta, tau, gen)
            y_hat = means + v * self.delta
            lik = m.conditional.likelihood(v, scales / self.delta).clamp_min(1e-9)
            bits = self._factorized_bits(z_hat) - torch.log2(lik).sum()
        x_hat = m.synthesis(y_hat, self.c)[..., : self.h, : self.w].clamp(0, 1)
        mse = torch.mean((x_hat - self.x) ** 2)
        return bits / (self.h * self.w) + self.lmbda * 255 ** 2 * mse


class _Scorer:
    """The real cost of latents: the coding path's symbols, strings and 8-bit decoded image."""

    def __init__(self, path, x: np.ndarray, size: tuple[int, int], width: int, step: int, lmbda: float,
                 max_stream_bytes: int | None, coder: str):
        self.path, self.c, self.step, self.lmbda, self.limit = path, width, step, lmbda, max_stream_bytes
        self.coder = coder
        self.h, self.w = size
        x8 = np.rint(x[0, :, : self.h, : self.w] * np.float32(255)).transpose(1, 2, 0)
        self.x8 = x8.astype(np.float64)
        self.best: Refined | None = None
        self.trace: list = []

    def score(self, latents: dict, iteration: int) -> float:
        codec = self.path.codec(self.c, self.step)
        symbols = codec.quantize(latents)
        strings = codec.encode(symbols, self.coder)
        nbytes = sum(map(len, strings))
        rgb = self.path.engine.synthesize_rgb8(codec.dequantize(symbols), self.c)[: self.h, : self.w]
        mse = float(np.mean((rgb.astype(np.float64) - self.x8) ** 2))
        bpp = nbytes * 8 / (self.h * self.w)
        cost = bpp + self.lmbda * mse
        self.trace.append((iteration, cost, bpp, mse))
        fits = self.limit is None or nbytes <= self.limit
        if self.best is None or (fits and cost < self.best.cost):
            start = cost if self.best is None else self.best.start_cost
            self.best = Refined(symbols, strings, cost, start, self.trace)
        return cost


def refine(path, model, x: np.ndarray, size: tuple[int, int], width: int, lmbda: float, effort: int, *,
           step: int = STEP_ONE, max_stream_bytes: int | None = None, seed: int = 0, threads: int = 0,
           coder: str = DEFAULT_CODER) -> Refined:
    """Refine one image's latents at ``effort`` (1..:data:`MAX_EFFORT`) and return the best iterate.

    ``path``: the encoder's :class:`~slimfast.coding.path.CodingPath` (it scores iterates);
    ``model``: the :class:`~slimfast.models.base.CompressionModel` of the same weights (the
    gradients); ``x``: the padded input ``[1, 3, H, W]`` in [0, 1]; ``size``: the image's
    ``(h, w)`` before padding; ``width``: the latent width coded; ``lmbda``: the model's
    training lambda (rate in bpp + ``lmbda`` * 255^2 * MSE); ``step``: the quantization step
    of y's residuals in 1/STEP_ONE, as coded (give ``lmbda`` the knob's target for it: the
    point's lambda / Delta^2, :mod:`slimfast.quality`). ``max_stream_bytes``: only
    iterates whose strings total at most this many bytes may win. ``threads``: torch's
    threads for the proxy (0: as they are). ``coder``: the entropy coder the strings are
    written with. See the module's docstring for the contract.
    """
    level = LEVELS[effort - 1]
    c = path.check_width(width)
    path.codec(c, step).forget()
    start = path.analyze(x, c)
    scorer = _Scorer(path, x, size, c, step, lmbda, max_stream_bytes, coder)
    scorer.score(start, 0)
    if max_stream_bytes is not None and sum(map(len, scorer.best.strings)) > max_stream_bytes:
        raise ValueError("the unrefined latents do not fit max_stream_bytes")
    gen = torch.Generator().manual_seed(seed)
    old_threads = torch.get_num_threads()
    try:
        if threads:
            torch.set_num_threads(threads)
        with torch.enable_grad():
            _descend(_Proxy(model, x, size, c, lmbda, step / STEP_ONE), scorer, start, level, gen)
    finally:
        torch.set_num_threads(old_threads)
    return scorer.best


def _descend(proxy: _Proxy, scorer: _Scorer, start: dict, level: Level, gen) -> None:
    lat = {k: torch.from_numpy(np.array(v, dtype=np.float32)).requires_grad_() for k, v in start.items()}
    opt = torch.optim.Adam(list(lat.values()), lr=level.lr)
    for t in range(1, level.iterations + 1):
        opt.zero_grad(set_to_none=True)
        for group in opt.param_groups:
            group["lr"] = level.lr * (1 - (1 - level.lr_end) * (t - 1) / level.iterations)
        proxy.cost(lat, temperature(level, t - 1), gen).backward()
        opt.step()
        if t % level.every == 0 or t == level.iterations:
            scorer.score({k: v.detach().numpy().copy() for k, v in lat.items()}, t)

