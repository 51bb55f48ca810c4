"""Entropy models: learned densities for training, frozen integer tables for coding.

Two models, each an ``nn.Module`` owned by the network that uses it:

* :class:`EntropyBottleneck` -- a factorized, per-channel learned CDF (Balle et al. 2018,
  appendix 6.1). Quantization is ``round(y - median) + median``; the medians and the tails of
  each channel's density are learned through :meth:`EntropyBottleneck.aux_loss`.
* :class:`ConditionalEntropyModel` -- a mean-and-scale model, logistic (FasiNet-H) or
  Gaussian, whose tables are indexed by a fixed table of scales.

Contract (shared by both):

* ``forward(y, ...)`` (training) returns ``(y_out, likelihoods)``. The likelihoods are those of
  the *noisy* latent ``y + u``, ``u ~ U(-1/2, 1/2)``, so ``-log2`` of them is a differentiable
  rate. ``y_out`` is the hard-quantized latent with a straight-through gradient, the value the
  decoder sees at inference time.
* ``update()`` freezes integer frequency tables (:mod:`slimfast.coding.coder`) into buffers. They are
  saved with the weights, so coding never recomputes floats. It must be called after training
  and before coding; coding an un-updated model raises.
* Symbols are ``int32``; see :mod:`slimfast.coding.coder` for the coding guarantees.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

from ..coding import coder

LIKELIHOOD_BOUND = 1e-9


def _lower_bound(x: torch.Tensor, bound: float) -> torch.Tensor:
    """``max(x, bound)`` whose gradient still flows where it would push x up through the bound."""
    return _LowerBound.apply(x, bound)


class _LowerBound(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, bound):
        ctx.save_for_backward(x)
        ctx.bound = bound
        return torch.clamp(x, min=bound)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        pass_through = (x >= ctx.bound) | (g < 0)
        return g * pass_through, None


def ste_round(x: torch.Tensor) -> torch.Tensor:
    return x + (torch.round(x) - x).detach()


class _TableMixin:
    """Resizable integer table buffers that travel in the state dict."""

    def _init_tables(self) -> None:
        self.register_buffer("freqs", torch.zeros(0, 0, dtype=torch.int32))
        self.register_buffer("lengths", torch.zeros(0, dtype=torch.int32))
        self.register_buffer("offsets", torch.zeros(0, dtype=torch.int32))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # Tables have data-dependent sizes: take the stored shapes before copying.
        for name in ("freqs", "lengths", "offsets", "_medians", "scale_table"):
            key = prefix + name
            if key in state_dict and hasattr(self, name):
                setattr(self, name, torch.empty_like(state_dict[key]))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @property
    def updated(self) -> bool:
        return self.freqs.numel() > 0

    def tables(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if not self.updated:
            raise RuntimeError(f"{type(self).__name__}: call update() before coding")
        return self.freqs.cpu().numpy(), self.lengths.cpu().numpy(), self.offsets.cpu().numpy()


class EntropyBottleneck(_TableMixin, nn.Module):
    """Factorized learned density, one univariate non-parametric CDF per channel.

    The CDF of channel ``c`` is ``sigmoid(f_c(x))`` with ``f_c`` a small monotone network
    (positive matrices via softplus, tanh "factors"), exactly as in Balle et al. (2018).
    """

    def __init__(self, channels: int, filters: tuple[int, ...] = (3, 3, 3), init_scale: float = 10.0,
                 tail_mass: float = 1e-9, max_table_length: int = 1024):
        super().__init__()
        self.channels = int(channels)
        self.filters = tuple(int(f) for f in filters)
        self.tail_mass = float(tail_mass)
        self.max_table_length = int(max_table_length)
        dims = (1,) + self.filters + (1,)
        scale = init_scale ** (1 / (len(self.filters) + 1))
        self.matrices = nn.ParameterList()
        self.biases = nn.ParameterList()
        self.factors = nn.ParameterList()
        for i in range(len(self.filters) + 1):
            init = math.log(math.expm1(1 / scale / dims[i + 1]))
            self.matrices.append(nn.Parameter(torch.full((channels, dims[i + 1], dims[i]), init)))
            self.biases.append(nn.Parameter(torch.empty(channels, dims[i + 1], 1).uniform_(-0.5, 0.5)))
            if i < len(self.filters):
                self.factors.append(nn.Parameter(torch.zeros(channels, dims[i + 1], 1)))
        self.quantiles = nn.Parameter(torch.tensor([-init_scale, 0.0, init_scale]).repeat(channels, 1, 1))
        target = math.log(2 / tail_mass - 1)
        self.register_buffer("target", torch.tensor([-target, 0.0, target]), persistent=False)
        self.register_buffer("_medians", torch.zeros(0))
        self._init_tables()

    def _logits_cumulative(self, x: torch.Tensor, stop_gradient: bool) -> torch.Tensor:
        logits = x  # [C, 1, N]
        for i in range(len(self.filters) + 1):
            m = self.matrices[i]
            b = self.biases[i]
            if stop_gradient:
                m, b = m.detach(), b.detach()
            logits = torch.matmul(F.softplus(m), logits) + b
            if i < len(self.factors):
                f = self.factors[i].detach() if stop_gradient else self.factors[i]
                logits = logits + torch.tanh(f) * torch.tanh(logits)
        return logits

    def medians(self) -> torch.Tensor:
        return self.quantiles[:, 0, 1].detach()

    def aux_loss(self) -> torch.Tensor:
        """Pulls ``quantiles`` to the tail_mass/2, 1/2, 1 - tail_mass/2 points of each CDF."""
        logits = self._logits_cumulative(self.quantiles, stop_gradient=True)
        return torch.abs(logits - self.target).sum()

    def likelihood(self, x: torch.Tensor) -> torch.Tensor:
        """P(x - 1/2 < X < x + 1/2) under each channel's density; x is ``[C, 1, N]``."""
        lower = self._logits_cumulative(x - 0.5, stop_gradient=False)
        upper = self._logits_cumulative(x + 0.5, stop_gradient=False)
        # Evaluate in the tail farther from 1 for accuracy.
        sign = -torch.sign(lower + upper).detach()
        sign = torch.where(sign == 0, torch.ones_like(sign), sign)
        return torch.abs(torch.sigmoid(sign * upper) - torch.sigmoid(sign * lower))

    def forward(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        c = y.shape[1]
        v = y.transpose(0, 1).reshape(c, 1, -1)  # [C, 1, B*H*W]
        med = self.medians()[:c, None, None]
        noisy = v + torch.empty_like(v).uniform_(-0.5, 0.5) if self.training else torch.round(v - med) + med
        if c != self.channels:
            raise ValueError(f"EntropyBottleneck has {self.channels} channels, got {c}")
        lik = self.likelihood(noisy)
        lik = _lower_bound(lik, LIKELIHOOD_BOUND)
        lik = lik.reshape(c, y.shape[0], *y.shape[2:]).transpose(0, 1)
        y_hat = ste_round(y - med.reshape(1, c, 1, 1)) + med.reshape(1, c, 1, 1)
        return y_hat, lik

    @torch.no_grad()
    def update(self) -> None:
        """Freeze per-channel integer frequency tables around the learned medians."""
        med = self.medians()
        q = self.quantiles.detach()[:, 0, :]
        lo = torch.floor(q[:, 0] - med).clamp(max=0).to(torch.int64)
        hi = torch.ceil(q[:, 2] - med).clamp(min=0).to(torch.int64)
        half = self.max_table_length // 2
        lo = lo.clamp(min=-half)
        hi = hi.clamp(max=half)
        lengths = hi - lo + 1
        lmax = int(lengths.max())
        # One vectorized pass over all channels, each sampled at its own integer offsets.
        x = (torch.arange(lmax, dtype=torch.float32).view(1, 1, -1) + lo.view(-1, 1, 1).float()
             + med.view(-1, 1, 1))
        pmf = self.likelihood(x)[:, 0, :].double().numpy()
        freqs = np.zeros((self.channels, lmax + 1), dtype=np.int32)
        for c in range(self.channels):
            n = int(lengths[c])
            freqs[c, : n + 1] = coder.pmf_to_freqs(pmf[c, :n], max(1.0 - float(pmf[c, :n].sum()), 0.0))
        self._medians = med.clone().float()
        self.freqs = torch.from_numpy(freqs)
        self.lengths = lengths.to(torch.int32)
        self.offsets = lo.to(torch.int32)


def logistic_cdf(x: torch.Tensor) -> torch.Tensor:
    return torch.sigmoid(x)


def gaussian_cdf(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * torch.erfc(-x * (2 ** -0.5))


def default_scale_table(low: float = 0.11, high: float = 256.0, levels: int = 64) -> torch.Tensor:
    return torch.exp(torch.linspace(math.log(low), math.log(high), levels, dtype=torch.float64))


class ConditionalEntropyModel(_TableMixin, nn.Module):
    """Mean-and-scale conditional density over a latent, logistic (default) or Gaussian.

    For coding, each element's scale is mapped to the smallest entry of ``scale_table`` that
    is >= it (:meth:`scale_index`), and the symbol ``round(y - mean)`` is coded with that
    entry's frozen table. The caller must compute means and scale indices identically on
    both sides; FasiNet-H does so with integer arithmetic (:mod:`slimfast.coding.intmath`).
    """

    def __init__(self, distribution: str = "logistic", scale_table: torch.Tensor | None = None,
                 tail_mass: float = 1e-6, max_half_width: int = 256):
        super().__init__()
        if distribution not in ("logistic", "gaussian"):
            raise ValueError(f"unknown distribution {distribution!r}")
        self.distribution = distribution
        self.tail_mass = float(tail_mass)
        self.max_half_width = int(max_half_width)
        table = default_scale_table() if scale_table is None else torch.as_tensor(scale_table, dtype=torch.float64)
        self.register_buffer("scale_table", table.clone())
        self.scale_bound = float(table[0])
        self._init_tables()

    def _cdf(self, x: torch.Tensor) -> torch.Tensor:
        return logistic_cdf(x) if self.distribution == "logistic" else gaussian_cdf(x)

    def likelihood(self, v: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
        """P(v - 1/2 < V < v + 1/2) for V with zero mean and the given scales."""
        scales = _lower_bound(scales, self.scale_bound)
        v = torch.abs(v)  # symmetric: evaluate in the lower tail for accuracy
        upper = self._cdf((0.5 - v) / scales)
        lower = self._cdf((-0.5 - v) / scales)
        return upper - lower

    def forward(self, y: torch.Tensor, scales: torch.Tensor, means: torch.Tensor | None = None):
        means = torch.zeros_like(y) if means is None else means
        v = y - means
        noisy = v + torch.empty_like(v).uniform_(-0.5, 0.5) if self.training else torch.round(v)
        lik = _lower_bound(self.likelihood(noisy, scales), LIKELIHOOD_BOUND)
        return ste_round(v) + means, lik

    @torch.no_grad()
    def update(self) -> None:
        """Freeze one integer table per entry of ``scale_table``."""
        tail_factor = {"logistic": math.log(2 / self.tail_mass - 1),
                       "gaussian": float(-torch.special.ndtri(torch.tensor(self.tail_mass / 2, dtype=torch.float64)))
                       }[self.distribution]
        scales = self.scale_table.double()
        half = torch.ceil(scales * tail_factor).clamp(min=1, max=self.max_half_width).to(torch.int64)
        lengths = 2 * half + 1
        lmax = int(lengths.max())
        freqs = np.zeros((scales.numel(), lmax + 1), dtype=np.int32)
        for i, s in enumerate(scales.tolist()):
            h = int(half[i])
            v = torch.arange(-h, h + 1, dtype=torch.float64)
            pmf = (self._cdf((v + 0.5) / s) - self._cdf((v - 0.5) / s)).numpy()
            freqs[i, : 2 * h + 2] = coder.pmf_to_freqs(pmf, max(1.0 - pmf.sum(), 0.0))
        self.freqs = torch.from_numpy(freqs)
        self.lengths = lengths.to(torch.int32)
        self.offsets = (-half).to(torch.int32)
