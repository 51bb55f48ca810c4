"""Slimmable FasiNet: FasiNet-L / FasiNet-H with SlimCAE-style widths.

At latent width ``w`` (of M = 192) every slimmed channel count scales by ``w / M``. Every
layer uses the leading block of its full-width weights, with one factorized entropy model
and one GDN per width. At full width each is exactly its FasiNet (the key maps below).
"""
from __future__ import annotations

from .fasinet import S4, S4H, S4W
from .grammar import IQR, Abs, Branch, Conv, ReLU, TConv, scaled
from .slimcae import DEFAULT_WIDTHS, Slimmable


class SlimFasiNetL(Slimmable):
    r"""Slimmable FasiNet-L (factorized prior).

    ::

        g_a: conv 9x9/4 3->n, GDN, conv 9x1/(4,1) n->n, GDN, conv 1x9/(1,4) n->w
        IQR: conv 7x1 w->w/4, ReLU, conv 1x7 w/4->w/2, ReLU, conv 1x1 w/2->w; y - 0.5 tanh(.)
        g_s: tconv 7x7 x4 w->n, IGDN, tconv 7x7 x4 n->3
        n = w * N / M (N = 96, M = 192: n = w / 2); one EntropyBottleneck(w) per width

    At full width it is FasiNet-L (1.34 M parameters, 4.1 / 5.4 kMAC/px encode / decode).
    """

    name = "slim-fasinet-l"
    pad_multiple = 16
    defaults = {"N": 96, "M": 192, "widths": DEFAULT_WIDTHS, "gdn": "switchable"}
    preferred_tconv = "subpixel"
    unslimmed = "fasinet-l"
    # slim key -> FasiNet-L key: the ISD is a nested Sequential there, and GDNs are not switchable.
    key_map = ((r"^g_a\.1\.gdns\.\d+\.", "g_a.1."), (r"^g_a\.2\.", "g_a.2.0."),
               (r"^g_a\.3\.gdns\.\d+\.", "g_a.2.1."), (r"^g_a\.4\.", "g_a.2.2."),
               (r"^g_s\.1\.gdns\.\d+\.", "g_s.1."), (r"^entropy\.\d+\.", "entropy_bottleneck."))

    def __init__(self, **config):
        super().__init__(**config)
        self.N, self.M = int(self.options["N"]), int(self.options["M"])

    def n(self, c):
        return scaled(c, self.M, self.N)

    def analysis(self, c):
        n = self.n(c)
        return [Conv("g_a.0", 3, n, (9, 9), S4), self.gdn("g_a.1", c, self.n),
                Conv("g_a.2", n, n, (9, 1), S4H), self.gdn("g_a.3", c, self.n), Conv("g_a.4", n, c, (1, 9), S4W)]

    def synthesis(self, c):
        n = self.n(c)
        return [IQR("iqr", c), TConv("g_s.0", c, n, (7, 7), S4), self.gdn("g_s.1", c, self.n, True),
                TConv("g_s.2", n, 3, (7, 7), S4)]


