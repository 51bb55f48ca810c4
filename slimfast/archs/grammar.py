"""The layer grammar every architecture is written in, and the base of the descriptions.

An architecture is described once, without torch or numpy: its options, its width rules and,
at any latent width ``c``, the layers of each transform as a list of the records below. Each
record names the weights it reads by their state-dict key, and gives its channel counts *at
that width*; a slimmable layer holds full-width weights and uses their leading block
(``W[:cout, :cin]`` for a convolution, ``W[:cin, :cout]`` for a transposed one). From the
same lists :mod:`slimfast.models` builds the torch modules (training, the torch engine) and
:mod:`slimfast.runtime.graphs` the ONNX graphs, so no layer is written twice.

Padding rules (both builders): a convolution pads ``(k - 1) / 2`` on both sides unless
``pads`` (top, left, bottom, right) says otherwise; a transposed convolution's output is
exactly ``stride`` times its input (:func:`slimfast.archs.shapes.tconv_padding`).
"""
from __future__ import annotations

from dataclasses import dataclass

Pair = tuple[int, int]


@dataclass(frozen=True)
class Conv:
    key: str
    cin: int
    cout: int
    kernel: Pair
    stride: Pair = (1, 1)
    bias: bool = True
    pads: tuple[int, int, int, int] | None = None  # None: symmetric "same"


@dataclass(frozen=True)
class TConv:
    key: str
    cin: int
    cout: int
    kernel: Pair
    stride: Pair = (1, 1)
    bias: bool = True


@dataclass(frozen=True)
class GDN:
    """GDN (IGDN when ``inverse``). ``kind``: ``"plain"`` (one per layer), ``"switchable"``
    (one per width, ``key.gdns.{index}``) or ``"slim+"`` (shared, four scalars per width).
    ``per_width`` lists the channel count at every width (widest first) for the per-width kinds."""

    key: str
    channels: int
    inverse: bool = False
    kind: str = "plain"
    index: int = 0
    per_width: tuple[int, ...] = ()


@dataclass(frozen=True)
class IQR:
    """FasiNet's inverse quantization residual on ``channels`` latents:
    ``y - 0.5 tanh(conv1x1(relu(conv1x7(relu(conv7x1(y))))))`` with c/4 and c/2 hidden
    channels, weights ``key.conv1..3``."""

    key: str
    channels: int


@dataclass(frozen=True)
class ReLU:
    pass


@dataclass(frozen=True)
class Abs:
    pass


@dataclass(frozen=True)
class Branch:
    """One hyper-synthesis branch at ``key``: its float layers (:class:`TConv`, 1x1
    :class:`Conv`, :class:`ReLU`) and, for coding, the integer copy of its convolutions stored
    as ``key.int_{w,s,b}{i}`` in layer order (:mod:`slimfast.coding.intmath`)."""

    key: str
    layers: tuple


def pair(v) -> Pair:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def scaled(width: int, full: int, channels: int) -> int:
    """Channels of a layer that has ``channels`` at full width, at latent width ``width``."""
    c = width * channels / full
    if c != int(c) or c < 1:
        raise ValueError(f"width {width} does not scale {channels} channels (of {full}) to an integer")
    return int(c)


def check_widths(widths, full: int) -> tuple[int, ...]:
    widths = tuple(int(w) for w in widths)
    if not widths or list(widths) != sorted(set(widths), reverse=True):
        raise ValueError(f"widths must be distinct and listed widest first, got {widths}")
    if widths[0] != full:
        raise ValueError(f"the widest width must equal the full channel count {full}, got {widths[0]}")
    return widths


class Architecture:
    """An architecture's description. Subclasses set ``name``, ``pad_multiple``, ``hyper``,
    ``defaults`` (the constructor options) and write the transforms at a width ``c``."""

    name = ""
    pad_multiple = 16
    hyper = False
    defaults: dict = {}
    # Top-level parts in the order their torch modules are registered (optimizer state follows it).
    parts: tuple[str, ...] = ("g_a", "h_a", "h_s_scale", "h_s_mean", "iqr", "g_s")
    # Form of the stride-s transposed convolutions that the ONNX graphs decode fastest with.
    preferred_tconv = "convtranspose"

    def __init__(self, **config):
        unknown = set(config) - set(self.defaults)
        if unknown:
            raise TypeError(f"{self.name}: unknown option(s) {', '.join(sorted(unknown))}")
        self.options = {**self.defaults, **config}
        self.widths: tuple[int, ...] | None = None
        self.latent_channels = 0

    @property
    def config(self) -> dict:
        """The options as stored in a weights file."""
        return dict(self.options)

    def check_width(self, width: int | None) -> int:
        from .shapes import check_width

        return check_width(self.name, self.widths, self.latent_channels, width)

    def width_index(self, c: int) -> int:
        return self.widths.index(c) if self.widths else 0

    def tconv_for(self, c: int) -> str:
        return self.preferred_tconv

    # -- the transforms at latent width c ------------------------------------------------------------
    def analysis(self, c: int) -> list:
        raise NotImplementedError

    def hyper_analysis(self, c: int) -> list:
        raise NotImplementedError

    def hyper_synthesis(self, c: int) -> tuple[Branch, Branch | None]:
        """The (scale, mean) branches; mean is ``None`` for a scale-only model."""
        raise NotImplementedError

    def synthesis(self, c: int) -> list:
        raise NotImplementedError

    # -- entropy models -----------------------------------------------------------------------------
    def entropy_key(self, c: int) -> str:
        """The factorized entropy model of the deepest latent (y, or z with a hyperprior)."""
        return "entropy_bottleneck"

    def entropy_models(self) -> list[tuple[str, int]]:
        """Every factorized entropy model as (key, channels)."""
        return [(self.entropy_key(self.latent_channels), self.latent_channels)]

    distribution = "logistic"  # the hyperprior's conditional (instance option where configurable)

    # -- warm starts --------------------------------------------------------------------------------
    # (pattern, replacement) regexes from this architecture's keys to those of the non-slimmable
    # architecture it warm-starts from (and whose full width it equals): the one key map.
    unslimmed: str | None = None
    key_map: tuple[tuple[str, str], ...] = ()
