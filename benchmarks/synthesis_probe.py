"""How fast can a synthesis learn to invert a fixed, trained analysis?

Why FasiNet-H version 2 stalled near 30 dB on Kodak whatever its lambda: this trains a
synthesis from scratch behind a trained analysis, with the rate term removed -- the latent gets
additive uniform noise in training and is rounded for validation -- and prints validation PSNR
on held-out training crops (never Kodak) every ``--every`` steps. Everything is trainable (Adam,
``--lr``); only the synthesis starts from scratch. Variants:

* ``l-k7-s96``: FasiNet-L's trained analysis and IQR (``--analysis``) + FasiNet-L's synthesis
  from scratch (7x7 kernels, 96 channels);
* ``l-k7-s32``: the same analysis + a light synthesis from scratch, 7x7 kernels, 32 channels
  (FasiNet-H version 3's);
* ``l-k5-s32``: the same analysis + the paper's FasiNet-H synthesis from scratch (5x5, 32);
* ``l-k5-s96``: 5x5 kernels with 96 channels (is it the kernel or the width?);
* ``h-shipped``: a shipped FasiNet-H (``--model``) with everything trainable, as it is.

The latent is rounded directly (no median or mean), the same for every variant. One thread per
process; run two variants side by side on two cores.

    python benchmarks/synthesis_probe.py l-k7-s32 --steps 1500
    python benchmarks/synthesis_probe.py l-k5-s32 --steps 1500

Measured (2026-11-24, the analysis of fasinet-l-mse-q6 version 3, whose own synthesis gives
33.48 dB on these crops): after 500 / 1,000 steps, 7x7-96 29.04 / 30.24 dB, 7x7-32 26.30 /
28.26, 5x5-96 22.47 / 23.59, 5x5-32 21.79 / 22.95 (23.70 at 1,500). The kernel, not the width.
"""
from __future__ import annotations

import argparse
import math
import sys
import time

import numpy as np

VARIANTS = ("l-k7-s96", "l-k7-s32", "l-k5-s32", "l-k5-s96", "h-shipped")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("variant", choices=VARIANTS)
    p.add_argument("--minutes", type=float, default=4.5)
    p.add_argument("--steps", type=int, default=0,
                   help="> 0: stop after this many steps instead (same figures on a busy machine)")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--every", type=int, default=500, help="validate every N steps")
    p.add_argument("--analysis", default="slimfast/weights/fasinet-l-msssim-q4.safetensors",
                   help="trained FasiNet-L weights whose analysis and IQR are kept (l-* variants; the figures "
                        "above used fasinet-l-mse-q6 version 3, no longer bundled: git show "
                        "fa40236:slimfast/weights/fasinet-l-mse-q6.safetensors > q6.safetensors)")
    p.add_argument("--model", default="slimfast/weights/fasinet-h-mse-q10.safetensors",
                   help="the FasiNet-H weights of h-shipped")
    p.add_argument("--data", default="../shared/data/train")
    a = p.parse_args(argv)

    import torch
    from torch import nn

    from slimfast.nn.layers import GDN
    from slimfast.nn.slim import SlimConvTranspose2d as tconv
    from slimfast.tools.train import PatchSampler, list_images, load_rgb, split_validation
    from slimfast.models.weights import load_model

    torch.set_num_threads(1)
    torch.manual_seed(0)
    files = list_images([a.data])
    if not files:
        print(f"synthesis_probe: no training images in {a.data}", file=sys.stderr)
        return 2
    train, val = split_validation(files, 0.05)
    rng = np.random.default_rng(0)
    pick = rng.choice(len(train), min(300, len(train)), replace=False)
    sampler = PatchSampler([load_rgb(train[i]) for i in pick], 128, rng)
    val_x = [load_rgb(f).float()[None, :, :256, :256] / 255 for f in val[:16]]

    if a.variant == "h-shipped":
        model = load_model(a.model).train()
        g_a, iqr, g_s = model.g_a, model.iqr, model.g_s
        params = list(model.parameters())
    else:
        src = load_model(a.analysis)
        if src.architecture != "fasinet-l":
            print(f"synthesis_probe: --analysis must be FasiNet-L weights, not {src.architecture}", file=sys.stderr)
            return 2
        k, s = int(a.variant[3]), int(a.variant.split("-s")[1])
        g_a, iqr = src.g_a, src.iqr
        g_s = nn.Sequential(tconv(src.M, s, k, stride=4), GDN(s, inverse=True), tconv(s, 3, k, stride=4))
        params = list(g_a.parameters()) + list(iqr.parameters()) + list(g_s.parameters())
        print(f"{a.variant}: {a.analysis} as it is, val PSNR with its own synthesis "
              f"{np.mean([_psnr(src.g_s(src.iqr(torch.round(src.g_a(v)))), v) for v in val_x]):.2f} dB", flush=True)
    opt = torch.optim.Adam(params, lr=a.lr)
    t0, step = time.time(), 0
    while (step < a.steps) if a.steps > 0 else (time.time() - t0 < a.minutes * 60):
        x = sampler.sample(8)
        y = g_a(x)
        x_hat = g_s(iqr(y + torch.empty_like(y).uniform_(-0.5, 0.5)))
        loss = torch.mean((x_hat - x) ** 2)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        step += 1
        if step % a.every == 0:
            with torch.no_grad():
                ps = [_psnr(g_s(iqr(torch.round(g_a(v)))), v) for v in val_x]
            print(f"{a.variant} step {step} ({(time.time() - t0) / 60:.1f} min): val PSNR {np.mean(ps):.2f} dB "
                  "(rounded latent, no rate)", flush=True)
    return 0


def _psnr(x_hat, x) -> float:
    import torch

    return 10 * math.log10(1 / float(torch.mean((x_hat.detach().clamp(0, 1) - x) ** 2)))


if __name__ == "__main__":
    sys.exit(main())
