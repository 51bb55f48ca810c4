"""Latent codecs: float latents to symbols to strings and back, in numpy over frozen tables.

A latent codec owns everything between the transforms and the bytes, for every engine:
quantization, the exact entropy parameters, the strings and their order, and the rate
estimate. Engines (``slimfast.engines``) only run the float transforms, so a file decodes to
the same symbols whichever engine, precision or thread count wrote or reads it.

Contract of both codecs (``c`` latent channels, ``h x w`` the deepest latent's size):

* ``quantize(latents)``: float32 ``{"y"}`` (and ``{"z"}``) ``[1, c, H, W]`` to int32 symbols;
* ``encode(symbols, coder)``: the strings, in file order (``num_strings`` of them), entropy-coded
  with ``coder`` (:data:`CODERS`; :data:`DEFAULT_CODER` unless a file says otherwise);
* ``decode(strings, (h, w), coder)``: exactly the symbols that were encoded, or ``ValueError`` /
  :class:`~slimfast.errors.SlimfastError` for malformed strings. A string too short to hold
  the symbols of an ``h x w`` latent at the cheapest cost the tables allow is refused before
  anything of that size is allocated, so the work a file causes is bounded by its size;
* ``dequantize(symbols)``: ``y_hat`` float32, the synthesis input;
* ``estimate_bits(symbols)``: the size the strings would have, from the same tables.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from . import coder, intmath, rans
from . import hyper

# The entropy coders a stream may be written with: "range" (slimfast.coding.coder, every file
# without a LAYT chunk) and "rans" (slimfast.coding.rans, interleaved rANS: faster both ways).
# New files use rANS where its native code was built; the pure-Python rANS is for reading only.
CODERS = ("range", "rans")
DEFAULT_CODER = "rans" if rans.native is not None else "range"


def check_symbols(symbols: np.ndarray, c: int) -> None:
    if symbols.ndim != 4 or symbols.shape[0] != 1 or symbols.shape[1] != c:
        raise ValueError(f"expected symbols of shape [1, {c}, h, w], got {tuple(symbols.shape)}")


@dataclass(frozen=True)
class Tables:
    """A frozen table set for :mod:`slimfast.coding.coder`: one row per channel or per scale."""

    freqs: np.ndarray
    lengths: np.ndarray
    offsets: np.ndarray

    def __post_init__(self):
        if self.freqs.size == 0:
            raise RuntimeError("weights saved before update(): no coding tables")

    @cached_property
    def costs(self) -> np.ndarray:
        """:func:`slimfast.coding.coder.costs`: what decoding checks a stream's symbols against."""
        return coder.costs(self.freqs)

    @cached_property
    def min_bits(self) -> np.ndarray:
        """Per row, the fewest bits one symbol coded with it costs (:func:`slimfast.coding.coder.min_bits`)."""
        return coder.min_bits(self.freqs)

    @cached_property
    def prepared(self) -> rans.Prepared:
        """The tables as the rANS coder uses them, made once."""
        return rans.Prepared(self.freqs, self.lengths, self.offsets)

    def encode(self, values: np.ndarray, rows: np.ndarray, coder_name: str) -> bytes:
        """``values`` coded with the table rows ``rows`` (same shape) by the coder named."""
        if check_coder(coder_name) == "rans":
            return rans.encode(values, rows, self.prepared)
        return coder.encode(values, rows, self.freqs, self.lengths, self.offsets)

    def decode(self, data: bytes, rows: np.ndarray, coder_name: str) -> np.ndarray:
        """Inverse of :meth:`encode`: int32 values shaped like ``rows``."""
        if check_coder(coder_name) == "rans":
            return rans.decode(data, rows, self.prepared)
        return coder.decode(data, rows, self.freqs, self.lengths, self.offsets, self.costs)


def check_coder(name: str) -> str:
    if name not in CODERS:
        raise ValueError(f"unknown entropy coder {name!r} (known: {', '.join(CODERS)})")
    return name


