"""torch eager vs ONNX Runtime (``slimfast.runtime``): encode / decode latency on one image.

    python benchmarks/bench_runtime.py [--image slimfast/data/kodim23.png] [--repeats 7]
                                       [--models fasinet-l fasinet-h] [--threads 1 2] [--out bench_runtime.json]

Builds random-initialized models with :mod:`slimfast.models` (rescaled so that latents and
reconstructions have realistic ranges and the entropy coder sees non-trivial symbols), calls
``update()``, saves them with :func:`slimfast.models.weights.save_model` to a temporary folder, then
times, round-robin so that background load hits every variant alike:

* ``enc``: ``compress`` (analysis, quantization, entropy coding), ``dec``: ``decompress``
  (entropy decoding, hyper-synthesis, IQR + synthesis); ``enc_net`` / ``dec_net``: the float
  transforms alone (torch modules / the ORT session);
* torch eager at each thread count (``torch.set_num_threads``) and ORT variants: threads,
  graph optimization level (``extended``: no layout change, ``all``: ORT's blocked NCHWc
  layout) and the stride-4 transposed convolutions as ``ConvTranspose`` or sub-pixel
  ``Conv + DepthToSpace``.

Medians in milliseconds, wall clock and (in parentheses) process CPU time. Only ratios within
one run are meaningful. Thread pools of several variants in one process disturb each other
(ORT's workers spin after a run): for more than one thread, time one variant per process.
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def liven(model, seed: int = 0) -> None:
    """Rescale a random-initialized FasiNet so its latents span about +-10 and x_hat is image-like."""
    import torch

    from slimfast.nn.layers import GDN

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, GDN):
                mod.beta.mul_(torch.empty(mod.beta.shape).uniform_(0.8, 1.2, generator=g))
                mod.gamma.add_(torch.rand(mod.gamma.shape, generator=g) * 0.05)
        [p for n, p in model.g_a.named_parameters() if n.endswith("weight") and p.dim() == 4][-1].mul_(25)
        if hasattr(model, "h_a"):
            [p for n, p in model.h_a.named_parameters() if n.endswith("weight")][-1].mul_(8)
        for p in model.iqr.conv3.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.05)
        [p for n, p in model.g_s.named_parameters() if n.endswith("weight") and p.dim() == 4][-1].mul_(0.3)
        [p for n, p in model.g_s.named_parameters() if n.endswith("bias")][-1].fill_(0.5)


def make_weights(arch: str, folder: Path) -> Path:
    import torch

    from slimfast.models import build
    from slimfast.models.weights import save_model

    torch.manual_seed(0)
    m = build(arch).eval()
    liven(m)
    m.update()
    path = folder / f"{arch}.safetensors"
    save_model(m, path)
    return path


def fresh(fn, model):
    """``fn`` as it is: every compress/decompress call computes its entropy parameters afresh
    (the latent codec forgets them between calls), so they are timed too."""
    return fn


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--image", default=str(ROOT / "slimfast" / "data" / "kodim23.png"))
    ap.add_argument("--models", nargs="+", default=["fasinet-l", "fasinet-h"])
    ap.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--variants", nargs="+", default=None,
                    help="ORT variants as opt:tconv[:nospin] (default: all:subpixel all:convtranspose "
                         "extended:subpixel extended:convtranspose; 'none': torch only)")
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)

    import torch
    from PIL import Image

    from slimfast import runtime
    from slimfast.models.weights import load_model

    rgb = np.asarray(Image.open(args.image).convert("RGB"))
    variants = [tuple(v.split(":")) for v in (args.variants or
                ["all:subpixel", "all:convtranspose", "extended:subpixel", "extended:convtranspose"]) if v != "none"]
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for arch in args.models:
            path = make_weights(arch, Path(tmp))
            tm = load_model(path)
            m = tm.pad_multiple
            h, w = rgb.shape[:2]
            padded = np.pad(rgb, ((0, -h % m), (0, -w % m), (0, 0)), mode="edge")
            x = np.ascontiguousarray(padded.transpose(2, 0, 1)[None], dtype=np.float32) / np.float32(255)
            xt = torch.from_numpy(x)
            with torch.inference_mode():
                lat = tm.compress(xt)
            sym = tm.decode_symbols(lat.strings, lat.shape)

            # each runner: name -> {stage: callable}
            runners = {}
            for t in args.threads:
                if not args.no_torch:
                    def torch_stage(fn, t=t):
                        def run():
                            torch.set_num_threads(t)
                            with torch.inference_mode():
                                fn()
                        return run
                    if tm.hyper:
                        enc_net = lambda: tm.hyper_analysis(tm.analysis(xt))  # noqa: E731
                    else:
                        enc_net = lambda: tm.analysis(xt)  # noqa: E731
                    yh = torch.from_numpy(tm.coding_path().dequantize(sym))
                    runners[f"torch t{t}"] = {
                        "enc": torch_stage(fresh(lambda: tm.compress(xt), tm)),
                        "dec": torch_stage(fresh(lambda: tm.decompress(lat.strings, lat.shape), tm)),
                        "enc_net": torch_stage(enc_net),
                        "dec_net": torch_stage(lambda yh=yh: tm.synthesis(yh)),
                    }
                for opt, tconv, *extra in variants:
                    spin = "nospin" not in extra
                    if t == 1 and not spin:
                        continue  # one thread: no worker threads to spin
                    rm = runtime.load_model(path, threads=t, optimization=opt, tconv=tconv, spinning=spin)
                    y_hat = rm.dequantize(sym)
                    enc_s, dec_s = rm.session("encoder"), rm.session("decoder")
                    runners[f"ort t{t} {opt} {tconv}{'' if spin else ' nospin'}"] = {
                        "enc": fresh(lambda rm=rm: rm.compress(x), rm),
                        "dec": fresh(lambda rm=rm: rm.decompress(lat.strings, lat.shape), rm),
                        "enc_net": lambda s=enc_s: s.run(None, {"x": x}),
                        "dec_net": lambda s=dec_s, y=y_hat: s.run(None, {"y_hat": y}),
                    }
            times = {name: {k: [] for k in stages} for name, stages in runners.items()}
            cpu = {name: {k: [] for k in stages} for name, stages in runners.items()}
            for name, stages in runners.items():  # warm-up
                for fn in stages.values():
                    fn()
            for _ in range(args.repeats):
                for name, stages in runners.items():
                    for k, fn in stages.items():
                        c0, t0 = time.process_time(), time.perf_counter()
                        fn()
                        times[name][k].append(1000 * (time.perf_counter() - t0))
                        cpu[name][k].append(1000 * (time.process_time() - c0))
            med = {name: {k: round(statistics.median(v), 1) for k, v in st.items()} for name, st in times.items()}
            med_cpu = {name: {k: round(statistics.median(v), 1) for k, v in st.items()} for name, st in cpu.items()}
            results[arch] = {"image": f"{w}x{h}", "padded": f"{padded.shape[1]}x{padded.shape[0]}",
                             "median_ms": med, "median_cpu_ms": med_cpu}
            print(f"\n{arch} on {w}x{h} (padded {padded.shape[1]}x{padded.shape[0]}), median ms of {args.repeats}, "
                  "wall (process CPU time):")
            print(f"{'variant':36s} {'enc':>14s} {'dec':>14s} {'enc_net':>14s} {'dec_net':>14s}")
            for name, st in med.items():
                cells = " ".join(f"{st[k]:6.1f} ({med_cpu[name][k]:5.1f})" for k in ("enc", "dec", "enc_net", "dec_net"))
                print(f"{name:36s} {cells}")
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
