"""ONNX Runtime settings compared in one process, interleaved.

`slimfast bench`'s "What was tried" times each setting in fresh processes, and fresh processes
with identical settings differed by up to 34% in one run there (RESULTS.md shows each setting's
range over its rounds). This times every combination of graph optimization level (``all``: with ORT's NCHWc
layout; ``extended``: without), transposed-convolution form and memory arena on one model in one
process: all sessions built first, then ``--rounds`` rounds that code the image once with each,
in alternating order, so that a slow spell of the machine lands on every setting alike. Medians
of encode (image to symbols and strings) and decode (strings to 8-bit pixels), 2 threads.

    python benchmarks/ort_settings.py [--model fasinet-h-mse-q4] [--rounds 9] [--threads 2]
"""
from __future__ import annotations

import argparse
import itertools
import os
import time

# as slimfast bench's workers: the integer hyper-synthesis GEMMs are fastest on one BLAS thread
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None, help="a bundled model (default: the default model)")
    p.add_argument("--image", default=None, help="default: the bundled kodim23.png")
    p.add_argument("--rounds", type=int, default=9)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    from PIL import Image

    from slimfast import runtime, zoo
    from slimfast.tools.bench import resolve_image

    with Image.open(resolve_image(a.image)) as im:
        img = np.asarray(im.convert("RGB"), dtype=np.float32) / 255
    info = zoo.get(a.model)
    m16 = 16
    h, w = img.shape[0] // m16 * m16, img.shape[1] // m16 * m16
    x = np.ascontiguousarray(img[:h, :w].transpose(2, 0, 1)[None])
    combos = list(itertools.product(["all", "extended"], ["subpixel", "convtranspose"], ["0", "1"]))
    models = {}
    for opt, tconv, arena in combos:
        m = runtime.load_model(info.path, threads=a.threads, optimization=opt, tconv=tconv, arena=arena == "1")
        lat = m.compress(x)
        for _ in range(2):  # warm-up
            m.compress(x)
            m.decompress_rgb8(lat.strings, lat.shape)
        models[(opt, tconv, arena)] = (m, lat)
    times = {k: ([], []) for k in combos}
    for r in range(a.rounds):
        for k in combos if r % 2 == 0 else combos[::-1]:
            m, lat = models[k]
            t0 = time.perf_counter()
            m.compress(x)
            t1 = time.perf_counter()
            m.decompress_rgb8(lat.strings, lat.shape)
            t2 = time.perf_counter()
            times[k][0].append((t1 - t0) * 1e3)
            times[k][1].append((t2 - t1) * 1e3)
    print(f"{info.name}, {w}x{h}, {a.threads} threads, median of {a.rounds} interleaved rounds")
    print("| optimization | transposed convolutions | arena | encode ms | decode ms |")
    print("|---|---|---|---|---|")
    for k in combos:
        print(f"| {k[0]} | {k[1]} | {'on' if k[2] == '1' else 'off'} | {np.median(times[k][0]):.1f} | "
              f"{np.median(times[k][1]):.1f} |")


if __name__ == "__main__":
    main()
