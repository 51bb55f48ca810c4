"""int8 synthesis: the decoder's float transform (IQR + g_s) run with int8 convolutions.

Why it is safe: symbols are entropy-decoded, and ``y_hat`` formed, before the synthesis runs,
so quantizing the synthesis changes pixels only, never which symbols a file holds. FasiNet-H's
entropy parameters come from the integer hyper-synthesis and are untouched.

How: the decoder graph is built in its sub-pixel form (transposed convolutions as Conv +
DepthToSpace, which int8 kernels cover) and quantized by ``onnxruntime.quantization`` in the
static QDQ format: per-channel int8 weights, uint8 activations; GDN's normalization stays float
(:func:`float_nodes`). Activation ranges are not
recomputed at run time (that would need training images on the user's machine, and would
make the pixels depend on them): :func:`calibrate` measures them once, on training images
(never Kodak), and ``slimfast.tools.release --calibrate-int8`` stores them in the model card
(``int8_synthesis.ranges``, per width). :func:`int8_decoder` rebuilds the same quantized
graph from those stored ranges on any machine, so int8 pixels are reproducible for a given
card, backend build and thread count. What it costs in PSNR and gains in speed is measured
on Kodak and recorded next to the ranges.
"""
from __future__ import annotations

import contextlib
import io
import logging
import tempfile
from pathlib import Path

import numpy as np

# Ranges at the 99.999th percentile of each activation's histogram: on FasiNet-L q4 (first 6 Kodak
# images) int8 cost -0.28 dB this way against -0.43 dB with plain min/max, whose ranges a few
# outliers stretch.
CALIBRATION = "percentile"
PERCENTILE = 99.999


@contextlib.contextmanager
def _quiet():
    """onnxruntime.quantization logs advice ("consider pre-processing") on the root logger, and
    its histogram calibrators print progress on stdout."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        root.setLevel(level)


def _reader(inputs: list[np.ndarray]):
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = [{"y_hat": np.ascontiguousarray(y, dtype=np.float32)} for y in inputs]

        def get_next(self):
            return self.items.pop(0) if self.items else None

    return Reader()


def calibrate(fp32_decoder, y_hats: list[np.ndarray], method: str = CALIBRATION) -> dict[str, list[float]]:
    """Activation ranges ``{tensor name: [min, max]}`` of a float decoder graph over ``y_hats``
    (all of one shape: the histogram methods stack them)."""
    import onnx
    from onnxruntime.quantization.calibrate import CalibrationMethod, create_calibrator

    if not y_hats:
        raise ValueError("calibration needs at least one input")
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "fp32.onnx"
        onnx.save(fp32_decoder, src)
        with _quiet():
            cal = create_calibrator(src, [], augmented_model_path=str(Path(tmp) / "augmented.onnx"),
                                    calibrate_method={"minmax": CalibrationMethod.MinMax,
                                                      "percentile": CalibrationMethod.Percentile,
                                                      "entropy": CalibrationMethod.Entropy}[method],
                                    extra_options={"percentile": PERCENTILE} if method == "percentile" else {})
            cal.collect_data(_reader(y_hats))
            data = cal.compute_data()
    return {name: [float(np.min(td.range_value[0])), float(np.max(td.range_value[1]))]
            for name, td in sorted(data.data.items())}


def float_nodes(graph) -> list[str]:
    """Convolutions kept in float: GDN/IGDN's normalization, ``conv(x * x)``.

    Its input is a square, whose dynamic range uint8 cannot hold: quantizing it cost the slim
    FasiNet-L at width 192 about 1 dB of the 2 dB that int8 cost in all (4 Kodak images), for
    about 10% of the decoder's multiply-adds.
    """
    squares = {n.output[0] for n in graph.node if n.op_type == "Mul" and len(set(n.input)) == 1}
    return [n.name for n in graph.node if n.op_type == "Conv" and n.input[0] in squares]


# In a width's stored ranges: names of further nodes kept float (``release --calibrate-int8
# --float-last``); no tensor name starts with "@".
FLOAT_NODES_KEY = "@float_nodes"


def last_conv(graph) -> str:
    """The name of the decoder's last convolution (the one that makes the pixels)."""
    convs = [n.name for n in graph.node if n.op_type == "Conv"]
    if not convs:
        raise ValueError("the graph has no convolution")
    return convs[-1]


def int8_decoder(fp32_decoder, ranges: dict[str, list[float]]):
    """The QDQ int8 form of ``fp32_decoder`` with the stored activation ``ranges`` (a ModelProto).

    Every tensor the quantizer asks a range for must be in ``ranges`` (they come from the same
    graph); the tiny input it calibrates on is overridden tensor by tensor. The nodes of
    :func:`float_nodes` stay float, and those listed under ``FLOAT_NODES_KEY`` in ``ranges``.
    """
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    c = fp32_decoder.graph.input[0].type.tensor_type.shape.dim[1].dim_value
    ranges = dict(ranges)
    keep_float = list(ranges.pop(FLOAT_NODES_KEY, []))
    overrides = {name: [{"rmin": np.float32(lo), "rmax": np.float32(hi)}] for name, (lo, hi) in ranges.items()}
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        onnx.save(fp32_decoder, src)
        probe = calibrate(fp32_decoder, [np.zeros((1, c, 2, 2), np.float32)], method="minmax")  # names only
        missing = sorted(set(probe) - set(ranges))
        if missing:
            raise ValueError(f"stored int8 ranges do not match this decoder graph (missing {missing[0]!r}); "
                             "recalibrate with slimfast.tools.release --calibrate-int8")
        with _quiet():
            quantize_static(src, dst, _reader([np.zeros((1, c, 2, 2), np.float32)]), quant_format=QuantFormat.QDQ,
                            per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            nodes_to_exclude=float_nodes(fp32_decoder.graph) + keep_float,
                            extra_options={"TensorQuantOverrides": overrides})
        return onnx.load(dst)