class SlimFasiNetH(Slimmable):
    r"""Slimmable FasiNet-H (hyperprior, mean-and-scale logistic conditional).

    ::

        g_a: conv 9x9/4 3->n1, GDN, conv 9x1/(4,1) n1->n2, GDN, conv 1x9/(1,4) n2->w, GDN
        h_a: conv 7x1/(4,1) w->w, ReLU, conv 1x7/(1,4) w->2w, ReLU, conv 2x2 2w->w
        h_s: two branches: tconv 7x1 x(4,1) w->w/2, ReLU, tconv 1x7 x(1,4) w/2->w, ReLU, conv 1x1 w->w
        IQR: as SlimFasiNetL;  g_s: tconv KxK x4 w->s, IGDN, tconv KxK x4 s->3
        n1, n2, s = w * (N1, N2, S) / M  (48, 96, 32 at M = 192)

    ``K`` and ``final_gdn`` are FasiNet-H's options. ``slim_hidden = False`` keeps the hidden
    channels of g_a and g_s (n1, n2, s) at their full counts at every width and slims only the
    latent, the IQR and the hyperprior: a departure from SlimCAE, which slims every layer. The
    narrow sub-networks of slim-fasinet-l are limited by their transforms
    (``benchmarks/ceiling.py``), and 32 synthesis channels at width 192 would be 8 at width 48.
    The hidden GDNs stay per width, so each width still shapes its own latent.
    """

    name = "slim-fasinet-h"
    pad_multiple = 64
    hyper = True
    defaults = {"N1": 48, "N2": 96, "M": 192, "S": 32, "widths": DEFAULT_WIDTHS, "gdn": "switchable",
                "distribution": "logistic", "K": 5, "final_gdn": True, "slim_hidden": True}
    unslimmed = "fasinet-h"
    # slim key -> FasiNet-H key (FasiNet-H nests its ISD, hyper-transforms and ISU branches).
    key_map = ((r"^g_a\.1\.gdns\.\d+\.", "g_a.1."), (r"^g_a\.2\.", "g_a.2.0."),
               (r"^g_a\.3\.gdns\.\d+\.", "g_a.2.1."), (r"^g_a\.4\.", "g_a.2.2."),
               (r"^g_a\.5\.gdns\.\d+\.", "g_a.3."),
               (r"^h_a\.0\.", "h_a.0.0."), (r"^h_a\.2\.", "h_a.0.2."), (r"^h_a\.5\.", "h_a.3."),
               (r"^(h_s_\w+)\.0\.", r"\1.isu.0."), (r"^(h_s_\w+)\.2\.", r"\1.isu.2."),
               (r"^(h_s_\w+)\.4\.", r"\1.out."),
               (r"^g_s\.1\.gdns\.\d+\.", "g_s.1."), (r"^z_entropy\.\d+\.", "entropy_bottleneck."))

    def __init__(self, **config):
        super().__init__(**config)
        o = self.options
        self.N1, self.N2, self.M, self.S, self.K = (int(o[k]) for k in ("N1", "N2", "M", "S", "K"))
        self.final_gdn, self.slim_hidden = bool(o["final_gdn"]), bool(o["slim_hidden"])
        self.distribution = o["distribution"]

    @property
    def config(self):
        config = {k: self.options[k] for k in ("N1", "N2", "M", "S")}
        config.update(widths=list(self.widths), gdn=self.gdn_kind, distribution=self.distribution)
        if (self.K, self.final_gdn, self.slim_hidden) != (5, True, True):  # older files keep their config
            config.update(K=self.K, final_gdn=self.final_gdn, slim_hidden=self.slim_hidden)
        return config

    def tconv_for(self, c):
        return "subpixel" if self.K > 5 else "convtranspose"  # as FasiNet-H

    def hidden(self, channels):
        """Hidden channels of g_a / g_s at width ``c``, as a function of ``c``."""
        return (lambda c: scaled(c, self.M, channels)) if self.slim_hidden else (lambda c: channels)

    def analysis(self, c):
        n1, n2 = self.hidden(self.N1), self.hidden(self.N2)
        return [Conv("g_a.0", 3, n1(c), (9, 9), S4), self.gdn("g_a.1", c, n1),
                Conv("g_a.2", n1(c), n2(c), (9, 1), S4H), self.gdn("g_a.3", c, n2),
                Conv("g_a.4", n2(c), c, (1, 9), S4W),
                *([self.gdn("g_a.5", c, lambda w: w)] if self.final_gdn else [])]

    def hyper_analysis(self, c):
        return [Abs(), Conv("h_a.0", c, c, (7, 1), S4H), ReLU(), Conv("h_a.2", c, 2 * c, (1, 7), S4W), ReLU(),
                Conv("h_a.5", 2 * c, c, (2, 2), pads=(0, 0, 1, 1))]

    def hyper_synthesis(self, c):
        def branch(key):
            return Branch(key, (TConv(f"{key}.0", c, c // 2, (7, 1), S4H), ReLU(),
                                TConv(f"{key}.2", c // 2, c, (1, 7), S4W), ReLU(), Conv(f"{key}.4", c, c, (1, 1))))

        return branch("h_s_scale"), branch("h_s_mean")

    def synthesis(self, c):
        s = self.hidden(self.S)
        return [IQR("iqr", c), TConv("g_s.0", c, s(c), (self.K, self.K), S4), self.gdn("g_s.1", c, s, True),
                TConv("g_s.2", s(c), 3, (self.K, self.K), S4)]