class FactorizedCodec:
    """A per-channel factorized prior: ``round(y - median)`` coded with channel ``i``'s table.

    ``medians`` may hold more channels than are coded (a slimmable model's leading block).
    """

    num_strings = 1
    shape_key = "y"

    def __init__(self, channels: int, medians: np.ndarray, tables: Tables):
        self.channels = int(channels)
        self._median = np.asarray(medians, dtype=np.float32)[: self.channels].reshape(1, -1, 1, 1)
        self.tables = tables

    def _rows(self, shape) -> np.ndarray:
        b, c, h, w = shape
        return np.broadcast_to(np.arange(c, dtype=np.int16).reshape(1, c, 1, 1), (b, c, h, w))

    def quantize_tensor(self, v: np.ndarray) -> np.ndarray:
        check_symbols(v, self.channels)
        return np.rint(v - self._median).astype(np.int32)

    def dequantize_tensor(self, symbols: np.ndarray) -> np.ndarray:
        check_symbols(symbols, self.channels)
        return symbols.astype(np.float32) + self._median

    def encode_tensor(self, symbols: np.ndarray, coder_name: str = DEFAULT_CODER) -> bytes:
        check_symbols(symbols, self.channels)
        return self.tables.encode(symbols, self._rows(symbols.shape), coder_name)

    def decode_tensor(self, data: bytes, shape: tuple[int, int], coder_name: str = DEFAULT_CODER) -> np.ndarray:
        t = self.tables
        # Each position holds one symbol per channel, each costing at least its row's min_bits.
        coder.check_capacity(data, shape[0] * shape[1] * float(t.min_bits[: self.channels].sum()))
        return t.decode(data, self._rows((1, self.channels, *shape)), coder_name)

    def bits_tensor(self, symbols: np.ndarray) -> float:
        check_symbols(symbols, self.channels)
        t = self.tables
        return coder.estimate_bits(symbols, self._rows(symbols.shape), t.freqs, t.lengths, t.offsets)

    # -- the latent codec contract ------------------------------------------------------------------
    def quantize(self, latents: dict) -> dict:
        return {"y": self.quantize_tensor(latents["y"])}

    def encode(self, symbols: dict, coder_name: str = DEFAULT_CODER) -> list[bytes]:
        return [self.encode_tensor(symbols["y"], coder_name)]

    def decode(self, strings: list[bytes], shape: tuple[int, int], coder_name: str = DEFAULT_CODER) -> dict:
        _check_count(strings, 1)
        return {"y": self.decode_tensor(strings[0], shape, coder_name)}

    def dequantize(self, symbols: dict) -> np.ndarray:
        return self.dequantize_tensor(symbols["y"])

    def estimate_bits(self, symbols: dict) -> float:
        return self.bits_tensor(symbols["y"])

    def forget(self) -> None:
        """Nothing is remembered between calls (see :meth:`HyperpriorCodec.forget`)."""


def check_step(step) -> int:
    """``step`` as an int in ``STEP_MIN..STEP_MAX`` (:mod:`slimfast.coding.intmath`), or ValueError."""
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or \
            not intmath.STEP_MIN <= step <= intmath.STEP_MAX:
        raise ValueError(f"quantization step {step!r} is not an integer in {intmath.STEP_MIN}..{intmath.STEP_MAX}")
    return int(step)


def _check_count(strings, n: int) -> None:
    if len(strings) != n:
        raise ValueError(f"expected {n} string(s), got {len(strings)}")


