"""FasiNet (Zheng et al., ACM MM 2021): real-time neural image compression on CPU.

Both models share the ISD encoder (independent separable down-sampling: a ``k x 1`` stride
(4, 1) convolution, an activation, a ``1 x k`` stride (1, 4) one), a deliberately light
transposed-convolution decoder and the decoder-side IQR. Shapes: ``docs/architecture.md``.
"""
from __future__ import annotations

import math

from .grammar import GDN, IQR, Abs, Architecture, Branch, Conv, ReLU, TConv

S4, S4H, S4W = (4, 4), (4, 1), (1, 4)


class FasiNetL(Architecture):
    r"""FasiNet-L: factorized prior.

    ::

        x -> g_a -> y -> Q -> EB -> y_hat -> IQR -> g_s -> x_hat

        g_a: conv 9x9/4 3->N, GDN, ISD[9x1/(4,1) N->N, GDN, 1x9/(1,4) N->M]
        Q:   round(y - median) + median, per-channel factorized density (EntropyBottleneck)
        IQR: y_hat - 0.5 tanh(conv1x1(relu(conv1x7(relu(conv7x1(y_hat))))))
        g_s: tconv 7x7 x4 M->N, IGDN, tconv 7x7 x4 N->3

    N = 96, M = 192: about 1.34 M parameters, 4.1 kMAC/px to encode, 5.4 kMAC/px to decode.
    """

    name = "fasinet-l"
    pad_multiple = 16
    defaults = {"N": 96, "M": 192}
    # Sub-pixel wins for the 7x7 kernels (12% on fasinet-l-mse-q4's synthesis, 1 thread).
    preferred_tconv = "subpixel"

    def __init__(self, **config):
        super().__init__(**config)
        self.N, self.M = int(self.options["N"]), int(self.options["M"])
        self.latent_channels = self.M

    def analysis(self, c):
        N, M = self.N, self.M
        return [Conv("g_a.0", 3, N, (9, 9), S4), GDN("g_a.1", N),
                Conv("g_a.2.0", N, N, (9, 1), S4H), GDN("g_a.2.1", N), Conv("g_a.2.2", N, M, (1, 9), S4W)]

    def synthesis(self, c):
        N, M = self.N, self.M
        return [IQR("iqr", M), TConv("g_s.0", M, N, (7, 7), S4), GDN("g_s.1", N, inverse=True),
                TConv("g_s.2", N, 3, (7, 7), S4)]


class FasiNetH(Architecture):
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
      28.3 dB in 1,000 steps with K = 7 against 23.0 dB with K = 5 (``benchmarks/synthesis_probe.py``).
    * ``final_gdn = False`` drops the GDN after the last analysis layer. With ``N1 = N2 = 96``
      the analysis is then exactly FasiNet-L's, so it warm-starts from trained FasiNet-L weights.
    """

    name = "fasinet-h"
    pad_multiple = 64
    hyper = True
    defaults = {"N1": 48, "N2": 96, "M": 192, "S": 32, "distribution": "logistic", "K": 5, "final_gdn": True,
                "hs_steps": None}

    def __init__(self, **config):
        super().__init__(**config)
        o = self.options
        self.N1, self.N2, self.M, self.S, self.K = (int(o[k]) for k in ("N1", "N2", "M", "S", "K"))
        self.final_gdn = bool(o["final_gdn"])
        self.distribution = o["distribution"]
        self.latent_channels = self.M
        self.hs_steps = _check_hs_steps(o["hs_steps"])

    @property
    def config(self):
        config = {k: self.options[k] for k in ("N1", "N2", "M", "S", "distribution")}
        if (self.K, self.final_gdn) != (5, True):  # the paper's model keeps its original config
            config.update(K=self.K, final_gdn=self.final_gdn)
        if self.hs_steps is not None:
            config.update(hs_steps=self.hs_steps)
        return config

    def tconv_for(self, c):
        # Sub-pixel pays off once the kernels overlap (K = 7), as in FasiNet-L; the 5x5 phases are sparse.
        return "subpixel" if self.K > 5 else "convtranspose"

    def analysis(self, c):
        N1, N2, M = self.N1, self.N2, self.M
        return [Conv("g_a.0", 3, N1, (9, 9), S4), GDN("g_a.1", N1),
                Conv("g_a.2.0", N1, N2, (9, 1), S4H), GDN("g_a.2.1", N2), Conv("g_a.2.2", N2, M, (1, 9), S4W),
                *([GDN("g_a.3", M)] if self.final_gdn else [])]

    def hyper_analysis(self, c):
        M = self.M
        return [Abs(), Conv("h_a.0.0", M, M, (7, 1), S4H), ReLU(), Conv("h_a.0.2", M, 2 * M, (1, 7), S4W), ReLU(),
                Conv("h_a.3", 2 * M, M, (2, 2), pads=(0, 0, 1, 1))]

    def hyper_synthesis(self, c):
        def branch(key):
            M = self.M
            return Branch(key, (TConv(f"{key}.isu.0", M, M // 2, (7, 1), S4H), ReLU(),
                                TConv(f"{key}.isu.2", M // 2, M, (1, 7), S4W), ReLU(),
                                Conv(f"{key}.out", M, M, (1, 1))))

        return branch("h_s_scale"), branch("h_s_mean")

    def synthesis(self, c):
        M, S, K = self.M, self.S, self.K
        return [IQR("iqr", M), TConv("g_s.0", M, S, (K, K), S4), GDN("g_s.1", S, inverse=True),
                TConv("g_s.2", S, 3, (K, K), S4)]


def _check_hs_steps(steps):
    """``hs_steps``: the 8-bit hyper-synthesis option (:mod:`slimfast.coding.hyper`), per branch key
    the activation step entering each of its three convolutions; ``None``: the 12-bit copy."""
    if steps is None:
        return None
    keys = {"h_s_scale", "h_s_mean"}
    if not isinstance(steps, dict) or set(steps) != keys or any(
            not isinstance(v, list) or len(v) != 3 or not all(isinstance(x, (int, float)) and x > 0 for x in v)
            for v in steps.values()):
        raise TypeError("hs_steps: {'h_s_scale': [3 positive steps], 'h_s_mean': [3 positive steps]}")
    if any(math.log2(v[0]) != round(math.log2(v[0])) for v in steps.values()):
        raise TypeError("hs_steps: each branch's input step is a power of two (z_hat / step is then exact)")
    return {k: [float(x) for x in steps[k]] for k in sorted(keys)}
