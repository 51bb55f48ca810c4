"""Interleaved rANS over frozen integer tables: the default entropy coder of new files.

The same contract as :mod:`slimfast.coding.coder` (the range coder that files without a ``LAYT``
chunk use): a table set of ``freqs`` (rows summing to ``2**16``, every entry >= 1), ``lengths``
and ``offsets``; entry ``lengths[t]`` of a row is the escape, and escaped values follow the
words as zig-zag varints. Decoding returns exactly the encoded symbols, for any int32 input.

A stream is ``uvarint(n_bytes) bytes uvarint(n_escapes) varint(escape)*``. Two 32-bit states in
``[2**23, 2**31)`` code the symbols in raster order, symbol ``i`` with state ``i % 2``; the
encoder runs backwards from the last symbol, both states starting at ``2**23``, and writes the
states first (state 0, then 1, 4 bytes each, most significant first). Decoding symbol ``i`` from
state ``x``::

    slot = x mod 2**16;  s = the symbol whose cumulative range [cum[s], cum[s + 1]) holds slot
    x = freq[s] * (x >> 16) + slot - cum[s];  while x < 2**23: x = (x << 8) | next byte

A valid stream ends with both states at ``2**23`` and no byte left: decoding checks both, and
never reads past the bytes. Everything is integer arithmetic, so the bytes are the same on every
machine.

Why rANS: decoding is a multiply and a table look-up per symbol with no division, and two states
let a CPU overlap consecutive symbols. Why bytes and states of at least 2**23: rANS loses rate
where its state is small next to the table precision; 2**7 times 2**16 makes the loss negligible,
where 16-bit words (states from 2**16) would not.

``_rans`` (``_rans.c``, built at install) runs it without the GIL; where it was not built, the
pure-Python loops below give the same bytes, slowly. They are also the reference the tests hold
the native code to.
"""
from __future__ import annotations

from functools import cached_property

import numpy as np

from . import coder
from .coder import CorruptStream

try:
    from . import _rans as native
except ImportError:  # not built (no compiler at install): the reference loops below
    native = None

PROB_BITS = 16
TOTAL = 1 << PROB_BITS
STATE_LOW = 1 << 23
STATE_HIGH = 1 << 31


class Prepared:
    """A table set ready for coding, made once per model (:meth:`Tables.prepared
    <slimfast.coding.latent_codecs.Tables>`): cumulative frequencies and, natively, the decoder's
    slot look-up."""

    def __init__(self, freqs: np.ndarray, lengths: np.ndarray, offsets: np.ndarray):
        self.freqs = np.ascontiguousarray(freqs, dtype=np.int32)
        self.lengths = np.ascontiguousarray(lengths, dtype=np.int32)
        self.offsets = np.ascontiguousarray(offsets, dtype=np.int32)
        self.native = None if native is None else native.prepare(self.freqs, self.lengths, self.offsets,
                                                                  self.freqs.shape[1])

    # The reference loops' tables: made only where they run (the native code keeps its own).
    @cached_property
    def valid(self) -> np.ndarray:
        """Per row, whether it is a valid table (as ``_rans.c`` decides): no symbol may use another."""
        return _valid_rows(self.freqs, self.lengths)

    @cached_property
    def cum(self) -> np.ndarray:
        cum = np.zeros((self.freqs.shape[0], self.freqs.shape[1] + 1), dtype=np.int64)
        np.cumsum(self.freqs, axis=1, out=cum[:, 1:])
        return cum