class HyperpriorCodec:
    """y with a mean-and-scale conditional whose parameters come from z, itself factorized.

    ::

        z_hat -> h_s^sigma (integer) -> sigma -> sigma / Delta -> scale index (integer thresholds)
              -> h_s^mu    (integer) -> mu
        y symbols = round((y - mu) / Delta), coded with the table of their scale index
        y_hat = symbols * Delta + mu

    ``Delta = step / STEP_ONE`` is the quantization step of the quality knob (1 by default and
    in every file without a quality chunk); the division of the scales by it is integer
    arithmetic (:func:`slimfast.coding.intmath.divide_by_step`), so the tables stay exact.

    The hyper-synthesis runs on the integer-exact copy (:mod:`slimfast.coding.hyper`,
    :mod:`slimfast.coding.intmath`), so the tables chosen are the same on every machine. Strings, in
    order: z's, then y's.
    """

    num_strings = 2
    shape_key = "z"
    y_per_z = 4  # y's side over z's: every hyper-synthesis upsamples by 4

    def __init__(self, z: FactorizedCodec, scale_branch, mean_branch, tables: Tables, scale_table: np.ndarray,
                 step: int = intmath.STEP_ONE):
        self.z = z
        self.channels = z.channels
        self.scale_branch, self.mean_branch = scale_branch, mean_branch
        self.tables = tables
        self.scale_table = scale_table
        self.step = check_step(step)
        self.workers = 1  # threads for the two hyper-synthesis branches (CodingPath sets the engine's)
        self._last = None

    def with_step(self, step: int) -> HyperpriorCodec:
        """The same codec at quantization step ``step / STEP_ONE`` (sharing its tables)."""
        other = HyperpriorCodec(self.z, self.scale_branch, self.mean_branch, self.tables, self.scale_table, step)
        other.workers = self.workers
        return other

    def forget(self) -> None:
        """Drop the remembered entropy parameters. Decoding needs them twice within one call; a
        caller forgets them between calls, so that timing a repeated file counts their cost."""
        self._last = None

    def entropy_parameters(self, z_symbols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Exact ``(means float64, scale indices int16)`` for y, ``[1, c, 4h, 4w]``."""
        return self._parameters(z_symbols)[:2]

    def _parameters(self, z_symbols: np.ndarray, then=None) -> tuple:
        """``(means, indices, then(indices))``; ``then`` runs while the mean branch still does
        (:func:`slimfast.coding.hyper.entropy_parameters`)."""
        check_symbols(z_symbols, self.channels)
        key = (z_symbols.shape, z_symbols.tobytes())
        if self._last is not None and self._last[0] == key:
            means, index = self._last[1]
            return means, index, (None if then is None else then(index))
        out = hyper.entropy_parameters(z_symbols, self.z._median.ravel(), self.scale_branch, self.mean_branch,
                                       self.scale_table, self.workers, self.step, then=then)
        self._last = (key, out[:2])
        return out if then is not None else (*out, None)

    def quantize(self, latents: dict) -> dict:
        z = self.z.quantize_tensor(latents["z"])
        means, _ = self.entropy_parameters(z)
        return {"z": z, "y": intmath.round_residual(latents["y"], means, self.step)}

    def encode(self, symbols: dict, coder_name: str = DEFAULT_CODER) -> list[bytes]:
        y = symbols["y"]
        check_symbols(y, self.channels)
        _, index = self.entropy_parameters(symbols["z"])
        return [self.z.encode_tensor(symbols["z"], coder_name), self.tables.encode(y, index, coder_name)]

    def decode(self, strings: list[bytes], shape: tuple[int, int], coder_name: str = DEFAULT_CODER) -> dict:
        _check_count(strings, 2)
        t = self.tables
        y_count = self.channels * (self.y_per_z * shape[0]) * (self.y_per_z * shape[1])
        # Before z is decoded and the hyper-synthesis allocates y-sized means: whatever scales z
        # picks, no y symbol costs less than the cheapest row.
        coder.check_capacity(strings[1], y_count * float(t.min_bits.min()))
        z = self.z.decode_tensor(strings[0], shape, coder_name)

        def decode_y(index):  # while the mean branch runs: y needs only the scales
            if index.size != y_count:
                raise ValueError(f"the hyper-synthesis made {index.size} scales for {y_count} y symbols")
            return t.decode(strings[1], index, coder_name)

        return {"z": z, "y": self._parameters(z, decode_y)[2]}

    def dequantize(self, symbols: dict) -> np.ndarray:
        check_symbols(symbols["y"], self.channels)
        means, _ = self.entropy_parameters(symbols["z"])
        if self.step == intmath.STEP_ONE:
            return (symbols["y"] + means).astype(np.float32)
        return (symbols["y"] * (self.step / intmath.STEP_ONE) + means).astype(np.float32)

    def estimate_bits(self, symbols: dict) -> float:
        _, index = self.entropy_parameters(symbols["z"])
        t = self.tables
        return self.z.bits_tensor(symbols["z"]) + coder.estimate_bits(symbols["y"], index, t.freqs, t.lengths,
                                                                        t.offsets)
