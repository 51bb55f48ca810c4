"""SlimCAE (Yang et al., CVPR 2021): one slimmable compressive autoencoder, several widths.

Each width ``c`` runs the leading ``c`` channels of every layer (see :mod:`slimfast.slim`)
and codes a latent of ``c`` channels with its own factorized entropy model, so one set of
weights gives several rates *and* several complexities. Layer shapes follow
``design/slimcae.md`` exactly (Balle 2017's CAE at C = 192).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .. import intmath
from ..entropy import ConditionalEntropyModel, EntropyBottleneck
from ..slim import (SlimConv2d, SlimConvTranspose2d, SlimHyperSynthesis, SlimMixin, SlimSequential,
                    check_widths, make_gdn)
from .base import CompressionModel

DEFAULT_WIDTHS = (192, 144, 96, 72, 48)


def _check_channels(symbols: np.ndarray, c: int) -> None:
    if symbols.ndim != 4 or symbols.shape[1] != c:
        raise ValueError(f"expected symbols of shape [1, {c}, h, w], got {tuple(symbols.shape)}")


class SlimCAE(SlimMixin, CompressionModel):
    r"""SlimCAE with a factorized prior per width.

    ::

        x -> g_a -> y -> Q -> EB_c -> y_hat -> g_s -> x_hat          (c = the chosen width)

        g_a: conv 9x9/4 3->c, GDN; conv 5x5/2 c->c, GDN; conv 5x5/2 c->c (no bias), GDN
        g_s: IGDN; tconv 5x5 x2 c->c; IGDN; tconv 5x5 x2 c->c; IGDN; tconv 9x9 x4 c->3
        EB_c: factorized density over the c latent channels, one per width

    ``gdn="switchable"`` gives every width its own GDN/IGDN (the released code),
    ``gdn="slim+"`` shares one with four scalars per width (SlimGDN+).
    At C = 192, encoder+decoder parameters / kMAC per pixel: 192: 4.0 M / 47.9,
    144: 2.3 M / 28.0, 96: 1.0 M / 13.4, 72: 0.6 M / 8.1, 48: 0.27 M / 4.1.
    """

    architecture = "slimcae"
    pad_multiple = 16
    encode_parts = ("g_a",)
    decode_parts = ("g_s",)

    def __init__(self, C: int = 192, widths=DEFAULT_WIDTHS, gdn: str = "switchable"):
        super().__init__()
        self.C = int(C)
        self.widths = check_widths(widths, self.C)
        self.gdn = gdn
        self.latent_channels = self.C
        C, W = self.C, self.widths
        self.g_a = SlimSequential([
            SlimConv2d(3, C, 9, stride=4), make_gdn(gdn, W),
            SlimConv2d(C, C, 5, stride=2), make_gdn(gdn, W),
            SlimConv2d(C, C, 5, stride=2, bias=False), make_gdn(gdn, W),
        ])
        self.g_s = SlimSequential([
            make_gdn(gdn, W, inverse=True), SlimConvTranspose2d(C, C, 5, stride=2),
            make_gdn(gdn, W, inverse=True), SlimConvTranspose2d(C, C, 5, stride=2),
            make_gdn(gdn, W, inverse=True), SlimConvTranspose2d(C, 3, 9, stride=4),
        ])
        self.entropy = nn.ModuleList(EntropyBottleneck(c) for c in self.widths)

    @property
    def config(self) -> dict:
        return {"C": self.C, "widths": list(self.widths), "gdn": self.gdn}

    def analysis(self, x: torch.Tensor, c: int) -> torch.Tensor:
        return self.g_a(x, (c, c, c))

    def synthesis(self, y_hat: torch.Tensor, c: int) -> torch.Tensor:
        return self.g_s(y_hat, (c, c, None))

    def forward(self, x: torch.Tensor, width: int | None = None) -> dict:
        c = self.check_width(width)
        y = self.analysis(x, c)
        y_hat, y_lik = self.entropy[self.widths.index(c)](y)
        return {"x_hat": self.synthesis(y_hat, c), "likelihoods": {"y": y_lik}}

    def encode_symbols(self, x, width=None):
        c = self.check_width(width)
        return {"y": self.entropy[self.widths.index(c)].quantize(self.tiled_analysis(lambda t: self.analysis(t, c), x))}

    def encode_strings(self, symbols, width=None):
        c = self.check_width(width)
        _check_channels(symbols["y"], c)
        return [self.entropy[self.widths.index(c)].compress(symbols["y"])]

    def decode_symbols(self, strings, shape, width=None):
        c = self.check_width(width)
        if len(strings) != 1:
            raise ValueError("SlimCAE expects one string")
        return {"y": self.entropy[self.widths.index(c)].decompress(strings[0], (1, c, *shape))}

    def synthesize(self, symbols, width=None):
        c = self.check_width(width)
        _check_channels(symbols["y"], c)
        y_hat = self.entropy[self.widths.index(c)].dequantize(symbols["y"])
        return self.tiled_synthesis(lambda t: self.synthesis(t, c), y_hat)

    def estimate_bits(self, symbols, width=None):
        c = self.check_width(width)
        _check_channels(symbols["y"], c)
        return self.entropy[self.widths.index(c)].estimate_bits(symbols["y"])


class SlimHyperMixin:
    """Coding for slimmable hyperprior models with an integer-exact hyper-synthesis.

    The model provides ``analysis(x, c)``, ``hyper_analysis(y, c)``, ``synthesis(y_hat, c)``,
    ``hs_plan(c)`` (the c_out plan of each hyper-synthesis branch), ``h_s_scale``,
    optionally ``h_s_mean`` (None for a scale-only model), ``z_entropy`` (one
    EntropyBottleneck per width) and ``conditional``.
    """

    shape_key = "z"
    num_strings = 2

    def _hyper_forward(self, x: torch.Tensor, width: int | None) -> dict:
        c = self.check_width(width)
        y = self.analysis(x, c)
        z = self.hyper_analysis(y, c)
        z_hat, z_lik = self.z_entropy[self.widths.index(c)](z)
        h, w = y.shape[2:]
        plan = self.hs_plan(c)
        scales = self.h_s_scale(z_hat, plan)[..., :h, :w]
        means = None if self.h_s_mean is None else self.h_s_mean(z_hat, plan)[..., :h, :w]
        y_hat, y_lik = self.conditional(y, scales, means)
        return {"x_hat": self.synthesis(y_hat, c), "likelihoods": {"y": y_lik, "z": z_lik}}

    @torch.no_grad()
    def update(self) -> None:
        super().update()
        for m in self.modules():
            if isinstance(m, SlimHyperSynthesis):
                m.freeze_integer()

    def entropy_parameters(self, z_symbols: np.ndarray, width: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Exact (means, scale indices) for y, ``[1, c, 4h, 4w]``, from z's symbols at ``width``.

        Computed entirely in integers (:mod:`slimfast.intmath`) on the leading blocks of the
        frozen integer hyper-synthesis: bit-identical on every machine. Means are 0 for a
        scale-only model.
        """
        c = self.check_width(width)
        _check_channels(z_symbols, c)
        eb = self.z_entropy[self.widths.index(c)]
        if not eb.updated:
            raise RuntimeError(f"{type(self).__name__}: call update() before coding")
        med = eb._medians.double().cpu().numpy().reshape(-1, 1, 1)
        a = intmath.to_fixed(z_symbols[0].astype(np.float64) + med)
        plan = self.hs_plan(c)
        scale_fx = self.h_s_scale.forward_integer(a, plan)
        index = self.conditional.scale_index(intmath.from_fixed(scale_fx))[None]
        if self.h_s_mean is None:
            means = np.zeros(index.shape, dtype=np.float64)
        else:
            means = intmath.from_fixed(self.h_s_mean.forward_integer(a, plan))[None]
        return means, index

    def encode_symbols(self, x, width=None):
        c = self.check_width(width)
        y = self.tiled_analysis(lambda t: self.analysis(t, c), x)
        z = self.hyper_analysis(y, c)
        z_sym = self.z_entropy[self.widths.index(c)].quantize(z)
        means, _ = self.entropy_parameters(z_sym, c)
        y_sym = intmath.round_residual(y.detach().cpu().numpy(), means)
        return {"z": z_sym, "y": y_sym}

    def encode_strings(self, symbols, width=None):
        c = self.check_width(width)
        _check_channels(symbols["y"], c)
        _, index = self.entropy_parameters(symbols["z"], c)
        return [self.z_entropy[self.widths.index(c)].compress(symbols["z"]),
                self.conditional.compress(symbols["y"], index)]

    def decode_symbols(self, strings, shape, width=None):
        c = self.check_width(width)
        if len(strings) != 2:
            raise ValueError(f"{type(self).__name__} expects two strings")
        z_sym = self.z_entropy[self.widths.index(c)].decompress(strings[0], (1, c, *shape))
        _, index = self.entropy_parameters(z_sym, c)
        return {"z": z_sym, "y": self.conditional.decompress(strings[1], index)}

    def synthesize(self, symbols, width=None):
        c = self.check_width(width)
        _check_channels(symbols["y"], c)
        means, _ = self.entropy_parameters(symbols["z"], c)
        y_hat = torch.from_numpy((symbols["y"] + means).astype(np.float32))
        return self.tiled_synthesis(lambda t: self.synthesis(t, c), y_hat)

    def estimate_bits(self, symbols, width=None):
        c = self.check_width(width)
        _, index = self.entropy_parameters(symbols["z"], c)
        return (self.z_entropy[self.widths.index(c)].estimate_bits(symbols["z"])
                + self.conditional.estimate_bits(symbols["y"], index))


