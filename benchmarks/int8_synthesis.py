"""Would int8 synthesis pay? ONNX Runtime's decoder in fp32 against int8 variants.

For one FasiNet model: the decoder graph (IQR + g_s) as the codec runs it (``codec``: fp32,
ConvTranspose), the same with sub-pixel convolutions (``fp32``, the form int8 kernels cover),
and that quantized by ``onnxruntime.quantization``: dynamic (ConvInteger) and static QDQ per channel
(QLinearConv), calibrated on the first ``--calib`` training-set images (never Kodak). On
Kodak, decode time of the synthesis alone (median of ``--repeats`` after a warm-up,
interleaved so that load affects all variants alike) and PSNR of the 8-bit output. Symbols
are decoded before the synthesis, so none of this touches exact decoding; only the pixels
change.

    python benchmarks/int8_synthesis.py --model fasinet-l-msssim-q4 --threads 2 [--limit 8]
"""
from __future__ import annotations

import argparse
import glob
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image


def load_rgb(path: str, multiple: int) -> tuple[np.ndarray, np.ndarray]:
    from slimfast.codec import pad_image

    rgb = np.asarray(Image.open(path).convert("RGB"))
    return rgb, pad_image(rgb, multiple).transpose(2, 0, 1)[None].astype(np.float32) / 255


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="fasinet-l-msssim-q4")
    p.add_argument("--width", type=int, default=None)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--kodak", default="../shared/data/kodak")
    p.add_argument("--train", default="../shared/data/train", help="calibration images (never Kodak)")
    p.add_argument("--calib", type=int, default=8)
    p.add_argument("--limit", type=int, default=0, help="first N Kodak images only")
    p.add_argument("--out", default=None, help="write the results as JSON")
    a = p.parse_args(argv)

    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType, quantize_dynamic,
                                          quantize_static)

    from slimfast import zoo
    from slimfast.runtime.model import RuntimeModel

    info = zoo.get(a.model)
    m = RuntimeModel(info.path, threads=a.threads, tconv="subpixel")  # Conv, which int8 kernels cover
    c = m.check_width(a.width)
    kodak = sorted(glob.glob(f"{a.kodak}/*.png"))[: a.limit or None]
    calib = sorted(f for f in glob.glob(f"{a.train}/**/*", recursive=True)
                   if f.lower().endswith((".png", ".jpg", ".jpeg")))[: a.calib]
    if not kodak or not calib:
        print(f"error: need Kodak PNGs in {a.kodak} and calibration images in {a.train}", file=sys.stderr)
        return 2

    def y_hat(x):
        return m.dequantize(m.encode_symbols(x, c), c)

    calib_y = [y_hat(load_rgb(f, m.pad_multiple)[1][:, :, :256, :256]) for f in calib]

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = [{"y_hat": y} for y in calib_y]

        def get_next(self):
            return self.items.pop() if self.items else None

    tmp = Path(tempfile.mkdtemp())
    onnx.save(m.onnx_model("decoder", c), tmp / "fp32.onnx")
    # the float decoder with ConvTranspose (the codec's form for FasiNet-L until sub-pixel measured faster)
    onnx.save(RuntimeModel(info.path, threads=a.threads, tconv="convtranspose").onnx_model("decoder", c),
              tmp / "codec.onnx")
    quantize_dynamic(tmp / "fp32.onnx", tmp / "dynamic.onnx", weight_type=QuantType.QInt8)
    quantize_static(tmp / "fp32.onnx", tmp / "qdq.onnx", Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    so = ort.SessionOptions()
    so.intra_op_num_threads = a.threads
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sessions = {k: ort.InferenceSession(str(tmp / f"{k}.onnx"), so, providers=["CPUExecutionProvider"])
                for k in ("codec", "fp32", "dynamic", "qdq")}
    times = {k: [] for k in sessions}
    psnrs = {k: [] for k in sessions}
    for f in kodak:
        rgb, x = load_rgb(f, m.pad_multiple)
        y = y_hat(x)
        for k, s in sessions.items():
            s.run(None, {"y_hat": y})
        per = {k: [] for k in sessions}
        for _ in range(a.repeats):
            for k, s in sessions.items():
                t = time.perf_counter()
                out = s.run(None, {"y_hat": y})[0]
                per[k].append((time.perf_counter() - t) * 1000)
        for k, s in sessions.items():
            out = s.run(None, {"y_hat": y})[0][0, :, : rgb.shape[0], : rgb.shape[1]]
            rec = np.clip(np.rint(out * 255), 0, 255).transpose(1, 2, 0)
            psnrs[k].append(10 * np.log10(255 ** 2 / np.mean((rec - rgb.astype(np.float64)) ** 2)))
            times[k].append(statistics.median(per[k]))
    res = {"model": a.model, "width": c, "threads": a.threads, "images": len(kodak), "calibration_images": len(calib),
           "variants": {k: {"synthesis_ms": statistics.mean(times[k]), "psnr": float(np.mean(psnrs[k])),
                            "speedup": statistics.mean(times["codec"]) / statistics.mean(times[k]),
                            "psnr_change_db": float(np.mean(psnrs[k]) - np.mean(psnrs["codec"]))}
                        for k in sessions}}
    res["reference"] = "codec (fp32, ConvTranspose)"
    for k, v in res["variants"].items():
        print(f"{k:8s} synthesis {v['synthesis_ms']:6.1f} ms  x{v['speedup']:.2f}  PSNR {v['psnr']:.3f} dB "
              f"({v['psnr_change_db']:+.3f})")
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(res, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
