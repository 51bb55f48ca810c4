"""Slimmable layers (Yang et al., "Slimmable Compressive Autoencoders", CVPR 2021).

A slimmable layer owns its weights at full width and, at a narrower width, uses only the
leading block: ``W[:c_out, :c_in]`` and ``bias[:c_out]`` for a convolution (PyTorch layout
``[out, in, kh, kw]``), ``W[:c_in, :c_out]`` for a transposed convolution (layout
``[in, out, kh, kw]``). Sub-networks are therefore nested (width 48 lies inside 72, inside
96, ...) and every convolution weight is shared by all widths, as in the paper.

The width API is explicit and stateless:

* :class:`SlimConv2d` / :class:`SlimConvTranspose2d` ``forward(x, c_out=None)``: ``c_in`` is
  read from ``x`` (so a layer fed by the 3-channel image is automatically not slimmed on its
  input side) and ``c_out`` is passed by the caller (``None`` = full, which is how an
  image-producing last layer keeps its 3 outputs).
* Normalizations (:class:`SwitchableGDN`, :class:`SlimGDNPlus`) pick their width from the
  channel count of their input, or from the width index the caller passes where widths share
  a count (a hidden layer that does not slim).

Also here: :class:`SlimIQR` (FasiNet's inverse quantization residual, slimmed) and
:class:`SlimMixin`, the width bookkeeping shared by the slimmable models (width index, MAC
and parameter counts measured from the layers actually run). Which layer runs at which width
is written in the architectures' descriptions (:mod:`slimfast.archs`); at full width these
layers are ordinary convolutions and GDNs, which is how the FasiNets use them.
"""
from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F

from .layers import GDN, NonNegativeParameterizer
from ..archs.shapes import tconv_padding


