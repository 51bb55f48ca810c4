""":class:`RuntimeModel`: a weights file coded on the one coding path with the ONNX Runtime engine.

    >>> model = RuntimeModel("fasinet-h-mse-q4.safetensors", threads=1)
    >>> lat = model.compress(x)                      # x: float32 [1, 3, H, W] in [0, 1]
    >>> x_hat = model.decompress(lat.strings, lat.shape, lat.width)

The weights are read with numpy (:mod:`slimfast.format.weightfile`); the architecture's description
(:mod:`slimfast.archs`) gives the ONNX graphs (:mod:`slimfast.engines.ort`) and the latent
codecs (:mod:`slimfast.coding`). Neither torch nor :mod:`slimfast.models` is imported.
"""
from __future__ import annotations

from pathlib import Path

from .. import archs
from ..coding.path import CodingPath, Latents
from ..engines.ort import OrtEngine
from ..format import weightfile as weights
from ..engines.specs import Specs


class RuntimeModel(CodingPath):
    """A weights file ready to code with ONNX Runtime. Every option is an argument (nothing here
    reads the environment) and goes to :class:`~slimfast.engines.ort.OrtEngine`: ``threads``,
    ``tconv``, ``optimization``, ``spinning``, ``int8_ranges``, ``bf16_synthesis``,
    ``bf16_analysis``, ``arena``, ``cache_dir`` (``None``: no graph cache), ``ov_precision``, ``affinity``.
    Symbols decode identically whatever they are."""

    def __init__(self, path: str | Path, threads: int | None = 0, tconv: str | None = None,
                 optimization: str | None = "all", spinning: bool = False, int8_ranges: dict | None = None,
                 bf16_synthesis: bool = False, bf16_analysis: bool = False, *, arena: bool = False,
                 cache_dir: str | Path | None = None, ov_precision: str = "bf16", affinity: bool = False):
        meta, state, digest = weights.load_with_digest(path)
        arch = meta["architecture"]
        if arch not in archs.ARCHITECTURES:
            raise ValueError(f"the runtime backend does not support {arch!r}; "
                             f"supported: {', '.join(sorted(archs.ARCHITECTURES))}")
        specs = Specs(arch, meta["config"], state)
        engine = OrtEngine(specs, digest, threads or 0, tconv, optimization or "all", spinning, int8_ranges,
                           bf16_synthesis, bf16_analysis, arena, cache_dir, ov_precision, affinity)
        super().__init__(engine, specs, arch)
        self.path = Path(path)
        self.sha256 = digest  # of the very bytes parsed
        self.config = meta["config"]
        self.metadata = meta

    def __repr__(self) -> str:
        return f"<RuntimeModel {self.architecture} {self.path.name} threads={self.engine.threads}>"


__all__ = ["Latents", "RuntimeModel"]
