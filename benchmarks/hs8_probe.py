"""The 8-bit hyper-synthesis (FasiNet-H's ``hs_steps`` option) against the 12-bit copy, on the
same weights: bits (real entropy-coder counts on the same y and z) and entropy-parameter time.

Calibration on training images only (slimfast.tools.hyper8: of several activation percentiles, the
one with the fewest coded bits on those images); Kodak measures. One process, the
threads given, median over images; run on an idle machine.

    python benchmarks/hs8_probe.py --model fasinet-h-mse-q4 [--images 24] [--threads 2]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from PIL import Image

from slimfast import zoo
from slimfast.codec import pad_image, to_input
from slimfast.engines.specs import Specs
from slimfast.runtime.model import RuntimeModel
from slimfast.tools.hyper8 import calibrate_hs_steps
from slimfast.tools.training.data import training_split

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def timed_bits(codec, latents: dict, repeats: int = 5) -> tuple[float, float]:
    """(bits, best ms of the entropy parameters) of ``latents`` with ``codec``."""
    codec.forget()
    symbols = codec.quantize(latents)
    best = np.inf
    for _ in range(repeats):
        codec.forget()
        t0 = time.perf_counter()
        codec.entropy_parameters(symbols["z"])
        best = min(best, time.perf_counter() - t0)
    return codec.estimate_bits(symbols), best * 1e3


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="fasinet-h-mse-q4")
    p.add_argument("--weights", type=Path, default=None, help="a weights file instead of the bundled model")
    p.add_argument("--images", type=int, default=24)
    p.add_argument("--calibration", type=int, default=32)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "hs8_probe.json")
    args = p.parse_args()
    weights = args.weights or zoo.get(args.model).path
    pool, _ = training_split([str(SHARED / "train")], 0.05)  # no held-out or validation image
    pick = [pool[i] for i in np.random.default_rng(0).choice(len(pool), args.calibration, replace=False)]
    steps, calibration = calibrate_hs_steps(weights, pick, threads=args.threads)
    m = RuntimeModel(weights, threads=args.threads)
    plain = {k: v for k, v in m.specs.arch.config.items() if k != "hs_steps"}
    c12 = Specs(m.specs.arch.name, plain, m.specs.state).latent_codec(m.latent_channels)
    c8 = Specs(m.specs.arch.name, {**plain, "hs_steps": steps}, m.specs.state).latent_codec(m.latent_channels)
    rows = []
    for f in sorted((SHARED / "kodak").glob("kodim*.png"))[: args.images]:
        rgb = np.asarray(Image.open(f).convert("RGB"))
        lat = m.analyze(to_input(pad_image(rgb, m.pad_multiple)))
        (b12, t12), (b8, t8) = timed_bits(c12, lat), timed_bits(c8, lat)
        rows.append({"image": f.name, "bits12": b12, "bits8": b8, "ms12": t12, "ms8": t8})
        print(f"{f.name}: {b8 / b12 - 1:+.3%} bits, entropy parameters {t12:.1f} -> {t8:.1f} ms", flush=True)
    summary = {"model": args.model if args.weights is None else str(args.weights), "calibration": calibration,
               "threads": args.threads, "calibration_images": args.calibration, "steps": steps,
               "bits_change": sum(r["bits8"] for r in rows) / sum(r["bits12"] for r in rows) - 1,
               "ms12_median": float(np.median([r["ms12"] for r in rows])),
               "ms8_median": float(np.median([r["ms8"] for r in rows])), "images": rows}
    args.out.parent.mkdir(exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps({k: v for k, v in summary.items() if k != "images"}))


if __name__ == "__main__":
    main()
