"""Fast inference backend without torch: ONNX Runtime for the transforms, numpy for coding.

    >>> from slimfast import runtime
    >>> if runtime.available():
    ...     model = runtime.load_model("fasinet-l.safetensors", threads=1)
    ...     lat = model.compress(x)                    # x: float32 [1, 3, H, W] in [0, 1]
    ...     x_hat = model.decompress(lat.strings, lat.shape, lat.width)

Weights files (safetensors) are read with numpy alone (:mod:`slimfast.format.weightfile`); ONNX
graphs are built from each architecture's one description (:mod:`slimfast.archs`) with
``onnx.helper`` (:mod:`slimfast.engines.specs`, :mod:`slimfast.engines.onnxgraph`); coding is the
one coding path (:mod:`slimfast.coding`), so files are interchangeable with the torch engine's
symbol for symbol. Every architecture is supported.

Importing this package is cheap: onnx and onnxruntime load when a model is first built.
"""
from __future__ import annotations

from functools import lru_cache

from ..archs import ARCHITECTURES

# Graphs are built from the one description of each architecture: the runtime covers them all.
SUPPORTED = tuple(ARCHITECTURES)


@lru_cache(maxsize=1)
def available() -> bool:
    """Whether onnx and onnxruntime import: core dependencies, yet a broken or trimmed install can
    lack them, and then the torch backend serves. (Weights files are read without safetensors.)"""
    import importlib.util

    try:
        # onnx is only needed to build graphs, not to run cached ones: find it without importing it
        # (the import alone costs a cold start about 0.2 s).
        if importlib.util.find_spec("onnx") is None:
            return False
        import onnxruntime  # noqa: F401
    except Exception:  # ImportError, or a broken binary install
        return False
    return True


def supports(architecture: str) -> bool:
    return architecture in SUPPORTED


def load_model(path, **kwargs):
    """A :class:`~slimfast.runtime.model.RuntimeModel` for a weights file (see its options)."""
    from .model import RuntimeModel

    return RuntimeModel(path, **kwargs)


def __getattr__(name):  # lazy: RuntimeModel / Latents without importing numpy-heavy modules up front
    if name in ("RuntimeModel", "Latents"):
        from . import model

        return getattr(model, name)
    raise AttributeError(name)


__all__ = ["Latents", "RuntimeModel", "SUPPORTED", "available", "load_model", "supports"]
