"""The rate-distortion objective: ``lambda * D + R`` per trained width, and its joint loss."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ...metrics import MS_SSIM_MIN_SIDE, ms_ssim_tensor

# --patch-size rule of ms-ssim runs: the smallest multiple of 16 (the finest padding multiple
# of the models) that MS-SSIM accepts.
MSSSIM_MIN_SIDE = -(-MS_SSIM_MIN_SIDE // 16) * 16  # 176


def rate_bpp(likelihoods: dict[str, torch.Tensor], num_pixels: int) -> torch.Tensor:
    return sum(torch.log(lik).sum() for lik in likelihoods.values()) / (-math.log(2) * num_pixels)


def distortion(x_hat: torch.Tensor, x: torch.Tensor, metric: str) -> torch.Tensor:
    if metric == "mse":
        return F.mse_loss(x_hat, x) * 255 ** 2
    if metric == "ms-ssim":
        return 1 - ms_ssim_tensor(x_hat.clamp(0, 1), x, data_range=1.0)
    raise ValueError(f"unknown metric {metric!r}")


def rd_terms(out: dict, x: torch.Tensor, lmbda: float, metric: str) -> tuple[torch.Tensor, dict]:
    """``(lambda * D, R)`` as a differentiable 2-vector, and the figures logged."""
    n = x.shape[0] * x.shape[2] * x.shape[3]
    bpp = rate_bpp(out["likelihoods"], n)
    dist = distortion(out["x_hat"], x, metric)
    mse = F.mse_loss(out["x_hat"].detach().clamp(0, 1), x)
    psnr = -10 * math.log10(max(float(mse), 1e-10))
    return torch.stack([lmbda * dist, bpp]), {"bpp": float(bpp.detach()), "psnr": psnr, "dist": float(dist.detach())}


def rd_loss(out: dict, x: torch.Tensor, lmbda: float, metric: str) -> tuple[torch.Tensor, dict]:
    terms, stats = rd_terms(out, x, lmbda, metric)
    return terms.sum(), stats


class RDObjective(nn.Module):
    """One training forward: the rate-distortion loss of every trained width.

    A module so that DistributedDataParallel sees one forward per backward even when a
    slimmable model trains all its widths jointly: ``width_loss="sum"`` minimizes
    ``sum_i L_i`` with ``L_i = lambda_i * D_i + R_i`` (SlimCAE's joint loss), ``"log"`` minimizes
    ``sum_i log L_i``. Under the sum, the widest width's loss (several times the narrowest's) steers
    the shared weights; the log weighs each width's gradient by ``1 / L_i``, so every width's
    relative improvement counts the same. The loss itself is computed in float32 outside autocast.

    ``balance`` (one width only): a :class:`~.balance.RDBalance` that weighs ``lambda*D`` and ``R``
    (``--rd-balance famo``); :attr:`last_terms` keeps the two terms of the last forward for it.
    """

    def __init__(self, model, lmbda: float, lmbdas: list[float] | None, metric: str, bf16: bool,
                 width_loss: str = "sum"):
        super().__init__()
        if width_loss not in ("sum", "log"):
            raise SystemExit(f"error: --width-loss must be sum or log, not {width_loss!r}")
        self.model = model
        self.metric = metric
        self.bf16 = bf16
        self.width_loss = width_loss
        self.terms = [(None, lmbda)]
        if model.widths and lmbdas:
            self.set_lambdas(lmbdas)
        self.balance = None
        self.last_terms = None

    def set_lambdas(self, lmbdas: list[float]) -> None:
        """One lambda per width, widest first (the lambda schedule changes them between trials)."""
        if len(lmbdas) != len(self.model.widths):
            raise SystemExit(f"error: {len(lmbdas)} lambdas for the {len(self.model.widths)} widths "
                             f"{self.model.widths}")
        self.terms = list(zip(self.model.widths, lmbdas))

    def forward(self, x: torch.Tensor):
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            outs = [self.model(x) if w is None else self.model(x, width=w) for w, _ in self.terms]
        loss, stats = 0.0, {}
        for i, ((w, lm), out) in enumerate(zip(self.terms, outs)):
            out = {"x_hat": out["x_hat"].float(), "likelihoods": {k: v.float() for k, v in out["likelihoods"].items()}}
            pair, s = rd_terms(out, x, lm, self.metric)
            self.last_terms = pair.detach()
            term = self.balance.loss(pair) if self.balance is not None else pair.sum()
            loss = loss + (torch.log(term) if self.width_loss == "log" and len(self.terms) > 1 else term)
            if i == 0:  # the widest width's figures also go unsuffixed
                stats.update(s)
            if w is not None:
                stats.update({f"{k}@{w}": v for k, v in s.items()})
        return loss, stats


def entropy_models_in_fp32(model) -> None:
    """Run the entropy models outside autocast: likelihoods in bf16 would ruin the rate."""
    from ...nn.entropy import ConditionalEntropyModel, EntropyBottleneck

    def pre(module, args):
        ctx = torch.autocast(args[0].device.type, enabled=False)
        ctx.__enter__()
        module.__dict__.setdefault("_sf_autocast", []).append(ctx)
        return tuple(a.float() if torch.is_tensor(a) and a.is_floating_point() else a for a in args)

    def post(module, args, output):
        module.__dict__["_sf_autocast"].pop().__exit__(None, None, None)

    for m in model.modules():
        if isinstance(m, (EntropyBottleneck, ConditionalEntropyModel)):
            m.register_forward_pre_hook(pre)
            m.register_forward_hook(post)
