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


def count(model, width: int | None = None) -> dict:
    """``{"params", "kmac_encode", "kmac_decode", "kmac_total", "by_part"}`` at ``width``."""
    import torch
    from torch import nn

    from .entropy import EntropyBottleneck
    from .layers import GDN

    try:
        from .slim import SlimGDNPlus
    except ImportError:  # pragma: no cover
        SlimGDNPlus = ()
    part_of = {id(m): name.split(".")[0] for name, m in model.named_modules() if name}
    macs: dict[str, float] = defaultdict(float)
    params: dict[int, tuple[str, int]] = {}

    def hook(mod, inputs, output):
        x = inputs[0]
        part = part_of.get(id(mod), "?")
        if isinstance(mod, nn.ConvTranspose2d):
            kh, kw = mod.kernel_size
            cin, cout = x.shape[1], output.shape[1]
            macs[part] += x.shape[2] * x.shape[3] * cin * cout * kh * kw
            params[id(mod)] = (part, cin * cout * kh * kw + (cout if mod.bias is not None else 0))
        elif isinstance(mod, nn.Conv2d):
            kh, kw = mod.kernel_size
            cin, cout = x.shape[1], output.shape[1]
            macs[part] += output.shape[2] * output.shape[3] * cin // mod.groups * cout * kh * kw
            params[id(mod)] = (part, cin // mod.groups * cout * kh * kw + (cout if mod.bias is not None else 0))
        elif isinstance(mod, (GDN, SlimGDNPlus)) if SlimGDNPlus else isinstance(mod, GDN):
            c = x.shape[1]
            macs[part] += x.shape[2] * x.shape[3] * c * c
            params[id(mod)] = (part, c * c + c)
        elif isinstance(mod, EntropyBottleneck):
            params[id(mod)] = (part, sum(p.numel() for p in mod.parameters()))

    kinds = (nn.Conv2d, nn.ConvTranspose2d, GDN, EntropyBottleneck) + ((SlimGDNPlus,) if SlimGDNPlus else ())
    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, kinds)]
    side = 4 * model.pad_multiple
    was = model.training
    try:
        model.eval()
        x = torch.zeros(1, 3, side, side)
        with torch.no_grad():
            model(x) if width is None or not model.widths else model(x, width=width)
    finally:
        model.train(was)
        for h in handles:
            h.remove()
    n = side * side
    per = {k: v / n / 1000 for k, v in macs.items()}
    return {
        "params": int(sum(p for _, p in params.values())),
        "kmac_encode": sum(v for k, v in per.items() if k in ENCODE_PARTS),
        "kmac_decode": sum(v for k, v in per.items() if k in DECODE_PARTS),
        "kmac_total": sum(per.values()),
        "by_part": per,
    }


def report(models) -> None:
    """Print a complexity table for zoo models (``slimfast models --details``)."""
    from .codec import Codec

    print(f"\n{'name':24s} {'width':>5s} {'params':>8s} {'kMAC/px enc':>12s} {'kMAC/px dec':>12s}")
    for info in models:
        model = Codec(info).model
        for w in (sorted(model.widths, reverse=True) if model.widths else [None]):
            c = count(model, w)
            print(f"{info.name:24s} {str(w or '-'):>5s} {c['params'] / 1e6:7.2f}M {c['kmac_encode']:12.2f} "
                  f"{c['kmac_decode']:12.2f}")
    print("kMAC/px: multiply-accumulates per image pixel counted from the layers run; "
          "times and memory: `slimfast bench`.")
