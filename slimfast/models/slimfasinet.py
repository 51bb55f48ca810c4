"""Slimmable FasiNet: FasiNet-L / FasiNet-H (``design/fasinet.md``) with SlimCAE-style widths.

At latent width ``w`` (of M = 192) every internal channel count scales by ``w / M``: FasiNet-L's
N = 96 becomes ``w / 2``, the IQR's 48 and 96 become ``w / 4`` and ``w / 2``, FasiNet-H's
N1 = 48, N2 = 96, S = 32 become ``w / 4``, ``w / 2``, ``w / 6`` and its hyper-transforms
slim in step. Every layer uses the leading block of its full-width weights
(:mod:`slimfast.slim`), one factorized entropy model per width.
"""
from __future__ import annotations

import re

import torch
from torch import nn

from ..entropy import ConditionalEntropyModel, EntropyBottleneck
from ..slim import (SlimConv2d, SlimConvTranspose2d, SlimHyperSynthesis, SlimIQR, SlimSequential,
                    check_widths, make_gdn, scaled)
from .base import CompressionModel
from .slimcae import DEFAULT_WIDTHS, SlimCAE, SlimHyperMixin


def _load_leading_blocks(model: nn.Module, state: dict[str, torch.Tensor], renames, source: str,
                         hint: str = "") -> None:
    """Fill every tensor of ``model`` with the leading block of its counterpart in ``state``.

    ``renames`` maps a slim key to the source architecture's key (regex, replacement). Kernel
    sizes must match exactly; frozen coding tables and integer copies are skipped, since
    ``update()`` rebuilds them.
    """
    for key, target in model.state_dict().items():
        name = key.rsplit(".", 1)[-1]
        if name in ("freqs", "lengths", "offsets", "_medians") or name.startswith("int_"):
            continue
        src = key
        for pattern, repl in renames:
            src = re.sub(pattern, repl, src)
        if src not in state:
            raise ValueError(f"{source} weights lack {src} (for {key}){hint}")
        value = state[src]
        if (value.dim() != target.dim() or any(a > b for a, b in zip(target.shape, value.shape))
                or (target.dim() == 4 and target.shape[2:] != value.shape[2:])):
            raise ValueError(f"{src} has shape {tuple(value.shape)}, cannot fill {key} {tuple(target.shape)}")
        with torch.no_grad():
            target.copy_(value[tuple(slice(0, n) for n in target.shape)].to(target.dtype))


