"""A long fuzz run of the decoder: hostile, checksum-valid .sfi files, with time and memory per case.

The same valid files and mutators as tests/test_fuzz.py (tests/fuzzing.py), many more cases:
each case applies 1 to 4 random ops to one of the valid files, fixes the CRC and decodes it.
Counted: outcomes (decoded, each kind of one-line refusal, and failures: any other exception, a
multi-line message, a decoded file whose streams cannot hold its declared latent), per-case
wall time, and per-case peak of traced allocations (tracemalloc: numpy and Python, not ONNX
Runtime's arena) with the process's peak RSS. Every case is replayable from (seed, case).

    python benchmarks/fuzz.py [--cases 50000] [--seed 0] [--max-pixels 65536] \
        [--out benchmarks/results/fuzz.json]
"""
from __future__ import annotations

import argparse
import json
import random
import re
import resource
import sys
import time
import tracemalloc
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

import slimfast  # noqa: E402
from slimfast.format import container  # noqa: E402
from slimfast.errors import SlimfastError  # noqa: E402
from tests import fuzzing  # noqa: E402

SLOWEST = 20


def case_ops(seed: int, case: int, n_bases: int) -> tuple[int, list[tuple[int, int, int]]]:
    rng = random.Random(f"{seed}:{case}")
    ops = [(rng.randrange(len(fuzzing.OPS)), rng.getrandbits(32), rng.getrandbits(32))
           for _ in range(rng.randint(1, 4))]
    return rng.randrange(n_bases), ops


def outcome(data: bytes, oracle: fuzzing.Oracle, max_pixels: int) -> str:
    """"decoded", "refused: <reason>" (numbers blanked, so reasons group) or "FAIL: <what>"."""
    try:
        img = slimfast.decompress(data, threads=1, max_pixels=max_pixels)
    except SlimfastError as exc:
        msg = str(exc)
        if "\n" in msg:
            return "FAIL: multi-line message"
        return "refused: " + re.sub(r"\d+", "N", re.sub(r"'[^']*'", "'…'", msg))[:90]
    except Exception as exc:  # noqa: BLE001 - exactly what the run looks for
        return f"FAIL: {type(exc).__name__}: {str(exc).splitlines()[0][:80] if str(exc) else ''}"
    hdr = container.unpack(data)
    if oracle.cannot_hold(hdr):
        return "FAIL: decoded a latent its streams cannot hold"
    if img.size != hdr.image_size:
        return "FAIL: decoded size differs from the header"
    return "decoded"


def run(cases: int, seed: int, max_pixels: int, trace: bool) -> dict:
    bases = fuzzing.build_bases()
    counts, times, peaks, slow, failures = Counter(), [], [], [], []
    if trace:
        tracemalloc.start()
    t_all = time.perf_counter()
    for case in range(cases):
        b, ops = case_ops(seed, case, len(bases))
        data = fuzzing.mutate(bases[b][1], ops)
        if trace:
            tracemalloc.reset_peak()
        t0 = time.perf_counter()
        what = outcome(data, bases[b][2], max_pixels)
        dt = time.perf_counter() - t0
        peak = tracemalloc.get_traced_memory()[1] if trace else 0
        counts[what] += 1
        times.append(dt)
        peaks.append(peak)
        record = {"case": case, "base": bases[b][0], "ops": ops, "bytes": len(data), "seconds": round(dt, 5),
                  "peak_bytes": peak, "outcome": what}
        slow = sorted(slow + [record], key=lambda r: -r["seconds"])[:SLOWEST]
        if what.startswith("FAIL"):
            failures.append(record)
        if (case + 1) % 1000 == 0:
            print(f"{case + 1}/{cases} cases, {len(failures)} failures", file=sys.stderr, flush=True)
    return summary(cases, seed, max_pixels, bases, counts, times, peaks, slow, failures,
                   time.perf_counter() - t_all)


def summary(cases, seed, max_pixels, bases, counts, times, peaks, slow, failures, wall) -> dict:
    t, p = np.array(times), np.array(peaks)
    return {
        "cases": cases, "seed": seed, "max_pixels": max_pixels, "bases": [b[0] for b in bases],
        "wall_seconds": round(wall, 2),
        "outcomes": dict(counts.most_common()),
        "decoded": counts["decoded"], "failures": len(failures),
        "seconds": {"mean": float(t.mean()), "p50": float(np.percentile(t, 50)), "p99": float(np.percentile(t, 99)),
                    "max": float(t.max())},
        "traced_peak_bytes": {"p50": int(np.percentile(p, 50)), "p99": int(np.percentile(p, 99)), "max": int(p.max())},
        "max_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "slowest": slow, "failure_cases": failures[:200],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=50_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-pixels", type=int, default=1 << 16,
                    help="decoder pixel limit (default 65536: ~10x the valid files' images)")
    ap.add_argument("--no-tracemalloc", action="store_true", help="skip per-case peaks (faster)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "fuzz.json"))
    args = ap.parse_args(argv)
    res = run(args.cases, args.seed, args.max_pixels, not args.no_tracemalloc)
    Path(args.out).write_text(json.dumps(res, indent=1) + "\n")
    s, m = res["seconds"], res["traced_peak_bytes"]
    print(f"{res['cases']} cases in {res['wall_seconds']} s: {res['decoded']} decoded, {res['failures']} failures")
    print(f"per case: p50 {s['p50'] * 1e3:.1f} ms, p99 {s['p99'] * 1e3:.1f} ms, max {s['max'] * 1e3:.0f} ms; "
          f"traced peak p99 {m['p99'] / 2**20:.1f} MiB, max {m['max'] / 2**20:.1f} MiB; "
          f"process peak RSS {res['max_rss_bytes'] / 2**20:.0f} MiB")
    for what, n in res["outcomes"].items():
        print(f"{n:8d}  {what}")
    print(f"wrote {args.out}")
    return 1 if res["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
