"""Shared fixtures: small random-weight models installed in a temporary model folder.

Random weights exercise every coding path exactly as trained ones do (the properties under
test -- exact round trips, rate = file size, determinism -- do not depend on training).
Tests of the shipped weights use them directly and are marked as such.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
KODAK = ROOT.parent / "shared" / "data" / "kodak"
SAMPLE = ROOT / "slimfast" / "data" / "kodim23.png"

torch.set_num_threads(1)
# Built ONNX graphs are cached per user; tests (and the subprocesses they start) use their own.
os.environ["SLIMFAST_CACHE_DIR"] = tempfile.mkdtemp(prefix="slimfast-graphs-")


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    from slimfast.models import FasiNetH, FasiNetL
    from slimfast.tools.release import publish
    from slimfast.models.weights import save_model

    root = tmp_path_factory.mktemp("zoo")
    out = root / "models"
    torch.manual_seed(0)
    for cls, name in ((FasiNetL, "test-l"), (FasiNetH, "test-h")):
        m = cls().eval()
        m.update()
        (root / name).mkdir()
        save_model(m, root / name / "final.safetensors")
        publish(root / name / "final.safetensors", name, name, out_dir=out, kodak=None)
    old = os.environ.get("SLIMFAST_MODEL_PATH")
    os.environ["SLIMFAST_MODEL_PATH"] = str(out)
    yield out
    if old is None:
        os.environ.pop("SLIMFAST_MODEL_PATH", None)
    else:
        os.environ["SLIMFAST_MODEL_PATH"] = old


@pytest.fixture(scope="session")
def sample_rgb() -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(SAMPLE).convert("RGB"))


@pytest.fixture
def small_rgb() -> np.ndarray:
    rng = np.random.default_rng(1)
    y, x = np.mgrid[0:40, 0:56]
    base = np.stack([x * 4, y * 5, (x + y) * 2], axis=2).astype(np.float64)
    return np.clip(base + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8)
