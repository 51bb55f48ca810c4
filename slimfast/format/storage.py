"""Compact storage of convolution weights: int8 per output slice (numpy only); also uint16
entropy-coding frequency tables (:func:`narrow_table`) and the integer
hyper-synthesis weights at their own bit width (:func:`pack_intn`).

A weights file may store a float tensor ``NAME`` as ``int8`` plus a float32 scale per slice
along axis 0 (``NAME`` + :data:`SCALE_SUFFIX`). Reading it back is one exact IEEE product per
element, ``float32(q) * scale``, so every machine and both backends (torch, ONNX Runtime)
rebuild the same float32 weights bit for bit: the weights' identity (their SHA-256) still pins
the decoder's pixels. Only the storage shrinks (4x against float32, 2x against fp16); the
cost is a small, measured RD change that model cards record.

The slices along axis 0 are output channels of ``Conv2d`` weights and input channels of
``ConvTranspose2d`` weights. Both are nested in slimmable models, so a narrower width reuses
the leading slices with their own scales unchanged.
"""
from __future__ import annotations

import numpy as np

SCALE_SUFFIX = ":int8_scale"
# Only tensors this large are worth packing; biases, GDN and entropy parameters stay fp16.
MIN_ELEMENTS = 1024


def packable(w: np.ndarray) -> bool:
    return w.dtype == np.float32 and w.ndim == 4 and w.size >= MIN_ELEMENTS


def pack(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(q int8, scale float32 [w.shape[0]])`` with ``|q| <= 127``, round to nearest."""
    w = np.asarray(w, dtype=np.float32)
    peak = np.abs(w.reshape(w.shape[0], -1)).max(axis=1)
    scale = np.where(peak > 0, peak / np.float32(127), np.float32(1)).astype(np.float32)
    q = np.rint(w / scale.reshape((-1,) + (1,) * (w.ndim - 1)))
    return np.clip(q, -127, 127).astype(np.int8), scale


def unpack(q: np.ndarray, scale: np.ndarray) -> np.ndarray:
    return q.astype(np.float32) * scale.astype(np.float32).reshape((-1,) + (1,) * (q.ndim - 1))


INTN_SUFFIX = ":intn"
INTN_SHAPE_SUFFIX = ":intn_shape"


def int_bits(a: np.ndarray) -> int:
    """Bits of two's complement that hold every value of integer array ``a``."""
    lo, hi = int(a.min()), int(a.max())
    return max(max(hi, -lo - 1).bit_length() + 1, 1)


def intn_packable(name: str, a: np.ndarray) -> bool:
    """The integer hyper-synthesis weights (``int_w*``: int16 holding 13-bit values, see
    :mod:`slimfast.coding.intmath`) are worth packing losslessly at their own bit width."""
    return (name.rsplit(".", 1)[-1].startswith("int_w") and a.dtype == np.int16 and a.size >= MIN_ELEMENTS
            and int_bits(a) < 16)


def pack_intn(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(bits uint8, header int64 [bits, *shape])``: each value's ``bits`` low bits of two's
    complement, least significant first, values one after another, padded to a whole byte.
    Exact: :func:`unpack_intn` returns ``a`` itself."""
    a = np.asarray(a)
    bits = int_bits(a)
    v = a.ravel().astype(np.int64) & ((1 << bits) - 1)
    planes = ((v[:, None] >> np.arange(bits)) & 1).astype(np.uint8)
    return np.packbits(planes.ravel(), bitorder="little"), np.asarray([bits, *a.shape], dtype=np.int64)


def unpack_intn(packed: np.ndarray, header: np.ndarray) -> np.ndarray:
    bits, shape = int(header[0]), tuple(int(n) for n in header[1:])
    n = int(np.prod(shape))
    if not 1 <= bits <= 16 or packed.size != (n * bits + 7) // 8:
        raise ValueError(f"{packed.size} packed bytes do not hold {n} values of {bits} bits")
    planes = np.unpackbits(packed, bitorder="little")[: n * bits].reshape(n, bits)
    # One pass per bit plane in uint16 (this runs on every model load), then two's complement
    # by flipping the sign bit and subtracting it.
    v = np.zeros(n, dtype=np.uint16)
    for b in range(bits):
        v |= planes[:, b].astype(np.uint16) << np.uint16(b)
    sign = 1 << (bits - 1)
    return ((v ^ np.uint16(sign)).astype(np.int32) - sign).astype(np.int16).reshape(shape)


def narrow_table(name: str, a: np.ndarray) -> np.ndarray | None:
    """An entropy model's frequency table (``*.freqs``, int32) as uint16, or None where it does
    not fit. Frequencies sum to 2^16 over at least two symbols (:mod:`slimfast.coding.coder`), so every
    entry fits, and a table is as wide as its widest channel: uint16 halves it, exactly."""
    if (name.rsplit(".", 1)[-1] != "freqs" or a.dtype != np.int32 or a.size == 0
            or a.min() < 0 or a.max() > np.iinfo(np.uint16).max):
        return None
    return a.astype(np.uint16)


def unpack_state(state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The tensors of a state read from disk as the models hold them: packed entries rebuilt as
    float32 (scales dropped), bit-packed integers as int16, uint16 frequency tables widened to int32."""
    out = {}
    for k, v in state.items():
        if k.endswith(INTN_SUFFIX):
            name = k[: -len(INTN_SUFFIX)]
            out[name] = unpack_intn(v, state[name + INTN_SHAPE_SUFFIX])
            continue
        if k.endswith((SCALE_SUFFIX, INTN_SHAPE_SUFFIX)):
            continue
        s = state.get(k + SCALE_SUFFIX)
        out[k] = unpack(v, s) if s is not None else (v.astype(np.int32) if v.dtype == np.uint16 else v)
    return out
