"""Complexity of an architecture at a width, counted from its description (no torch, nothing run).

A convolution costs ``out_pixels * c_in * c_out * kh * kw`` multiply-accumulates, a transposed
one ``in_pixels * c_in * c_out * kh * kw``, a GDN ``pixels * c^2``; entropy coding and
elementwise operations are not counted. Figures are per input pixel, by top-level part
(``g_a``, ``h_a``, ``h_s_scale``, ``h_s_mean``, ``iqr``, ``g_s``). Parameters are those of the
transforms a width runs: the leading weight blocks and the width's own GDNs (the entropy
models' density parameters belong to training, :meth:`slimfast.nn.slim.SlimMixin.num_parameters`).
"""
from __future__ import annotations

from collections import defaultdict

from . import grammar as g


def _iqr_convs(layer: g.IQR) -> list[g.Conv]:
    c, k = layer.channels, layer.key
    return [g.Conv(f"{k}.conv1", c, c // 4, (7, 1)), g.Conv(f"{k}.conv2", c // 4, c // 2, (1, 7)),
            g.Conv(f"{k}.conv3", c // 2, c, (1, 1))]


def _layer(layer, scale: float, acc: dict) -> float:
    """Add ``layer``'s cost at ``scale`` (its input's pixels per image pixel) to ``acc``; the output's scale."""
    part = layer.key.split(".")[0] if hasattr(layer, "key") else None
    if isinstance(layer, g.IQR):
        for conv in _iqr_convs(layer):
            scale = _layer(conv, scale, acc)
        return scale
    if isinstance(layer, (g.Conv, g.TConv)):
        (kh, kw), (sh, sw) = layer.kernel, layer.stride
        taps = layer.cin * layer.cout * kh * kw
        out = scale / (sh * sw) if isinstance(layer, g.Conv) else scale * sh * sw
        acc["macs"][part] += (out if isinstance(layer, g.Conv) else scale) * taps
        acc["params"][part] += taps + (layer.cout if layer.bias else 0)
        return out
    if isinstance(layer, g.GDN):
        acc["macs"][part] += scale * layer.channels ** 2
        acc["params"][part] += layer.channels ** 2 + layer.channels + (4 if layer.kind == "slim+" else 0)
    return scale


def _run(layers, scale: float, acc: dict) -> float:
    for layer in layers:
        scale = _layer(layer, scale, acc)
    return scale


def count(arch, width: int | None = None) -> dict:
    """``{"params", "kmac_encode", "kmac_decode", "kmac_total", "by_part", "params_by_part"}``.

    The encoder of a hyperprior model also runs h_s (for the means it quantizes around).
    """
    c = arch.check_width(width)
    acc = {"macs": defaultdict(float), "params": defaultdict(int)}
    latent = _run(arch.analysis(c), 1.0, acc)
    parts_enc, parts_dec = ["g_a"], []
    if arch.hyper:
        z = _run(arch.hyper_analysis(c), latent, acc)
        for branch in arch.hyper_synthesis(c):
            if branch is not None:
                _run(branch.layers, z, acc)
                parts_enc.append(branch.key)
                parts_dec.append(branch.key)
        parts_enc.append("h_a")
    _run(arch.synthesis(c), latent, acc)
    parts_dec += [p for p in ("iqr", "g_s") if p in acc["macs"]]
    per = {k: v / 1000 for k, v in acc["macs"].items()}
    return {"params": int(sum(acc["params"].values())), "params_by_part": dict(acc["params"]),
            "kmac_encode": sum(per.get(p, 0.0) for p in parts_enc),
            "kmac_decode": sum(per.get(p, 0.0) for p in parts_dec),
            "kmac_total": sum(per.values()), "by_part": per}
