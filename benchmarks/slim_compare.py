"""Kodak RD of trained slimmable runs, per width, from real entropy-coded streams.

Compares a lambda-scheduled slimmable model with its equal-budget naive twin (BD-rate), and
sub-networks with models trained alone at one width. Bytes are the coded streams (the .sfi
header adds ~40 bytes per file). Kodak is used for evaluation only.

    python benchmarks/slim_compare.py --sched runs/slim-l-sched --naive runs/slim-l-naive \
        --alone runs/slim-l-alone-96 runs/slim-l-alone-48 \
        --out benchmarks/results/slim_compare_fasinet_l.json

The JSON (points, BD-rate and BD-PSNR, and each run's steps, minutes, lambdas and init) is
what ``make results`` puts in the "Slimmable models" section of RESULTS.md.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import sys
from pathlib import Path

import torch
from _rd import stream_rd  # benchmarks/_rd.py

from slimfast.tools import bdrate
from slimfast.tools.release import run_stage
from slimfast.models.weights import load_model


def kodak_points(path: str, files: list[str]) -> list[tuple[int, float, float]]:
    m = load_model(path)
    out = []
    for w in (m.widths or (None,)):
        bpp, psnr = stream_rd(m, files, w)
        out.append((w or m.latent_channels, bpp, psnr))
        print(f"{path}: width {out[-1][0]}: {bpp:.3f} bpp {psnr:.2f} dB", file=sys.stderr, flush=True)
    return out


def run_info(d: str) -> dict:
    """Budget and lambdas of a run folder, as release cards record them."""
    return {**run_stage(Path(d))[0], "run": d}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sched", required=True, help="run folder of the scheduled model (final.safetensors)")
    p.add_argument("--naive", required=True, help="run folder of the equal-budget naive model")
    p.add_argument("--alone", nargs="*", default=[], help="run folders of single-width models")
    p.add_argument("--kodak", default="../shared/data/kodak")
    p.add_argument("--out", default=None, help="write the points and BD-rates as JSON")
    a = p.parse_args(argv)
    files = sorted(glob.glob(f"{a.kodak}/*.png"))
    if not files:
        raise SystemExit(f"error: no Kodak PNGs in {a.kodak}")
    torch.set_num_threads(1)
    res = {k: kodak_points(f"{d}/final.safetensors", files) for k, d in (("sched", a.sched), ("naive", a.naive))}
    res["alone"] = {d: kodak_points(f"{d}/final.safetensors", files)[0] for d in a.alone}
    s, n = res["sched"], res["naive"]
    res["bd_rate_sched_vs_naive"] = bdrate.bd_rate([q[1] for q in n], [q[2] for q in n], [q[1] for q in s], [q[2] for q in s])
    res["bd_psnr_sched_vs_naive"] = bdrate.bd_psnr([q[1] for q in n], [q[2] for q in n], [q[1] for q in s], [q[2] for q in s])
    res["runs"] = {"sched": run_info(a.sched), "naive": run_info(a.naive), "alone": {d: run_info(d) for d in a.alone}}
    res["alone_rate_delta_vs_sched_curve"] = {
        d: bdrate.rate_delta_at_point([q[1] for q in s], [q[2] for q in s], bpp, psnr)
        for d, (w, bpp, psnr) in res["alone"].items()}
    res["kodak_images"] = len(files)
    res["command"] = "python benchmarks/slim_compare.py " + " ".join(sys.argv[1:] if argv is None else argv)
    print(f"BD-rate scheduled vs naive: {res['bd_rate_sched_vs_naive']:+.1f}%")
    for d, (w, bpp, psnr) in res["alone"].items():
        sub = next(q for q in s if q[0] == w)
        print(f"width {w}: alone {bpp:.3f} bpp {psnr:.2f} dB | scheduled sub-network {sub[1]:.3f} bpp {sub[2]:.2f} dB")
    if a.out:
        os.makedirs(os.path.dirname(a.out) or ".", exist_ok=True)
        with open(a.out, "w") as f:
            json.dump(res, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