class SlimCAEHyper(SlimHyperMixin, SlimCAE):
    r"""SlimCAE with a slimmable hyperprior (the README's unpublished variant, built the same way).

    ::

        x -> g_a -> y -> Q -> GC(mu, sigma) -> y_hat -> g_s -> x_hat
                     |               ^   ^
                     +-> h_a -> z -> Q -> EB_c -> z_hat -> h_s^sigma -> sigma
                                                      \-> h_s^mu    -> mu

        g_a, g_s: as SlimCAE
        h_a:  conv 3x3/1 c->c, ReLU; conv 5x5/2 c->c, ReLU; conv 5x5/2 c->c      (on y, or |y|
              for a scale-only model)
        h_s:  per branch tconv 5x5 x2 c->c, ReLU; tconv 5x5 x2 c->c, ReLU; tconv 3x3 x1 c->c
        GC:   Gaussian (default) or logistic mean-and-scale conditional, scale >= 0.11,
              64 log-spaced table scales 0.11..256 (shared by all widths)

    All hyper layers slim with the width, z has c channels with one factorized model per
    width. For coding, mu and sigma come from an integer-exact copy of h_s
    (:class:`~slimfast.slim.SlimHyperSynthesis`), so decoding is bit-exact across machines.
    ``means=False`` gives the scale-only hyperprior of Balle et al. 2018.
    """

    architecture = "slimcae-hyper"
    pad_multiple = 64
    encode_parts = ("g_a", "h_a", "h_s_scale", "h_s_mean")
    decode_parts = ("h_s_scale", "h_s_mean", "g_s")

    def __init__(self, C: int = 192, widths=DEFAULT_WIDTHS, gdn: str = "switchable", means: bool = True,
                 distribution: str = "gaussian"):
        super().__init__(C=C, widths=widths, gdn=gdn)
        del self.entropy
        self.means = bool(means)
        self.distribution = distribution
        C = self.C
        self.h_a = SlimSequential([
            SlimConv2d(C, C, 3), nn.ReLU(inplace=True),
            SlimConv2d(C, C, 5, stride=2), nn.ReLU(inplace=True),
            SlimConv2d(C, C, 5, stride=2),
        ])

        def branch():
            return SlimHyperSynthesis([
                SlimConvTranspose2d(C, C, 5, stride=2), nn.ReLU(inplace=True),
                SlimConvTranspose2d(C, C, 5, stride=2), nn.ReLU(inplace=True),
                SlimConvTranspose2d(C, C, 3, stride=1),
            ])

        self.h_s_scale = branch()
        self.h_s_mean = branch() if self.means else None
        self.z_entropy = nn.ModuleList(EntropyBottleneck(c) for c in self.widths)
        self.conditional = ConditionalEntropyModel(distribution)

    @property
    def config(self) -> dict:
        return {"C": self.C, "widths": list(self.widths), "gdn": self.gdn, "means": self.means,
                "distribution": self.distribution}

    def hyper_analysis(self, y: torch.Tensor, c: int) -> torch.Tensor:
        return self.h_a(y if self.means else torch.abs(y), (c, c, c))

    def hs_plan(self, c: int) -> tuple[int, ...]:
        return (c, c, c)

    def forward(self, x: torch.Tensor, width: int | None = None) -> dict:
        return self._hyper_forward(x, width)