def _valid_rows(freqs: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Rows with at least one symbol and the escape, each frequency >= 1, summing to 2**16."""
    n = np.asarray(lengths, dtype=np.int64)
    cols = np.arange(freqs.shape[1])
    used = cols[None, :] <= n[:, None]
    f = np.where(used, freqs, 0)
    ok = (n >= 1) & (n + 1 <= freqs.shape[1]) & (f.sum(axis=1) == TOTAL)
    return ok & np.all(~used | ((freqs >= 1) & (freqs <= TOTAL)), axis=1)


def _rows(table_index) -> np.ndarray:
    t = np.ascontiguousarray(np.asarray(table_index).ravel())
    if t.dtype not in (np.int16, np.int32):
        t = t.astype(np.int32)
    return t


def encode(values: np.ndarray, table_index: np.ndarray, tables: Prepared) -> bytes:
    """Code int ``values`` (any shape) with per-value table rows ``table_index`` (same shape)."""
    values = np.asarray(values).ravel()
    if values.size and values.dtype.kind not in "iu":
        raise ValueError("values must be integers")
    if values.size and values.dtype != np.int32 and (values.min() < -(2 ** 31) or values.max() >= 2 ** 31):
        raise ValueError("values must fit in int32")  # int32 symbols, the codecs' own, need no pass
    values = np.ascontiguousarray(values, dtype=np.int32)
    rows = _rows(table_index)
    if rows.shape != values.shape:
        raise ValueError("values and table_index differ in size")
    if tables.native is not None:
        coded, escapes = native.encode(tables.native, values, rows)
    else:
        coded, escapes = _encode_py(values, rows, tables)
    overflow = values[np.frombuffer(escapes, dtype=np.int32)].astype(np.int64)
    return coder._uvarint(len(coded)) + coded + coder._uvarint(overflow.size) + coder._varint_encode(overflow)


def decode(data: bytes, table_index: np.ndarray, tables: Prepared) -> np.ndarray:
    """Inverse of :func:`encode`; int32 values shaped like ``table_index``. Raises
    :class:`~slimfast.coding.coder.CorruptStream` on any malformed stream."""
    shape = np.shape(table_index)
    rows = _rows(table_index)
    buf = memoryview(data)
    nbytes, pos = coder._read_uvarint(buf, 0)
    if pos + nbytes > len(buf):
        raise CorruptStream("corrupt stream: truncated entropy-coded data")
    coded = buf[pos: pos + nbytes]
    pos += nbytes
    novf, pos = coder._read_uvarint(buf, pos)
    if novf > min(len(buf) - pos, rows.size):
        raise CorruptStream("corrupt stream: truncated overflow values")
    vals, pos = coder._varint_decode(buf, pos, novf)
    if pos != len(buf):
        raise CorruptStream("corrupt stream: trailing bytes")
    if novf and (vals.min() < -(2 ** 31) or vals.max() >= 2 ** 31):
        raise CorruptStream("corrupt stream: value out of range")
    out = np.empty(rows.size, dtype=np.int32)
    try:
        if tables.native is not None:
            escapes = native.decode(tables.native, coded, rows, out, novf)
        else:
            escapes = _decode_py(coded, rows, tables, out, novf)
    except ValueError as exc:
        raise CorruptStream(f"corrupt stream: {exc}") from None
    positions = np.frombuffer(escapes, dtype=np.int32)
    if positions.size != novf:
        raise CorruptStream("corrupt stream: overflow count mismatch")
    out[positions] = vals
    return out.reshape(shape)


# -- the reference: the same integer steps as _rans.c, in Python -------------------------------------
def _symbol(tables: Prepared, t: int, v: int) -> int:
    n = int(tables.lengths[t])
    s = v - int(tables.offsets[t])
    return s if 0 <= s < n else n


def _check_rows(rows: np.ndarray, tables: Prepared) -> None:
    if rows.size and (rows.min() < 0 or rows.max() >= tables.valid.size or not tables.valid[rows].all()):
        raise ValueError("a table index names no valid table row")


def _encode_py(values: np.ndarray, rows: np.ndarray, tables: Prepared) -> tuple[bytes, bytes]:
    _check_rows(rows, tables)
    cum, out, escapes, x = tables.cum, bytearray(), [], [STATE_LOW, STATE_LOW]
    for i in range(values.size - 1, -1, -1):
        t = int(rows[i])
        s = _symbol(tables, t, int(values[i]))
        if s == tables.lengths[t]:
            escapes.append(i)
        start, freq = int(cum[t, s]), int(cum[t, s + 1] - cum[t, s])
        state = x[i & 1]
        while state >= freq << (31 - PROB_BITS):
            out.append(state & 0xFF)
            state >>= 8
        x[i & 1] = ((state // freq) << PROB_BITS) + state % freq + start
    for k in (1, 0):
        out += x[k].to_bytes(4, "little")
    return bytes(out[::-1]), np.array(escapes[::-1], dtype=np.int32).tobytes()


def _decode_py(coded, rows: np.ndarray, tables: Prepared, out: np.ndarray, max_escapes: int) -> bytes:
    _check_rows(rows, tables)
    b = bytes(coded)
    if len(b) < 8:
        raise ValueError("the rANS decoder reads past the end of its data")
    x, p, cum, escapes = [int.from_bytes(b[0:4], "big"), int.from_bytes(b[4:8], "big")], 8, tables.cum, []
    if not all(STATE_LOW <= v < STATE_HIGH for v in x):
        raise ValueError("a rANS state out of range")
    for i in range(rows.size):
        t = int(rows[i])
        state = x[i & 1]
        slot = state & (TOTAL - 1)
        s = int(np.searchsorted(cum[t], slot, side="right")) - 1
        state = int(cum[t, s + 1] - cum[t, s]) * (state >> PROB_BITS) + slot - int(cum[t, s])
        while state < STATE_LOW:
            if p >= len(b):
                raise ValueError("the rANS decoder reads past the end of its data")
            state, p = (state << 8) | b[p], p + 1
        x[i & 1] = state
        if s == tables.lengths[t]:
            if len(escapes) >= max_escapes:
                raise ValueError("more escapes than the stream's escape list holds")
            escapes.append(i)
        out[i] = s + int(tables.offsets[t])
    if x != [STATE_LOW, STATE_LOW] or p != len(b):
        raise ValueError("the rANS states do not end where the encoder started (or bytes are left)")
    return np.array(escapes, dtype=np.int32).tobytes()
