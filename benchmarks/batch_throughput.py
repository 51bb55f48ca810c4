"""Throughput of ``slimfast batch`` against workers, on both executors, and of a shell loop of
``slimfast compress`` calls (one process per file, the way a corpus is compressed without batch).

A corpus of N crops of the bundled photo (kodim23) is compressed with the default model, one
thread per worker, by:

* ``shell``: ``slimfast compress FILE -o DIR --threads 1`` per file, run by ``xargs -P WORKERS``;
* ``local``: ``slimfast batch --executor local --workers WORKERS`` (a process pool);
* ``ray``: ``slimfast batch --executor ray --workers WORKERS`` (Ray Data on a local instance of
  WORKERS CPUs, started and stopped by the run).

Reported per run: images per second end to end (process, Ray and model start-up included, as a
user waits for them), the start-up (seconds to the first finished file), the steady rate (files
finished between the first and the last completion, from the manifest's times), and each worker's
peak resident memory (the batch workers report their own; for the shell loop, the largest
``slimfast compress`` process). Every run's files are checked against the shell loop's: the bytes
must be the same. The batch executors run in this process through :func:`slimfast.batch.run`, so
their figures leave out the one ``slimfast`` start of the command (about 0.15 s).

    python benchmarks/batch_throughput.py [--images 64] [--size 512x384] [--workers 1 2]
                                          [--out benchmarks/results/batch_throughput.json]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "slimfast" / "data" / "kodim23.png"
MB = 1e6


def make_corpus(folder: Path, n: int, size: tuple[int, int]) -> list[Path]:
    """``n`` different crops (offsets and flips) of the sample photo, as PNG."""
    from PIL import Image, ImageOps

    im = Image.open(SAMPLE).convert("RGB")
    w, h = min(size[0], im.width), min(size[1], im.height)
    paths = []
    for k in range(n):
        x, y = (k * 37) % (im.width - w + 1), (k * 23) % (im.height - h + 1)
        crop = im.crop((x, y, x + w, y + h))
        crop = ImageOps.mirror(crop) if k % 2 else crop
        paths.append(folder / f"img{k:04d}.png")
        crop.save(paths[-1])
    return paths


def outputs(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.glob("*.sfi")}


def shell_loop(files: list[Path], out: Path, workers: int) -> dict:
    """``xargs -P`` running one ``slimfast compress`` per file."""
    out.mkdir()
    exe = shutil.which("slimfast") or f"{sys.executable} -m slimfast"
    script = f'{exe} compress "$0" -o {out}/ --threads 1 --quiet'
    t0 = time.perf_counter()
    subprocess.run(["xargs", "-0", "-n", "1", "-P", str(workers), "sh", "-c", script],
                   input=b"\0".join(str(f).encode() for f in files), check=True)
    seconds = time.perf_counter() - t0
    # The largest child so far: the shell loops run first, so this is a `slimfast compress` process.
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    return {"seconds": seconds, "startup_s": None, "steady_images_per_second": len(files) / seconds,
            "peak_rss_mb_per_worker": [round(rss / MB)], "coded": len(files)}


def batch(executor: str, corpus: Path, out: Path, workers: int) -> dict:
    from slimfast import jobs
    from slimfast.batch import BatchConfig, run
    from slimfast.batch import manifest as mf
    from slimfast.settings import Settings

    options = jobs.Options("compress", settings=Settings.from_env().replace(threads=1))
    summary = run([str(corpus)], str(out), options, BatchConfig(executor=executor, workers=workers))
    times = sorted(r["time"] for r in mf.read(out / mf.NAME).values() if r["status"] == "ok")
    span = (times[-1] - times[0]).total_seconds()
    assert summary.failed == 0 and summary.workers == workers, summary
    return {"seconds": summary.seconds, "startup_s": summary.first_result_seconds,
            "steady_images_per_second": (len(times) - 1) / span if span > 0 else None, "coded": summary.coded,
            "peak_rss_mb_per_worker": sorted(round(s["peak_rss"] / MB) for s in summary.worker_stats.values())}


def environment() -> dict:
    try:
        from slimfast.tools.machine import environment as machine_environment
    except ImportError:  # the tools moved or are absent: the measurement stands without them
        return {"cpus_usable": len(os.sched_getaffinity(0))}
    return machine_environment(threads=1)


def measure(args, work: Path) -> list[dict]:
    corpus = work / "corpus"
    corpus.mkdir()
    files = make_corpus(corpus, args.images, args.size)
    runs, reference = [], None
    plan = [("shell", w) for w in args.workers] + [(e, w) for e in ("local", "ray") for w in args.workers]
    for method, workers in plan:
        out = work / f"{method}-{workers}"
        load = os.getloadavg()[0]
        r = shell_loop(files, out, workers) if method == "shell" else batch(method, corpus, out, workers)
        written = outputs(out)
        reference = reference or written
        r.update(method=method, workers=workers, images=len(files), identical_to_shell_loop=written == reference,
                 images_per_second=len(files) / r["seconds"], load_average_before=round(load, 2))
        runs.append({k: round(v, 3) if isinstance(v, float) else v for k, v in r.items()})
        print(f"{method:>6} {workers} workers: {r['images_per_second']:6.2f} images/s "
              f"(steady {r['steady_images_per_second'] or 0:6.2f}), start-up {r['startup_s'] or 0:5.2f} s, "
              f"peak RSS per worker {r['peak_rss_mb_per_worker']} MB, same bytes: {r['identical_to_shell_loop']}",
              flush=True)
    return runs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--size", default="512x384", help="the crops, WxH (default 512x384)")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "batch_throughput.json"))
    args = ap.parse_args(argv)
    args.size = tuple(int(v) for v in args.size.lower().split("x"))
    with tempfile.TemporaryDirectory(prefix="slimfast-batch-bench-") as work:
        runs = measure(args, Path(work))
    from slimfast.codec import model_info

    res = {"corpus": f"{args.images} crops of kodim23, {args.size[0]}x{args.size[1]}, PNG",
           "model": model_info(None).name, "threads_per_worker": 1, "runs": runs, "environment": environment()}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=1, default=str) + "\n")
    print(f"wrote {args.out}")
    return 0 if all(r["identical_to_shell_loop"] for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
