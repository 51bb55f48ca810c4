"""SlimCAE (Yang et al., CVPR 2021): one slimmable compressive autoencoder, several widths.

Each width ``c`` runs the leading ``c`` channels of every layer and codes a latent of ``c``
channels with its own factorized entropy model, so one set of weights gives several rates and
several complexities. Layer shapes follow the paper (Balle et al. 2017's CAE at C = 192).
"""
from __future__ import annotations

from .grammar import GDN, Abs, Architecture, Branch, Conv, ReLU, TConv, check_widths

DEFAULT_WIDTHS = (192, 144, 96, 72, 48)
GDN_KINDS = ("switchable", "slim+")
S2, S4 = (2, 2), (4, 4)


class Slimmable(Architecture):
    """Width rules shared by the slimmable architectures: ``widths`` (widest first, the widest
    equal to the latent channels), one factorized entropy model per width, per-width GDNs."""

    latent_key = "M"

    def __init__(self, **config):
        super().__init__(**config)
        self.latent_channels = int(self.options[self.latent_key])
        self.widths = check_widths(self.options["widths"], self.latent_channels)
        self.gdn_kind = self.options["gdn"]
        if self.gdn_kind not in GDN_KINDS:
            raise ValueError(f"unknown gdn kind {self.gdn_kind!r}; choose one of {', '.join(GDN_KINDS)}")

    @property
    def config(self):
        return {**self.options, "widths": list(self.widths)}

    def gdn(self, key: str, c: int, channels, inverse: bool = False) -> GDN:
        """The width-``c`` member of a per-width GDN whose channel count at width ``w`` is ``channels(w)``."""
        return GDN(key, channels(c), inverse, self.gdn_kind, self.width_index(c), tuple(channels(w) for w in self.widths))

    def entropy_key(self, c):
        return f"{'z_entropy' if self.hyper else 'entropy'}.{self.width_index(c)}"

    def entropy_models(self):
        return [(self.entropy_key(w), w) for w in self.widths]


class SlimCAE(Slimmable):
    r"""SlimCAE with a factorized prior per width.

    ::

        x -> g_a -> y -> Q -> EB_c -> y_hat -> g_s -> x_hat          (c = the chosen width)

        g_a: conv 9x9/4 3->c, GDN; conv 5x5/2 c->c, GDN; conv 5x5/2 c->c (no bias), GDN
        g_s: IGDN; tconv 5x5 x2 c->c; IGDN; tconv 5x5 x2 c->c; IGDN; tconv 9x9 x4 c->3
        EB_c: factorized density over the c latent channels, one per width

    ``gdn="switchable"`` gives every width its own GDN/IGDN (the released code),
    ``gdn="slim+"`` shares one with four scalars per width (SlimGDN+).
    """

    name = "slimcae"
    pad_multiple = 16
    latent_key = "C"
    defaults = {"C": 192, "widths": DEFAULT_WIDTHS, "gdn": "switchable"}
    parts = ("g_a", "g_s", "h_a", "h_s_scale", "h_s_mean")
    # Sub-pixel at every width: 18-34% faster at widths 96-192, and ahead or level at 72 and 48
    # in whole decodes on an AVX2 machine (RESULTS.md's runs).
    preferred_tconv = "subpixel"

    def analysis(self, c):
        def same(w):
            return w

        return [Conv("g_a.0", 3, c, (9, 9), S4), self.gdn("g_a.1", c, same),
                Conv("g_a.2", c, c, (5, 5), S2), self.gdn("g_a.3", c, same),
                Conv("g_a.4", c, c, (5, 5), S2, bias=False), self.gdn("g_a.5", c, same)]

    def synthesis(self, c):
        def same(w):
            return w

        return [self.gdn("g_s.0", c, same, True), TConv("g_s.1", c, c, (5, 5), S2),
                self.gdn("g_s.2", c, same, True), TConv("g_s.3", c, c, (5, 5), S2),
                self.gdn("g_s.4", c, same, True), TConv("g_s.5", c, 3, (9, 9), S4)]


class SlimCAEHyper(SlimCAE):
    r"""SlimCAE with a slimmable hyperprior (the README's unpublished variant, built the same way).

    ::

        x -> g_a -> y -> Q -> GC(mu, sigma) -> y_hat -> g_s -> x_hat
                     |               ^   ^
                     +-> h_a -> z -> Q -> EB_c -> z_hat -> h_s^sigma -> sigma
                                                      \-> h_s^mu    -> mu

        g_a, g_s: as SlimCAE
        h_a:  conv 3x3/1 c->c, ReLU; conv 5x5/2 c->c, ReLU; conv 5x5/2 c->c   (on |y| when scale-only)
        h_s:  per branch tconv 5x5 x2 c->c, ReLU; tconv 5x5 x2 c->c, ReLU; tconv 3x3 x1 c->c
        GC:   Gaussian (default) or logistic mean-and-scale conditional

    ``means=False`` gives the scale-only hyperprior of Balle et al. 2018.
    """

    name = "slimcae-hyper"
    pad_multiple = 64
    hyper = True
    defaults = {**SlimCAE.defaults, "means": True, "distribution": "gaussian"}

    def __init__(self, **config):
        super().__init__(**config)
        self.means = bool(self.options["means"])
        self.distribution = self.options["distribution"]

    def hyper_analysis(self, c):
        return [*([] if self.means else [Abs()]), Conv("h_a.0", c, c, (3, 3)), ReLU(),
                Conv("h_a.2", c, c, (5, 5), S2), ReLU(), Conv("h_a.4", c, c, (5, 5), S2)]

    def hyper_synthesis(self, c):
        def branch(key):
            return Branch(key, (TConv(f"{key}.0", c, c, (5, 5), S2), ReLU(), TConv(f"{key}.2", c, c, (5, 5), S2),
                                ReLU(), TConv(f"{key}.4", c, c, (3, 3))))

        return branch("h_s_scale"), branch("h_s_mean") if self.means else None
