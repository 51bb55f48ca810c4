"""Weights files read with ``safetensors.numpy`` (no torch), and GDN's effective parameters.

Floating-point tensors stored as fp16 are widened, and int8-packed ones rebuilt
(:mod:`slimfast.format.storage`), to float32 exactly as :func:`slimfast.models.weights.load_model` does;
integer tables and the integer hyper-synthesis keep their dtypes. GDN's reparametrization is
replayed in float32 numpy with the same sequence of IEEE operations as
:class:`slimfast.nn.layers.NonNegativeParameterizer` (torch eager runs them one by one, unfused), so
the effective ``beta`` / ``gamma`` are bit-identical to torch's.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

REPARAM_OFFSET = 2 ** -18
GDN_BETA_MIN = 1e-6


def load(path: str | Path) -> tuple[dict, dict[str, np.ndarray]]:
    """``(metadata, state)`` of a slimfast weights file; ``metadata["config"]`` is parsed."""
    meta, state, _ = load_with_digest(path)
    return meta, state


def load_with_digest(path: str | Path) -> tuple[dict, dict[str, np.ndarray], str]:
    """:func:`load` plus the SHA-256 of the very bytes it parsed (one read of the file)."""
    import hashlib

    from safetensors.numpy import load as load_bytes

    from .storage import unpack_state

    data = Path(path).read_bytes()
    try:
        n = int.from_bytes(data[:8], "little")
        meta = dict(json.loads(data[8:8 + n]).get("__metadata__") or {})
        tensors = load_bytes(data)
    except Exception as exc:  # truncated or not safetensors at all
        raise ValueError(f"{path}: not a readable safetensors file ({exc})") from None
    state = {k: v.astype(np.float32) if v.dtype == np.float16 else v for k, v in tensors.items()}
    if "architecture" not in meta:
        raise ValueError(f"{path}: not a slimfast weights file (no architecture in its metadata)")
    meta["config"] = json.loads(meta.get("config") or "{}")
    return meta, unpack_state(state), hashlib.sha256(data).hexdigest()


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
