"""Integer-exact evaluation of small convolutional networks (numpy only).

The entropy decoder must see exactly the tables the encoder used. In a hyperprior model those
tables are chosen by a network (the hyper-synthesis), and float convolutions differ in their
last bits between machines, thread counts and backends, which picks a different scale index
and derails decoding (CompressAI issues #54, #279, #320). Here such a network is evaluated
so that every intermediate value is an integer:

* weights are quantized per output channel to ``|w_int| <= 2**WEIGHT_BITS - 1`` with a float64
  scale; activations are fixed point with ``ACT_FRAC`` fraction bits, clipped to
  ``|a| < 2**ACT_CLIP``;
* convolutions run as float64 GEMMs over these integers. Every product and partial sum is an
  integer below ``2**53``, so float64 represents it exactly and the result does not depend on
  summation order, blocking, threads or BLAS;
* requantization is ``rint(acc * scale + bias_q)``: elementwise IEEE operations, correctly
  rounded everywhere.

The result is bit-identical on any IEEE-754 machine, whichever backend ran the rest.

The 8-bit form (:func:`quantize_weight8`, :func:`conv_transpose8`, :func:`conv1x1_8`) is the
same idea at float32 speed: with weights ``|w| <= 128`` and activations ``|a| <= 255``, a layer
where at most ``K`` products meet in one output (input channels times the taps that overlap)
keeps every partial sum below ``K * 128 * 255``; under ``2**24`` (:func:`exact_in_float32`)
float32 holds it exactly, whatever the summation order, blocking or FMA use.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

try:  # the elementwise 8-bit steps in one native pass each (_intmath.c, built at install; the same bits)
    from . import _intmath as native
except ImportError:  # no compiler at install: the numpy code below, which defines them
    native = None

WEIGHT_BITS = 12
ACT_FRAC = 8
ACT_CLIP = 23


def quantize_weight(w: np.ndarray, out_axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-output-channel symmetric quantization; returns (int16 weights, float64 scales)."""
    w = np.asarray(w, dtype=np.float64)
    red = tuple(i for i in range(w.ndim) if i != out_axis)
    amax = np.abs(w).max(axis=red)
    scale = np.where(amax > 0, amax / (2 ** WEIGHT_BITS - 1), 1.0)
    shape = [1] * w.ndim
    shape[out_axis] = -1
    w_int = np.rint(w / scale.reshape(shape))
    return w_int.astype(np.int16), scale.astype(np.float64)


