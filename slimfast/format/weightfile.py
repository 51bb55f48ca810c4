"""Weights files (safetensors) read with numpy alone (no torch), and GDN's effective parameters.

Floating-point tensors stored as fp16 are widened, and int8-packed ones rebuilt
(:mod:`slimfast.format.storage`), to float32 exactly as :func:`slimfast.models.weights.load_model` does;
integer tables and the integer hyper-synthesis keep their dtypes. :func:`load_with_digest` does
that lazily, tensor by tensor on first use: a decoder whose synthesis graph is cached never widens
the analysis' or the synthesis' weights (most of the file). GDN's reparametrization is replayed
in float32 numpy with the same sequence of IEEE operations as
:class:`slimfast.nn.layers.NonNegativeParameterizer` (torch eager runs them one by one, unfused), so
the effective ``beta`` / ``gamma`` are bit-identical to torch's.
"""
from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from . import storage

REPARAM_OFFSET = 2 ** -18
GDN_BETA_MIN = 1e-6


def load(path: str | Path) -> tuple[dict, dict[str, np.ndarray]]:
    """``(metadata, state)`` of a slimfast weights file; ``metadata["config"]`` is parsed."""
    meta, state, _ = load_with_digest(path)
    return meta, dict(state)


def load_with_digest(path: str | Path) -> tuple[dict, Mapping[str, np.ndarray], str]:
    """:func:`load` plus the SHA-256 of the very bytes it parsed (one read of the file). The state
    is a read-only mapping that builds each tensor when first looked up (then keeps it)."""
    import hashlib

    data = Path(path).read_bytes()
    try:
        meta, raw = _parse(data)
    except Exception as exc:  # truncated or not safetensors at all
        raise ValueError(f"{path}: not a readable safetensors file ({exc})") from None
    if "architecture" not in meta:
        raise ValueError(f"{path}: not a slimfast weights file (no architecture in its metadata)")
    meta["config"] = json.loads(meta.get("config") or "{}")
    return meta, LazyState(raw), hashlib.sha256(data).hexdigest()


# safetensors' dtype names; the format is little-endian
_DTYPES = {"BOOL": "?", "U8": "u1", "I8": "i1", "U16": "<u2", "I16": "<i2", "F16": "<f2", "U32": "<u4",
           "I32": "<i4", "F32": "<f4", "U64": "<u8", "I64": "<i8", "F64": "<f8"}


def _parse(data: bytes) -> tuple[dict, dict[str, np.ndarray]]:
    """``(metadata, {name: read-only view into data})`` of a safetensors file's bytes, checked as
    ``safetensors`` checks them: the header's JSON, known dtypes, each tensor's byte span matching
    its shape, and the spans tiling the data after the header exactly."""
    if len(data) < 8:
        raise ValueError("shorter than its header length")
    n = int.from_bytes(data[:8], "little")
    start = 8 + n
    if start > len(data):
        raise ValueError("header longer than the file")
    header = json.loads(data[8:start])
    if not isinstance(header, dict):
        raise ValueError("header is not a JSON object")
    meta = dict(header.pop("__metadata__", None) or {})
    size, spans, raw = len(data) - start, [], {}
    for name, entry in header.items():
        dtype = np.dtype(_DTYPES[entry["dtype"]])
        shape = tuple(int(d) for d in entry["shape"])
        begin, end = (int(o) for o in entry["data_offsets"])
        count = math.prod(shape)
        if min(shape, default=0) < 0 or not 0 <= begin <= end <= size or end - begin != count * dtype.itemsize:
            raise ValueError(f"tensor {name!r}: its byte span does not match its shape")
        spans.append((begin, end))
        raw[name] = (np.frombuffer(data, dtype, count, start + begin) if count else np.empty(0, dtype)).reshape(shape)
    pos = 0
    for begin, end in sorted(spans):
        if begin != pos:
            raise ValueError("tensor data overlaps or leaves gaps")
        pos = end
    if pos != size:
        raise ValueError("data after the last tensor")
    return meta, raw


def _widened(v: np.ndarray) -> np.ndarray:
    """A stored tensor as the models hold it before unpacking: fp16 as float32, others in native
    byte order, always a fresh, writable array."""
    return v.astype(np.float32 if v.dtype == np.float16 else v.dtype.newbyteorder("="))


class LazyState(Mapping):
    """The state :func:`storage.unpack_state` makes of the stored tensors ``raw``, each entry
    built on its first lookup by the same operations (fp16 widened to float32 first)."""

    def __init__(self, raw: dict[str, np.ndarray]):
        self._raw = raw
        self._built: dict[str, np.ndarray] = {}
        skip = (storage.SCALE_SUFFIX, storage.INTN_SHAPE_SUFFIX)
        self._names = [k[: -len(storage.INTN_SUFFIX)] if k.endswith(storage.INTN_SUFFIX) else k
                       for k in raw if not k.endswith(skip)]
        self._known = frozenset(self._names)

    def __getitem__(self, name: str) -> np.ndarray:
        v = self._built.get(name)
        if v is None:
            if name not in self._known:
                raise KeyError(name)
            v = self._built[name] = self._build(name)
        return v

    def _build(self, name: str) -> np.ndarray:
        raw = self._raw
        packed = raw.get(name + storage.INTN_SUFFIX)
        if packed is not None:
            return storage.unpack_intn(_widened(packed), _widened(raw[name + storage.INTN_SHAPE_SUFFIX]))
        v, scale = _widened(raw[name]), raw.get(name + storage.SCALE_SUFFIX)
        if scale is not None:
            return storage.unpack(v, _widened(scale))
        return v.astype(np.int32) if v.dtype == np.uint16 else v

    def __contains__(self, name) -> bool:
        return name in self._known

    def __iter__(self):
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


def nonneg(v: np.ndarray, minimum: float = 0.0, reparam_offset: float = REPARAM_OFFSET) -> np.ndarray:
    """``NonNegativeParameterizer.forward`` in float32: ``b * b - pedestal``, ``b = v + (max(v, bound) - v)``."""
    pedestal = reparam_offset ** 2
    bound = (float(minimum) + pedestal) ** 0.5
    v = np.asarray(v, dtype=np.float32)
    bounded = v + (np.maximum(v, np.float32(bound)) - v)
    return bounded * bounded - np.float32(pedestal)


def gdn_params(state: dict[str, np.ndarray], prefix: str, beta_min: float = GDN_BETA_MIN) -> tuple[np.ndarray, np.ndarray]:
    """Effective ``(beta [C], gamma [C, C])`` of the :class:`~slimfast.nn.layers.GDN` at ``prefix``."""
    return nonneg(state[prefix + "beta"], beta_min), nonneg(state[prefix + "gamma"])


def slim_gdn_plus_params(state: dict[str, np.ndarray], prefix: str, index: int, c: int,
                         beta_min: float = GDN_BETA_MIN) -> tuple[np.ndarray, np.ndarray]:
    """Effective ``(beta, gamma)`` of :class:`~slimfast.nn.slim.SlimGDNPlus` at width index ``index``."""
    s = lambda name: nonneg(state[prefix + name])[index]  # noqa: E731
    beta = s("beta_scale") * nonneg(state[prefix + "beta"], beta_min)[:c] + s("beta_bias")
    beta = beta + (np.maximum(beta, np.float32(beta_min)) - beta)
    gamma = s("gamma_scale") * nonneg(state[prefix + "gamma"])[:c, :c] + s("gamma_bias")
    return beta, gamma
