"""Complexity of models at a width: parameters and multiply-accumulates per pixel.

Counted from each architecture's description (:mod:`slimfast.archs.complexity`): no torch,
nothing run. A convolution costs ``out_pixels * c_in * c_out * kh * kw``, a transposed one
``in_pixels * c_in * c_out * kh * kw``, a GDN ``pixels * c^2``; entropy coding and elementwise
operations are not counted. Parameters are the transforms' at that width.
"""
from __future__ import annotations

from .. import archs
from ..archs.complexity import count as count_arch


def count(model, width: int | None = None) -> dict:
    """``{"params", "kmac_encode", "kmac_decode", "kmac_total", "by_part"}`` at ``width`` of a
    description, a torch model (its ``arch``) or a zoo :class:`~slimfast.zoo.ModelInfo`."""
    if hasattr(model, "card"):
        model = archs.describe(model.architecture, model.card.get("config"))
    return count_arch(getattr(model, "arch", model), width)


def report(models) -> None:
    """Print a complexity table for zoo models (``slimfast models --details``)."""
    print(f"\n{'name':24s} {'width':>5s} {'params':>8s} {'kMAC/px enc':>12s} {'kMAC/px dec':>12s}")
    for info in models:
        for w in (sorted(info.widths, reverse=True) if info.widths else [None]):
            c = count(info, w)
            print(f"{info.name:24s} {str(w or '-'):>5s} {c['params'] / 1e6:7.2f}M {c['kmac_encode']:12.2f} "
                  f"{c['kmac_decode']:12.2f}")
    print("kMAC/px: multiply-accumulates per image pixel, counted from each architecture's description; "
          "times and memory: `slimfast bench`.")
