"""Range coding of integer symbols with frozen integer frequency tables.

This is the only module that talks to ``constriction``; networks never do. The contract:

* A *table set* is ``freqs`` (int32, ``[T, Lmax]``), ``lengths`` (``[T]``) and ``offsets``
  (``[T]``). Row ``t`` codes values ``offsets[t] .. offsets[t] + lengths[t] - 1``; entry
  ``lengths[t]`` is the *escape* symbol. Every used row sums to ``2**PRECISION`` and every
  entry is >= 1, so every symbol is codable.
* :func:`encode` codes each value with the row ``table_index`` names for it. Values outside a
  row's range are coded as escape, and their exact values follow the range-coded words as
  zig-zag varints. Decoding therefore returns exactly the encoded symbols, for any int32 input.
* The probabilities passed to constriction are ``freq / 2**PRECISION``, which are exact in
  float64 and exactly representable at constriction's 24-bit precision: the code is a pure
  function of the integer tables, the same on every machine.
* :func:`decode` raises :class:`~slimfast.errors.SlimfastError` on any malformed input; it
  never reads past ``data`` and never allocates more than the caller-given symbol count.
"""
from __future__ import annotations

import numpy as np

from .errors import SlimfastError

PRECISION = 16
TOTAL = 1 << PRECISION


def pmf_to_freqs(pmf: np.ndarray, tail_mass: float) -> np.ndarray:
    """Quantize a pmf (plus an escape probability ``tail_mass``) to int frequencies summing to TOTAL.

    Each symbol, the escape included, receives at least 1 so that nothing is uncodable.
    """
    p = np.concatenate([np.asarray(pmf, dtype=np.float64).clip(min=0), [max(float(tail_mass), 0.0)]])
    n = p.size
    if n >= TOTAL // 2:
        raise ValueError("table too long for the coder precision")
    s = p.sum()
    p = p / s if s > 0 else np.full(n, 1.0 / n)
    f = 1 + np.floor(p * (TOTAL - n)).astype(np.int64)
    f[int(np.argmax(f))] += TOTAL - int(f.sum())
    assert f.min() >= 1 and f.sum() == TOTAL
    return f.astype(np.int32)


def _varint_encode(values: np.ndarray) -> bytes:
    out = bytearray()
    for v in values.tolist():
        u = (v << 1) ^ (v >> 63)  # zig-zag
        u &= (1 << 64) - 1
        while True:
            b = u & 0x7F
            u >>= 7
            if u:
                out.append(b | 0x80)
            else:
                out.append(b)
                break
    return bytes(out)


def _varint_decode(buf: memoryview, pos: int, count: int) -> tuple[np.ndarray, int]:
    vals = np.empty(count, dtype=np.int64)
    n = len(buf)
    for i in range(count):
        u = 0
        shift = 0
        while True:
            if pos >= n or shift > 35:
                raise SlimfastError("corrupt stream: bad overflow value")
            b = buf[pos]
            pos += 1
            u |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
        vals[i] = (u >> 1) ^ -(u & 1)
    return vals, pos


def _uvarint(v: int) -> bytes:
    return _varint_encode(np.array([v], dtype=np.int64))  # non-negative: zig-zag is harmless


def _read_uvarint(buf: memoryview, pos: int) -> tuple[int, int]:
    vals, pos = _varint_decode(buf, pos, 1)
    if vals[0] < 0:
        raise SlimfastError("corrupt stream: negative length")
    return int(vals[0]), pos


def _compact_index(table_index) -> np.ndarray:
    """Flat table rows in the narrowest integer type: a 24-MP image has ~18 M symbols."""
    t = np.asarray(table_index).ravel()
    if t.size and t.dtype.kind in "iu" and 0 <= t.min() and t.max() < 2 ** 15:
        return t.astype(np.int16, copy=False)
    return t.astype(np.int64, copy=False)


