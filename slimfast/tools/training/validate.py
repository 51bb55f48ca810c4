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
    """Estimated bpp (hard-quantized likelihoods) and PSNR on center crops of held-out images
    (``crop`` 0: the whole images, as codecs are measured).

    With ``metric == "ms-ssim"`` the mean MS-SSIM (crops of at least 176 pixels) is added.
    """
    was = model.training
    model.eval()
    device = model_device(model)
    bpps, psnrs, msssims = [], [], []
    for im in images:
        ch, cw = _crop_size(im.shape[1:], crop, model.pad_multiple)
        if ch == 0 or cw == 0:
            continue
        y0, x0 = (im.shape[1] - ch) // 2, (im.shape[2] - cw) // 2
        x = im[:, y0:y0 + ch, x0:x0 + cw].to(device).float().unsqueeze(0) / 255.0
        out = model(x) if width is None else model(x, width=width)
        bpps.append(float(rate_bpp({k: v.float() for k, v in out["likelihoods"].items()}, ch * cw)))
        x_hat = (out["x_hat"].float().clamp(0, 1) * 255).round() / 255
        mse = F.mse_loss(x_hat, x)
        psnrs.append(-10 * math.log10(max(float(mse), 1e-10)))
        if metric == "ms-ssim" and min(ch, cw) >= MSSSIM_MIN_SIDE:
            msssims.append(float(ms_ssim_tensor(x_hat, x)))
    model.train(was)
    res = {"bpp": float(np.mean(bpps)) if bpps else float("nan"),
           "psnr": float(np.mean(psnrs)) if psnrs else float("nan")}
    if msssims:
        res["msssim"] = float(np.mean(msssims))
    return res


def _crop_size(size: tuple[int, int], crop: int, multiple: int) -> tuple[int, int]:
    """The centre crop validated: a square of side ``crop``, or with ``crop`` 0 the whole image
    (each side rounded down to ``multiple``, the model's padding unit)."""
    h, w = size
    if crop <= 0:
        return h // multiple * multiple, w // multiple * multiple
    c = min(crop, h, w) // multiple * multiple
    return c, c


def validate_widths(model, images: list[torch.Tensor], metric: str, crop: int, widths=None) -> list[dict]:
    """:func:`validate` at every width (``None``: the model's one width), with the width in each row."""
    return [dict(width=w, **validate(model, images, metric, 0.0, crop=crop, width=w))
            for w in (widths or model.widths or [None])]
