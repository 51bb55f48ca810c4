"""Complexity of a model at a width: parameters and multiply-accumulates per pixel.

Counted from the layers a forward pass actually runs (hooks), so it follows the real
architecture, slimmed or not. A convolution costs ``out_pixels * c_in * c_out * kh * kw``, a
transposed one ``in_pixels * c_in * c_out * kh * kw``, a GDN ``pixels * c^2``; entropy coding
and elementwise operations are not counted.
"""
from __future__ import annotations

from collections import defaultdict

# Which top-level parts each side runs. The encoder of a hyperprior model also runs h_s to get
# the means it quantizes around.
ENCODE_PARTS = ("g_a", "h_a", "h_s_scale", "h_s_mean", "h_s")
DECODE_PARTS = ("h_s_scale", "h_s_mean", "h_s", "iqr", "g_s")


def measure(model, run, side: int) -> tuple[dict[str, float], dict[str, int], int]:
    """Run ``run(x)`` on a zero ``[1, 3, side, side]`` input and count from the layers run.

    Returns (MACs by top-level part, parameters used by part, pixels). GDN-like layers are
    recognized by their ``gamma`` parameter, so slimmable variants count too.
    """
    import torch
    from torch import nn

    from .entropy import EntropyBottleneck

    part_of = {id(m): name.split(".")[0] for name, m in model.named_modules() if name}
    macs: dict[str, float] = defaultdict(float)
    params: dict[int, tuple[str, int]] = {}

    def hook(mod, inputs, output):
        x = inputs[0]
        part = part_of.get(id(mod), "?")
        if isinstance(mod, (nn.Conv2d, nn.ConvTranspose2d)):
            kh, kw = mod.kernel_size
            cin, cout = x.shape[1], output.shape[1]
            pixels = x.shape[2] * x.shape[3] if isinstance(mod, nn.ConvTranspose2d) else output.shape[2] * output.shape[3]
            macs[part] += pixels * cin // mod.groups * cout * kh * kw
            params[id(mod)] = (part, cin // mod.groups * cout * kh * kw + (cout if mod.bias is not None else 0))
        elif isinstance(mod, EntropyBottleneck):
            params[id(mod)] = (part, sum(p.numel() for p in mod.parameters()))
        elif isinstance(getattr(mod, "gamma", None), torch.Tensor):  # GDN, IGDN, SlimGDN+
            c = x.shape[1]
            macs[part] += x.shape[2] * x.shape[3] * c * c
            extra = sum(p.numel() for n, p in mod.named_parameters(recurse=False) if n.endswith(("_scale", "_bias")))
            params[id(mod)] = (part, c * c + c + extra // max(len(getattr(model, "widths", None) or [1]), 1))

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, EntropyBottleneck))
               or isinstance(getattr(m, "gamma", None), torch.Tensor)]
    was = model.training
    try:
        model.eval()
        p = next(model.parameters())
        with torch.no_grad():
            run(torch.zeros(1, 3, side, side, dtype=p.dtype, device=p.device))
    finally:
        model.train(was)
        for h in handles:
            h.remove()
    by_part: dict[str, int] = defaultdict(int)
    for part, n in params.values():
        by_part[part] += n
    return dict(macs), dict(by_part), side * side


def count(model, width: int | None = None) -> dict:
    """``{"params", "kmac_encode", "kmac_decode", "kmac_total", "by_part"}`` at ``width``."""
    slim = bool(getattr(model, "widths", None))
    run = (lambda x: model(x, width=width)) if slim else model
    macs, by_part, n = measure(model, run, 4 * model.pad_multiple)
    per = {k: v / n / 1000 for k, v in macs.items()}
    return {
        "params": int(sum(by_part.values())),
        "kmac_encode": sum(v for k, v in per.items() if k in ENCODE_PARTS),
        "kmac_decode": sum(v for k, v in per.items() if k in DECODE_PARTS),
        "kmac_total": sum(per.values()),
        "by_part": per,
    }


def report(models) -> None:
    """Print a complexity table for zoo models (``slimfast models --details``)."""
    from .weights import load_model

    print(f"\n{'name':24s} {'width':>5s} {'params':>8s} {'kMAC/px enc':>12s} {'kMAC/px dec':>12s}")
    for info in models:
        model = load_model(info.path)  # the torch reference: hooks count its layers
        for w in (sorted(model.widths, reverse=True) if model.widths else [None]):
            c = count(model, w)
            print(f"{info.name:24s} {str(w or '-'):>5s} {c['params'] / 1e6:7.2f}M {c['kmac_encode']:12.2f} "
                  f"{c['kmac_decode']:12.2f}")
    print("kMAC/px: multiply-accumulates per image pixel counted from the layers run; "
          "times and memory: `slimfast bench`.")
