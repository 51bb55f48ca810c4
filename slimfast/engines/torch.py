"""The torch engine: a :class:`slimfast.models.CompressionModel`'s float transforms.

The reference engine, and the one training measures with. Like every engine it runs only
the transforms; quantization and entropy coding are the latent codec's
(:mod:`slimfast.coding`), so its files are the other engines' symbol for symbol.
"""
from __future__ import annotations

import numpy as np

from ..coding import tiling
from ..format.imageio import to_rgb8


class TorchEngine:
    """Runs ``model.analysis`` / ``hyper_analysis`` / ``synthesis`` at a latent width, tiled on huge inputs."""

    analysis_precision = synthesis_precision = "fp32"
    bf16_analysis = False

    def __init__(self, model, threads: int = 0):
        self.model = model
        self.threads = int(threads)

    def __repr__(self) -> str:
        return f"<TorchEngine {self.model.architecture}>"

    def _run(self, fn):
        import torch

        with torch.inference_mode():
            if self.threads:
                torch.set_num_threads(self.threads)
            return fn(torch)

    def analyze(self, x: np.ndarray, c: int) -> dict[str, np.ndarray]:
        m = self.model

        def run(torch):
            y = tiling.tiled(lambda t: m.analysis(t, c), torch.from_numpy(x), down=tiling.STRIDE,
                             tile=tiling.ANALYSIS_TILE, halo=tiling.ANALYSIS_HALO)
            out = {"y": y.numpy()}
            if m.hyper:
                out["z"] = m.hyper_analysis(y, c).numpy()
            return out

        return self._run(run)

    def synthesize(self, y_hat: np.ndarray, c: int) -> np.ndarray:
        m = self.model
        return self._run(lambda torch: tiling.tiled(lambda t: m.synthesis(t, c), torch.from_numpy(y_hat),
                                                    up=tiling.STRIDE, tile=tiling.SYNTHESIS_TILE,
                                                    halo=tiling.SYNTHESIS_HALO).numpy())

    def synthesize_rgb8(self, y_hat: np.ndarray, c: int) -> np.ndarray:
        return to_rgb8(self.synthesize(y_hat, c), 1)

    def prepare_analysis(self, shape, c: int) -> None:
        """Nothing to build."""

    def prepare_synthesis(self, c: int) -> None:
        """Nothing to build."""
