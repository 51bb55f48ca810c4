"""Calibration of the 8-bit hyper-synthesis (the ``hs_steps`` option of FasiNet-H).

The activation step entering each convolution of each h_s branch is taken from training
images (never Kodak): a percentile of the float activations' magnitudes, mapped to 255 (hidden,
after ReLU) or, for z_hat, to the power of two that fits 127; of several percentiles, the one
whose real coded bits on those images are fewest. Weights are untouched; :class:`slimfast.engines.specs.Specs` derives the 8-bit
weights from them deterministically.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..archs import grammar as g
from ..archs.shapes import tconv_padding


def _float_layer(state: dict, layer, a: np.ndarray) -> np.ndarray:
    """One float64 layer of a branch (the reference the 8-bit copy approximates)."""
    from ..coding import intmath

    w = state[f"{layer.key}.weight"].astype(np.float64)
    b = state[f"{layer.key}.bias"].astype(np.float64)[:, None, None]
    if isinstance(layer, g.Conv):
        return (w[:, :, 0, 0] @ a.reshape(a.shape[0], -1)).reshape(-1, *a.shape[1:]) + b
    (ph, oph), (pw, opw) = (tconv_padding(k, s) for k, s in zip(layer.kernel, layer.stride))
    wf = np.ascontiguousarray(w.transpose(2, 3, 1, 0))
    return intmath.tconv_accumulate(a, wf, tuple(layer.stride), (ph, pw), (oph, opw)) + b


def branch_inputs(state: dict, branch: g.Branch, z_hat: np.ndarray) -> list[np.ndarray]:
    """The float activations entering each convolution of ``branch`` (z_hat first)."""
    convs = [layer for layer in branch.layers if not isinstance(layer, g.ReLU)]
    seen, a = [z_hat], z_hat
    for layer in convs[:-1]:
        a = np.maximum(_float_layer(state, layer, a), 0)
        seen.append(a)
    return seen


PERCENTILES = (99.5, 99.9, 99.95, 99.99, 100.0)


def latents(model, images: list[Path], crop: int) -> list[dict]:
    """The analysis latents (y, z) of each image's top-left ``crop`` square."""
    from PIL import Image

    from ..codec import pad_image, to_input

    out = []
    for path in images:
        rgb = np.asarray(Image.open(path).convert("RGB"))[:crop, :crop]
        out.append(model.analyze(to_input(pad_image(rgb, model.pad_multiple))))
    return out


def _steps_at(mags: dict, percentile: float) -> dict[str, list[float]]:
    """Steps mapping the ``percentile`` of each activation's magnitude to the 8-bit range (z_hat:
    the power of two that fits 127)."""
    steps = {}
    for key, per in mags.items():
        top = [float(np.percentile(p, percentile)) for p in per]
        first = 2.0 ** math.floor(math.log2(127 / top[0])) if top[0] > 0 else 1.0
        steps[key] = [1.0 / first] + [t / 255 if t > 0 else 1.0 for t in top[1:]]
    return steps


def calibrate_hs_steps(weights: Path, images: list[Path], crop: int = 512, threads: int = 1,
                       percentiles: tuple[float, ...] = PERCENTILES) -> tuple[dict[str, list[float]], dict]:
    """``hs_steps`` for ``weights`` (a FasiNet-H file) from these training images, and what each
    candidate cost: every percentile in ``percentiles`` gives steps, and the one whose real
    entropy-coded bits on the images are fewest wins (a heuristic range would trade clipping
    against resolution blindly)."""
    from ..engines.specs import Specs
    from ..runtime.model import RuntimeModel

    m = RuntimeModel(weights, threads=threads)
    plain = {k: v for k, v in m.specs.arch.config.items() if k != "hs_steps"}
    branches = [b for b in m.specs.arch.hyper_synthesis(m.latent_channels) if b is not None]
    lats = latents(m, images, crop)
    codec = Specs(m.specs.arch.name, plain, m.specs.state).latent_codec(m.latent_channels)
    med = codec.z._median.ravel().astype(np.float64)[:, None, None]
    mags = {b.key: [[], [], []] for b in branches}
    for lat in lats:
        z_hat = codec.z.quantize_tensor(lat["z"])[0].astype(np.float64) + med
        for b in branches:
            for i, a in enumerate(branch_inputs(m.specs.state, b, z_hat)):
                mags[b.key][i].append(np.abs(a).ravel())
    mags = {k: [np.concatenate(p) for p in per] for k, per in mags.items()}
    tried = {"12-bit": _bits(codec, lats)}
    best = None
    for pc in percentiles:
        steps = _steps_at(mags, pc)
        bits = _bits(Specs(m.specs.arch.name, {**plain, "hs_steps": steps}, m.specs.state).latent_codec(
            m.latent_channels), lats)
        tried[str(pc)] = bits
        if best is None or bits < best[0]:
            best = (bits, steps, pc)
    return best[1], {"percentile": best[2], "images": len(images), "crop": crop,
                     "bits_change_percent": {k: round(100 * (v / tried["12-bit"] - 1), 3)
                                             for k, v in tried.items() if k != "12-bit"}}


def _bits(codec, lats: list[dict]) -> float:
    total = 0.0
    for lat in lats:
        codec.forget()
        total += codec.estimate_bits(codec.quantize(lat))
    return total


def with_hs_steps(weights: Path, out: Path, images: list[Path], crop: int = 512) -> tuple[dict, dict]:
    """Write ``weights`` to ``out`` with the 8-bit hyper-synthesis option calibrated; returns the
    steps and the calibration record. The state is unchanged (fp32): ``slimfast.tools.release``
    stores and measures it as usual."""
    from ..models import build
    from ..models.weights import load_model, read_metadata, save_model

    model = load_model(weights)
    if model.architecture != "fasinet-h":
        raise ValueError(f"the 8-bit hyper-synthesis is a FasiNet-H option, not {model.architecture}'s")
    steps, record = calibrate_hs_steps(weights, images, crop)
    rebuilt = build(model.architecture, {**model.config, "hs_steps": steps})
    rebuilt.load_state_dict(model.state_dict())
    meta = read_metadata(weights)
    save_model(rebuilt.eval(), out, name=meta.get("name", ""), version=meta.get("version", "1"), storage="fp32")
    return steps, record


def main(argv=None) -> int:
    import argparse
    import json

    from .training.data import DEFAULT_DATA, training_split

    p = argparse.ArgumentParser(prog="python -m slimfast.tools.hyper8", description=with_hs_steps.__doc__)
    p.add_argument("weights", type=Path, help="FasiNet-H weights (a run's final.safetensors)")
    p.add_argument("--out", type=Path, required=True, help="the weights with the option (keep it in the run folder: "
                                                           "the release reads its summary.json)")
    p.add_argument("--train", type=Path, default=DEFAULT_DATA,
                   help="calibration images: their training side (never Kodak, held-out or validation images)")
    p.add_argument("--images", type=int, default=32)
    p.add_argument("--crop", type=int, default=512)
    a = p.parse_args(argv)
    pool, _ = training_split([str(a.train)], 0.05)  # the training side: no held-out or validation image
    pick = [pool[i] for i in np.random.default_rng(0).choice(len(pool), min(a.images, len(pool)), replace=False)]
    steps, record = with_hs_steps(a.weights, a.out, pick, a.crop)
    print(json.dumps({"hs_steps": steps, "calibration": record}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
