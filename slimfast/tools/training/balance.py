"""Balancing the rate and distortion gradients (``slimfast train --rd-balance famo``).

Zhang et al. (CVPR 2025, "Balanced rate-distortion optimization in learned image compression")
treat ``lambda*D`` and ``R`` as two tasks and weigh them as FAMO does (Liu et al. 2023): the
loss is ``sum_i z_i log L_i / c`` with ``z = softmax(xi)`` and ``c = sum_i z_i / L_i`` (held
constant), so each term's gradient is scaled by ``z_i / (c L_i)``; after every step ``xi`` moves
towards the task that improved less, judged by each term's log decrease on the same batch.

Two modes:

* ``famo``, the paper's: the weighted sum of log terms above. Here the logits start at, and decay
  towards, ``log L_i`` of the first batch, where the weighted gradient is half the gradient of
  ``lambda*D + R``. The log terms still move the run along its curve: as ``R`` falls, its
  gradient ``1 / R`` grows, so the point the run converges to is not ``lambda``'s.
* ``famo-lambda``: the same weights on the terms themselves, ``2 * (z_D lambda*D + z_R R)``,
  the logits starting at and decaying towards 0. The effective lambda, ``lambda * z_D / z_R``,
  moves with the balance around the run's lambda, so the run stays at its point of the curve
  and ``lambda*D + R`` on validation images measures it.

The re-evaluation draws the same quantization noise as the step's forward (the torch RNG state
is restored), so ``delta`` is the step's effect, not noise. It costs one more forward pass per
step.
"""
from __future__ import annotations

import math

import torch

MODES = ("none", "famo", "famo-lambda")
NAMES = ("distortion", "rate")


class RDBalance:
    """The logits ``xi`` of (``lambda*D``, ``R``) and their Adam state."""

    def __init__(self, mode: str = "famo", lr: float = 0.025, decay: float = 0.001):
        if mode not in MODES[1:]:
            raise ValueError(f"unknown balance {mode!r}")
        self.mode, self.lr, self.decay = mode, lr, decay
        self.xi = self.xi0 = None
        self.m = torch.zeros(2, dtype=torch.float64)
        self.v = torch.zeros(2, dtype=torch.float64)
        self.t = 0

    def weights(self) -> torch.Tensor:
        return torch.softmax(self.xi, 0)

    def loss(self, terms: torch.Tensor) -> torch.Tensor:
        """The balanced loss of ``terms = (lambda*D, R)`` (a differentiable 2-vector)."""
        logs = torch.log(terms.clamp_min(1e-12))
        if self.xi is None:
            start = logs.detach() if self.mode == "famo" else torch.zeros(2)
            self.xi = start.double().cpu().clone()
            self.xi0 = self.xi.clone()
        z = self.weights().to(terms)
        if self.mode == "famo-lambda":
            return 2 * (z * terms).sum()
        c = (z / terms.detach()).sum()
        return (z * logs).sum() / c

    def update(self, before: torch.Tensor, after: torch.Tensor) -> None:
        """One Adam step on ``xi`` from the terms before and after the model's step."""
        delta = (torch.log(before.clamp_min(1e-12)) - torch.log(after.clamp_min(1e-12))).double().cpu()
        z = self.weights()
        grad = z * (delta - (z * delta).sum())  # the softmax's Jacobian (symmetric) times delta
        grad = grad + self.decay * (self.xi - self.xi0)
        self.t += 1
        self.m.mul_(0.9).add_(grad, alpha=0.1)
        self.v.mul_(0.999).addcmul_(grad, grad, value=0.001)
        m_hat, v_hat = self.m / (1 - 0.9 ** self.t), self.v / (1 - 0.999 ** self.t)
        self.xi = self.xi - self.lr * m_hat / (v_hat.sqrt() + 1e-8)

    def stats(self, terms: torch.Tensor | None = None) -> dict:
        """``balance_d``: the effective lambda over the run's, i.e. how much more the distortion's
        gradient weighs against the rate's than in ``lambda*D + R`` (1: the same). In ``famo`` mode
        each term's gradient is scaled by ``z_i / L_i``, so it needs the current ``terms``."""
        if self.xi is None:
            return {}
        ratio = float(self.xi[0] - self.xi[1])
        if self.mode == "famo":
            if terms is None:
                return {}
            ratio += math.log(float(terms[1]) / float(terms[0]))
        return {"balance_d": math.exp(ratio)}

    def tensors(self) -> dict[str, torch.Tensor]:
        if self.xi is None:
            return {}
        return {"balance.xi": self.xi, "balance.xi0": self.xi0, "balance.m": self.m, "balance.v": self.v,
                "balance.t": torch.tensor([self.t], dtype=torch.float64)}

    def load(self, extra: dict | None) -> None:
        if extra and "balance.xi" in extra:
            self.xi, self.xi0 = extra["balance.xi"].double(), extra["balance.xi0"].double()
            self.m, self.v = extra["balance.m"].double(), extra["balance.v"].double()
            self.t = int(extra["balance.t"][0])
