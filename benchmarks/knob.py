"""The continuous quality knob against the ladder of points it interpolates, on real files.

For each family: the ladder (its points at step 1, the files earlier versions wrote), the knob
(``--quality`` from 0 to 100: :mod:`slimfast.quality`), and one point alone swept over steps
(the single-weights knob that would replace the ladder). Kodak, mean bpp of real files and
mean PSNR-RGB of the 8-bit output; BD-rate of each curve against the ladder over the range they
share. Writes ``benchmarks/results/knob.json`` (read by ``make results``) and a plot.

    python benchmarks/knob.py [--families fasinet-h-mse slim-fasinet-h-mse] [--images 24]
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
from PIL import Image

import slimfast
from slimfast import codec as sfcodec
from slimfast.coding.intmath import STEP_MAX, STEP_ONE
from slimfast.tools.bdrate import bd_rate

ROOT = Path(__file__).resolve().parents[1]
KODAK = ROOT.parent / "shared" / "data" / "kodak"
QUALITIES = tuple(range(0, 101, 5))
SWEEP = tuple(round(STEP_ONE * 2 ** (k / 4)) for k in range(-2, 9))  # one point alone: steps 0.71 .. 4


def _rd(c, images, **kw) -> tuple[float, float]:
    bpp, psnr = [], []
    for img in images:
        data = c.compress(img, **kw)
        out = np.asarray(slimfast.decompress(data, precision="fp32")).astype(np.float64)
        bpp.append(len(data) * 8 / (img.shape[0] * img.shape[1]))
        psnr.append(10 * math.log10(255 ** 2 / np.mean((out - img) ** 2)))
    return float(np.mean(bpp)), float(np.mean(psnr))


def _swept(c, point, images) -> list[dict]:
    """``point`` alone at every step of :data:`SWEEP`, through the codec's own file writer."""
    out = []
    for step in SWEEP:
        pt = sfcodec.OperatingPoint(point.model, point.width, step)
        bpp, psnr = [], []
        for img in images:
            canon = sfcodec.canonicalize(img)
            data = c._compress_point(canon, pt)
            rec = np.asarray(slimfast.decompress(data, precision="fp32")).astype(np.float64)
            bpp.append(len(data) * 8 / (img.shape[0] * img.shape[1]))
            psnr.append(10 * math.log10(255 ** 2 / np.mean((rec - img) ** 2)))
        out.append({"step": step / STEP_ONE, "bpp": float(np.mean(bpp)), "psnr": float(np.mean(psnr))})
    return out


def _bd(ref: list[dict], test: list[dict]) -> float | None:
    return bd_rate([p["bpp"] for p in ref], [p["psnr"] for p in ref], [p["bpp"] for p in test],
                   [p["psnr"] for p in test])


def measure(family: str, images: list[np.ndarray], threads: int) -> dict:
    info = sfcodec.model_info(family)
    c = slimfast.load(info.name, threads=threads, precision="fp32")
    points = c.operating_points()
    knob = sfcodec.knob_for(info)
    ladder = []
    for p in points:
        coder = c if p.width else slimfast.load(p.model, threads=threads, precision="fp32")
        bpp, psnr = _rd(coder, images, **({"width": p.width} if p.width else {}))
        ladder.append({"point": p.width or p.model, "bpp": bpp, "psnr": psnr})
    curve = []
    for q in QUALITIES:
        bpp, psnr = _rd(c, images, quality=q)
        point = c.resolve(q, None)
        curve.append({"quality": q, "point": point.width or point.model, "step": point.step / STEP_ONE,
                      "bpp": bpp, "psnr": psnr})
    alone = points[knob.default] if knob else points[len(points) // 2]
    sweep = _swept(c, alone, images)
    in_range = [p for p in curve if ladder[0]["bpp"] <= p["bpp"] <= ladder[-1]["bpp"]]
    return {"family": family, "ladder": ladder, "knob": curve, "single_point": str(alone.width or alone.model),
            "single_point_sweep": sweep, "bd_knob_vs_ladder": _bd(ladder, in_range or curve),
            "bd_single_point_vs_ladder": _bd(ladder, sweep)}


def plot(results: list[dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(6 * len(results), 4.5), squeeze=False)
    for ax, r in zip(axes[0], results):
        ax.plot([p["bpp"] for p in r["knob"]], [p["psnr"] for p in r["knob"]], "-", color="tab:blue",
                label="knob (quality 0..100)")
        ax.plot([p["bpp"] for p in r["single_point_sweep"]], [p["psnr"] for p in r["single_point_sweep"]], "--",
                color="tab:orange", label=f"{r['single_point']} alone, steps 0.71..4")
        ax.plot([p["bpp"] for p in r["ladder"]], [p["psnr"] for p in r["ladder"]], "o", color="black",
                label="ladder (step 1)")
        ax.set(title=r["family"], xlabel="bpp (Kodak mean, real files)", ylabel="PSNR-RGB (dB)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--families", nargs="+", default=["fasinet-h-mse", "slim-fasinet-h-mse"])
    p.add_argument("--images", type=int, default=24)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "knob.json")
    p.add_argument("--plot", type=Path, default=ROOT / "docs" / "results" / "knob.png")
    a = p.parse_args()
    files = sorted(KODAK.glob("*.png"))[: a.images]
    if not files:
        raise SystemExit(f"no Kodak images in {KODAK}")
    images = [np.asarray(Image.open(f).convert("RGB")) for f in files]
    results = []
    for fam in a.families:
        r = measure(fam, images, a.threads)
        results.append(r)
        print(f"{fam}: knob vs ladder {r['bd_knob_vs_ladder']:+.2f}% BD-rate, {r['single_point']} alone "
              f"{r['bd_single_point_vs_ladder']:+.2f}%", flush=True)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps({"images": len(images), "max_step": STEP_MAX / STEP_ONE, "families": results},
                                indent=1) + "\n")
    a.plot.parent.mkdir(parents=True, exist_ok=True)
    plot(results, a.plot)


if __name__ == "__main__":
    main()
