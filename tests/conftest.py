"""Shared fixtures: random-weight models installed in a temporary model folder, made without torch
(:mod:`tests.numpy_weights`), so that the torch-free runtime is tested without it.

Random weights exercise every coding path exactly as trained ones do (the properties under
test -- exact round trips, rate = file size, determinism -- do not depend on training).
Tests of the shipped weights use them directly and are marked as such.
"""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from tests import numpy_weights

ROOT = Path(__file__).resolve().parents[1]
KODAK = ROOT.parent / "shared" / "data" / "kodak"
SAMPLE = ROOT / "slimfast" / "data" / "kodim23.png"

# Built ONNX graphs are cached per user; tests (and the subprocesses they start) use their own.
os.environ["SLIMFAST_CACHE_DIR"] = tempfile.mkdtemp(prefix="slimfast-graphs-")
# The suite's pixels, goldens and cross-engine checks are fp32's, which every machine computes the
# same; precision "auto" (bf16 where the CPU, OpenVINO and the model card allow) is tested where
# these are unset (tests/test_bf16.py).
os.environ["SLIMFAST_ANALYSIS"] = "fp32"
os.environ["SLIMFAST_SYNTHESIS"] = "fp32"


def pytest_collection_finish(session):
    # Only the test modules that need torch import it; they train and compare on one thread.
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("zoo") / "models"
    for seed, (name, architecture) in enumerate((("test-l", "fasinet-l"), ("test-h", "fasinet-h"))):
        numpy_weights.install(out, name, architecture, seed=seed)
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
