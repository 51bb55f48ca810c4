"""bf16 transforms on OpenVINO (the ``slimfast[openvino]`` extra).

ONNX Runtime's CPU kernels have no bf16 convolutions. OpenVINO's CPU plugin runs a graph with
bfloat16 arithmetic where the processor computes bf16 natively (AVX-512 BF16 or AMX). The
runtime hands it float graphs only, never the entropy coding or FasiNet-H's integer
hyper-synthesis:

* the synthesis (``slimfast decompress --bf16``): symbols are decoded before it, so a file
  decodes to the same symbols whichever precision synthesizes the pixels; the pixels differ
  from fp32's by bf16 rounding, and repeat exactly for one machine, thread count and precision;
* the analysis (``slimfast compress --bf16``): the latents it rounds differ slightly from
  fp32's, so the file does too, and any decoder reads it.

RESULTS.md ("bf16") measures both on Kodak.

A session's precision (``bf16``, or ``f32``) is an argument: ``f32`` is a diagnostic that runs the
same graph on OpenVINO in float32, which ``slimfast bench`` times (``SLIMFAST_OV_PRECISION=f32``,
read by :mod:`slimfast.settings`) to separate the engine from the precision.
"""
from __future__ import annotations

import importlib.util
import threading
from functools import lru_cache

import numpy as np

PRECISIONS = ("bf16", "f32")


def available() -> bool:
    """Whether OpenVINO is installed (found without importing it: the import costs ~0.3 s)."""
    try:
        return importlib.util.find_spec("openvino") is not None
    except (ImportError, ValueError):
        return False


@lru_cache(maxsize=1)
def _core():
    import openvino as ov

    return ov.Core()


def _cpu_lacks_bf16() -> bool:
    """True where /proc/cpuinfo (Linux) shows neither AVX-512 BF16 nor AMX: no need to import OpenVINO to know."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), None)
    except OSError:
        return False
    return flags is not None and not {"avx512_bf16", "amx_bf16"} & set(flags)


@lru_cache(maxsize=1)
def native_bf16() -> bool:
    """Whether OpenVINO's CPU plugin computes bf16 natively on this processor."""
    if _cpu_lacks_bf16():
        return False
    try:
        return "BF16" in _core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    except Exception:  # no CPU plugin, or an unusable install
        return False


def unavailable_reason() -> str:
    """Why bf16 cannot run here (a phrase after "bf16 ..."), or ``""`` where it can."""
    if not available():
        return "needs OpenVINO: pip install 'slimfast[openvino]'"
    if not native_bf16():
        return "needs a CPU that computes bf16 natively (AVX-512 BF16 or AMX); this one does not"
    return ""


class _Named:
    def __init__(self, name: str):
        self.name = name


class OpenVINOSession:
    """An ONNX graph compiled by OpenVINO for the CPU, called like an ONNX Runtime session;
    ``output_names``: the graph's outputs, in the order ``run`` returns them.

    ``run(None, feeds)`` returns the outputs as new arrays (OpenVINO reuses its output buffers
    between calls). One inference request serves all calls, one at a time: a decoder graph
    already uses every thread it is given.
    """

    def __init__(self, onnx_bytes: bytes, output_names: list[str], threads: int = 0,
                 precision_hint: str = "bf16"):
        if precision_hint not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision_hint!r}")
        core = _core()
        config = {"INFERENCE_PRECISION_HINT": precision_hint, "PERFORMANCE_HINT": "LATENCY"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        # Spatial sizes stay dynamic: one compiled graph for every tile and image size.
        self._compiled = core.compile_model(core.read_model(onnx_bytes), "CPU", config)
        # By the ONNX output names: OpenVINO also gives outputs the names of the nodes that make them.
        self._outputs = [self._compiled.output(n) for n in output_names]
        self._names = [_Named(n) for n in output_names]
        self._request = self._compiled.create_infer_request()
        self._lock = threading.Lock()
        self.precision = precision_hint

    def get_outputs(self) -> list:
        """The outputs in order, each with a ``name`` (as ONNX Runtime's sessions give them)."""
        return list(self._names)

    def run(self, output_names, feeds: dict) -> list[np.ndarray]:
        with self._lock:
            result = self._request.infer(feeds)
            return [np.array(result[o], copy=True) for o in self._outputs]
