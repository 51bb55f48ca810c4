"""Calibration of the 8-bit hyper-synthesis (the ``hs_steps`` option of FasiNet-H).

The activation step entering each convolution of each h_s branch is taken from training
images (never Kodak): the ``percentile`` of the float activations' magnitudes over
``images`` crops, mapped to 255 (hidden, after ReLU) or, for z_hat, to the power of two that
fits 127. Weights are untouched; :class:`slimfast.engines.specs.Specs` derives the 8-bit
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
        return intmath.conv1x1_8(a, w[:, :, 0, 0]) + b
    (ph, oph), (pw, opw) = (tconv_padding(k, s) for k, s in zip(layer.kernel, layer.stride))
    wf = np.ascontiguousarray(w.transpose(2, 3, 1, 0))
    return intmath.conv_transpose8(a, wf, tuple(layer.stride), (ph, pw), (oph, opw)).astype(np.float64) + b


def branch_inputs(state: dict, branch: g.Branch, z_hat: np.ndarray) -> list[np.ndarray]:
    """The float activations entering each convolution of ``branch`` (z_hat first)."""
    convs = [layer for layer in branch.layers if not isinstance(layer, g.ReLU)]
    seen, a = [z_hat], z_hat
    for layer in convs[:-1]:
        a = np.maximum(_float_layer(state, layer, a), 0)
        seen.append(a)
    return seen


def z_hats(model, images: list[Path], crop: int):
    """z_hat (float64 ``[C, h, w]``) of each image's top-left ``crop`` square."""
    from PIL import Image

    from ..codec import pad_image

    codec = model.codec()
    med = codec.z._median.ravel().astype(np.float64)[:, None, None]
    for path in images:
        rgb = np.asarray(Image.open(path).convert("RGB"))[:crop, :crop]
        x = pad_image(rgb, model.pad_multiple).transpose(2, 0, 1)[None].astype(np.float32) / 255
        z = codec.z.quantize_tensor(model.analyze(x)["z"])
        yield z[0].astype(np.float64) + med


def calibrate_hs_steps(weights: Path, images: list[Path], crop: int = 512, percentile: float = 99.99,
                       threads: int = 1) -> dict[str, list[float]]:
    """``hs_steps`` for ``weights`` (a FasiNet-H file) from these training images."""
    from ..runtime.model import RuntimeModel

    m = RuntimeModel(weights, threads=threads)
    branches = [b for b in m.specs.arch.hyper_synthesis(m.latent_channels) if b is not None]
    mags = {b.key: [[], [], []] for b in branches}
    for z_hat in z_hats(m, images, crop):
        for b in branches:
            for i, a in enumerate(branch_inputs(m.specs.state, b, z_hat)):
                mags[b.key][i].append(np.abs(a).ravel())
    steps = {}
    for key, per in mags.items():
        top = [float(np.percentile(np.concatenate(p), percentile)) for p in per]
        first = 2.0 ** math.floor(math.log2(127 / top[0])) if top[0] > 0 else 1.0
        steps[key] = [1.0 / first] + [t / 255 if t > 0 else 1.0 for t in top[1:]]
    return steps


def with_hs_steps(weights: Path, out: Path, images: list[Path], crop: int = 512, percentile: float = 99.99) -> dict:
    """Write ``weights`` to ``out`` with the 8-bit hyper-synthesis option calibrated; returns the steps.
    The state is unchanged (fp32): ``slimfast.tools.release`` stores and measures it as usual."""
    from ..models import build
    from ..models.weights import load_model, read_metadata, save_model

    model = load_model(weights)
    if model.architecture != "fasinet-h":
        raise ValueError(f"the 8-bit hyper-synthesis is a FasiNet-H option, not {model.architecture}'s")
    steps = calibrate_hs_steps(weights, images, crop, percentile)
    rebuilt = build(model.architecture, {**model.config, "hs_steps": steps})
    rebuilt.load_state_dict(model.state_dict())
    meta = read_metadata(weights)
    save_model(rebuilt.eval(), out, name=meta.get("name", ""), version=meta.get("version", "1"), storage="fp32")
    return steps


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
    p.add_argument("--percentile", type=float, default=99.99)
    a = p.parse_args(argv)
    pool, _ = training_split([str(a.train)], 0.05)  # the training side: no held-out or validation image
    pick = [pool[i] for i in np.random.default_rng(0).choice(len(pool), min(a.images, len(pool)), replace=False)]
    print(json.dumps(with_hs_steps(a.weights, a.out, pick, a.crop, a.percentile), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