# -- convolutions --------------------------------------------------------------------------------
def _pair(v: int | tuple[int, int]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


class SlimConv2d(nn.Conv2d):
    """Convolution with symmetric "same" zero padding that can run on its leading weight block.

    ``forward(x, c_out)`` uses ``weight[:c_out, :x.shape[1]]`` and ``bias[:c_out]``.
    """

    def __init__(self, cin: int, cout: int, kernel: int | tuple[int, int], stride: int | tuple[int, int] = 1,
                 bias: bool = True, padding: int | tuple[int, int] | None = None):
        kh, kw = _pair(kernel)
        if padding is None:
            padding = ((kh - 1) // 2, (kw - 1) // 2)
        super().__init__(cin, cout, (kh, kw), stride=stride, padding=padding, bias=bias)

    def forward(self, x: torch.Tensor, c_out: int | None = None) -> torch.Tensor:
        cin = x.shape[1]
        cout = self.out_channels if c_out is None else int(c_out)
        if not (0 < cin <= self.in_channels and 0 < cout <= self.out_channels):
            raise ValueError(f"SlimConv2d({self.in_channels}->{self.out_channels}) asked for {cin}->{cout}")
        w = self.weight if (cin, cout) == (self.in_channels, self.out_channels) else self.weight[:cout, :cin]
        b = None if self.bias is None else self.bias[:cout]
        return F.conv2d(x, w, b, self.stride, self.padding)


class SlimConvTranspose2d(nn.ConvTranspose2d):
    """Transposed convolution whose output is exactly ``stride`` times its input, slimmable.

    ``forward(x, c_out)`` uses ``weight[:x.shape[1], :c_out]`` (PyTorch layout ``[in, out, ...]``).
    """

    def __init__(self, cin: int, cout: int, kernel: int | tuple[int, int], stride: int | tuple[int, int] = 1,
                 bias: bool = True):
        kh, kw = _pair(kernel)
        sh, sw = _pair(stride)
        ph, oph = tconv_padding(kh, sh)
        pw, opw = tconv_padding(kw, sw)
        super().__init__(cin, cout, (kh, kw), stride=(sh, sw), padding=(ph, pw), output_padding=(oph, opw), bias=bias)

    def forward(self, x: torch.Tensor, c_out: int | None = None) -> torch.Tensor:
        cin = x.shape[1]
        cout = self.out_channels if c_out is None else int(c_out)
        if not (0 < cin <= self.in_channels and 0 < cout <= self.out_channels):
            raise ValueError(f"SlimConvTranspose2d({self.in_channels}->{self.out_channels}) asked for {cin}->{cout}")
        w = self.weight if (cin, cout) == (self.in_channels, self.out_channels) else self.weight[:cin, :cout]
        b = None if self.bias is None else self.bias[:cout]
        return F.conv_transpose2d(x, w, b, self.stride, self.padding, self.output_padding)


SLIM_CONVS = (SlimConv2d, SlimConvTranspose2d)


# -- normalizations ------------------------------------------------------------------------------
def _channel_index(channels, shared: bool = False) -> tuple[tuple[int, ...], dict[int, int] | None]:
    """Channel counts per width and the width index of each count (None when counts repeat).

    ``shared=True`` lets widths share a count (a layer that does not slim); the caller then
    names the width by index instead of by channel count.
    """
    channels = tuple(int(c) for c in channels)
    if list(channels) != sorted(channels, reverse=True):
        raise ValueError(f"channel counts must be listed widest first, got {channels}")
    if len(set(channels)) != len(channels):
        if not shared:
            raise ValueError(f"the widths of one layer must have distinct channel counts, got {channels}")
        return channels, None
    return channels, {c: i for i, c in enumerate(channels)}


def _width_index(module, x: torch.Tensor, index: int | None) -> int:
    c = x.shape[1]
    if index is None:
        if module.index is None:
            raise ValueError(f"{type(module).__name__}: its widths share {c} channels; pass the width index")
        if c not in module.index:
            raise ValueError(f"{type(module).__name__} has widths {module.channels}, got {c} channels")
        return module.index[c]
    if not 0 <= index < len(module.channels) or module.channels[index] != c:
        raise ValueError(f"{type(module).__name__}: width index {index} of {module.channels} got {c} channels")
    return index


class SwitchableGDN(nn.Module):
    """One ordinary GDN (or IGDN) per width: the released SlimCAE's only width-specific parameters."""

    def __init__(self, channels, inverse: bool = False):
        super().__init__()
        self.channels, self.index = _channel_index(channels, shared=True)
        self.inverse = bool(inverse)
        self.gdns = nn.ModuleList(GDN(c, inverse=inverse) for c in self.channels)

    def forward(self, x: torch.Tensor, index: int | None = None) -> torch.Tensor:
        """``index``: the width's position; needed only where widths share a channel count."""
        return self.gdns[_width_index(self, x, index)](x)


class SlimGDNPlus(nn.Module):
    """SlimGDN+: one shared ``beta[C]``, ``gamma[C x C]`` plus four non-negative scalars per width.

    At width index ``i`` with ``c`` channels::

        gamma' = gamma_scale[i] * gamma[:c, :c] + gamma_bias[i]
        beta'  = max(beta_scale[i] * beta[:c] + beta_bias[i], beta_min)

    ``beta`` and ``gamma`` use :class:`~slimfast.nn.layers.GDN`'s reparametrization; the
    scalars are kept non-negative the same way (scales start at 1, biases at 0).
    """

    def __init__(self, channels, inverse: bool = False, beta_min: float = 1e-6, gamma_init: float = 0.1):
        super().__init__()
        self.channels, self.index = _channel_index(channels, shared=True)
        self.inverse = bool(inverse)
        self.beta_min = float(beta_min)
        full, n = self.channels[0], len(self.channels)
        self.beta_reparam = NonNegativeParameterizer(minimum=beta_min)
        self.gamma_reparam = NonNegativeParameterizer()
        self.scalar_reparam = NonNegativeParameterizer()
        self.beta = nn.Parameter(self.beta_reparam.init(torch.ones(full)))
        self.gamma = nn.Parameter(self.gamma_reparam.init(gamma_init * torch.eye(full)))
        self.gamma_scale = nn.Parameter(self.scalar_reparam.init(torch.ones(n)))
        self.gamma_bias = nn.Parameter(self.scalar_reparam.init(torch.zeros(n)))
        self.beta_scale = nn.Parameter(self.scalar_reparam.init(torch.ones(n)))
        self.beta_bias = nn.Parameter(self.scalar_reparam.init(torch.zeros(n)))

    def effective_params(self, c: int, index: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        i = _width_index(self, torch.empty(0, c), index)
        nn_ = self.scalar_reparam
        beta = nn_(self.beta_scale)[i] * self.beta_reparam(self.beta)[:c] + nn_(self.beta_bias)[i]
        beta = beta + (torch.clamp(beta, min=self.beta_min) - beta).detach()
        gamma = nn_(self.gamma_scale)[i] * self.gamma_reparam(self.gamma)[:c, :c] + nn_(self.gamma_bias)[i]
        return beta, gamma

    def forward(self, x: torch.Tensor, index: int | None = None) -> torch.Tensor:
        beta, gamma = self.effective_params(x.shape[1], index)
        norm = torch.sqrt(F.conv2d(x * x, gamma[:, :, None, None], beta))
        return x * norm if self.inverse else x / norm


class SlimIQR(nn.Module):
    """FasiNet's inverse quantization residual, slimmable: at ``c`` channels it uses c/4 and c/2.

    ``y_hat - 0.5 * tanh(conv1x1(relu(conv1x7(relu(conv7x1(y_hat))))))``; the last
    convolution starts at zero so the module starts as the identity.
    """

    def __init__(self, channels: int = 192):
        super().__init__()
        c = int(channels)
        self.channels = c
        self.conv1 = SlimConv2d(c, c // 4, (7, 1))
        self.conv2 = SlimConv2d(c // 4, c // 2, (1, 7))
        self.conv3 = SlimConv2d(c // 2, c, 1)
        nn.init.zeros_(self.conv3.weight)
        nn.init.zeros_(self.conv3.bias)

    def residual(self, y_hat: torch.Tensor) -> torch.Tensor:
        c = y_hat.shape[1]
        if c % 4:
            raise ValueError(f"SlimIQR needs a channel count divisible by 4, got {c}")
        h = F.relu(self.conv1(y_hat, c // 4))
        h = F.relu(self.conv2(h, c // 2))
        return 0.5 * torch.tanh(self.conv3(h, c))

    def forward(self, y_hat: torch.Tensor) -> torch.Tensor:
        return y_hat - self.residual(y_hat)


class SlimMixin:
    """Width bookkeeping for a slimmable :class:`~slimfast.models.base.CompressionModel`:
    MACs and parameters per width, counted from the architecture's description
    (:mod:`slimfast.archs.complexity`). ``encode_parts`` / ``decode_parts`` name the top-level
    parts each side runs."""

    encode_parts: tuple[str, ...] = ("g_a",)
    decode_parts: tuple[str, ...] = ("g_s",)

    def width_index(self, width: int | None) -> int:
        return self.widths.index(self.check_width(width))

    def macs_breakdown(self, width: int | None = None) -> dict[str, float]:
        """MACs per pixel of each top-level part (``g_a``, ``h_a``, ``h_s_*``, ``iqr``, ``g_s``)."""
        from ..archs.complexity import count

        return {k: v * 1000 for k, v in count(self.arch, width)["by_part"].items()}

    def macs_per_pixel(self, width: int | None = None, part: str = "total") -> float:
        """Multiply-accumulates per image pixel at ``width``.

        ``part``: ``"total"`` (every transform once: the design's "encoder+decoder" figure),
        ``"encode"`` (``encode_parts``) or ``"decode"`` (``decode_parts``). Entropy coding and
        elementwise operations are not counted.
        """
        b = self.macs_breakdown(width)
        if part == "total":
            return float(sum(b.values()))
        names = {"encode": self.encode_parts, "decode": self.decode_parts}.get(part)
        if names is None:
            raise ValueError("part must be 'total', 'encode' or 'decode'")
        return float(sum(b.get(k, 0.0) for k in names))

    def num_parameters(self, width: int | None = None, entropy: bool = True) -> int:
        """Parameters used at ``width`` (the leading blocks, the width's own GDNs and entropy model).

        ``entropy=False`` counts only the transforms (the design's "encoder+decoder" figure).
        """
        from ..archs.complexity import count

        n = count(self.arch, width)["params"]
        return n + (sum(p.numel() for p in self.entropy_model(width).parameters()) if entropy else 0)
