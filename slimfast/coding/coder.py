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
* :func:`decode` raises :class:`CorruptStream` (a :class:`~slimfast.errors.SlimfastError`) on
  any malformed input; it never reads past ``data`` and never allocates more than the
  caller-given symbol count. A range decoder given too few words does not fail by itself (it
  reads zeros past the end), so :func:`decode` counts the information its symbols carry and
  refuses a stream whose symbols need more bits than its words hold; callers bound the symbol
  count by the stream's size before allocating anything (:func:`min_bits`, :func:`check_capacity`).
"""
from __future__ import annotations

import numpy as np

from ..errors import CorruptFileError, SlimfastError

PRECISION = 16
TOTAL = 1 << PRECISION
WORD_BITS = 32
# Room left by check_capacity beyond a stream's bits; a valid stream never needs it.
CAPACITY_SLACK_BITS = 64


class CorruptStream(CorruptFileError):
    """A malformed entropy-coded stream; the message starts with "corrupt stream: "."""


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
                raise CorruptStream("corrupt stream: bad overflow value")
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
        raise CorruptStream("corrupt stream: negative length")
    return int(vals[0]), pos


def min_bits(freqs: np.ndarray) -> np.ndarray:
    """Per table row, the fewest bits any of its symbols costs: ``-log2(max freq / TOTAL)``.

    The range coder spends at least ``-log2(freq / TOTAL)`` bits on a symbol, so no stream holds
    ``n`` symbols of a row in fewer than ``n * min_bits`` bits. An unused all-zero row counts as
    16 bits; it is never referenced.
    """
    top = np.maximum(np.asarray(freqs).max(axis=1), 1).astype(np.float64)
    return -np.log2(top / TOTAL)


def check_capacity(data: bytes, least_bits: float) -> None:
    """Refuse ``data`` if it is too short for symbols that cost at least ``least_bits`` in all.

    Called before anything is allocated for the symbols, so that the work a stream causes is
    bounded by its size, not by the image size its header declares.
    """
    if least_bits > 8 * len(data) + CAPACITY_SLACK_BITS:
        raise CorruptStream(f"corrupt stream: {len(data)} bytes cannot hold the declared latent "
                            f"(it needs at least {int(least_bits // 8)} bytes)")


def costs(freqs: np.ndarray) -> np.ndarray:
    """The fewest bits the range coder can spend on each table entry (inf where a row is padded).

    constriction quantizes ``freq / TOTAL`` to its 24-bit precision (``freq * 256``), adjusting
    entries by a unit or two to keep every probability positive and the total exact; an entry
    may so cost a little less than ``-log2(freq / TOTAL)``. The bound takes the cheapest it can be,
    so that counting what a valid stream's symbols carry never exceeds what its words hold.
    """
    f = np.asarray(freqs).astype(np.float64)
    cheapest = np.minimum(f * (1 << (24 - PRECISION)) + 2, 1 << 24) / (1 << 24)
    with np.errstate(divide="ignore"):
        return np.where(f > 0, -np.log2(cheapest), np.inf)


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
           offsets: np.ndarray, table_costs: np.ndarray | None = None) -> np.ndarray:
    """Inverse of :func:`encode`; returns int32 values shaped like ``table_index``.
    ``table_costs``: :func:`costs` of ``freqs``, where the caller keeps it between calls."""
    import constriction

    shape = np.shape(table_index)
    table_index = _compact_index(table_index)
    buf = memoryview(data)
    nwords, pos = _read_uvarint(buf, 0)
    if pos + 4 * nwords > len(buf):
        raise CorruptStream("corrupt stream: truncated entropy-coded data")
    words = np.frombuffer(buf[pos: pos + 4 * nwords], dtype="<u4").astype(np.uint32)
    pos += 4 * nwords
    order, starts, ends = _groups(table_index)
    out = np.empty(table_index.size, dtype=np.int32)
    escapes = []
    # A symbol shrinks the coder's 64-bit range by at least its (quantized) probability, a word
    # refills 32 bits, and the encoder writes a word per refill plus its sealed state. So a valid
    # stream's symbols, each priced at the least it can cost (costs), carry at most 32 * nwords
    # bits (the seal writes the state's last bits as whole words). More means that the decoder ran on past the words
    # (constriction then reads zeros, it does not fail), inventing symbols from nothing;
    # checked per block, so the waste stops early.
    cost, spent = (costs(freqs) if table_costs is None else table_costs), 0.0
    budget = WORD_BITS * nwords + 1e-6 * WORD_BITS * nwords  # float sums
    try:
        dec = constriction.stream.queue.RangeDecoder(words)
        for first, last, runs in _blocks(starts, ends):
            idx = order[first:last]
            sym = np.empty(last - first, dtype=np.int32)
            for a, b in runs:
                ti = int(table_index[order[a]])
                n_ti = int(lengths[ti]) + 1
                run = dec.decode(_model(freqs[ti, :n_ti]), b - a)
                spent += float(np.bincount(run, minlength=n_ti)[:n_ti] @ cost[ti, :n_ti])
                sym[a - first: b - first] = run
            if spent > budget:
                raise CorruptStream("corrupt stream: the range decoder reads past the end of its data")
            if len(runs) == 1:
                n, lo = int(lengths[ti]), np.int32(offsets[ti])
            else:
                t = table_index[idx]
                n, lo = lengths[t], offsets[t].astype(np.int32)
            esc = sym == n
            if esc.any():
                escapes.append(idx[esc])
            out[idx] = sym + lo  # |offset| and n are table sizes: no overflow
        if not dec.maybe_exhausted():  # a valid stream's decoder ends on its last word
            raise CorruptStream("corrupt stream: words left after the last symbol")
    except SlimfastError:
        raise
    except Exception as exc:  # constriction reports malformed words as ValueError/AssertionError
        raise CorruptStream(f"corrupt stream: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    nesc = sum(e.size for e in escapes)
    novf, pos = _read_uvarint(buf, pos)
    if novf != nesc:
        raise CorruptStream("corrupt stream: overflow count mismatch")
    if novf > len(buf) - pos:
        raise CorruptStream("corrupt stream: truncated overflow values")
    vals, pos = _varint_decode(buf, pos, novf)
    if pos != len(buf):
        raise CorruptStream("corrupt stream: trailing bytes")
    if nesc:
        vals = np.asarray(vals, dtype=np.int64)
        if vals.min() < -(2 ** 31) or vals.max() >= 2 ** 31:
            raise CorruptStream("corrupt stream: value out of range")
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