class SlimFasiNetL(SlimCAE):
    r"""Slimmable FasiNet-L (factorized prior).

    ::

        g_a: conv 9x9/4 3->n, GDN, conv 9x1/(4,1) n->n, GDN, conv 1x9/(1,4) n->w
        IQR: conv 7x1 w->w/4, ReLU, conv 1x7 w/4->w/2, ReLU, conv 1x1 w/2->w; y - 0.5 tanh(.)
        g_s: tconv 7x7 x4 w->n, IGDN, tconv 7x7 x4 n->3
        n = w * N / M (N = 96, M = 192: n = w / 2); one EntropyBottleneck(w) per width

    At full width it is FasiNet-L (1.34 M parameters, 4.1 / 5.4 kMAC/px encode / decode).
    """

    architecture = "slim-fasinet-l"
    pad_multiple = 16
    encode_parts = ("g_a",)
    decode_parts = ("iqr", "g_s")

    def __init__(self, N: int = 96, M: int = 192, widths=DEFAULT_WIDTHS, gdn: str = "switchable"):
        CompressionModel.__init__(self)
        self.N, self.M = int(N), int(M)
        self.C = self.latent_channels = self.M
        self.widths = check_widths(widths, self.M)
        self.gdn = gdn
        N, M = self.N, self.M
        ns = tuple(scaled(w, M, N) for w in self.widths)
        self.g_a = SlimSequential([
            SlimConv2d(3, N, 9, stride=4), make_gdn(gdn, ns),
            SlimConv2d(N, N, (9, 1), stride=(4, 1)), make_gdn(gdn, ns),
            SlimConv2d(N, M, (1, 9), stride=(1, 4)),
        ])
        self.iqr = SlimIQR(M)
        self.g_s = SlimSequential([
            SlimConvTranspose2d(M, N, 7, stride=4), make_gdn(gdn, ns, inverse=True),
            SlimConvTranspose2d(N, 3, 7, stride=4),
        ])
        self.entropy = nn.ModuleList(EntropyBottleneck(w) for w in self.widths)

    @property
    def config(self) -> dict:
        return {"N": self.N, "M": self.M, "widths": list(self.widths), "gdn": self.gdn}

    # slim key -> FasiNet-L key: the ISD is a nested Sequential there, and GDNs are not switchable.
    _FROM_FASINET = ((r"^g_a\.1\.gdns\.\d+\.", "g_a.1."), (r"^g_a\.2\.", "g_a.2.0."),
                     (r"^g_a\.3\.gdns\.\d+\.", "g_a.2.1."), (r"^g_a\.4\.", "g_a.2.2."),
                     (r"^g_s\.1\.gdns\.\d+\.", "g_s.1."), (r"^entropy\.\d+\.", "entropy_bottleneck."))

    def load_unslimmed(self, state: dict[str, torch.Tensor], architecture: str) -> None:
        """Warm start every width from trained FasiNet-L weights (this model's N, M at most FasiNet-L's).

        Each tensor takes the leading block of its FasiNet-L counterpart, which is exactly what
        the widest sub-network uses, so at full width the model starts as that FasiNet-L. The
        entropy models' frozen tables are not copied: training refreshes them with ``update()``.
        """
        if architecture != "fasinet-l":
            raise ValueError(f"slim-fasinet-l warm-starts from fasinet-l weights, not {architecture}")
        _load_leading_blocks(self, state, self._FROM_FASINET, "fasinet-l")

    def analysis(self, x: torch.Tensor, c: int) -> torch.Tensor:
        n = scaled(c, self.M, self.N)
        return self.g_a(x, (n, n, c))

    def synthesis(self, y_hat: torch.Tensor, c: int) -> torch.Tensor:
        return self.g_s(self.iqr(y_hat), (scaled(c, self.M, self.N), None))


