"""Weights files of one model compared on validation training images, as real files: for recipe choices.

Validation images are the training set's validation split (CRC-32 of the name mod 1000 below
50: ``slimfast.tools.training.data.split_validation``), never Kodak nor the held-out list,
halved (as the held-out evaluation is, which removes their JPEG artifacts). Each weights file
codes each whole image through the real coding path (ONNX Runtime, one thread): mean bpp from
the bytes (streams plus a 40-byte header), mean PSNR-RGB of the 8-bit output, and the training
objective ``J = bpp + lambda * MSE`` (MSE on 0..255), lower is better.

    python benchmarks/compare_weights.py --lambda 0.013 [--images 12] A.safetensors B.safetensors ...
        [--labels a b ...] [--out benchmarks/results/recipe_probes.json] [--curve 1 1.5 2 3]

J compares files trained at one lambda. A recipe that moves a run along its curve (another
rate) is compared with ``--curve``: the first file also codes the images at these multiples of
its quantization step (hyperprior models), and each file's PSNR is given against that curve at
its own bpp (``psnr_vs_curve_db``, interpolated in log bpp; none outside the curve's range).

With ``--out`` the table goes to a JSON that ``make results`` shows (RESULTS.md, "Recipe
measurements"): each file's label, its means and its J against the first's.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from slimfast.codec import pad_image, to_input
from slimfast.coding.intmath import STEP_ONE
from slimfast.runtime.model import RuntimeModel

ROOT = Path(__file__).resolve().parents[1]
TRAIN = ROOT.parent / "shared" / "data" / "train"
HEADER_BYTES = 40


def validation_images(train: Path, n: int) -> list[np.ndarray]:
    files = sorted(p for p in train.rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    val = [f for f in files if zlib.crc32(f.name.encode()) % 1000 < 50][:n]
    return [np.asarray(Image.open(f).convert("RGB").reduce(2)) for f in val]


def measure(weights: Path, images: list[np.ndarray], lmbda: float, width: int | None = None,
            step: float = 1.0) -> dict:
    m = RuntimeModel(weights, threads=1)
    q = round(step * STEP_ONE)
    bpp, psnr, j = [], [], []
    for img in images:
        h, w, _ = img.shape
        lat = m.compress(to_input(pad_image(img, m.pad_multiple)), width, step=q)
        rgb = m.decompress_rgb8(lat.strings, lat.shape, width, step=q)[:h, :w]
        mse = float(np.mean((rgb.astype(np.float64) - img) ** 2))
        b = (sum(map(len, lat.strings)) + HEADER_BYTES) * 8 / (h * w)
        bpp.append(b)
        psnr.append(10 * np.log10(255 ** 2 / mse))
        j.append(b + lmbda * mse)
    return {"bpp": float(np.mean(bpp)), "psnr": float(np.mean(psnr)), "j": float(np.mean(j))}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("weights", nargs="+", type=Path)
    p.add_argument("--lambda", dest="lmbda", type=float, required=True, help="the models' training lambda")
    p.add_argument("--images", type=int, default=12)
    p.add_argument("--train", type=Path, default=TRAIN)
    p.add_argument("--width", type=int, help="a slimmable model's width (default: its default width)")
    p.add_argument("--labels", nargs="+", help="what each weights file is (the recipe it was trained with)")
    p.add_argument("--out", type=Path, help="also write the results here as JSON")
    p.add_argument("--curve", type=float, nargs="+", metavar="STEP",
                   help="the first file's curve at these multiples of its quantization step (e.g. 1 1.5 2 3)")
    a = p.parse_args()
    if a.labels and len(a.labels) != len(a.weights):
        raise SystemExit("--labels: one per weights file")
    images = validation_images(a.train, a.images)
    if not images:
        raise SystemExit(f"no validation images under {a.train}")
    base, rows = None, []
    for i, w in enumerate(a.weights):
        r = measure(w, images, a.lmbda, a.width)
        base = base or r
        r.update(weights=str(w), label=a.labels[i] if a.labels else w.parent.name,
                 j_vs_first_percent=100 * (r["j"] / base["j"] - 1))
        rows.append(r)
        print(f"{w}: {r['bpp']:.5f} bpp {r['psnr']:.4f} dB J {r['j']:.5f} "
              f"(J {r['j_vs_first_percent']:+.2f}% vs the first)", flush=True)
    curve = [dict(measure(a.weights[0], images, a.lmbda, a.width, s), step=s) for s in a.curve or []]
    for r in rows if curve else []:
        r["psnr_vs_curve_db"] = psnr_against(curve, r["bpp"], r["psnr"])
        print(f"{r['weights']}: PSNR vs the first's curve at its bpp: {r['psnr_vs_curve_db']}", flush=True)
    if a.out:
        a.out.write_text(json.dumps({"command": " ".join(["python", *sys.argv]), "lambda": a.lmbda,
                                     "images": len(images), "machine": platform.machine(), "rows": rows,
                                     "curve": curve}, indent=1) + "\n")


def psnr_against(curve: list[dict], bpp: float, psnr: float) -> float | None:
    """``psnr`` minus the curve's PSNR at ``bpp`` (linear in log bpp), or None outside its range."""
    pts = sorted((np.log(c["bpp"]), c["psnr"]) for c in curve)
    xs, ys = [x for x, _ in pts], [y for _, y in pts]
    if not xs or not xs[0] <= np.log(bpp) <= xs[-1]:
        return None
    return float(psnr - np.interp(np.log(bpp), xs, ys))


if __name__ == "__main__":
    main()
