"""Integer-exact entropy parameters of a hyperprior model, in numpy only.

The hyperprior latent codec (:class:`slimfast.coding.latent_codecs.HyperpriorCodec`) runs it
for every engine: every step is a :mod:`slimfast.coding.intmath` call or an IEEE float64 elementwise
operation, hence bit-identical wherever it runs. The branches come from the architecture's
description over the weights' ``int_*`` tensors (:meth:`slimfast.engines.specs.Specs.hs_branches`).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from . import intmath


@dataclass(frozen=True)
class IntLayer:
    """One layer of an integer hyper-synthesis branch.

    ``kind`` is ``"tconv"`` (weights ``[Cin, Cout, kh, kw]``), ``"conv1x1"`` (``[Cout, Cin, 1, 1]``)
    or ``"relu"`` (no arrays). Weights may be full width: :func:`run_branch` takes the leading
    block that the input and ``cout`` ask for.
    """

    kind: str
    w: np.ndarray | None = None
    scale: np.ndarray | None = None
    bias: np.ndarray | None = None
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    output_padding: tuple[int, int] = (0, 0)
    cout: int | None = None  # None: all output channels

    @cached_property
    def _arranged(self) -> dict[int, intmath.FixedConv | None]:
        return {}

    def arranged(self, cin: int) -> intmath.FixedConv | None:
        """The leading block for ``cin`` input channels as GEMM-ready float64 weights, made once per
        ``cin`` (a slimmable model's widths each take their own); None where :func:`run_branch`
        keeps the plain formulation (see :meth:`slimfast.coding.intmath.FixedConv.transposed`)."""
        conv = self._arranged.get(cin, False)
        if conv is False:
            conv = None
            if self.kind == "tconv" and self.w.shape[0] >= cin:
                cout = self.w.shape[1] if self.cout is None else self.cout
                conv = intmath.FixedConv.transposed(self.w[:cin, :cout], self.scale[:cout], self.bias[:cout],
                                                    self.stride, self.padding, self.output_padding)
            elif self.kind == "conv1x1" and self.w.shape[1] >= cin:
                cout = self.w.shape[0] if self.cout is None else self.cout
                conv = intmath.FixedConv.pointwise(self.w[:cout, :cin], self.scale[:cout], self.bias[:cout])
            self._arranged[cin] = conv
        return conv


def _plan(a: np.ndarray, layers: list[IntLayer]) -> list[tuple[intmath.FixedConv | None, bool]] | None:
    """``(layer, relu after it)`` per step of :func:`run_branch` (None: a ReLU alone), or None
    where ``a`` or a layer is outside what the GEMMs hold exactly."""
    if a.ndim != 3 or not layers or not intmath.is_fixed_point(a):
        return None
    plan, cin, i = [], a.shape[0], 0
    while i < len(layers):
        if layers[i].kind == "relu":
            plan.append((None, False))
            i += 1
            continue
        conv = layers[i].arranged(cin)
        if conv is None:
            return None
        relu = i + 1 < len(layers) and layers[i + 1].kind == "relu"
        plan.append((conv, relu))
        cin, i = conv.cout, i + 1 + relu
    return plan


def run_branch(a: np.ndarray, layers: list[IntLayer]) -> np.ndarray:
    """Fixed-point ``[Cin, h, w]`` through ``layers``; fixed-point out (see :mod:`slimfast.coding.intmath`).

    Activations between layers are channels-last, each layer's weights arranged once per width
    (:meth:`IntLayer.arranged`): transposed convolutions as sub-pixel GEMMs, the ReLU fused into
    the requantization's blocks, the last layer's GEMM giving channels-first. The same bits as
    :func:`run_branch_plain`, which runs whatever the exactness bound does not cover."""
    plan = _plan(a, layers)
    if plan is None:
        return run_branch_plain(a, layers)
    x = np.ascontiguousarray(a.transpose(1, 2, 0))
    for i, (conv, relu) in enumerate(plan):
        if conv is None:
            x = np.maximum(x, 0.0)
        elif i == len(plan) - 1:
            return conv.channels_first(x, relu)
        else:
            x = conv.channels_last(x, relu)
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def run_branch_plain(a: np.ndarray, layers: list[IntLayer]) -> np.ndarray:
    """:func:`run_branch` layer by layer, channels-first: one GEMM per tap, scattered."""
    for lay in layers:
        if lay.kind == "relu":
            a = intmath.relu(a)
            continue
        cin = a.shape[0]
        if lay.kind == "tconv":
            cout = lay.w.shape[1] if lay.cout is None else lay.cout
            a = intmath.conv_transpose(a, lay.w[:cin, :cout], lay.scale[:cout], lay.bias[:cout],
                                       lay.stride, lay.padding, lay.output_padding)
        elif lay.kind == "conv1x1":
            cout = lay.w.shape[0] if lay.cout is None else lay.cout
            a = intmath.conv1x1(a, lay.w[:cout, :cin], lay.scale[:cout], lay.bias[:cout])
        else:
            raise ValueError(f"unknown integer layer kind {lay.kind!r}")
    return a


@dataclass(frozen=True)
class Int8Layer:
    """One convolution of an 8-bit hyper-synthesis branch (:func:`run_branch8`).

    ``wf``: integer weights in float32, ``[kh, kw, Cout, Cin]`` for ``"tconv"``, ``[Cout, Cin]``
    for ``"conv1x1"``; ``multiplier`` and ``bias`` (float64, per output channel) take the
    accumulator to the next layer's 8-bit activations (hidden layers, ReLU fused) or to real
    values (the last layer).
    """

    kind: str
    wf: np.ndarray
    multiplier: np.ndarray
    bias: np.ndarray
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    output_padding: tuple[int, int] = (0, 0)

    @cached_property
    def tconv(self) -> intmath.SubpixelTConv:
        """A ``"tconv"``'s weights arranged for sub-pixel GEMMs, once."""
        return intmath.SubpixelTConv.of(self.wf, self.stride, self.padding, self.output_padding)

    def accumulate(self, a: np.ndarray) -> np.ndarray:
        """Integer accumulators (float32) of channels-last 8-bit ``a`` ``[H, W, Cin]``, channels-last."""
        if self.kind == "tconv":
            return self.tconv(a)
        h, w, cin = a.shape
        return (a.reshape(h * w, cin) @ self.wf.T).reshape(h, w, -1)

    def accumulate_channels_first(self, a: np.ndarray) -> np.ndarray:
        """:meth:`accumulate` as ``[Cout, H, W]``: the branch's output layout (a 1x1 convolution
        gets it from the GEMM itself, BLAS reading ``a`` transposed)."""
        if self.kind == "tconv":
            return np.ascontiguousarray(self.accumulate(a).transpose(2, 0, 1))
        h, w, cin = a.shape
        return (self.wf @ a.reshape(h * w, cin).T).reshape(-1, h, w)


@dataclass(frozen=True)
class Int8Branch:
    """An 8-bit branch: z_hat enters as ``clip(rint(z_hat / in_step), -127, 127)``; ``in_step`` is
    a power of two, so the division is exact."""

    in_step: float
    layers: tuple[Int8Layer, ...]


def run_branch8(z_hat: np.ndarray, branch: Int8Branch) -> np.ndarray:
    """Real-valued (float64) output ``[C, H, W]`` of ``branch`` for z_hat ``[C, h, w]`` (float64).

    Activations between layers are channels-last, the layout where a transposed convolution is
    GEMMs without scatter (:class:`slimfast.coding.intmath.SubpixelTConv`)."""
    last = branch.layers[-1]
    return intmath.affine8(branch8_accumulators(z_hat, branch), last.multiplier, last.bias)


def branch8_accumulators(z_hat: np.ndarray, branch: Int8Branch) -> np.ndarray:
    """The last layer's integer accumulators (float32, ``[C, H, W]``) of :func:`run_branch8`."""
    a = np.clip(np.rint(z_hat / branch.in_step), -127, 127).astype(np.float32)
    a = np.ascontiguousarray(a.transpose(1, 2, 0))
    *hidden, last = branch.layers
    for lay in hidden:
        a = intmath.requantize8(lay.accumulate(a), lay.multiplier, lay.bias)
    return last.accumulate_channels_first(a)


_POOL: list = []  # one helper thread, made on first use: a branch runs there while the caller runs the other


def _pool():
    if not _POOL:
        from concurrent.futures import ThreadPoolExecutor

        _POOL.append(ThreadPoolExecutor(1, thread_name_prefix="slimfast-h_s"))
    return _POOL[0]


def _both(first, second, workers: int):
    """``(first(), second())``, ``second`` may be None; on two threads where ``workers`` > 1. The
    branches are independent and numpy and BLAS release the GIL, so the second core does the
    other branch; the arithmetic is the same, so are the bits."""
    if second is None or workers < 2:
        return first(), (None if second is None else second())
    out = _pool().submit(first)
    other = second()
    return out.result(), other


def _index_then(index, means, then, workers: int):
    """``(index(), means(), then(index()))``: ``then`` runs on the calling thread as soon as the
    indices are ready, while ``means`` (may be None) runs on the other thread where ``workers`` > 1."""
    if means is None or workers < 2:
        i = index()
        return i, (None if means is None else means()), then(i)
    pending = _pool().submit(means)
    try:
        i = index()
        extra = then(i)
    finally:
        m = pending.result()
    return i, m, extra


_LUTS: dict[bytes, np.ndarray] = {}


def _lut(scale_table: np.ndarray) -> np.ndarray:
    """The scale-index table of :func:`slimfast.coding.intmath.scale_index_lut`, built once per scale table."""
    key = scale_table.astype(np.float64).tobytes()
    if key not in _LUTS:
        _LUTS[key] = intmath.scale_index_lut(scale_table)
    return _LUTS[key]


def entropy_parameters(z_symbols: np.ndarray, medians: np.ndarray, scale_branch: list[IntLayer] | Int8Branch,
                       mean_branch: list[IntLayer] | Int8Branch | None, scale_table: np.ndarray,
                       workers: int = 1, step: int = intmath.STEP_ONE, then=None):
    """Exact ``(means float64, scale indices int16)``, each ``[1, C, H, W]``, from z's symbols ``[1, c, h, w]``.

    ``medians`` are the z entropy bottleneck's ``_medians`` (their leading ``c``); means are
    zero without a mean branch. Branches are the 12-bit fixed-point copy (lists of
    :class:`IntLayer`) or the 8-bit one (:class:`Int8Branch`, the ``hs_steps`` option). With
    ``workers`` > 1 the two branches run on two threads (the same bits). ``step``: the
    quantization step (``step / STEP_ONE``) that y's residuals are divided by, which divides the
    scales before their index is looked up (:func:`slimfast.coding.intmath.divide_by_step`).

    ``then``: a function of the scale indices, called on the calling thread as soon as they are
    ready while the mean branch still runs on the other thread (a decoder decodes y meanwhile: its
    native code releases the GIL); its result comes back third: ``(means, indices, then(indices))``.
    """
    z_symbols = np.asarray(z_symbols)
    if z_symbols.ndim != 4 or z_symbols.shape[0] != 1:
        raise ValueError(f"expected z symbols of shape [1, c, h, w], got {tuple(z_symbols.shape)}")
    c = z_symbols.shape[1]
    med = np.asarray(medians).astype(np.float64)[:c].reshape(-1, 1, 1)
    lut = _lut(np.asarray(scale_table))
    int8 = isinstance(scale_branch, Int8Branch)
    if int8:
        x, run = z_symbols[0].astype(np.float64) + med, run_branch8
    else:
        x, run = intmath.to_fixed(z_symbols[0].astype(np.float64) + med), run_branch

    def index():  # the lookup runs on the scale branch's thread: the two threads' work evens out
        if int8:  # real values from the accumulators, to fixed point, to an index: one pass (the same bits)
            last = scale_branch.layers[-1]
            return intmath.scale_index8(branch8_accumulators(x, scale_branch), last.multiplier, last.bias, step,
                                        lut)[None]
        return intmath.step_scale_index(run(x, scale_branch), step, lut)[None]

    def means():
        m = run(x, mean_branch)
        if int8:
            return m
        return intmath.from_fixed(m, out=None if np.may_share_memory(m, x) else m)  # a new array: in place

    if then is None:
        index, mean = _both(index, None if mean_branch is None else means, workers)
        return (np.zeros(index.shape) if mean is None else mean[None]), index
    index, mean, extra = _index_then(index, None if mean_branch is None else means, then, workers)
    return (np.zeros(index.shape) if mean is None else mean[None]), index, extra