def _groups(table_index: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Positions sorted by table (stable, so raster order within a table), and group bounds."""
    order = np.argsort(table_index, kind="stable")
    sorted_t = table_index[order]
    starts = np.flatnonzero(np.r_[True, sorted_t[1:] != sorted_t[:-1]]) if sorted_t.size else np.zeros(0, np.int64)
    ends = np.r_[starts[1:], sorted_t.size].astype(np.int64)
    return order, starts, ends


# Tables with few symbols (a hyperprior's z has one table per channel, ~100 symbols each) are
# prepared and finished in blocks, vectorized across tables: one numpy pass per block instead of
# several per table. A table with many symbols is its own block and uses scalar offsets, which is
# cheaper than gathering them per symbol. Blocks stay small on a 24-MP image (~18 M symbols).
SMALL_RUN = 2048
BLOCK_SYMBOLS = 1 << 16


def _blocks(starts: np.ndarray, ends: np.ndarray) -> list[tuple[int, int, list[tuple[int, int]]]]:
    """``(A, B, runs)``: consecutive table runs ``runs`` covering sorted positions ``A:B``."""
    blocks, runs = [], []
    for a, b in zip(starts.tolist(), ends.tolist()):
        if runs and (b - a > SMALL_RUN or b - runs[0][0] > BLOCK_SYMBOLS):
            blocks.append((runs[0][0], runs[-1][1], runs))
            runs = []
        runs.append((a, b))
        if b - a > SMALL_RUN:
            blocks.append((a, b, runs))
            runs = []
    if runs:
        blocks.append((runs[0][0], runs[-1][1], runs))
    return blocks


def _model(freqs_row: np.ndarray):
    import constriction
    return constriction.stream.model.Categorical(freqs_row.astype(np.float64) / TOTAL, perfect=False)


def encode(values: np.ndarray, table_index: np.ndarray, freqs: np.ndarray, lengths: np.ndarray,
           offsets: np.ndarray) -> bytes:
    """Encode int ``values`` (any shape) with per-value table rows ``table_index`` (same shape)."""
    import constriction

    values = np.asarray(values).ravel()
    if values.size and values.dtype.kind not in "iu":
        raise ValueError("values must be integers")
    table_index = _compact_index(table_index)
    if values.shape != table_index.shape:
        raise ValueError("values and table_index differ in size")
    order, starts, ends = _groups(table_index)
    enc = constriction.stream.queue.RangeEncoder()
    overflow = []
    for first, last, runs in _blocks(starts, ends):
        pos = order[first:last]
        if len(runs) == 1:  # one table: scalar length and offset
            ti = int(table_index[pos[0]])
            n, lo = int(lengths[ti]), int(offsets[ti])
        else:
            t = table_index[pos]
            n, lo = lengths[t].astype(np.int64), offsets[t]
        vals = values[pos].astype(np.int64)
        sym = vals - lo
        esc = (sym < 0) | (sym >= n)
        if esc.any():
            overflow.append(vals[esc])  # in coding order, as the decoder meets the escapes
            sym = np.where(esc, n, sym)
        sym = sym.astype(np.int32)
        for a, b in runs:
            ti = int(table_index[order[a]])
            enc.encode(sym[a - first: b - first], _model(freqs[ti, : int(lengths[ti]) + 1]))
    words = enc.get_compressed().astype("<u4")
    ovf = np.concatenate(overflow) if overflow else np.zeros(0, np.int64)
    return _uvarint(words.size) + words.tobytes() + _uvarint(ovf.size) + _varint_encode(ovf)


def decode(data: bytes, table_index: np.ndarray, freqs: np.ndarray, lengths: np.ndarray,
           offsets: np.ndarray) -> np.ndarray:
    """Inverse of :func:`encode`; returns int32 values shaped like ``table_index``."""
    import constriction

    shape = np.shape(table_index)
    table_index = _compact_index(table_index)
    buf = memoryview(data)
    nwords, pos = _read_uvarint(buf, 0)
    if pos + 4 * nwords > len(buf):
        raise SlimfastError("corrupt stream: truncated entropy-coded data")
    words = np.frombuffer(buf[pos: pos + 4 * nwords], dtype="<u4").astype(np.uint32)
    pos += 4 * nwords
    order, starts, ends = _groups(table_index)
    out = np.empty(table_index.size, dtype=np.int32)
    escapes = []
    try:
        dec = constriction.stream.queue.RangeDecoder(words)
        for first, last, runs in _blocks(starts, ends):
            idx = order[first:last]
            sym = np.empty(last - first, dtype=np.int32)
            for a, b in runs:
                ti = int(table_index[order[a]])
                sym[a - first: b - first] = dec.decode(_model(freqs[ti, : int(lengths[ti]) + 1]), b - a)
            if len(runs) == 1:
                n, lo = int(lengths[ti]), np.int32(offsets[ti])
            else:
                t = table_index[idx]
                n, lo = lengths[t], offsets[t].astype(np.int32)
            esc = sym == n
            if esc.any():
                escapes.append(idx[esc])
            out[idx] = sym + lo  # |offset| and n are table sizes: no overflow
    except SlimfastError:
        raise
    except Exception as exc:  # constriction reports malformed words as ValueError/AssertionError
        raise SlimfastError(f"corrupt stream: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    nesc = sum(e.size for e in escapes)
    novf, pos = _read_uvarint(buf, pos)
    if novf != nesc:
        raise SlimfastError("corrupt stream: overflow count mismatch")
    if novf > len(buf) - pos:
        raise SlimfastError("corrupt stream: truncated overflow values")
    vals, pos = _varint_decode(buf, pos, novf)
    if pos != len(buf):
        raise SlimfastError("corrupt stream: trailing bytes")
    if nesc:
        vals = np.asarray(vals, dtype=np.int64)
        if vals.min() < -(2 ** 31) or vals.max() >= 2 ** 31:
            raise SlimfastError("corrupt stream: value out of range")
        out[np.concatenate(escapes)] = vals
    return out.reshape(shape)


def estimate_bits(values: np.ndarray, table_index: np.ndarray, freqs: np.ndarray, lengths: np.ndarray,
                  offsets: np.ndarray) -> float:
    """Ideal code length in bits: ``-log2(freq / TOTAL)`` summed over the coded symbols."""
    values = np.asarray(values, dtype=np.int64).ravel()
    t = np.asarray(table_index, dtype=np.int64).ravel()
    n = lengths[t].astype(np.int64)
    sym = values - offsets[t]
    sym = np.where((sym < 0) | (sym >= n), n, sym)
    return float(-np.log2(freqs[t, sym].astype(np.float64) / TOTAL).sum())