def to_fixed(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Real values to fixed-point integers (held in float64); into ``out`` (which may be ``x``),
    else one new array, the rest in place."""
    v = np.multiply(x, float(1 << ACT_FRAC), out=out, dtype=np.float64)
    np.rint(v, out=v)
    return np.clip(v, -(2 ** ACT_CLIP), 2 ** ACT_CLIP, out=v)


def from_fixed(a: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Fixed-point integers to real values; into ``out`` (which may be ``a``), else a new array."""
    return np.divide(a, float(1 << ACT_FRAC), out=out)


def _requantize(acc: np.ndarray, scale: np.ndarray, bias_q: np.ndarray) -> np.ndarray:
    out = acc * scale[:, None, None]  # the one new array; the rest in place (same values)
    np.add(out, bias_q[:, None, None], out=out)
    np.rint(out, out=out)
    return np.clip(out, -(2 ** ACT_CLIP), 2 ** ACT_CLIP, out=out)


def conv_transpose(a: np.ndarray, w_int: np.ndarray, scale: np.ndarray, bias_q: np.ndarray,
                   stride: tuple[int, int], padding: tuple[int, int], output_padding: tuple[int, int]) -> np.ndarray:
    """Transposed convolution of fixed-point ``a`` ``[Cin, H, W]``; weights ``[Cin, Cout, kh, kw]``."""
    wf = np.ascontiguousarray(w_int.astype(np.float64).transpose(2, 3, 1, 0))  # [kh, kw, Cout, Cin]: BLAS-ready
    return _requantize(tconv_accumulate(a, wf, stride, padding, output_padding), scale, bias_q)


def tconv_accumulate(a: np.ndarray, wf: np.ndarray, stride: tuple[int, int], padding: tuple[int, int],
                     output_padding: tuple[int, int]) -> np.ndarray:
    """The accumulators of a transposed convolution of ``a`` ``[Cin, H, W]`` with ``wf``
    ``[kh, kw, Cout, Cin]``, in ``wf``'s dtype: one GEMM per tap, added where the tap lands."""
    cin, h, w = a.shape
    kh, kw, cout, _ = wf.shape
    sh, sw = stride
    full = np.zeros((cout, (h - 1) * sh + kh + output_padding[0], (w - 1) * sw + kw + output_padding[1]), wf.dtype)
    x = a.reshape(cin, h * w)
    for i in range(kh):
        for j in range(kw):
            full[:, i: i + (h - 1) * sh + 1: sh, j: j + (w - 1) * sw + 1: sw] += (wf[i, j] @ x).reshape(cout, h, w)
    return full[:, padding[0]: padding[0] + h * sh, padding[1]: padding[1] + w * sw]


def conv1x1(a: np.ndarray, w_int: np.ndarray, scale: np.ndarray, bias_q: np.ndarray) -> np.ndarray:
    """1x1 convolution of fixed-point ``a`` ``[Cin, H, W]``; weights ``[Cout, Cin, 1, 1]``."""
    cin, h, w = a.shape
    acc = (w_int[:, :, 0, 0].astype(np.float64) @ a.reshape(cin, h * w)).reshape(-1, h, w)
    return _requantize(acc, scale, bias_q)


# -- 8-bit layers, exact in float32 ------------------------------------------------------------

FLOAT32_EXACT = 2 ** 24
W8_MAX, A8_MAX = 128, 255


def quantize_weight8(w: np.ndarray, out_axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-output-channel symmetric 8-bit weights, ``|w_int| <= 127``, held in float32; returns
    (weights, float64 steps). Deterministic: float64 max, division and rounding only."""
    w = np.asarray(w, dtype=np.float64)
    red = tuple(i for i in range(w.ndim) if i != out_axis)
    amax = np.abs(w).max(axis=red)
    step = np.where(amax > 0, amax / 127, 1.0)
    shape = [1] * w.ndim
    shape[out_axis] = -1
    return np.rint(w / step.reshape(shape)).astype(np.float32), step


def exact_in_float32(cin: int, kernel: tuple[int, int], stride: tuple[int, int] = (1, 1)) -> bool:
    """Whether an 8-bit layer's sums fit float32 exactly: ``cin`` channels times the taps that
    can meet in one output of a (transposed) convolution with this kernel and stride."""
    taps = -(-kernel[0] // stride[0]) * -(-kernel[1] // stride[1])
    return cin * taps * W8_MAX * A8_MAX < FLOAT32_EXACT


def conv_transpose8(a: np.ndarray, wf: np.ndarray, stride: tuple[int, int], padding: tuple[int, int],
                    output_padding: tuple[int, int]) -> np.ndarray:
    """Integer accumulators (float32) of a transposed convolution of 8-bit ``a`` ``[Cin, H, W]``;
    ``wf`` is :func:`quantize_weight8`'s output as ``[kh, kw, Cout, Cin]``. Channels-first
    wrapper of :class:`SubpixelTConv`, which the hyper-synthesis keeps per layer."""
    acc = SubpixelTConv.of(wf, stride, padding, output_padding)(a.transpose(1, 2, 0))
    return np.ascontiguousarray(acc.transpose(2, 0, 1))


def conv1x1_8(a: np.ndarray, wf: np.ndarray) -> np.ndarray:
    """Integer accumulators (float32) of a 1x1 convolution; ``wf`` ``[Cout, Cin]``."""
    cin, h, w = a.shape
    return (wf @ a.reshape(cin, h * w)).reshape(-1, h, w)


# Elementwise float64 work runs over blocks of this many values (256 KiB), which stay in the
# core's cache between the steps, in one scratch block instead of arrays of a whole layer.
BLOCK = 1 << 15


def _native_ok(acc: np.ndarray) -> bool:
    return acc.dtype == np.float32 and acc.flags.c_contiguous and acc.size > 0


def _f64(v: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(v, dtype=np.float64).reshape(-1)


def requantize8(acc: np.ndarray, multiplier: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """ReLU and the next layer's 8-bit activations of channels-last ``acc`` ``[..., C]``:
    ``clip(rint(acc * m + b), 0, 255)``, in float64 elementwise steps (correctly rounded
    everywhere), returned as float32 (exact: integers up to 255)."""
    if native is not None and _native_ok(acc):
        out = np.empty(acc.shape, np.float32)
        native.requantize8(acc, _f64(multiplier), _f64(bias), out)
        return out
    rows = acc.reshape(-1, acc.shape[-1])
    out = np.empty(rows.shape, np.float32)
    n = min(len(rows), max(1, BLOCK // rows.shape[1]))
    # m and b repeated down a block: operands of one shape take numpy's fastest loops
    m, b = np.tile(multiplier, (n, 1)), np.tile(bias, (n, 1))
    scratch = np.empty((n, rows.shape[1]))
    for r in range(0, len(rows), n):
        src = rows[r: r + n]
        t, k = scratch[: len(src)], len(src)
        np.copyto(t, src)  # float32 -> float64: exact
        np.multiply(t, m[:k], out=t)
        np.add(t, b[:k], out=t)
        np.rint(t, out=t)
        np.clip(t, 0, A8_MAX, out=out[r: r + n])
    return out.reshape(acc.shape)


def affine8(acc: np.ndarray, multiplier: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """``acc * m + b`` per output channel of channels-first ``acc`` ``[C, ...]``, in float64
    (two correctly rounded steps, never fused)."""
    if native is not None and _native_ok(acc):
        out = np.empty(acc.shape, np.float64)
        native.affine8(acc, _f64(multiplier), _f64(bias), out)
        return out
    shape = (-1,) + (1,) * (acc.ndim - 1)
    out = np.multiply(acc, multiplier.reshape(shape), dtype=np.float64)  # float32 -> float64 is exact
    return np.add(out, bias.reshape(shape), out=out)


# -- transposed convolutions as sub-pixel GEMMs ---------------------------------------------------
# Output ``s*q + p`` of a transposed convolution (stride ``s``, phase ``p < s``) sums a few
# inputs near ``q``, each times a tap that depends on ``p`` only. So the small input's shifted
# copies side by side (im2col of the input, not of the ``s``-times larger output), times a
# matrix whose column blocks are the ``s`` phases, give every output once: no scatter-add, and
# in channels-last layout the phases along the last spatial axis come out interleaved. Taps a
# phase lacks are zero weights, whose products are exact zeros: the sums, integers within the
# bounds above, are the same in any order.


def _axis(k: int, s: int, pad: int) -> tuple[int, np.ndarray]:
    """One axis, seen from the output: output ``s*q + p`` meets input ``q + d0 + t`` at tap
    ``taps[p, t]`` (-1: not at all). Returns ``(d0, taps)``."""
    if not 0 <= pad < k:
        raise ValueError(f"padding {pad} outside 0..{k - 1}")
    d0, d1 = -((k - 1 - pad) // s), (s - 1 + pad) // s
    taps = np.array([[p + pad - s * d for d in range(d0, d1 + 1)] for p in range(s)])
    return d0, np.where((taps >= 0) & (taps < k), taps, -1)


@dataclass(frozen=True)
class SubpixelTConv:
    """A transposed convolution of channels-last ``[H, W, Cin]`` inputs as sub-pixel GEMMs, its
    weights arranged once (:meth:`of`); calling it gives the accumulators ``[H', W', Cout]``
    (``H' = H * sh`` as ``padding`` and ``output_padding`` crop it) in the weights' dtype."""

    stride: tuple[int, int]
    first: tuple[int, int]  # the shift of the first input copy, per axis
    copies: tuple[int, int]  # input copies per axis
    trim: tuple[int, int]  # output size minus stride times input size (<= 0), per axis
    cout: int
    gemms: tuple[tuple[slice, slice, np.ndarray], ...]  # (copies' columns, output columns, weights)

    @classmethod
    def of(cls, wf: np.ndarray, stride: tuple[int, int], padding: tuple[int, int],
           output_padding: tuple[int, int]) -> SubpixelTConv:
        """From weights ``wf`` ``[kh, kw, Cout, Cin]``."""
        kh, kw, cout, cin = wf.shape
        (dy0, ty), (dx0, tx) = _axis(kh, stride[0], padding[0]), _axis(kw, stride[1], padding[1])
        ny, nx = ty.shape[1], tx.shape[1]
        w = np.zeros((ny, nx, cin, stride[0], stride[1], cout), wf.dtype)
        spans: list[list] = []  # runs of phases that meet the same copies: [copies' columns, first, end]
        for phase, (py, px) in enumerate(np.ndindex(*stride)):
            met = [(iy, ix) for iy, ix in np.ndindex(ny, nx) if ty[py, iy] >= 0 and tx[px, ix] >= 0]
            for iy, ix in met:
                w[iy, ix, :, py, px] = wf[ty[py, iy], tx[px, ix]].T
            blocks = [iy * nx + ix for iy, ix in met]  # a phase no tap meets (kernel < stride): zeros
            rows = slice(min(blocks) * cin, (max(blocks) + 1) * cin) if blocks else slice(0, 0)
            if spans and spans[-1][0] == rows:
                spans[-1][2] = phase + 1
            else:
                spans.append([rows, phase, phase + 1])
        w = w.reshape(ny * nx * cin, -1)
        gemms = tuple((rows, slice(p0 * cout, p1 * cout), np.ascontiguousarray(w[rows, p0 * cout: p1 * cout]))
                      for rows, p0, p1 in spans)
        trim = tuple(min(0, k + op - p - s) for k, s, p, op in zip((kh, kw), stride, padding, output_padding))
        return cls(tuple(stride), (dy0, dx0), (ny, nx), trim, cout, gemms)

    def __call__(self, a: np.ndarray) -> np.ndarray:
        h, w, cin = a.shape
        (ny, nx), (dy0, dx0), (sh, sw) = self.copies, self.first, self.stride
        dtype = self.gemms[0][2].dtype
        cols = np.empty((h, w, ny, nx, cin), dtype)
        for iy, ix in np.ndindex(ny, nx):  # copy (iy, ix) at (y, x) holds a[y + dy, x + dx], zeros outside
            dy, dx = dy0 + iy, dx0 + ix
            y0, y1, x0, x1 = max(0, -dy), min(h, h - dy), max(0, -dx), min(w, w - dx)
            dst = cols[:, :, iy, ix]
            if y0 >= y1 or x0 >= x1:
                dst[...] = 0
                continue
            dst[y0: y1, x0: x1] = a[y0 + dy: y1 + dy, x0 + dx: x1 + dx]
            dst[:y0] = dst[y1:] = 0
            dst[y0: y1, :x0] = dst[y0: y1, x1:] = 0
        cols = cols.reshape(h * w, -1)
        acc = np.empty((h * w, sh * sw * self.cout), dtype)
        for rows, out, wg in self.gemms:
            np.matmul(cols[:, rows], wg, out=acc[:, out])
        # [h, w, sh, sw, C] -> [h, sh, w, sw, C]: a copy only where sh > 1 (phases along H to interleave)
        acc = acc.reshape(h, w, sh, sw, -1).transpose(0, 2, 1, 3, 4).reshape(h * sh, w * sw, -1)
        return acc[: h * sh + self.trim[0], : w * sw + self.trim[1]]


# -- 12-bit layers as channels-last GEMMs --------------------------------------------------------
# The same integers as :func:`conv_transpose` and :func:`conv1x1`, arranged once per layer and
# width (:class:`FixedConv`): a transposed convolution as sub-pixel GEMMs (no scatter-add), the
# requantization over cache-sized blocks, in place, in the same elementwise steps.

FLOAT64_EXACT = 2 ** 53


def exact_in_float64(cin: int, kernel: tuple[int, int], stride: tuple[int, int] = (1, 1),
                     w_max: int = 2 ** WEIGHT_BITS - 1) -> bool:
    """Whether a 12-bit layer's sums are exact in float64 whatever their order: ``cin`` channels
    times the taps that can meet in one output, every product at most ``w_max * 2**ACT_CLIP``, so
    every partial sum is an integer below ``2**53``."""
    taps = -(-kernel[0] // stride[0]) * -(-kernel[1] // stride[1])
    return cin * taps * int(w_max) * 2 ** ACT_CLIP < FLOAT64_EXACT


def is_fixed_point(a: np.ndarray) -> bool:
    """Whether ``a`` holds fixed-point activations: float64 integers, ``|a| <= 2**ACT_CLIP``."""
    if a.dtype != np.float64 or a.size == 0:
        return False
    return bool(np.abs(a).max() <= 2 ** ACT_CLIP) and bool(np.array_equal(np.rint(a), a))


def _requantize_rows(rows: np.ndarray, scale: np.ndarray, bias: np.ndarray, relu: bool) -> None:
    """:func:`_requantize` (then :func:`relu`) of channels-last ``rows`` ``[N, C]`` in place, a
    block of rows at a time; ``scale`` and ``bias`` are repeated down a block (``[n, C]``)."""
    n = len(scale)
    for r in range(0, len(rows), n):
        t = rows[r: r + n]
        k = len(t)
        np.multiply(t, scale[:k], out=t)
        np.add(t, bias[:k], out=t)
        np.rint(t, out=t)
        np.clip(t, -(2 ** ACT_CLIP), 2 ** ACT_CLIP, out=t)
        if relu:
            np.maximum(t, 0.0, out=t)


def _requantize_channels(acc: np.ndarray, scale: np.ndarray, bias: np.ndarray, relu: bool) -> None:
    """:func:`_requantize_rows` of channels-first ``acc`` ``[C, N]``, a block of channels at a time."""
    n = max(1, BLOCK // acc.shape[1])
    for r in range(0, len(acc), n):
        t = acc[r: r + n]
        np.multiply(t, scale[r: r + n, None], out=t)
        np.add(t, bias[r: r + n, None], out=t)
        np.rint(t, out=t)
        np.clip(t, -(2 ** ACT_CLIP), 2 ** ACT_CLIP, out=t)
        if relu:
            np.maximum(t, 0.0, out=t)


@dataclass(frozen=True)
class FixedConv:
    """A 12-bit layer of one ``(Cin, Cout)`` block, weights arranged once as float64 GEMM operands
    (:meth:`transposed`, :meth:`pointwise`). It takes channels-last fixed-point ``[H, W, Cin]``
    and gives what :func:`conv_transpose` or :func:`conv1x1` (then :func:`relu` where asked) give,
    bit for bit: the sums are the same integers (:func:`exact_in_float64`), the elementwise steps
    the same IEEE operations in the same order."""

    cout: int
    scale: np.ndarray  # float64 [Cout]
    bias: np.ndarray  # float64 [Cout]
    tconv: SubpixelTConv | None = None  # a transposed convolution's sub-pixel GEMMs
    w: np.ndarray | None = None  # a 1x1 convolution's float64 [Cout, Cin]

    @staticmethod
    def _checked(w_int: np.ndarray, scale: np.ndarray, bias: np.ndarray, cout: int, cin: int, kernel, stride):
        """The weights as float64, or None where the GEMMs could round or the factors are not
        :func:`_requantize`'s (float64, one per output channel, finite)."""
        w = np.asarray(w_int).astype(np.float64)
        if w.size == 0 or cin == 0 or cout == 0 or not np.isfinite(w).all() or not np.array_equal(np.rint(w), w):
            return None
        for v in (scale, bias):
            if not (isinstance(v, np.ndarray) and v.dtype == np.float64 and v.shape == (cout,) and np.isfinite(v).all()):
                return None
        return w if exact_in_float64(cin, kernel, stride, np.abs(w).max()) else None

    @classmethod
    def transposed(cls, w_int: np.ndarray, scale: np.ndarray, bias: np.ndarray, stride: tuple[int, int],
                   padding: tuple[int, int], output_padding: tuple[int, int]) -> FixedConv | None:
        """From :func:`conv_transpose`'s operands (weights ``[Cin, Cout, kh, kw]``); None where the
        sums could round or the geometry is one sub-pixel GEMMs do not cover: keep the plain form."""
        if w_int.ndim != 4:
            return None
        cin, cout, kh, kw = w_int.shape
        w = cls._checked(w_int, scale, bias, cout, cin, (kh, kw), stride)
        if w is None or min(stride) < 1 or min(output_padding) < 0:
            return None
        try:
            tconv = SubpixelTConv.of(np.ascontiguousarray(w.transpose(2, 3, 1, 0)), stride, padding, output_padding)
        except ValueError:  # padding outside the kernel
            return None
        return cls(cout, scale, bias, tconv=tconv)

    @classmethod
    def pointwise(cls, w_int: np.ndarray, scale: np.ndarray, bias: np.ndarray) -> FixedConv | None:
        """From :func:`conv1x1`'s operands (weights ``[Cout, Cin, 1, 1]``); None as :meth:`transposed`."""
        if w_int.ndim != 4 or w_int.shape[2:] != (1, 1):
            return None
        cout, cin = w_int.shape[:2]
        w = cls._checked(w_int, scale, bias, cout, cin, (1, 1), (1, 1))
        return None if w is None else cls(cout, scale, bias, w=np.ascontiguousarray(w[:, :, 0, 0]))

    @cached_property
    def _tiles(self) -> tuple[np.ndarray, np.ndarray]:
        """``scale`` and ``bias`` repeated down a block of channels-last rows: operands of one shape
        take numpy's fastest loops."""
        n = max(1, BLOCK // self.cout)
        return np.tile(self.scale, (n, 1)), np.tile(self.bias, (n, 1))

    def channels_last(self, a: np.ndarray, relu: bool = False) -> np.ndarray:
        """Fixed-point ``[H', W', Cout]`` of fixed-point ``a`` ``[H, W, Cin]``."""
        if self.tconv is not None:
            acc = self.tconv(a)  # a new array: a GEMM's output or the copy that interleaves its phases
            if not acc.flags.c_contiguous:  # output_padding cropped it across rows
                acc = np.ascontiguousarray(acc)
        else:
            h, w, cin = a.shape
            acc = (a.reshape(h * w, cin) @ self.w.T).reshape(h, w, -1)
        _requantize_rows(acc.reshape(-1, self.cout), *self._tiles, relu)
        return acc

    def channels_first(self, a: np.ndarray, relu: bool = False) -> np.ndarray:
        """:meth:`channels_last` as ``[Cout, H', W']`` (a 1x1 convolution gets it from the GEMM,
        BLAS reading ``a`` transposed)."""
        if self.tconv is not None:
            return np.ascontiguousarray(self.channels_last(a, relu).transpose(2, 0, 1))
        h, w, cin = a.shape
        acc = self.w @ a.reshape(h * w, cin).T
        _requantize_channels(acc, self.scale, self.bias, relu)
        return acc.reshape(-1, h, w)


def relu(a: np.ndarray) -> np.ndarray:
    return np.maximum(a, 0.0)


def scale_index(scales: np.ndarray, scale_table: np.ndarray) -> np.ndarray:
    """Index of the smallest table scale >= each scale (float64 comparisons only; int16, as
    there are at most 64 scales and a 24-MP image has ~18 M of them)."""
    table = np.asarray(scale_table).astype(np.float64)
    idx = np.searchsorted(table, np.asarray(scales, dtype=np.float64), side="left")
    return np.minimum(idx, table.size - 1).astype(np.int16)


def scale_index_lut(scale_table: np.ndarray) -> np.ndarray:
    """:func:`scale_index` of every fixed-point integer ``0 .. len(lut) - 1``, as one int16 array.

    A scale in fixed point is ``v / 2**ACT_FRAC`` for an integer ``v``; comparing it with a
    table entry ``t`` equals comparing ``v`` with ``t * 2**ACT_FRAC`` (scaling by a power of two is
    exact), so ``lut[clip(v, 0, len(lut) - 1)]`` is :func:`scale_index` exactly: below 0 every
    scale gets index 0, and from ``ceil(max(table) * 2**ACT_FRAC) + 1`` on the last index.
    One gather instead of a binary search per latent.
    """
    table = np.asarray(scale_table).astype(np.float64) * (1 << ACT_FRAC)
    top = int(np.ceil(table[-1])) + 1
    idx = np.searchsorted(table, np.arange(top + 1, dtype=np.float64), side="left")
    return np.minimum(idx, table.size - 1).astype(np.int16)


def scale_index_fixed(v: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """:func:`scale_index` of the fixed-point scales ``v`` (integers in float64), by :func:`scale_index_lut`."""
    at = np.clip(v, 0, lut.size - 1, out=np.empty(v.shape, np.intp), casting="unsafe")  # integers: exact
    return lut.take(at)


# A quantization step (the continuous quality knob) is an integer ``step`` meaning
# ``step / STEP_ONE``: files carry the integer, so every decoder derives the same tables from it.
STEP_BITS = 12
STEP_ONE = 1 << STEP_BITS
STEP_MIN, STEP_MAX = STEP_ONE // 4, 4 * STEP_ONE  # 0.25 .. 4


def divide_by_step(v: np.ndarray, step: int) -> np.ndarray:
    """Fixed-point scales ``v`` (integers in float64, ``|v| <= 2**ACT_CLIP``) divided by the
    step ``step / STEP_ONE``, rounded down: exact integer arithmetic (``v * STEP_ONE < 2**36``)."""
    if step == STEP_ONE:
        return v
    return np.floor_divide(v.astype(np.int64) * STEP_ONE, int(step)).astype(np.float64)


def step_scale_index(v: np.ndarray, step: int, lut: np.ndarray) -> np.ndarray:
    """``scale_index_fixed(divide_by_step(v, step), lut)``, the same steps over blocks of ``v``:
    the temporaries (integer indices, the divided scales) are a block's, not arrays of ``v``'s size."""
    flat = v.reshape(-1)
    out = np.empty(flat.shape, lut.dtype)
    at = np.empty(min(flat.size, BLOCK), np.intp)
    for r in range(0, flat.size, BLOCK):
        t = divide_by_step(flat[r: r + BLOCK], step)
        k = len(t)
        np.clip(t, 0, lut.size - 1, out=at[:k], casting="unsafe")  # integers: exact
        lut.take(at[:k], out=out[r: r + k], mode="clip")  # in range already: "clip" only spares a buffer
    return out.reshape(v.shape)


def scale_index8(acc: np.ndarray, multiplier: np.ndarray, bias: np.ndarray, step: int, lut: np.ndarray) -> np.ndarray:
    """``step_scale_index(to_fixed(affine8(acc, m, b)), step, lut)`` of channels-first ``acc``
    ``[C, ...]`` (an 8-bit branch's last accumulators), the same IEEE operations in the same order
    over cache-sized blocks of whole channels: no array of the layer's size but the indices. For
    the unit step the clip to ``+-2**ACT_CLIP`` before the one to the table's range changes
    nothing, so it is left out."""
    if native is not None and _native_ok(acc) and lut.dtype == np.int16:
        out = np.empty(acc.shape, np.int16)
        native.scale_index8(acc, _f64(multiplier), _f64(bias), int(step), np.ascontiguousarray(lut), out)
        return out
    rows = acc.reshape(acc.shape[0], -1)
    cout, hw = rows.shape
    out = np.empty(rows.shape, lut.dtype)
    n = min(cout, max(1, BLOCK // hw))  # channels per block
    scratch, at = np.empty((n, hw)), np.empty((n, hw), np.intp)
    m, b = np.asarray(multiplier, np.float64).reshape(-1, 1), np.asarray(bias, np.float64).reshape(-1, 1)
    for c in range(0, cout, n):
        k = min(n, cout - c)
        v = scratch[:k]
        np.multiply(rows[c: c + k], m[c: c + k], out=v, dtype=np.float64)  # float32 -> float64 is exact
        np.add(v, b[c: c + k], out=v)
        np.multiply(v, float(1 << ACT_FRAC), out=v)  # a power of two: exact
        np.rint(v, out=v)
        if step != STEP_ONE:
            np.minimum(np.maximum(v, -(2 ** ACT_CLIP), out=v), 2 ** ACT_CLIP, out=v)
            v = divide_by_step(v, step)
        np.minimum(np.maximum(v, 0, out=v), lut.size - 1, out=v)
        np.copyto(at[:k], v, casting="unsafe")  # integers in range: exact
        lut.take(at[:k], out=out[c: c + k], mode="clip")
    return out.reshape(acc.shape)


def round_residual(y: np.ndarray, means: np.ndarray, step: int = STEP_ONE) -> np.ndarray:
    """Symbols ``round((y - means) / (step / STEP_ONE))`` (float64, half to even), clamped to
    int32; in place, so a 24-MP image's latent costs one float64 copy rather than four."""
    d = np.asarray(y).astype(np.float64)
    np.subtract(d, means, out=d)
    if step != STEP_ONE:
        np.divide(d, step / STEP_ONE, out=d)
    np.rint(d, out=d)
    np.clip(d, -(2 ** 31), 2 ** 31 - 1, out=d)
    return d.astype(np.int32)
