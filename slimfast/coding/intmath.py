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
"""
from __future__ import annotations

import numpy as np

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


def to_fixed(x: np.ndarray) -> np.ndarray:
    """Real values to fixed-point integers (held in float64)."""
    return np.clip(np.rint(np.asarray(x, dtype=np.float64) * (1 << ACT_FRAC)), -(2 ** ACT_CLIP), 2 ** ACT_CLIP)


def from_fixed(a: np.ndarray) -> np.ndarray:
    return a / float(1 << ACT_FRAC)


def _requantize(acc: np.ndarray, scale: np.ndarray, bias_q: np.ndarray) -> np.ndarray:
    out = acc * scale[:, None, None]  # the one new array; the rest in place (same values)
    np.add(out, bias_q[:, None, None], out=out)
    np.rint(out, out=out)
    return np.clip(out, -(2 ** ACT_CLIP), 2 ** ACT_CLIP, out=out)


def conv_transpose(a: np.ndarray, w_int: np.ndarray, scale: np.ndarray, bias_q: np.ndarray,
                   stride: tuple[int, int], padding: tuple[int, int], output_padding: tuple[int, int]) -> np.ndarray:
    """Transposed convolution of fixed-point ``a`` ``[Cin, H, W]``; weights ``[Cin, Cout, kh, kw]``."""
    cin, h, w = a.shape
    _, cout, kh, kw = w_int.shape
    sh, sw = stride
    ph, pw = padding
    full = np.zeros((cout, (h - 1) * sh + kh + output_padding[0], (w - 1) * sw + kw + output_padding[1]))
    x = a.reshape(cin, h * w)
    wf = np.ascontiguousarray(w_int.astype(np.float64).transpose(2, 3, 1, 0))  # [kh, kw, Cout, Cin]: BLAS-ready
    for i in range(kh):
        for j in range(kw):
            y = wf[i, j] @ x
            full[:, i: i + (h - 1) * sh + 1: sh, j: j + (w - 1) * sw + 1: sw] += y.reshape(cout, h, w)
    acc = full[:, ph: ph + h * sh, pw: pw + w * sw]
    return _requantize(acc, scale, bias_q)


def conv1x1(a: np.ndarray, w_int: np.ndarray, scale: np.ndarray, bias_q: np.ndarray) -> np.ndarray:
    """1x1 convolution of fixed-point ``a`` ``[Cin, H, W]``; weights ``[Cout, Cin, 1, 1]``."""
    cin, h, w = a.shape
    acc = (w_int[:, :, 0, 0].astype(np.float64) @ a.reshape(cin, h * w)).reshape(-1, h, w)
    return _requantize(acc, scale, bias_q)


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
    return lut[np.clip(v, 0, lut.size - 1).astype(np.intp)]


def round_residual(y: np.ndarray, means: np.ndarray) -> np.ndarray:
    """Symbols ``round(y - means)`` (float64, half to even), clamped to int32; in place, so a
    24-MP image's latent costs one float64 copy rather than four."""
    d = np.asarray(y).astype(np.float64)
    np.subtract(d, means, out=d)
    np.rint(d, out=d)
    np.clip(d, -(2 ** 31), 2 ** 31 - 1, out=d)
    return d.astype(np.int32)
