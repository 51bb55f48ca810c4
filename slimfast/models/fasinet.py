"""FasiNet (Zheng et al., ACM MM 2021): real-time neural image compression on CPU.

Both models share the ISD encoder (:class:`~slimfast.layers.ISD`), a deliberately light
transposed-convolution decoder, and the decoder-side :class:`~slimfast.layers.IQR`.
Layer-by-layer shapes are in ``docs/architecture.md``.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

from .. import intmath
from ..entropy import ConditionalEntropyModel, EntropyBottleneck
from ..layers import GDN, IQR, ISD, ISU, IntegerCopyMixin, conv, tconv
from .base import CompressionModel


class FasiNetL(CompressionModel):
    r"""FasiNet-L: factorized prior.

    ::

        x -> g_a -> y -> Q -> EB -> y_hat -> IQR -> g_s -> x_hat

        g_a: conv 9x9/4 3->N, GDN, ISD[9x1/(4,1) N->N, GDN, 1x9/(1,4) N->M]
        Q:   round(y - median) + median, per-channel factorized density (EntropyBottleneck)
        IQR: y_hat - 0.5 tanh(conv1x1(relu(conv1x7(relu(conv7x1(y_hat))))))
        g_s: tconv 7x7 x4 M->N, IGDN, tconv 7x7 x4 N->3

    N = 96, M = 192: about 1.34 M parameters, 4.1 kMAC/px to encode, 5.4 kMAC/px to decode.
    """

    architecture = "fasinet-l"
    pad_multiple = 16

    def __init__(self, N: int = 96, M: int = 192):
        super().__init__()
        self.N, self.M = int(N), int(M)
        self.latent_channels = self.M
        self.g_a = nn.Sequential(
            conv(3, N, 9, stride=4), GDN(N),
            ISD(N, M, k=9, mid=N, act=GDN(N)),
        )
        self.iqr = IQR(M)
        self.g_s = nn.Sequential(
            tconv(M, N, 7, stride=4), GDN(N, inverse=True),
            tconv(N, 3, 7, stride=4),
        )
        self.entropy_bottleneck = EntropyBottleneck(M)

    @property
    def config(self) -> dict:
        return {"N": self.N, "M": self.M}

    def forward(self, x: torch.Tensor) -> dict:
        y = self.g_a(x)
        y_hat, y_lik = self.entropy_bottleneck(y)
        x_hat = self.g_s(self.iqr(y_hat))
        return {"x_hat": x_hat, "likelihoods": {"y": y_lik}}

    def encode_symbols(self, x, width=None):
        return {"y": self.entropy_bottleneck.quantize(self.tiled_analysis(self.g_a, x))}

    def encode_strings(self, symbols, width=None):
        return [self.entropy_bottleneck.compress(symbols["y"])]

    def decode_symbols(self, strings, shape, width=None):
        if len(strings) != 1:
            raise ValueError("FasiNet-L expects one string")
        return {"y": self.entropy_bottleneck.decompress(strings[0], (1, self.M, *shape))}

    def synthesize(self, symbols, width=None):
        y_hat = self.entropy_bottleneck.dequantize(symbols["y"])
        return self.tiled_synthesis(lambda t: self.g_s(self.iqr(t)), y_hat)

    def estimate_bits(self, symbols, width=None):
        return self.entropy_bottleneck.estimate_bits(symbols["y"])


class HyperAnalysis(nn.Sequential):
    """h_a on |y|: ISD[7x1/(4,1) M->M, ReLU, 1x7/(1,4) M->2M], ReLU, conv 2x2/1 2M->M."""

    def __init__(self, M: int):
        super().__init__(
            ISD(M, 2 * M, k=7, mid=M),
            nn.ReLU(inplace=True),
            nn.ZeroPad2d((0, 1, 0, 1)),  # "same" size for an even kernel
            nn.Conv2d(2 * M, M, 2),
        )


class HyperSynthesis(IntegerCopyMixin, nn.Module):
    """One h_s branch: ISU[7x1 x(4,1) M->M/2, ReLU, 1x7 x(1,4) M/2->M], ReLU, conv 1x1 M->M.

    Besides the float path for training, it owns an integer-exact copy
    (:mod:`slimfast.intmath`), frozen by :meth:`freeze_integer`, that coding uses so that the
    entropy parameters are bit-identical on every machine and backend.
    """

    def __init__(self, M: int):
        super().__init__()
        self.isu = ISU(M, M, k=7, mid=M // 2)
        self.out = conv(M, M, 1)
        self._register_integer_buffers(3)

    def forward(self, z_hat: torch.Tensor) -> torch.Tensor:
        return self.out(F.relu(self.isu(z_hat)))

    def _layers(self):
        return [self.isu[0], self.isu[2], self.out]

    integer_layers = _layers

    def freeze_integer(self) -> None:
        self._freeze_layers(self._layers())

    def forward_integer(self, a: np.ndarray) -> np.ndarray:
        """Fixed-point ``[M, h, w]`` in, fixed-point ``[M, 4h, 4w]`` out (see intmath)."""
        if not self.frozen:
            raise RuntimeError("HyperSynthesis: call update() before coding")
        p = [self.integer_params(i) for i in range(3)]
        layers = self._layers()
        a = intmath.relu(intmath.conv_transpose(a, *p[0], layers[0].stride, layers[0].padding, layers[0].output_padding))
        a = intmath.relu(intmath.conv_transpose(a, *p[1], layers[1].stride, layers[1].padding, layers[1].output_padding))
        return intmath.conv1x1(a, *p[2])


class FasiNetH(CompressionModel):
    r"""FasiNet-H: hyperprior with a mean-and-scale logistic conditional.

    ::

        x -> g_a -> y -> Q -> GC(mu, sigma) -> y_hat -> IQR -> g_s -> x_hat
                     |                 ^   ^
                   |.| -> h_a -> z -> Q -> EB -> z_hat -> h_s^sigma -> sigma
                                                     \-> h_s^mu    -> mu

        g_a:  conv 9x9/4 3->N1, GDN, ISD[9x1/(4,1) N1->N2, GDN, 1x9/(1,4) N2->M], GDN
        h_a:  ISD[7x1/(4,1) M->M, ReLU, 1x7/(1,4) M->2M], ReLU, conv 2x2 2M->M
        h_s:  two branches ISU[7x1 x(4,1) M->M/2, ReLU, 1x7 x(1,4) M/2->M], ReLU, conv 1x1 M->M
        GC:   logistic(mu, sigma), sigma >= 0.11, coded with 64 log-spaced scales 0.11..256
        g_s:  tconv KxK x4 M->S, IGDN, tconv KxK x4 S->3

    N1 = 48, N2 = 96, M = 192, S = 32, K = 5 (the paper's): about 2.2 M parameters,
    1.9 kMAC/px to decode. For coding, mu and sigma come from the integer-exact copy of h_s.

    Two options depart from the paper, for PSNR:

    * ``K = 7``: with 5x5 kernels at stride 4 the synthesis barely overlaps neighbouring
      latents (one output row and column in four), so each 16x16 block is drawn almost alone.
      Behind FasiNet-L's trained analysis, a 32-channel synthesis learned from scratch reached
      28.3 dB in 1,000 steps with K = 7 against 23.0 dB with K = 5; 96 channels do not rescue
      K = 5 (23.6 dB). No rate term; ``benchmarks/synthesis_probe.py``. K = 7 costs 0.7 kMAC/px
      more to decode.
    * ``final_gdn = False`` drops the GDN after the last analysis layer. With ``N1 = N2 = 96``
      the analysis is then exactly FasiNet-L's, so :meth:`load_unslimmed` can warm-start it
      (and IQR) from trained FasiNet-L weights.
    """

    architecture = "fasinet-h"
    pad_multiple = 64
    shape_key = "z"
    num_strings = 2

    def __init__(self, N1: int = 48, N2: int = 96, M: int = 192, S: int = 32, distribution: str = "logistic",
                 K: int = 5, final_gdn: bool = True):
        super().__init__()
        self.N1, self.N2, self.M, self.S, self.K = int(N1), int(N2), int(M), int(S), int(K)
        self.distribution = distribution
        self.final_gdn = bool(final_gdn)
        self.latent_channels = self.M
        self.g_a = nn.Sequential(
            conv(3, N1, 9, stride=4), GDN(N1),
            ISD(N1, M, k=9, mid=N2, act=GDN(N2)), *([GDN(M)] if self.final_gdn else []),
        )
        self.h_a = HyperAnalysis(M)
        self.h_s_scale = HyperSynthesis(M)
        self.h_s_mean = HyperSynthesis(M)
        self.iqr = IQR(M)
        self.g_s = nn.Sequential(
            tconv(M, S, self.K, stride=4), GDN(S, inverse=True),
            tconv(S, 3, self.K, stride=4),
        )
        self.entropy_bottleneck = EntropyBottleneck(M)
        self.conditional = ConditionalEntropyModel(distribution)

    @property
    def config(self) -> dict:
        config = {"N1": self.N1, "N2": self.N2, "M": self.M, "S": self.S, "distribution": self.distribution}
        if (self.K, self.final_gdn) != (5, True):  # the paper's model keeps its original config
            config.update(K=self.K, final_gdn=self.final_gdn)
        return config

    def load_unslimmed(self, state: dict[str, torch.Tensor], architecture: str) -> None:
        """Warm start the analysis and IQR from trained FasiNet-L weights.

        Needs ``N1 = N2 = N``, the same M and ``final_gdn = False``, so that g_a is FasiNet-L's
        layer for layer. Also takes g_s where its shape matches (``S = N``, ``K = 7``). The
        hyperprior and the entropy models start fresh.
        """
        if architecture != "fasinet-l":
            raise ValueError(f"fasinet-h warm-starts from fasinet-l weights, not {architecture}")
        own = self.state_dict()
        taken = 0
        for key, value in state.items():
            part = key.split(".", 1)[0]
            if part not in ("g_a", "iqr", "g_s"):
                continue
            target = own.get(key)
            if target is None or target.shape != value.shape:
                if part == "g_s":
                    continue
                raise ValueError(f"fasinet-l's {key} {tuple(value.shape)} does not fit this FasiNet-H "
                                 "(warm start needs N1 = N2 = N, the same M and final_gdn = False)")
            with torch.no_grad():
                target.copy_(value.to(target.dtype))
            taken += 1
        if any(k.startswith("g_a.") and k not in state for k in own):
            raise ValueError("this FasiNet-H's analysis has layers FasiNet-L lacks (final_gdn must be False)")
        if not taken:
            raise ValueError("no FasiNet-L tensor fits this FasiNet-H")

    def forward(self, x: torch.Tensor) -> dict:
        y = self.g_a(x)
        z = self.h_a(torch.abs(y))
        z_hat, z_lik = self.entropy_bottleneck(z)
        h, w = y.shape[2:]
        scales = self.h_s_scale(z_hat)[..., :h, :w]
        means = self.h_s_mean(z_hat)[..., :h, :w]
        y_hat, y_lik = self.conditional(y, scales, means)
        x_hat = self.g_s(self.iqr(y_hat))
        return {"x_hat": x_hat, "likelihoods": {"y": y_lik, "z": z_lik}}

    @torch.no_grad()
    def update(self) -> None:
        super().update()
        self._ep_cache = None
        self.h_s_scale.freeze_integer()
        self.h_s_mean.freeze_integer()

    def entropy_parameters(self, z_symbols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Exact (means, scale indices) for y, ``[1, M, 4h, 4w]``, from z's symbols.

        Remembers the last result: decoding needs it twice (symbols, then synthesis).
        """
        key = (z_symbols.shape, z_symbols.tobytes())
        cached = getattr(self, "_ep_cache", None)
        if cached is not None and cached[0] == key:
            return cached[1]
        result = self._entropy_parameters(z_symbols)
        self._ep_cache = (key, result)
        return result

    def _entropy_parameters(self, z_symbols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        eb = self.entropy_bottleneck
        med = eb._medians.double().numpy().reshape(1, -1, 1, 1)
        a = intmath.to_fixed(z_symbols[0].astype(np.float64) + med[0])
        scale_fx = self.h_s_scale.forward_integer(a)
        mean_fx = self.h_s_mean.forward_integer(a)
        means = intmath.from_fixed(mean_fx)[None]
        index = self.conditional.scale_index(intmath.from_fixed(scale_fx))[None]
        return means, index

    def encode_symbols(self, x, width=None):
        y = self.tiled_analysis(self.g_a, x)
        z = self.h_a(torch.abs(y))
        z_sym = self.entropy_bottleneck.quantize(z)
        means, _ = self.entropy_parameters(z_sym)
        y_sym = intmath.round_residual(y.detach().cpu().numpy(), means)
        return {"z": z_sym, "y": y_sym}

    def encode_strings(self, symbols, width=None):
        _, index = self.entropy_parameters(symbols["z"])
        return [self.entropy_bottleneck.compress(symbols["z"]), self.conditional.compress(symbols["y"], index)]

    def decode_symbols(self, strings, shape, width=None):
        if len(strings) != 2:
            raise ValueError("FasiNet-H expects two strings")
        z_sym = self.entropy_bottleneck.decompress(strings[0], (1, self.M, *shape))
        _, index = self.entropy_parameters(z_sym)
        y_sym = self.conditional.decompress(strings[1], index)
        return {"z": z_sym, "y": y_sym}

    def synthesize(self, symbols, width=None):
        means, _ = self.entropy_parameters(symbols["z"])
        y_hat = torch.from_numpy((symbols["y"] + means).astype(np.float32))
        return self.tiled_synthesis(lambda t: self.g_s(self.iqr(t)), y_hat)

    def estimate_bits(self, symbols, width=None):
        _, index = self.entropy_parameters(symbols["z"])
        return (self.entropy_bottleneck.estimate_bits(symbols["z"])
                + self.conditional.estimate_bits(symbols["y"], index))
