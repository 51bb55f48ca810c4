"""Quantization-aware training of the 8-bit hyper-synthesis (FasiNet-H's ``hs_steps`` option).

The coding path runs h_s on 8-bit weights and activations (:func:`slimfast.coding.hyper.run_branch8`):
per-output-channel symmetric weights (``|w| <= 127`` steps of ``max|w| / 127``), z_hat entering as
``clip(rint(z_hat / in_step), -127, 127)``, hidden activations as ``clip(rint(a / step), 0, 255)``
after ReLU. Training with float h_s leaves the network unaware of that rounding, which costs
bits once coded. :func:`fake_quantize_hs` makes every h_s convolution see the same rounding in
training, with straight-through gradients inside the clipping range and none outside it, so
the rest of the model learns around it. The steps are the warm start's calibration
(``model.config["hs_steps"]``); calibrate again after training (:mod:`slimfast.tools.hyper8`).

The fake rounding sees float32 convolutions of the rounded values, the coding path exact integer
sums requantized in float64: an activation within float32 noise of a rounding tie can land one
step apart, so a rare mean differs by that step's effect (tests/test_qat.py bounds how rare).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


def _round_ste(x: torch.Tensor) -> torch.Tensor:
    return x + (torch.round(x) - x).detach()


def _activation(x: torch.Tensor, step: float, low: int, high: int) -> torch.Tensor:
    return _round_ste(torch.clamp(x / step, low, high)) * step


def _weight(w: torch.Tensor, out_axis: int) -> torch.Tensor:
    """Per-output-channel symmetric 8-bit weights (``out_axis``: 0 for Conv2d, 1 for ConvTranspose2d)."""
    red = [i for i in range(w.ndim) if i != out_axis]
    step = (w.detach().abs().amax(dim=red, keepdim=True) / 127).clamp_min(1e-12)
    return _round_ste(w / step) * step


def _hook(conv, step: float, low: int, high: int, out_axis: int) -> list:
    """For one forward call, ``conv`` sees its weight and input rounded; its parameter is put back
    after the call, so state dicts, optimizers and checkpoints never see the rounded copy."""
    def before(mod, args):
        param = mod._parameters.pop("weight")
        mod.__dict__["_qat_param"] = param
        mod.__dict__["weight"] = _weight(param, out_axis)
        return (_activation(args[0], step, low, high), *args[1:])

    def after(mod, args, output):
        del mod.__dict__["weight"]
        mod._parameters["weight"] = mod.__dict__.pop("_qat_param")
        return output

    return [conv.register_forward_pre_hook(before), conv.register_forward_hook(after)]


def fake_quantize_hs(model) -> list:
    """Hook every h_s convolution of ``model`` (FasiNet-H with ``hs_steps``) to round as the 8-bit
    copy does; returns the hook handles (``handle.remove()`` undoes it). SystemExit in one line
    without ``hs_steps``."""
    steps = (model.config or {}).get("hs_steps")
    if not steps:
        raise SystemExit("error: --qat-hs8 needs warm-start weights with the hs_steps option "
                         "(python -m slimfast.tools.hyper8 first, or a shipped fasinet-h-mse model)")
    handles = []
    for key, branch_steps in steps.items():
        convs = [m for m in model.get_submodule(key).modules() if isinstance(m, torch.nn.modules.conv._ConvNd)]
        if len(convs) != len(branch_steps):
            raise SystemExit(f"error: --qat-hs8: {key} has {len(convs)} convolutions for {len(branch_steps)} steps")
        for i, (conv, step) in enumerate(zip(convs, branch_steps)):
            low, high = (-127, 127) if i == 0 else (0, 255)
            out_axis = 1 if isinstance(conv, torch.nn.ConvTranspose2d) else 0
            handles += _hook(conv, float(step), low, high, out_axis)
    return handles


CALIBRATION_IMAGES = 32  # as python -m slimfast.tools.hyper8


def with_calibrated_hs(model, init: str | None, train_files: list[Path]):
    """``model`` (warm-started from ``init``) rebuilt with ``hs_steps`` calibrated on training
    images as :mod:`slimfast.tools.hyper8` does, for QAT from weights that lack the option (a
    recipe stage continuing a float stage). The same images every time, so a resumed run agrees."""
    from ...models import build
    from ..hyper8 import calibrate_hs_steps

    if not init or model.architecture != "fasinet-h":
        raise SystemExit("error: --qat-hs8 trains FasiNet-H warm-started from weights (--init)")
    pick = np.random.default_rng(0).choice(len(train_files), min(CALIBRATION_IMAGES, len(train_files)), replace=False)
    steps, record = calibrate_hs_steps(Path(init), [train_files[i] for i in pick])
    print(f"--qat-hs8: hs_steps calibrated on {record['images']} training images (percentile {record['percentile']})",
          flush=True)
    rebuilt = build(model.architecture, {**model.config, "hs_steps": steps})
    rebuilt.load_state_dict(model.state_dict())
    return rebuilt
