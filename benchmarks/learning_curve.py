"""Kodak RD of a training run's snapshots against wall-clock hours: quality per CPU-hour.

Train with ``--snapshot-minutes N`` (weights kept in ``RUN/snapshots/``), then:

    python benchmarks/learning_curve.py runs/l-lr1e-3 runs/l-lr1e-4 \
        --out benchmarks/results/learning_curve_fasinet_l.json [--kodak ../shared/data/kodak]

Each snapshot is measured on Kodak from real entropy-coded streams (bpp) and the 8-bit
reconstruction (PSNR-RGB), at the model's default width. Hours are the run's own wall clock,
so compare runs made on the same hardware and load. Choose recipes on the validation split in
each run's ``log.csv``; this Kodak curve is for reporting only.
"""
from __future__ import annotations

import argparse
import csv
import glob
import json
import sys
from pathlib import Path

import torch
from _rd import stream_rd  # benchmarks/_rd.py

from slimfast.models.weights import load_model


def kodak_point(path: Path, files: list[str]) -> tuple[float, float]:
    return stream_rd(load_model(path), files)


def run_curve(run: Path, files: list[str]) -> list[dict]:
    index = run / "snapshots" / "index.csv"
    if not index.exists():
        raise SystemExit(f"error: {index} not found (train with --snapshot-minutes N)")
    points = []
    with open(index, newline="") as f:
        for step, minutes, name in csv.reader(f):
            bpp, psnr = kodak_point(run / "snapshots" / name, files)
            points.append({"step": int(step), "hours": float(minutes) / 60, "bpp": bpp, "psnr": psnr})
            print(f"{run.name} step {step} ({float(minutes):.1f} min): {bpp:.3f} bpp {psnr:.2f} dB",
                  file=sys.stderr, flush=True)
    return points


def plot(curves: dict[str, list[dict]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.2), dpi=100)
    for name, pts in curves.items():
        a1.plot([p["hours"] for p in pts], [p["psnr"] for p in pts], "-o", ms=3, label=name)
        a2.plot([p["hours"] for p in pts], [p["bpp"] for p in pts], "-o", ms=3, label=name)
    a1.set(xlabel="training wall-clock hours", ylabel="Kodak PSNR-RGB (dB)", title="Quality per hour")
    a2.set(xlabel="training wall-clock hours", ylabel="Kodak bpp (real streams)", title="Rate per hour")
    for a in (a1, a2):
        a.grid(True, alpha=0.3)
        a.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", type=Path, help="run folders with snapshots/")
    p.add_argument("--kodak", default="../shared/data/kodak")
    p.add_argument("--limit", type=int, default=0, help="first N Kodak images only")
    p.add_argument("--out", default=None, help="JSON to write (a PNG beside it)")
    a = p.parse_args(argv)
    files = sorted(glob.glob(f"{a.kodak}/*.png"))[: a.limit or None]
    if not files:
        raise SystemExit(f"error: no Kodak PNGs in {a.kodak}")
    torch.set_num_threads(1)
    curves = {r.name: run_curve(r, files) for r in a.runs}
    if a.out:
        out = Path(a.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"curves": curves, "kodak_images": len(files),
                                   "command": "python benchmarks/learning_curve.py " +
                                   " ".join(sys.argv[1:] if argv is None else argv)}, indent=1) + "\n")
        try:
            plot(curves, out.with_suffix(".png"))
        except ImportError as e:
            print(f"no plot: {e}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
