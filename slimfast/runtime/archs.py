"""Each supported architecture as layer specs (:mod:`.onnxgraph`) and entropy-model keys.

Mirrors the torch models layer for layer, at a given latent width ``c``:

* ``fasinet-l``, ``fasinet-h``: :mod:`slimfast.models.fasinet` (``c`` is always M);
* ``slim-fasinet-l``, ``slim-fasinet-h``: :mod:`slimfast.models.slimfasinet`, running the
  leading weight blocks (``W[:cout, :cin]`` for a convolution, ``W[:cin, :cout]`` for a
  transposed one) and the width's own GDN (``gdn="switchable"``) or SlimGDN+ (``"slim+"``);
* ``slimcae``: :class:`slimfast.models.slimcae.SlimCAE` (factorized prior), the same way.
"""
from __future__ import annotations

import numpy as np

from . import weights
from .hyper import IntLayer
from .onnxgraph import conv_spec
from ..shapes import tconv_padding

S4H, S4W = (4, 1), (1, 4)


def _scaled(width: int, full: int, channels: int) -> int:
    c = width * channels / full
    if c != int(c) or c < 1:
        raise ValueError(f"width {width} does not scale {channels} channels (of {full}) to an integer")
    return int(c)


class Arch:
    """Specs of one architecture; subclasses fill in the layer lists."""

    pad_multiple = 16
    hyper = False
    # Form of the stride-4 transposed convolutions that decodes fastest. Sub-pixel wins for
    # FasiNet-L's 7x7 kernels (12% on fasinet-l-mse-q4's synthesis, 1 thread, interleaved runs,
    # and more on the slim model) and loses for FasiNet-H's 5x5, whose phases are sparse.
    preferred_tconv = "convtranspose"
    widths: tuple[int, ...] | None = None

    def tconv_for(self, c: int) -> str:
        """The faster form at latent width ``c`` (``preferred_tconv`` unless a width says otherwise)."""
        return self.preferred_tconv

    def __init__(self, config: dict, state: dict[str, np.ndarray]):
        self.config = config
        self.state = state

    # helpers over the state dict ---------------------------------------------------------------
    def conv(self, prefix: str, cout: int | None = None, cin: int | None = None, stride=(1, 1), pads=None):
        w, b = self.state[prefix + "weight"], self.state.get(prefix + "bias")
        w = w[:cout, :cin]
        return conv_spec(w, None if b is None else b[:cout], stride, pads)

    def tconv(self, prefix: str, cin: int | None = None, cout: int | None = None, stride=(4, 4)):
        w, b = self.state[prefix + "weight"], self.state.get(prefix + "bias")
        w = w[:cin, :cout]
        kh, kw = w.shape[2:]
        (ph, oph), (pw, opw) = tconv_padding(kh, stride[0]), tconv_padding(kw, stride[1])
        return ("tconv", w, None if b is None else b[:cout], tuple(stride), (ph, pw), (oph, opw))

    def gdn(self, prefix: str, inverse: bool = False):
        beta, gamma = weights.gdn_params(self.state, prefix)
        return ("gdn", beta, gamma, inverse)

    def iqr(self, prefix: str, c: int):
        return ("iqr", self.conv(prefix + "conv1.", c // 4, c), self.conv(prefix + "conv2.", c // 2, c // 4),
                self.conv(prefix + "conv3.", c, c // 2))

    def int_branch(self, prefix: str, plan: tuple[int | None, ...], strides) -> list[IntLayer]:
        """The integer hyper-synthesis ``tconv, relu, tconv, relu, conv1x1`` at ``prefix``."""
        layers = []
        for i, (cout, stride) in enumerate(zip(plan, strides)):
            w, s, b = (self.state[f"{prefix}int_{k}{i}"] for k in "wsb")
            if w.size == 0:
                raise RuntimeError("weights file has no integer hyper-synthesis: call update() before saving")
            if stride is None:
                layers.append(IntLayer("conv1x1", w, s, b, cout=cout))
            else:
                kh, kw = w.shape[2:]
                (ph, oph), (pw, opw) = tconv_padding(kh, stride[0]), tconv_padding(kw, stride[1])
                layers += [IntLayer("tconv", w, s, b, tuple(stride), (ph, pw), (oph, opw), cout), IntLayer("relu")]
        return layers

    # interface ----------------------------------------------------------------------------------
    latent_channels: int = 0

    def analysis(self, c: int) -> list:
        raise NotImplementedError

    def hyper_analysis(self, c: int) -> list:
        raise NotImplementedError

    def synthesis(self, c: int) -> list:
        raise NotImplementedError

    def eb_prefix(self, c: int) -> str:
        return "entropy_bottleneck."

    def hs_branches(self, c: int) -> tuple[list[IntLayer], list[IntLayer] | None]:
        raise NotImplementedError


class FasiNetL(Arch):
    pad_multiple = 16
    preferred_tconv = "subpixel"

    def __init__(self, config, state):
        super().__init__(config, state)
        self.N, self.M = int(config.get("N", 96)), int(config.get("M", 192))
        self.latent_channels = self.M

    def analysis(self, c):
        return [self.conv("g_a.0.", stride=(4, 4)), self.gdn("g_a.1."),
                self.conv("g_a.2.0.", stride=S4H), self.gdn("g_a.2.1."), self.conv("g_a.2.2.", stride=S4W)]

    def synthesis(self, c):
        return [self.iqr("iqr.", c), self.tconv("g_s.0."), self.gdn("g_s.1.", inverse=True), self.tconv("g_s.2.")]


class FasiNetH(FasiNetL):
    pad_multiple = 64
    hyper = True
    preferred_tconv = "convtranspose"

    def __init__(self, config, state):
        Arch.__init__(self, config, state)
        self.M = int(config.get("M", 192))
        self.latent_channels = self.M

    def tconv_for(self, c):
        # Sub-pixel pays off once the kernels overlap (K = 7), as in FasiNet-L: fasinet-h-mse-q4
        # version 3 decodes kodim23 in 28.1 ms against 29.7 with ConvTranspose at 2 threads (36.8
        # against 36.9 at 1; interleaved medians of 9).
        return "subpixel" if self.state["g_s.0.weight"].shape[-1] > 5 else "convtranspose"

    def analysis(self, c):
        return super().analysis(c) + ([self.gdn("g_a.3.")] if self.config.get("final_gdn", True) else [])

    def hyper_analysis(self, c):
        return [("abs",), self.conv("h_a.0.0.", stride=S4H), ("relu",), self.conv("h_a.0.2.", stride=S4W), ("relu",),
                self.conv("h_a.3.", pads=(0, 0, 1, 1))]

    def hs_branches(self, c):
        strides = (S4H, S4W, None)
        return (self.int_branch("h_s_scale.", (None, None, None), strides),
                self.int_branch("h_s_mean.", (None, None, None), strides))


class _Slim(Arch):
    latent_key = "M"  # the config key of the widest latent

    def __init__(self, config, state):
        super().__init__(config, state)
        self.M = int(config.get(self.latent_key, 192))
        self.latent_channels = self.M
        self.widths = tuple(int(w) for w in config.get("widths", (192, 144, 96, 72, 48)))
        self.gdn_kind = config.get("gdn", "switchable")

    def slim_gdn(self, prefix: str, c: int, width: int, inverse: bool = False):
        i = self.widths.index(width)
        if self.gdn_kind == "switchable":
            beta, gamma = weights.gdn_params(self.state, f"{prefix}gdns.{i}.")
        elif self.gdn_kind == "slim+":
            beta, gamma = weights.slim_gdn_plus_params(self.state, prefix, i, c)
        else:
            raise ValueError(f"unknown gdn kind {self.gdn_kind!r}")
        if beta.shape != (c,):
            raise ValueError(f"{prefix}: GDN has {beta.shape[0]} channels, expected {c}")
        return ("gdn", beta, gamma, inverse)

    def eb_prefix(self, c):
        return f"{'z_entropy' if self.hyper else 'entropy'}.{self.widths.index(c)}."


class SlimFasiNetL(_Slim):
    pad_multiple = 16
    preferred_tconv = "subpixel"

    def __init__(self, config, state):
        super().__init__(config, state)
        self.N = int(config.get("N", 96))

    def analysis(self, c):
        n = _scaled(c, self.M, self.N)
        return [self.conv("g_a.0.", n, stride=(4, 4)), self.slim_gdn("g_a.1.", n, c),
                self.conv("g_a.2.", n, n, stride=S4H), self.slim_gdn("g_a.3.", n, c),
                self.conv("g_a.4.", c, n, stride=S4W)]

    def synthesis(self, c):
        n = _scaled(c, self.M, self.N)
        return [self.iqr("iqr.", c), self.tconv("g_s.0.", c, n), self.slim_gdn("g_s.1.", n, c, inverse=True),
                self.tconv("g_s.2.", n)]


class SlimFasiNetH(_Slim):
    pad_multiple = 64
    hyper = True
    preferred_tconv = "convtranspose"

    def __init__(self, config, state):
        super().__init__(config, state)
        self.N1, self.N2, self.S = (int(config.get(k, d)) for k, d in (("N1", 48), ("N2", 96), ("S", 32)))
        self.final_gdn = bool(config.get("final_gdn", True))
        self.slim_hidden = bool(config.get("slim_hidden", True))

    def tconv_for(self, c):
        return FasiNetH.tconv_for(self, c)  # sub-pixel for K = 7, as FasiNet-H

    def hidden(self, c, channels):
        return _scaled(c, self.M, channels) if self.slim_hidden else channels

    def analysis(self, c):
        n1, n2 = self.hidden(c, self.N1), self.hidden(c, self.N2)
        return [self.conv("g_a.0.", n1, stride=(4, 4)), self.slim_gdn("g_a.1.", n1, c),
                self.conv("g_a.2.", n2, n1, stride=S4H), self.slim_gdn("g_a.3.", n2, c),
                self.conv("g_a.4.", c, n2, stride=S4W)] + ([self.slim_gdn("g_a.5.", c, c)] if self.final_gdn else [])

    def hyper_analysis(self, c):
        return [("abs",), self.conv("h_a.0.", c, c, stride=S4H), ("relu",), self.conv("h_a.2.", 2 * c, c, stride=S4W),
                ("relu",), self.conv("h_a.5.", c, 2 * c, pads=(0, 0, 1, 1))]

    def hs_branches(self, c):
        plan, strides = (c // 2, c, c), (S4H, S4W, None)
        return self.int_branch("h_s_scale.", plan, strides), self.int_branch("h_s_mean.", plan, strides)

    def synthesis(self, c):
        s = self.hidden(c, self.S)
        return [self.iqr("iqr.", c), self.tconv("g_s.0.", c, s), self.slim_gdn("g_s.1.", s, c, inverse=True),
                self.tconv("g_s.2.", s)]


class SlimCAE(_Slim):
    pad_multiple = 16
    latent_key = "C"
    S2 = (2, 2)

    # Sub-pixel at every width. It decodes 18-34% faster at widths 96-192 (synthesis alone, 1
    # thread, AVX-512 machine); at 72 and 48 that machine measured it 15-35% slower, but whole
    # decodes of kodim23 on an AVX2 machine (November 2026) favour it there too: width 72 41 against
    # 61 ms (2 threads) and 69 against 92 ms (1 thread), width 48 25 against 28 ms (2 threads) and
    # equal with 1. ConvTranspose at width 72 also varied by +-20% from run to run.
    preferred_tconv = "subpixel"

    def analysis(self, c):
        return [self.conv("g_a.0.", c, stride=(4, 4)), self.slim_gdn("g_a.1.", c, c),
                self.conv("g_a.2.", c, c, stride=self.S2), self.slim_gdn("g_a.3.", c, c),
                self.conv("g_a.4.", c, c, stride=self.S2), self.slim_gdn("g_a.5.", c, c)]

    def synthesis(self, c):
        return [self.slim_gdn("g_s.0.", c, c, inverse=True), self.tconv("g_s.1.", c, c, stride=self.S2),
                self.slim_gdn("g_s.2.", c, c, inverse=True), self.tconv("g_s.3.", c, c, stride=self.S2),
                self.slim_gdn("g_s.4.", c, c, inverse=True), self.tconv("g_s.5.", c, None, stride=(4, 4))]


ARCHS: dict[str, type[Arch]] = {
    "fasinet-l": FasiNetL,
    "fasinet-h": FasiNetH,
    "slim-fasinet-l": SlimFasiNetL,
    "slim-fasinet-h": SlimFasiNetH,
    "slimcae": SlimCAE,
}
