"""Weights files from numpy random numbers: fixtures that need no torch.

Every tensor an architecture's description names (:mod:`slimfast.archs`) gets random values;
the frozen coding tables are built in numpy the way ``update()`` builds them (a discretized
density per channel or per scale through :func:`slimfast.coding.coder.pmf_to_freqs`), and the
hyper-synthesis gets its integer copy from :func:`slimfast.coding.intmath.quantize_weight`. The result
is a file every engine loads, so the one coding path can be tested in a process without torch.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from slimfast import archs
from slimfast.coding import coder, intmath
from slimfast.archs import grammar as g

SCALES = np.exp(np.linspace(np.log(0.11), np.log(256), 64))


def _gdn(rng, key: str, c: int, n_widths: int, kind: str) -> dict[str, np.ndarray]:
    beta, gamma = np.sqrt(np.ones(c)), np.sqrt(0.1 * np.eye(c) + 0.01 * rng.random((c, c)))
    if kind == "plain":
        return {f"{key}.beta": beta, f"{key}.gamma": gamma}
    if kind == "slim+":
        ones, zeros = np.ones(n_widths), np.zeros(n_widths)
        return {f"{key}.beta": beta, f"{key}.gamma": gamma, f"{key}.gamma_scale": ones, f"{key}.gamma_bias": zeros,
                f"{key}.beta_scale": ones, f"{key}.beta_bias": zeros}
    return {}  # switchable: one plain GDN per width, added by the caller


def _layer(rng, layer) -> dict[str, np.ndarray]:
    if isinstance(layer, (g.Conv, g.TConv)):
        kh, kw = layer.kernel
        shape = (layer.cout, layer.cin, kh, kw) if isinstance(layer, g.Conv) else (layer.cin, layer.cout, kh, kw)
        out = {f"{layer.key}.weight": rng.normal(0, 1 / np.sqrt(layer.cin * kh * kw), shape)}
        if layer.bias:
            out[f"{layer.key}.bias"] = rng.normal(0, 0.05, layer.cout)
        return out
    if isinstance(layer, g.GDN):
        if layer.kind == "switchable":
            return {k: v for i, c in enumerate(layer.per_width)
                    for k, v in _gdn(rng, f"{layer.key}.gdns.{i}", c, 1, "plain").items()}
        return _gdn(rng, layer.key, layer.channels, len(layer.per_width), layer.kind)
    if isinstance(layer, g.IQR):
        c, k = layer.channels, layer.key
        convs = (g.Conv(f"{k}.conv1", c, c // 4, (7, 1)), g.Conv(f"{k}.conv2", c // 4, c // 2, (1, 7)),
                 g.Conv(f"{k}.conv3", c // 2, c, (1, 1)))
        return {key: v for conv in convs for key, v in _layer(rng, conv).items()}
    return {}


def _table(pmfs: list[np.ndarray], offsets: list[int]) -> dict[str, np.ndarray]:
    lengths = np.array([p.size for p in pmfs], np.int32)
    freqs = np.zeros((len(pmfs), lengths.max() + 1), np.int32)
    for i, p in enumerate(pmfs):
        freqs[i, : p.size + 1] = coder.pmf_to_freqs(p, max(1 - p.sum(), 0.0))
    return {"freqs": freqs, "lengths": lengths, "offsets": np.array(offsets, np.int32)}


def _laplace(scale: float, half: int) -> np.ndarray:
    v = np.arange(-half, half + 1)
    cdf = lambda t: np.where(t < 0, 0.5 * np.exp(t / scale), 1 - 0.5 * np.exp(-t / scale))  # noqa: E731
    return cdf(v + 0.5) - cdf(v - 0.5)


def _density(c: int, filters: tuple[int, ...] = (3, 3, 3), init_scale: float = 10.0) -> dict[str, np.ndarray]:
    """The factorized density's training parameters at their initial values: no coding path reads
    them, but the torch classes load them (strictly)."""
    dims = (1, *filters, 1)
    init = float(np.log(np.expm1(1 / init_scale ** (1 / (len(filters) + 1)) / dims[1])))
    out = {"quantiles": np.tile(np.array([-init_scale, 0.0, init_scale], np.float32), (c, 1, 1))}
    for i in range(len(filters) + 1):
        out[f"matrices.{i}"] = np.full((c, dims[i + 1], dims[i]), init, np.float32)
        out[f"biases.{i}"] = np.zeros((c, dims[i + 1], 1), np.float32)
        if i < len(filters):
            out[f"factors.{i}"] = np.zeros((c, dims[i + 1], 1), np.float32)
    return out


def _entropy(rng, key: str, c: int) -> dict[str, np.ndarray]:
    scales = rng.uniform(0.5, 3.0, c)
    t = _table([_laplace(s, 12) for s in scales], [-12] * c)
    t = {**t, **_density(c), "_medians": rng.normal(0, 0.1, c).astype(np.float32)}
    return {f"{key}.{k}": v for k, v in t.items()}


def _branch(rng, branch: g.Branch) -> dict[str, np.ndarray]:
    out, i = {}, 0
    for layer in branch.layers:
        if isinstance(layer, g.ReLU):
            continue
        out.update(_layer(rng, layer))
        w, scale = intmath.quantize_weight(out[f"{layer.key}.weight"], 0 if isinstance(layer, g.Conv) else 1)
        out[f"{branch.key}.int_w{i}"], out[f"{branch.key}.int_s{i}"] = w, scale
        out[f"{branch.key}.int_b{i}"] = np.rint(out[f"{layer.key}.bias"] * (1 << intmath.ACT_FRAC))
        i += 1
    return out


def random_state(architecture: str, config: dict | None = None, seed: int = 0) -> dict[str, np.ndarray]:
    a = archs.describe(architecture, config)
    rng = np.random.default_rng(seed)
    full = a.widths[0] if a.widths else a.latent_channels
    layers = [*a.analysis(full), *(a.hyper_analysis(full) if a.hyper else []), *a.synthesis(full)]
    state = {k: v for layer in layers for k, v in _layer(rng, layer).items()}
    for branch in (a.hyper_synthesis(full) if a.hyper else ()):
        if branch is not None:
            state.update(_branch(rng, branch))
    for key, c in a.entropy_models():
        state.update(_entropy(rng, key, c))
    if a.hyper:
        half = [max(1, int(np.ceil(s * 8))) for s in SCALES]
        t = _table([_laplace(s, h) for s, h in zip(SCALES, half)], [-h for h in half])
        state.update({f"conditional.{k}": v for k, v in t.items()}, **{"conditional.scale_table": SCALES})
    exact64 = ("int_s", "int_b", "scale_table")  # float64 in every weights file
    return {k: (v.astype(np.float32) if v.dtype == np.float64 and not any(e in k for e in exact64) else v)
            for k, v in state.items()}


def write(path: Path, architecture: str, config: dict | None = None, seed: int = 0) -> Path:
    from safetensors.numpy import save_file

    a = archs.describe(architecture, config)
    meta = {"architecture": architecture, "config": json.dumps(a.config, sort_keys=True), "name": path.stem,
            "version": "1", "format": "slimfast-weights-1", "storage": "fp32"}
    save_file({k: np.ascontiguousarray(v) for k, v in random_state(architecture, config, seed).items()}, str(path),
              metadata=meta)
    return path


def install(out_dir: Path, name: str, architecture: str, config: dict | None = None, seed: int = 0) -> Path:
    """``name`` as a model folder entry (weights and card), as a release would ship it, without torch."""
    import hashlib

    out_dir.mkdir(parents=True, exist_ok=True)
    path = write(out_dir / f"{name}.safetensors", architecture, config, seed)
    a = archs.describe(architecture, config)
    state = random_state(architecture, config, seed)
    card = {"name": name, "family": name, "architecture": architecture, "version": "1", "default": False,
            "sha256": hashlib.sha256(path.read_bytes()).hexdigest(), "config": a.config,
            "widths": list(a.widths) if a.widths else None,
            "params": int(sum(v.size for k, v in state.items() if ".int_" not in k)), "train_steps": 0,
            "lambda": None, "lambdas": None, "metric": "mse", "storage": "fp32", "bytes": path.stat().st_size,
            "points": []}
    (out_dir / f"{name}.json").write_text(json.dumps(card, indent=2) + "\n")
    return path
