"""Validation on the held-out split: estimated bpp, PSNR (and MS-SSIM) on centre crops."""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from ...metrics import ms_ssim_tensor
from .checkpoint import model_device
from .objective import MSSSIM_MIN_SIDE, rate_bpp


@torch.no_grad()
def validate(model, images: list[torch.Tensor], metric: str, lmbda: float, crop: int = 256,
             width: int | None = None) -> dict:
    """Estimated bpp (hard-quantized likelihoods) and PSNR on center crops of held-out images.

    With ``metric == "ms-ssim"`` the mean MS-SSIM (crops of at least 176 pixels) is added.
    """
    was = model.training
    model.eval()
    device = model_device(model)
    bpps, psnrs, msssims = [], [], []
    for im in images:
        h, w = im.shape[1:]
        c = min(crop, h, w) // model.pad_multiple * model.pad_multiple
        if c == 0:
            continue
        y0, x0 = (h - c) // 2, (w - c) // 2
        x = im[:, y0:y0 + c, x0:x0 + c].to(device).float().unsqueeze(0) / 255.0
        out = model(x) if width is None else model(x, width=width)
        bpps.append(float(rate_bpp({k: v.float() for k, v in out["likelihoods"].items()}, c * c)))
        x_hat = (out["x_hat"].float().clamp(0, 1) * 255).round() / 255
        mse = F.mse_loss(x_hat, x)
        psnrs.append(-10 * math.log10(max(float(mse), 1e-10)))
        if metric == "ms-ssim" and c >= MSSSIM_MIN_SIDE:
            msssims.append(float(ms_ssim_tensor(x_hat, x)))
    model.train(was)
    res = {"bpp": float(np.mean(bpps)) if bpps else float("nan"),
           "psnr": float(np.mean(psnrs)) if psnrs else float("nan")}
    if msssims:
        res["msssim"] = float(np.mean(msssims))
    return res


def validate_widths(model, images: list[torch.Tensor], metric: str, crop: int, widths=None) -> list[dict]:
    """:func:`validate` at every width (``None``: the model's one width), with the width in each row."""
    return [dict(width=w, **validate(model, images, metric, 0.0, crop=crop, width=w))
            for w in (widths or model.widths or [None])]
