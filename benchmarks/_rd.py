"""Shared by the benchmark scripts: Kodak rate and PSNR of a torch model from real streams."""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image


def stream_rd(model, files: list[str], width: int | None = None) -> tuple[float, float]:
    """(bpp over all pixels from the entropy-coded streams, mean per-image PSNR-RGB of the 8-bit output)."""
    bits = px = 0
    psnrs = []
    for f in files:
        img = np.asarray(Image.open(f).convert("RGB"))
        x = torch.from_numpy(img.transpose(2, 0, 1).copy()).float().div(255)[None]
        with torch.no_grad():
            lat = model.compress(x, width)
            x_hat = model.decompress(lat.strings, lat.shape, width)
        rec = (x_hat[0].clamp(0, 1) * 255).round().numpy().transpose(1, 2, 0)
        bits += 8 * sum(map(len, lat.strings))
        px += img.shape[0] * img.shape[1]
        psnrs.append(10 * np.log10(255 ** 2 / np.mean((rec - img.astype(np.float64)) ** 2)))
    return bits / px, float(np.mean(psnrs))