class SlimFasiNetH(SlimHyperMixin, SlimCAE):
    r"""Slimmable FasiNet-H (hyperprior, mean-and-scale logistic conditional).

    ::

        g_a: conv 9x9/4 3->n1, GDN, conv 9x1/(4,1) n1->n2, GDN, conv 1x9/(1,4) n2->w, GDN
        h_a: conv 7x1/(4,1) w->w, ReLU, conv 1x7/(1,4) w->2w, ReLU, conv 2x2 2w->w
        h_s: two branches: tconv 7x1 x(4,1) w->w/2, ReLU, tconv 1x7 x(1,4) w/2->w, ReLU, conv 1x1 w->w
        IQR: as SlimFasiNetL;  g_s: tconv KxK x4 w->s, IGDN, tconv KxK x4 s->3
        n1, n2, s = w * (N1, N2, S) / M  (48, 96, 32 at M = 192)

    At full width it is FasiNet-H (about 2.2 M parameters). Entropy parameters for coding come
    from the integer-exact hyper-synthesis, bit-exact across machines.

    ``K`` and ``final_gdn`` are :class:`~slimfast.models.fasinet.FasiNetH`'s options (fasinet-h-mse
    version 3 uses ``K = 7``, ``final_gdn = False``, ``N1 = N2 = 96``). ``slim_hidden = False``
    keeps the hidden channels of g_a and g_s (n1, n2, s) at their full counts at every width and
    slims only the latent, the IQR and the hyperprior: a departure from SlimCAE, which slims every
    layer. Why: the narrow sub-networks of slim-fasinet-l are limited by their transforms
    (``benchmarks/ceiling.py``), and 32 synthesis channels at width 192 would be 8 at width 48.
    The hidden GDNs stay switchable, one per width, so each width still shapes its own latent.
    Decoding still gets cheaper as the width narrows (g_s's first layer, the IQR, the hyperprior
    and the entropy coding all scale with w); encoding much less so.
    """

    architecture = "slim-fasinet-h"
    pad_multiple = 64
    encode_parts = ("g_a", "h_a", "h_s_scale", "h_s_mean")
    decode_parts = ("h_s_scale", "h_s_mean", "iqr", "g_s")

    def __init__(self, N1: int = 48, N2: int = 96, M: int = 192, S: int = 32, widths=DEFAULT_WIDTHS,
                 gdn: str = "switchable", distribution: str = "logistic", K: int = 5, final_gdn: bool = True,
                 slim_hidden: bool = True):
        CompressionModel.__init__(self)
        self.N1, self.N2, self.M, self.S, self.K = int(N1), int(N2), int(M), int(S), int(K)
        self.C = self.latent_channels = self.M
        self.widths = check_widths(widths, self.M)
        self.gdn = gdn
        self.distribution = distribution
        self.final_gdn, self.slim_hidden = bool(final_gdn), bool(slim_hidden)
        self.means = True
        N1, N2, M, S, W = self.N1, self.N2, self.M, self.S, self.widths
        self.g_a = SlimSequential([
            SlimConv2d(3, N1, 9, stride=4), make_gdn(gdn, [self.hidden(w, N1) for w in W]),
            SlimConv2d(N1, N2, (9, 1), stride=(4, 1)), make_gdn(gdn, [self.hidden(w, N2) for w in W]),
            SlimConv2d(N2, M, (1, 9), stride=(1, 4)), *([make_gdn(gdn, W)] if self.final_gdn else []),
        ])
        self.h_a = SlimSequential([
            SlimConv2d(M, M, (7, 1), stride=(4, 1)), nn.ReLU(inplace=True),
            SlimConv2d(M, 2 * M, (1, 7), stride=(1, 4)), nn.ReLU(inplace=True),
            nn.ZeroPad2d((0, 1, 0, 1)),  # "same" size for an even kernel
            SlimConv2d(2 * M, M, 2),
        ])

        def branch():
            return SlimHyperSynthesis([
                SlimConvTranspose2d(M, M // 2, (7, 1), stride=(4, 1)), nn.ReLU(inplace=True),
                SlimConvTranspose2d(M // 2, M, (1, 7), stride=(1, 4)), nn.ReLU(inplace=True),
                SlimConv2d(M, M, 1),
            ])

        self.h_s_scale = branch()
        self.h_s_mean = branch()
        self.iqr = SlimIQR(M)
        self.g_s = SlimSequential([
            SlimConvTranspose2d(M, S, self.K, stride=4), make_gdn(gdn, [self.hidden(w, S) for w in W], inverse=True),
            SlimConvTranspose2d(S, 3, self.K, stride=4),
        ])
        self.z_entropy = nn.ModuleList(EntropyBottleneck(w) for w in W)
        self.conditional = ConditionalEntropyModel(distribution)

    @property
    def config(self) -> dict:
        config = {"N1": self.N1, "N2": self.N2, "M": self.M, "S": self.S, "widths": list(self.widths),
                  "gdn": self.gdn, "distribution": self.distribution}
        if (self.K, self.final_gdn, self.slim_hidden) != (5, True, True):  # older files keep their config
            config.update(K=self.K, final_gdn=self.final_gdn, slim_hidden=self.slim_hidden)
        return config

    def hidden(self, c: int, channels: int) -> int:
        """Hidden channels of g_a / g_s at latent width ``c`` (``channels`` at full width)."""
        return scaled(c, self.M, channels) if self.slim_hidden else channels

    # slim key -> FasiNet-H key (FasiNet-H nests its ISD, hyper-transforms and ISU branches).
    _FROM_FASINET_H = ((r"^g_a\.1\.gdns\.\d+\.", "g_a.1."), (r"^g_a\.2\.", "g_a.2.0."),
                       (r"^g_a\.3\.gdns\.\d+\.", "g_a.2.1."), (r"^g_a\.4\.", "g_a.2.2."),
                       (r"^g_a\.5\.gdns\.\d+\.", "g_a.3."),
                       (r"^h_a\.0\.", "h_a.0.0."), (r"^h_a\.2\.", "h_a.0.2."), (r"^h_a\.5\.", "h_a.3."),
                       (r"^(h_s_\w+)\.0\.", r"\1.isu.0."), (r"^(h_s_\w+)\.2\.", r"\1.isu.2."),
                       (r"^(h_s_\w+)\.4\.", r"\1.out."),
                       (r"^g_s\.1\.gdns\.\d+\.", "g_s.1."), (r"^z_entropy\.\d+\.", "entropy_bottleneck."))

    def load_unslimmed(self, state: dict[str, torch.Tensor], architecture: str) -> None:
        """Warm start every width from trained FasiNet-H weights of the same K and final_gdn.

        Each tensor takes the leading block of its FasiNet-H counterpart (kernels must match), so
        the widest sub-network starts as that FasiNet-H and every width's GDN as its GDN. Frozen
        tables and the integer hyper-synthesis are not copied: ``update()`` rebuilds them.
        """
        if architecture != "fasinet-h":
            raise ValueError(f"slim-fasinet-h warm-starts from fasinet-h weights, not {architecture}")
        _load_leading_blocks(self, state, self._FROM_FASINET_H, "fasinet-h", "; K and final_gdn must match")

    unslimmed_architecture = "fasinet-h"

    def full_width_state(self) -> tuple[dict, dict[str, torch.Tensor]]:
        """The FasiNet-H config and state dict that compute exactly this model's widest width.

        Needs ``slim_hidden = False``. Each per-width module (the
        switchable GDNs, z's entropy model) contributes its full-width member; frozen tables and
        the integer hyper-synthesis come along (at full width they are what FasiNet-H's ``update()``
        would build). Joint training leaves the widest width better than a FasiNet-H trained
        alone for as long (slim-fasinet-h-mse v2 at width 192: 1.090 bpp / 35.13 dB on Kodak,
        fasinet-h-mse-q8 v3 at the same lambda: 1.163 / 35.15), so it is a warm start too.
        """
        if self.slim_hidden:
            raise ValueError("full_width_state needs slim_hidden=False (a FasiNet-H has no per-width hidden channels)")
        full = self.widths.index(self.M)  # the first: widths run from the full one down
        state = {}
        for key, value in self.state_dict().items():
            m = re.search(r"\.gdns\.(\d+)\.|^z_entropy\.(\d+)\.", key)
            if m and int(m.group(1) or m.group(2)) != full:
                continue
            src = key
            for pattern, repl in self._FROM_FASINET_H:
                src = re.sub(pattern, repl, src)
            state[src] = value.detach().clone()
        config = {"N1": self.N1, "N2": self.N2, "M": self.M, "S": self.S, "distribution": self.distribution,
                  "K": self.K, "final_gdn": self.final_gdn}
        return config, state

    @torch.no_grad()
    def sort_channels(self, x: torch.Tensor) -> dict[str, float]:
        """Reorder every slimmed channel axis so that each width's leading block is its best one.

        A warm start from FasiNet-H hands width ``w`` the *first* ``w`` latent channels, but a
        trained FasiNet-H spreads its rate over all 192 in no order (fasinet-h-mse-q1 version 3 on
        training crops: its first 48 channels carry 21% of the bits of y, its top 48 carry 72%).
        This permutes, at full width, the latent y (by its bits on ``x``), z (by its bits) and the
        hidden channels of h_a, both h_s branches and the IQR (by RMS activation times the norm
        of the weights that read them). The full-width model computes the same function before
        and after (up to float summation order); the narrower entropy models of z are re-taken
        from the full one's leading block, as :meth:`load_unslimmed` does. Needs
        ``slim_hidden = False`` and ``final_gdn = False`` (g_a and g_s then have no slimmed
        hidden axis). Call ``update()`` before coding. Returns the share of y's bits in the
        narrowest width's channels, before and after.
        """
        if self.slim_hidden or self.final_gdn:
            raise ValueError("sort_channels needs slim_hidden=False and final_gdn=False")
        M = self.M
        relu = torch.relu
        was_training = self.training
        self.eval()
        y = self.analysis(x, M)
        h1 = relu(self.h_a[0](torch.abs(y), M))
        h2 = relu(self.h_a[2](h1, 2 * M))
        z = self.h_a[5](self.h_a[4](h2), M)
        z_hat, z_lik = self.z_entropy[0](z)
        h, w = y.shape[2:]
        acts = {}
        for name in ("h_s_scale", "h_s_mean"):
            br = getattr(self, name)
            b1 = relu(br[0](z_hat, M // 2))
            b2 = relu(br[2](b1, M))
            acts[name] = (b1, b2, br[4](b2, M)[..., :h, :w])
        y_hat, y_lik = self.conditional(y, acts["h_s_scale"][2], acts["h_s_mean"][2])
        i1 = relu(self.iqr.conv1(y_hat, M // 4))
        i2 = relu(self.iqr.conv2(i1, M // 2))
        self.train(was_training)

        def bits(lik):
            return (-torch.log2(lik)).sum(dim=(0, 2, 3))

        def hidden(act, weight, in_dim):  # RMS activation x norm of the weights reading the channel
            dims = tuple(d for d in range(weight.dim()) if d != in_dim)
            return act.pow(2).mean(dim=(0, 2, 3)).sqrt() * weight.pow(2).sum(dim=dims).sqrt()

        def order(score):
            return torch.argsort(score, descending=True, stable=True)

        y_bits = bits(y_lik)
        narrow = min(self.widths)
        before = float(y_bits[:narrow].sum() / y_bits.sum())
        py, pz = order(y_bits), order(bits(z_lik))
        p1 = order(hidden(h1, self.h_a[2].weight, 1))
        p2 = order(hidden(h2, self.h_a[5].weight, 1))
        pi1 = order(hidden(i1, self.iqr.conv2.weight, 1))
        pi2 = order(hidden(i2, self.iqr.conv3.weight, 1))

        def perm(t, p, dim):
            t.copy_(t.index_select(dim, p))

        def out(conv, p):  # a convolution's output channels (dim 0; dim 1 for a transposed one)
            perm(conv.weight, p, 1 if isinstance(conv, SlimConvTranspose2d) else 0)
            perm(conv.bias, p, 0)

        def inp(conv, p):
            perm(conv.weight, p, 0 if isinstance(conv, SlimConvTranspose2d) else 1)

        out(self.g_a[4], py), inp(self.h_a[0], py), inp(self.iqr.conv1, py), out(self.iqr.conv3, py)
        inp(self.g_s[0], py)
        out(self.h_a[0], p1), inp(self.h_a[2], p1)
        out(self.h_a[2], p2), inp(self.h_a[5], p2)
        out(self.h_a[5], pz)
        out(self.iqr.conv1, pi1), inp(self.iqr.conv2, pi1)
        out(self.iqr.conv2, pi2), inp(self.iqr.conv3, pi2)
        for name in ("h_s_scale", "h_s_mean"):
            br, (b1, b2, _) = getattr(self, name), acts[name]
            ps1, ps2 = order(hidden(b1, br[2].weight, 0)), order(hidden(b2, br[4].weight, 1))
            inp(br[0], pz), out(br[0], ps1), inp(br[2], ps1), out(br[2], ps2), inp(br[4], ps2), out(br[4], py)
        full = dict(self.z_entropy[0].named_parameters())
        for name, t in full.items():
            perm(t.data, pz, 0)
        for eb in self.z_entropy[1:]:
            for name, t in eb.named_parameters():
                t.data.copy_(full[name].data[:t.shape[0]])
        return {"narrow_share_before": before,
                "narrow_share_after": float(y_bits[py][:narrow].sum() / y_bits.sum())}

    def analysis(self, x: torch.Tensor, c: int) -> torch.Tensor:
        plan = (self.hidden(c, self.N1), self.hidden(c, self.N2), c)
        return self.g_a(x, plan, self.widths.index(c))

    def hyper_analysis(self, y: torch.Tensor, c: int) -> torch.Tensor:
        return self.h_a(torch.abs(y), (c, 2 * c, c))

    def hs_plan(self, c: int) -> tuple[int, ...]:
        return (c // 2, c, c)

    def synthesis(self, y_hat: torch.Tensor, c: int) -> torch.Tensor:
        return self.g_s(self.iqr(y_hat), (self.hidden(c, self.S), None), self.widths.index(c))

    def forward(self, x: torch.Tensor, width: int | None = None) -> dict:
        return self._hyper_forward(x, width)
