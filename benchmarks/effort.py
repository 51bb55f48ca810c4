"""Encoder effort (``slimfast compress --effort N``) on Kodak: what each level buys and costs.

For each model and effort level, every image is compressed to a real file (``Codec.compress``
with ``effort=``, ONNX Runtime and torch on ``--threads`` threads) and decoded back: mean bpp
(file bytes x 8 / pixels), mean PSNR-RGB of the 8-bit output (means of per-image values),
mean ``J = bpp + lambda * MSE`` (the model's training lambda, what refinement lowers) and
encode seconds per image. Per level against level 0: the BD-rate of the family's curve (the
models given, at least two) and, per model, the rate change at its quality against the level-0
curve. The levels were chosen on training images held out of training, never on Kodak
(slimfast/models/refine.py); this measures them. Run on an idle machine: times are per image.

    python benchmarks/effort.py [--models fasinet-h-mse-q1 fasinet-h-mse-q4 fasinet-h-mse-q10]
                                [--efforts 0 1 2 3] [--images 24] [--threads 1]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
from PIL import Image

import slimfast
from slimfast.codec import MAX_EFFORT, refinement_lambda
from slimfast.tools.bdrate import bd_rate, rate_delta_at_point

ROOT = Path(__file__).resolve().parents[1]
KODAK = ROOT.parent / "shared" / "data" / "kodak"
FAMILY = ("fasinet-h-mse-q1", "fasinet-h-mse-q4", "fasinet-h-mse-q10")


def measure(codec, rgb: np.ndarray, effort: int, lmbda: float) -> dict:
    t0 = time.perf_counter()
    data = codec.compress(rgb, effort=effort)
    seconds = time.perf_counter() - t0
    out = np.asarray(slimfast.decompress(data, settings=codec.settings).convert("RGB"), dtype=np.float64)
    mse = float(np.mean((out - rgb) ** 2))
    bpp = len(data) * 8 / (rgb.shape[0] * rgb.shape[1])
    return {"bytes": len(data), "bpp": bpp, "psnr": 10 * np.log10(255 ** 2 / mse), "j": bpp + lmbda * mse,
            "seconds": seconds}


def run_model(name: str, files: list[Path], efforts: list[int], threads: int) -> dict:
    codec = slimfast.load(name, threads=threads, engine="ort", precision="fp32")
    lmbda = refinement_lambda(codec.info, codec.info.default_width)
    warm = np.asarray(Image.open(files[0]).convert("RGB"))[:64, :64].copy()
    codec.compress(warm, effort=max(efforts))  # graphs built, torch model loaded: not timed
    rows = {e: [] for e in efforts}
    for f in files:
        rgb = np.asarray(Image.open(f).convert("RGB"))
        for e in efforts:
            r = measure(codec, rgb, e, lmbda)
            rows[e].append({"image": f.name, **r})
            print(f"{name} {f.name} effort {e}: {r['bpp']:.4f} bpp {r['psnr']:.3f} dB J {r['j']:.4f} "
                  f"{r['seconds']:.2f} s", flush=True)
    levels = {}
    for e in efforts:
        mean = {k: float(np.mean([r[k] for r in rows[e]])) for k in ("bpp", "psnr", "j", "seconds")}
        levels[str(e)] = {**mean, "images": rows[e]}
    return {"lambda": lmbda, "levels": levels}


def compare(models: dict, efforts: list[int]) -> dict:
    """Per level against level 0: the family's BD-rate and each model's rate change at its quality."""
    out = {}
    names = list(models)
    for e in efforts:
        pts = {n: models[n]["levels"][str(e)] for n in names}
        ref = {n: models[n]["levels"][str(efforts[0])] for n in names}
        ref_r, ref_q = [ref[n]["bpp"] for n in names], [ref[n]["psnr"] for n in names]
        per_model = {}
        for n in names:
            p, r = pts[n], ref[n]
            per_model[n] = {"bpp_change": p["bpp"] / r["bpp"] - 1, "psnr_change_db": p["psnr"] - r["psnr"],
                            "j_change": p["j"] / r["j"] - 1, "seconds": p["seconds"],
                            "rate_change_at_quality": (rate_delta_at_point(ref_r, ref_q, p["bpp"], p["psnr"])
                                                       if len(names) > 1 else None)}
        bd = bd_rate(ref_r, ref_q, [pts[n]["bpp"] for n in names], [pts[n]["psnr"] for n in names]) \
            if len(names) > 1 else None
        out[str(e)] = {"bd_rate_percent": bd, "models": per_model}
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=list(FAMILY))
    p.add_argument("--efforts", type=int, nargs="+", default=list(range(MAX_EFFORT + 1)))
    p.add_argument("--images", type=int, default=24, help="the first N Kodak images")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--kodak", type=Path, default=KODAK)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "effort.json")
    args = p.parse_args()
    efforts = sorted(set(args.efforts) | {0})
    if len(efforts) > 6:
        p.error("at most 6 effort levels")
    files = sorted(args.kodak.glob("kodim*.png"))[: args.images]
    if not files:
        p.error(f"no kodim*.png in {args.kodak}")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    models = {m: run_model(m, files, efforts, args.threads) for m in args.models}
    summary = {"images": len(files), "threads": args.threads, "efforts": efforts, "machine": platform.processor()
               or platform.machine(), "load_average_before": load, "slimfast": slimfast.__version__,
               "command": "python benchmarks/effort.py --models " + " ".join(args.models)
               + f" --images {len(files)} --threads {args.threads}",
               "compare": compare(models, efforts), "models": models}
    args.out.parent.mkdir(exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps(summary["compare"], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
