"""An architecture's description (:mod:`slimfast.archs`) over numpy weights: ONNX layer specs,
the integer hyper-synthesis and the latent codecs, at any latent width.

Nothing here describes an architecture: it reads the grammar records the description lists
and takes each weight's leading block (``W[:cout, :cin]`` for a convolution, ``W[:cin, :cout]``
for a transposed one), so the graphs compute what the torch modules built from the same
description compute.
"""
from __future__ import annotations

import numpy as np

from .. import archs
from ..archs import grammar as g
from ..archs.shapes import tconv_padding
from ..format import weightfile as weights
from ..coding import intmath
from ..coding.hyper import Int8Branch, Int8Layer, IntLayer
from .onnxgraph import conv_spec


class Specs:
    """``describe(architecture, config)`` with the weights ``state`` (numpy, torch's keys)."""

    def __init__(self, architecture: str, config: dict, state: dict[str, np.ndarray]):
        self.arch = archs.describe(architecture, config)
        self.state = state
        self.pad_multiple = self.arch.pad_multiple
        self.hyper = self.arch.hyper
        self.widths = self.arch.widths
        self.latent_channels = self.arch.latent_channels

    def tconv_for(self, c: int) -> str:
        return self.arch.tconv_for(c)

    # -- float transforms as ONNX specs ----------------------------------------------------------
    def analysis(self, c: int) -> list:
        return [self.spec(layer) for layer in self.arch.analysis(c)]

    def hyper_analysis(self, c: int) -> list:
        return [self.spec(layer) for layer in self.arch.hyper_analysis(c)]

    def synthesis(self, c: int) -> list:
        return [self.spec(layer) for layer in self.arch.synthesis(c)]

    def spec(self, layer):
        s = self.state
        if isinstance(layer, g.Conv):
            w, b = s[layer.key + ".weight"][: layer.cout, : layer.cin], s.get(layer.key + ".bias")
            return conv_spec(w, None if b is None else b[: layer.cout], layer.stride, layer.pads)
        if isinstance(layer, g.TConv):
            w, b = s[layer.key + ".weight"][: layer.cin, : layer.cout], s.get(layer.key + ".bias")
            (ph, oph), (pw, opw) = tconv_padding(layer.kernel[0], layer.stride[0]), tconv_padding(layer.kernel[1],
                                                                                                 layer.stride[1])
            return ("tconv", w, None if b is None else b[: layer.cout], tuple(layer.stride), (ph, pw), (oph, opw))
        if isinstance(layer, g.GDN):
            return self.gdn(layer)
        if isinstance(layer, g.IQR):
            c, k = layer.channels, layer.key
            return ("iqr", self.spec(g.Conv(f"{k}.conv1", c, c // 4, (7, 1))),
                    self.spec(g.Conv(f"{k}.conv2", c // 4, c // 2, (1, 7))), self.spec(g.Conv(f"{k}.conv3", c // 2, c, (1, 1))))
        if isinstance(layer, g.ReLU):
            return ("relu",)
        if isinstance(layer, g.Abs):
            return ("abs",)
        raise ValueError(f"no ONNX form for {layer!r}")

    def gdn(self, layer: g.GDN):
        if layer.kind == "plain":
            beta, gamma = weights.gdn_params(self.state, layer.key + ".")
        elif layer.kind == "switchable":
            beta, gamma = weights.gdn_params(self.state, f"{layer.key}.gdns.{layer.index}.")
        else:  # slim+
            beta, gamma = weights.slim_gdn_plus_params(self.state, layer.key + ".", layer.index, layer.channels)
        if beta.shape != (layer.channels,):
            raise ValueError(f"{layer.key}: GDN has {beta.shape[0]} channels, expected {layer.channels}")
        return ("gdn", beta, gamma, layer.inverse)

    # -- coding -----------------------------------------------------------------------------------
    def int_branch(self, branch: g.Branch | None) -> list[IntLayer] | None:
        """The integer copy of a hyper-synthesis branch (``key.int_{w,s,b}{i}``), layer by layer."""
        if branch is None:
            return None
        out, i = [], 0
        for layer in branch.layers:
            if isinstance(layer, g.ReLU):
                out.append(IntLayer("relu"))
                continue
            w, s, b = (self.state[f"{branch.key}.int_{k}{i}"] for k in "wsb")
            if w.size == 0:
                raise RuntimeError("weights file has no integer hyper-synthesis: call update() before saving")
            i += 1
            if isinstance(layer, g.Conv):
                out.append(IntLayer("conv1x1", w, s, b, cout=layer.cout))
                continue
            (ph, oph), (pw, opw) = (tconv_padding(k, st) for k, st in zip(layer.kernel, layer.stride))
            out.append(IntLayer("tconv", w, s, b, tuple(layer.stride), (ph, pw), (oph, opw), layer.cout))
        return out

    def int8_branch(self, branch: g.Branch | None, steps: list[float]) -> Int8Branch | None:
        """The 8-bit copy of a full-width branch, from its float weights and activation ``steps``."""
        if branch is None:
            return None
        convs = [layer for layer in branch.layers if not isinstance(layer, g.ReLU)]
        out = []
        for i, layer in enumerate(convs):
            w = self.state[f"{layer.key}.weight"]
            transposed = isinstance(layer, g.TConv)
            if not intmath.exact_in_float32(layer.cin, layer.kernel, layer.stride if transposed else (1, 1)):
                raise ValueError(f"{layer.key}: too many products per output for exact float32 sums")
            wq, step = intmath.quantize_weight8(w, 1 if transposed else 0)
            out_step = steps[i + 1] if i + 1 < len(convs) else 1.0
            mult = step * steps[i] / out_step
            bias = self.state[f"{layer.key}.bias"].astype(np.float64) / out_step
            if not transposed:
                out.append(Int8Layer("conv1x1", np.ascontiguousarray(wq[:, :, 0, 0]), mult, bias))
                continue
            (ph, oph), (pw, opw) = (tconv_padding(k, st) for k, st in zip(layer.kernel, layer.stride))
            out.append(Int8Layer("tconv", np.ascontiguousarray(wq.transpose(2, 3, 1, 0)), mult, bias,
                                 tuple(layer.stride), (ph, pw), (oph, opw)))
        return Int8Branch(float(steps[0]), tuple(out))

    def hs_branches(self, c: int):
        """The integer hyper-synthesis: the 8-bit copy where the weights' config has ``hs_steps``,
        else the 12-bit one the weights file stores."""
        scale, mean = self.arch.hyper_synthesis(c)
        steps = getattr(self.arch, "hs_steps", None)
        if steps is not None:
            return self.int8_branch(scale, steps[scale.key]), self.int8_branch(mean, steps[mean.key])
        return self.int_branch(scale), self.int_branch(mean)

    def latent_codec(self, c: int):
        """The latent codec (:mod:`slimfast.coding.latent_codecs`) at latent width ``c``."""
        from ..coding.latent_codecs import FactorizedCodec, HyperpriorCodec, Tables

        p = self.arch.entropy_key(c) + "."
        s = self.state
        factorized = FactorizedCodec(c, s[p + "_medians"], Tables(s[p + "freqs"], s[p + "lengths"], s[p + "offsets"]))
        if not self.hyper:
            return factorized
        tables = Tables(s["conditional.freqs"], s["conditional.lengths"], s["conditional.offsets"])
        return HyperpriorCodec(factorized, *self.hs_branches(c), tables, s["conditional.scale_table"])
