"""``slimfast bench``: encode/decode latency and memory of each model against traditional codecs.

Method (also in ``benchmarks/README.md``):

* One image (default the bundled 768x512 ``slimfast/data/kodim23.png``). Each model and width
  runs in its own subprocess with ``--threads`` threads: one warm-up encode+decode, then
  ``--repeats`` timed encodes and decodes; the median is reported. The widths of a slimmable
  model are timed instead in one more process, in turn (``--width-repeats`` rounds, each
  coding every width once, starting one width further along each round), and those medians
  are its reported times, so that the comparison across widths does not depend on when each
  width's process ran (``--no-interleave``: per-process times). Memory: after importing
  torch and loading the model and image, the kernel's peak-RSS mark is reset to the current
  RSS (``/proc/self/clear_refs``, Linux); ``peak_rss_mb`` is the process's peak RSS while
  coding and ``delta_rss_mb`` what coding added on top of the loaded state. Where the reset is
  unsupported, the ``resource.getrusage`` ``ru_maxrss`` growth is used (a lower bound).
* Baselines (JPEG, WebP, AVIF, HEIC by default) run in this process in the same invocation,
  with their libraries' default threading. For each model point, each baseline uses the
  quality from its sweep whose bpp on the same image is closest (in log ratio) to the model's;
  ratios are ``model_time / baseline_time`` for encode, decode and encode+decode.
* A size sweep (``--sizes`` in megapixels) codes the default operating point of one model per
  family (``--size-models``; by default the middle rate point of each family the ONNX Runtime
  backend runs) on images built by mirror-tiling the sample to the target size (3:2, sides
  multiples of 16), showing how time and memory grow; JPEG at the matched quality is timed
  alongside.
* Cold start: the wall time of ``slimfast decompress`` of one file as a fresh process (median
  of ``--cold-repeats``), whether that process imported torch, and the wall time of a bare
  ``import torch`` for scale. Install size: the bytes on disk of the distributions that
  ``pip install slimfast`` pulls in, with and without the ``torch`` extra.

Outputs ``bench.json`` and ``bench.md`` in ``--out``. Timings are only comparable within
one run: compare ratios, not absolute times from different runs or machines.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from . import baselines as _baselines
from .. import metrics
from ..errors import SlimfastError

PACKAGE_SAMPLE = Path(__file__).resolve().parents[1] / "data" / "kodim23.png"
DEFAULT_BASELINES = ["jpeg", "webp", "avif", "heic"]
RESULT_MARK = "SLIMFAST_BENCH_RESULT "


def _megapixels(v: str) -> float | None:
    """A size-sweep point: a positive number of megapixels, or ``none`` (no sweep)."""
    if v.lower() == "none":
        return None
    try:
        mp = float(v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of megapixels: {v!r}") from None
    if not mp > 0 or mp > 1000:
        raise argparse.ArgumentTypeError(f"megapixels must be in (0, 1000], not {v}")
    return mp


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--image", default=None, help=f"test image (default: {PACKAGE_SAMPLE.name} bundled with slimfast)")
    p.add_argument("--models", nargs="+", default=None, metavar="NAME",
                   help="models to time (default: every installed model; 'none' for none)")
    p.add_argument("--baselines", nargs="+", default=DEFAULT_BASELINES, metavar="NAME",
                   help=f"baselines (default: {' '.join(DEFAULT_BASELINES)}; 'none' for none)")
    p.add_argument("--repeats", type=int, default=5, help="timed runs per measurement, median reported (default 5)")
    p.add_argument("--width-repeats", type=int, default=11,
                   help="slimmable models: rounds over all widths in one process, each round coding every "
                        "width once; their medians are the widths' times (default 11)")
    p.add_argument("--no-interleave", dest="interleave", action="store_false",
                   help="time each width of a slimmable model in its own process instead")
    p.add_argument("--threads", type=int, default=2, help="threads for the models, ONNX Runtime or torch (default 2)")
    p.add_argument("--sizes", type=_megapixels, nargs="*", default=[0.4, 2, 8, 24], metavar="MP",
                   help="size sweep in megapixels (default 0.4 2 8 24; 'none', or no value, to skip)")
    p.add_argument("--size-repeats", type=int, default=3, help="timed runs per size-sweep point (default 3)")
    p.add_argument("--size-models", nargs="+", default=None, metavar="NAME",
                   help="models for the size sweep (default: the middle rate point of each family the ONNX "
                        "Runtime backend runs)")
    p.add_argument("--no-int8", dest="int8", action="store_false",
                   help="skip the int8-synthesis points (by default every model whose card is calibrated for "
                        "`slimfast decompress --int8` is also timed that way)")
    p.add_argument("--no-bf16", dest="bf16", action="store_false",
                   help="skip the bf16 points (by default, where OpenVINO is installed and the CPU computes bf16 "
                        "natively, every model is also timed with --bf16 on compress and decompress)")
    p.add_argument("--no-tried", dest="tried", action="store_false",
                   help="skip timing what was tried for speed (the default model under each setting of TRIED)")
    p.add_argument("--tried-rounds", type=int, default=3,
                   help="rounds over the TRIED settings, each setting once per round in a fresh process, "
                        "median over rounds (default 3: process-to-process drift hits every setting alike)")
    p.add_argument("--profile", default=None, metavar="TRACE.json",
                   help="also write a Chrome trace of one encode and decode of every model point, stage by stage "
                        "(open it in chrome://tracing, Perfetto or speedscope)")
    p.add_argument("--cold-repeats", type=int, default=3, help="fresh-process decompress runs (default 3; 0 to skip)")
    p.add_argument("--timeout", type=float, default=600, help="seconds allowed per model subprocess (default 600)")
    p.add_argument("--out", default="out/bench", help="output folder (default: out/bench)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress output")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)


# -- images -------------------------------------------------------------------------------------
def resolve_image(path: str | None) -> Path:
    if path:
        p = Path(path)
        if not p.is_file():
            raise SlimfastError(f"benchmark image {p} does not exist")
        return p
    if PACKAGE_SAMPLE.is_file():
        return PACKAGE_SAMPLE
    raise SlimfastError(f"no benchmark image: {PACKAGE_SAMPLE} is missing; pass --image")


def size_for(mp: float, aspect: float = 1.5, multiple: int = 16) -> tuple[int, int]:
    """(height, width) of about ``mp`` megapixels with ``width/height = aspect``, sides multiples of 16."""
    w = max(multiple, int(round(math.sqrt(mp * 1e6 * aspect) / multiple)) * multiple)
    h = max(multiple, int(round(mp * 1e6 / w / multiple)) * multiple)
    return h, w


def tile_to(img: np.ndarray, h: int, w: int) -> np.ndarray:
    """``img`` mirror-tiled (no seams) and cropped to ``h`` x ``w``."""
    H, W = img.shape[:2]
    out = np.pad(img, ((0, max(0, h - H)), (0, max(0, w - W)), (0, 0)), mode="symmetric")
    return np.ascontiguousarray(out[:h, :w])


def _load(path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return metrics.as_rgb_uint8(np.asarray(im.convert("RGB")))


def _median_times(enc, dec, repeats: int):
    """Warm up once, then time ``repeats`` encodes and decodes; medians in ms plus the last bytes."""
    data = enc()
    dec(data)
    te, td = [], []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        data = enc()
        t1 = time.perf_counter()
        out = dec(data)
        t2 = time.perf_counter()
        te.append((t1 - t0) * 1e3)
        td.append((t2 - t1) * 1e3)
    return statistics.median(te), statistics.median(td), data, out, te, td


# -- the per-model subprocess -------------------------------------------------------------------
def _maxrss_mb() -> float:
    """Peak RSS of this process since it started (MB)."""
    import resource

    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024.0 if sys.platform != "darwin" else kb / 2 ** 20


def _status_mb(field: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    except (OSError, ValueError, IndexError):
        pass
    return None


def _reset_peak() -> bool:
    """Reset the kernel's peak-RSS mark to the current RSS (Linux >= 4.0); False if unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return _status_mb("VmHWM") is not None
    except OSError:
        return False


def _interleaved_times(codec, img, widths: list[int], repeats: int) -> dict:
    """Per-width median encode and decode ms of one slimmable model, the widths timed in turn.

    One round codes the image once at every width, and each round starts one width further
    along, so that a slow spell of the machine (another process, clock changes) lands on all
    widths alike instead of on whichever width's process happened to run then. Separate
    processes per width showed a narrower width slower than a wider one in one run and not in
    the next; in turn, the order of widths in time is what the medians compare.
    """
    import slimfast

    for w in widths:  # warm-up: each width's graphs and buffers
        slimfast.decompress(codec.compress(img, width=w))
    runs = {w: ([], []) for w in widths}
    for i in range(max(1, repeats)):
        for w in widths[i % len(widths):] + widths[:i % len(widths)]:
            t0 = time.perf_counter()
            data = codec.compress(img, width=w)
            t1 = time.perf_counter()
            slimfast.decompress(data)
            t2 = time.perf_counter()
            runs[w][0].append((t1 - t0) * 1e3)
            runs[w][1].append((t2 - t1) * 1e3)
    return {str(w): {"enc_ms": statistics.median(te), "dec_ms": statistics.median(td),
                     "enc_runs_ms": te, "dec_runs_ms": td} for w, (te, td) in runs.items()}


def worker(job: dict) -> dict:
    """Time one model point in this (fresh) process, or with ``widths`` every width of a
    slimmable model in turn (:func:`_interleaved_times`); see the module doc."""
    import torch

    torch.set_num_threads(int(job["threads"]))
    import slimfast

    img = _load(job["image"])
    if job.get("widths"):
        return {"interleaved": _interleaved_times(slimfast.load(job["model"]), img, job["widths"],
                                                  int(job["repeats"]))}
    if job.get("mp"):
        img = tile_to(img, *size_for(float(job["mp"]), img.shape[1] / img.shape[0]))
    codec = slimfast.load(job["model"])
    width = job.get("width")
    exact = _reset_peak()  # peak now counts from here: torch, weights and image are loaded
    rss0 = (_status_mb("VmRSS") if exact else None) or _maxrss_mb()
    med_e, med_d, data, out, te, td = _median_times(
        lambda: codec.compress(img, width=width), slimfast.decompress, int(job["repeats"]))
    peak = (_status_mb("VmHWM") if exact else None) or _maxrss_mb()
    dec = np.asarray(out.convert("RGB"))
    h, w = img.shape[:2]
    mp = h * w / 1e6
    from ..codec import backend
    from .complexity import count

    cx = count(codec.info, width)
    from .profiling import one_round, stage_times

    stages = stage_times(codec, img, width, int(job["repeats"])) if not job.get("mp") else None
    spans = one_round(codec, img, width) if job.get("profile") else None
    return {"stages": stages, "trace_spans": spans, "backend": backend(codec.settings),
            "synthesis": job.get("synthesis", "fp32"), "model": job["model"], "width": width, "height": h,
            "width_px": w, "mp": mp, "bytes": len(data),
            "bpp": metrics.bpp(len(data), h, w), "psnr": metrics.psnr(img, dec),
            "enc_ms": med_e, "dec_ms": med_d, "enc_runs_ms": te, "dec_runs_ms": td,
            "enc_mps": mp / (med_e / 1e3), "dec_mps": mp / (med_d / 1e3),
            "peak_rss_mb": peak, "delta_rss_mb": peak - rss0, "process_peak_rss_mb": _maxrss_mb(),
            "memory_method": "VmHWM reset before coding" if exact else "ru_maxrss delta",
            "threads": torch.get_num_threads(),
            "params": cx["params"], "kmac_encode": cx["kmac_encode"], "kmac_decode": cx["kmac_decode"]}


def run_worker(job: dict, timeout: float) -> dict:
    """Run :func:`worker` in a fresh interpreter; an ``error`` entry instead of raising."""
    env = _python_env()
    t = str(job["threads"])
    # The integer hyper-synthesis GEMMs are small: one BLAS thread is fastest (measured).
    # "bf16" points run bf16 both ways (analysis and synthesis); a job's env may say otherwise
    env.update(OMP_NUM_THREADS=t, MKL_NUM_THREADS=t, SLIMFAST_THREADS=t, OPENBLAS_NUM_THREADS="1",
               SLIMFAST_SYNTHESIS=job.get("synthesis", "fp32"),
               SLIMFAST_ANALYSIS="bf16" if job.get("synthesis") == "bf16" else "fp32")
    env.update(job.get("env") or {})
    cmd = [sys.executable, "-m", "slimfast.tools.bench", "--worker", json.dumps(job)]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {**job, "error": f"timed out after {timeout:.0f} s"}
    for line in reversed(p.stdout.splitlines()):
        if line.startswith(RESULT_MARK):
            return json.loads(line[len(RESULT_MARK):])
    tail = (p.stderr or p.stdout).strip().splitlines()[-1:] or [f"exit status {p.returncode}"]
    if p.returncode < 0:
        tail = [f"killed by signal {-p.returncode} (out of memory?)"]
    return {**job, "error": tail[0][:300]}


# -- baselines ----------------------------------------------------------------------------------
class _Baselines:
    """Sweeps each baseline on the image once, then times (codec, quality) pairs on demand."""

    def __init__(self, names: list[str], img: np.ndarray, repeats: int):
        self.img, self.repeats = img, repeats
        self.codecs, self.skipped, self.sweeps, self._times = {}, {}, {}, {}
        if names and [n.lower() for n in names] == ["none"]:
            names = []
        avail = _baselines.availability()
        for n in names:
            if n not in avail:
                raise SlimfastError(f"unknown baseline {n!r}; known: {', '.join(_baselines.NAMES)}")
            ok, reason = avail[n]
            if not ok:
                self.skipped[n] = reason
                continue
            b = _baselines.get(n)
            self.codecs[n] = b
            h, w = img.shape[:2]
            self.sweeps[n] = [{"quality": q, "bpp": metrics.bpp(len(b.encode(img, q)), h, w)} for q in b.qualities]

    def match(self, name: str, bpp: float) -> dict:
        return min(self.sweeps[name], key=lambda s: abs(math.log(s["bpp"] / bpp)))

    def time(self, name: str, quality, img: np.ndarray | None = None, repeats: int | None = None) -> dict:
        img = self.img if img is None else img
        key = (name, quality, img.shape)
        if key not in self._times:
            b = self.codecs[name]
            e, d, data, out, _, _ = _median_times(lambda: b.encode(img, quality), b.decode, repeats or self.repeats)
            h, w = img.shape[:2]
            self._times[key] = {"quality": quality, "bpp": metrics.bpp(len(data), h, w),
                                "psnr": metrics.psnr(img, out), "enc_ms": e, "dec_ms": d}
        return self._times[key]


# What was tried for speed, each timed on the default model in this run ("What was tried" in the
# output): the shipped settings first, then one change at a time. (label, environment, job fields)
TRIED = [
    ("shipped: precision auto (bf16 both ways where the card, the CPU and OpenVINO allow, else fp32), ONNX Runtime, "
     "NCHWc layout, the architecture's transposed-convolution form, rANS",
     {"SLIMFAST_ANALYSIS": "auto", "SLIMFAST_SYNTHESIS": "auto"}, {}),
    ("fp32 transforms (`SLIMFAST_ANALYSIS=fp32 SLIMFAST_SYNTHESIS=fp32`, what auto runs without native bf16); each "
     "row below changes one setting of this one", {}, {}),
    ("PyTorch eager (the reference path)", {"SLIMFAST_BACKEND": "torch"}, {}),
    ("ONNX Runtime without the NCHWc layout (optimization level 'extended')", {"SLIMFAST_ORT_OPT": "extended"}, {}),
    ("stride-4 transposed convolutions as ConvTranspose", {"SLIMFAST_ORT_TCONV": "convtranspose"}, {}),
    ("stride-4 transposed convolutions as sub-pixel Conv + DepthToSpace", {"SLIMFAST_ORT_TCONV": "subpixel"}, {}),
    ("idle ONNX Runtime workers spinning", {"SLIMFAST_ORT_SPIN": "1"}, {}),
    ("ONNX Runtime memory arena on", {"SLIMFAST_ORT_ARENA": "1"}, {}),
    ("ONNX Runtime worker threads not pinned (`SLIMFAST_ORT_AFFINITY=0`)", {"SLIMFAST_ORT_AFFINITY": "0"}, {}),
    ("the range coder (constriction) instead of rANS: files without LAYT", {"SLIMFAST_CODER": "range"}, {}),
    ("1 thread instead of the run's thread count", {}, {"threads": 1}),
    ("int8 synthesis (`slimfast decompress --int8`)", {}, {"synthesis": "int8"}),
    ("bf16 synthesis on OpenVINO (`slimfast decompress --bf16`)", {"SLIMFAST_ANALYSIS": "fp32"}, {"synthesis": "bf16"}),
    ("bf16 analysis and synthesis on OpenVINO (`--bf16` both ways)", {}, {"synthesis": "bf16"}),
    ("the float transforms on OpenVINO in fp32 (the engine without the precision)", {"SLIMFAST_OV_PRECISION": "f32"},
     {"synthesis": "bf16"}),
]


def bf16_available() -> bool:
    """Whether bf16 synthesis runs here: OpenVINO installed and native bf16 in the CPU."""
    from ..engines import openvino as ov_backend

    return not ov_backend.unavailable_reason()


def tried(info, image: Path, base: "_Baselines", args, log) -> dict:
    """Times :data:`TRIED` on ``info`` (its default operating point), one fresh process each, in
    ``args.tried_rounds`` rounds over all settings; a setting's times are its medians over rounds."""
    variants = []
    for label, env, fields in TRIED:
        if fields.get("synthesis") == "int8" and not info.card.get("int8_synthesis"):
            continue
        if (fields.get("synthesis") == "bf16" or env.get("SLIMFAST_SYNTHESIS") == "auto") and not bf16_available():
            continue  # without bf16, auto is the fp32 row
        variants.append((label, env, fields))
    rounds = max(1, int(getattr(args, "tried_rounds", 1)))
    runs: dict[str, list[dict]] = {label: [] for label, _, _ in variants}
    for k in range(rounds):
        for label, env, fields in variants:
            log(f"bench: tried (round {k + 1}/{rounds}): {label}")
            job = {"model": info.name, "width": info.default_width, "image": str(image), "mp": None,
                   "repeats": args.repeats, "threads": args.threads, "synthesis": "fp32", "env": env, **fields}
            runs[label].append(run_worker(job, args.timeout))
    rows = []
    for label, _, _ in variants:
        ok = [r for r in runs[label] if r.get("error") is None]
        r = dict(ok[0] if ok else runs[label][0])
        if ok:
            r.update(enc_ms=float(np.median([x["enc_ms"] for x in ok])), dec_ms=float(np.median([x["dec_ms"] for x in ok])),
                     round_enc_ms=[x["enc_ms"] for x in ok], round_dec_ms=[x["dec_ms"] for x in ok])
        r["variant"] = label
        if r.get("error") is None:
            r["baselines"] = {}
            for n in ("webp", "heic"):
                if n in base.codecs:
                    bt = base.time(n, base.match(n, r["bpp"])["quality"])
                    r["baselines"][n] = {**bt, "ratio": _ratios(r, bt)}
        rows.append(r)
    return {"model": info.name, "width": info.default_width, "rounds": rounds, "rows": rows,
            "bf16": bf16_available()}


def _ratios(m: dict, b: dict) -> dict:
    return {"enc": m["enc_ms"] / b["enc_ms"], "dec": m["dec_ms"] / b["dec_ms"],
            "total": (m["enc_ms"] + m["dec_ms"]) / (b["enc_ms"] + b["dec_ms"])}


def _precisions(info, args, settings) -> list[str]:
    """fp32, and int8 / bf16 where the card is calibrated / OpenVINO computes bf16 natively."""
    from ..codec import backend

    precisions = ["fp32"]
    on_ort = backend(settings, info.architecture) == "ort"
    if getattr(args, "int8", True) and info.card.get("int8_synthesis") and on_ort:
        precisions.append("int8")
    if getattr(args, "bf16", True) and on_ort and bf16_available():
        precisions.append("bf16")
    return precisions


def default_here(info, synthesis: str, settings) -> bool:
    """Whether the bench's ``synthesis`` point (fp32, int8: fp32 analysis; bf16: bf16 both ways) is
    what precision ``auto``, the default, runs ``info`` at on this machine."""
    from ..codec import resolved_precision

    auto = settings.replace(analysis="auto", synthesis="auto")
    point = {"fp32": ("fp32", "fp32"), "int8": ("fp32", "int8"), "bf16": ("bf16", "bf16")}[synthesis]
    return point == tuple(resolved_precision(info, auto, p) for p in ("analysis", "synthesis"))


def _time_model(info, synthesis: str, image: Path, args, width_repeats: int | None, log) -> list[dict]:
    """One row per operating point of ``info`` at ``synthesis`` precision (a fresh process each)."""
    from .evaluate import operating_points

    widths = operating_points(info)
    in_turn = len(widths) > 1 and width_repeats is not None
    tag = {"int8": " (int8 synthesis)", "bf16": " (bf16)"}.get(synthesis, "")
    rows = []
    for w in widths:
        log(f"bench: {info.name}" + (f" width {w}" if w is not None else "") + tag)
        # timed in turn below: here one run suffices for memory, bpp and PSNR
        job = {"model": info.name, "width": w, "image": str(image), "mp": None,
               "repeats": 1 if in_turn else args.repeats, "threads": args.threads, "synthesis": synthesis,
               "profile": bool(getattr(args, "profile", None))}
        rows.append(run_worker(job, args.timeout))
    if in_turn:
        # Times across widths come from one process that codes them in turn; the
        # per-width processes above still give each width's memory, bpp and PSNR.
        log(f"bench: {info.name}, all widths in turn" + tag)
        job = {"model": info.name, "widths": widths, "image": str(image), "repeats": width_repeats,
               "threads": args.threads, "synthesis": synthesis}
        t = run_worker(job, args.timeout)
        for r in rows:
            it = (t.get("interleaved") or {}).get(str(r.get("width")))
            if r.get("error") is None and it:
                mp = r["mp"]
                r.update(it, enc_mps=mp / (it["enc_ms"] / 1e3), dec_mps=mp / (it["dec_ms"] / 1e3),
                         timing="widths in turn, one process")
    return rows


def _with_baselines(rows: list[dict], base) -> list[dict]:
    """Each row's ratios against every baseline at the quality closest in bpp (same run)."""
    for r in rows:
        if r.get("error") is None:
            r["baselines"] = {}
            for n in base.codecs:
                bt = base.time(n, base.match(n, r["bpp"])["quality"])
                r["baselines"][n] = {**bt, "ratio": _ratios(r, bt)}
    return rows


def _size_sweep(infos, image: Path, img: np.ndarray, base, args, log) -> tuple[list[float], list[dict]]:
    sizes_mp = [m for m in args.sizes or [] if m is not None]  # "none" skips the sweep
    sizes = []
    for info in size_models(infos, getattr(args, "size_models", None)):
        for mp in sizes_mp:
            log(f"bench: {info.name} at {mp:g} MP")
            job = {"model": info.name, "width": None, "image": str(image), "mp": mp,
                   "repeats": args.size_repeats, "threads": args.threads}
            r = run_worker(job, args.timeout)
            r["mp_target"] = mp
            if r.get("error") is None and "jpeg" in base.codecs:
                big = tile_to(img, r["height"], r["width_px"])
                jt = base.time("jpeg", base.match("jpeg", r["bpp"])["quality"], big, args.size_repeats)
                r["jpeg"] = {**jt, "ratio": _ratios(r, jt)}
            sizes.append(r)
    return sizes_mp, sizes


def bench(args) -> dict:
    image = resolve_image(args.image)
    img = _load(image)
    from .evaluate import select_models
    from .machine import environment
    from ..settings import Settings

    infos = select_models(args.models)
    log = (lambda s: print(s, file=sys.stderr, flush=True)) if getattr(args, "progress", True) else (lambda s: None)
    log(f"bench: baselines sweep on {image.name}")
    base = _Baselines(args.baselines, img, args.repeats)
    for n in base.codecs:  # a baseline-only run still reports every baseline at its middle quality
        base.time(n, base.codecs[n].qualities[len(base.codecs[n].qualities) // 2])
    width_repeats = max(args.repeats, args.width_repeats) if args.interleave else None
    settings = Settings.from_env()  # what the workers, started with this environment, will run
    points = [dict(r, default_precision=default_here(info, synthesis, settings))
              for info in infos for synthesis in _precisions(info, args, settings)
              for r in _with_baselines(_time_model(info, synthesis, image, args, width_repeats, log), base)]
    tried_res = None
    if getattr(args, "tried", True) and infos:
        default = next((i for i in infos if i.default), infos[0])
        tried_res = tried(default, image, base, args, log)
    sizes_mp, sizes = _size_sweep(infos, image, img, base, args, log)
    cold = None
    if getattr(args, "cold_repeats", 0) and infos:
        log("bench: cold start")
        cold = cold_start(image, args.cold_repeats, args.threads)
    h, w = img.shape[:2]
    return {
        "generated_by": "slimfast bench",
        "cold_start": cold,
        "install": install_sizes(),
        "environment": environment(threads=args.threads),
        "settings": {"repeats": args.repeats, "threads": args.threads, "size_repeats": args.size_repeats,
                     "width_repeats": width_repeats,
                     "sizes_mp": sizes_mp, "statistic": "median after one warm-up",
                     "memory": "fresh subprocess per model point; peak RSS while coding (VmHWM reset "
                               "after loading torch, model and image); delta = peak - RSS before coding",
                     "baseline_threads": "library defaults"},
        "image": {"path": str(image), "name": image.name, "height": h, "width": w, "mp": h * w / 1e6},
        "baselines": {n: {"label": b.label, "version": b.version(), "sweep": base.sweeps[n],
                          "timings": [v for k, v in base._times.items() if k[0] == n and k[2] == img.shape]}
                      for n, b in base.codecs.items()},
        "skipped": base.skipped,
        "models": points,
        "tried": tried_res,
        "sizes": sizes,
    }


def size_models(infos: list, names: list[str] | None) -> list:
    if names:
        return [i for i in infos if i.name in names]
    from .. import runtime

    picked = []
    for fam in dict.fromkeys(i.family for i in infos):
        members = sorted((i for i in infos if i.family == fam), key=lambda m: m.rank_key)
        mid = members[(len(members) - 1) // 2]
        if runtime.supports(mid.architecture):
            picked.append(mid)
    return picked or infos[:1]


def _python_env() -> dict:
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def cold_start(image: Path, repeats: int, threads: int) -> dict:
    """Fresh-process ``slimfast decompress`` of one file of the default model (wall time).

    The first run starts from an empty graph cache (it builds the ONNX graphs); the median is
    over ``repeats`` further runs, which find them and the package's bytecode cached, as every
    run after a user's first does.
    """
    import tempfile

    from PIL import Image

    import slimfast

    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "in.sfi"
        codec = slimfast.load()
        src.write_bytes(codec.compress(_load(image)))
        probe = ("import runpy,sys,time;t=time.perf_counter();sys.argv=['slimfast','decompress',sys.argv[1],"
                 "sys.argv[2],'--force','--threads',sys.argv[3]];\ntry:\n runpy.run_module('slimfast',"
                 "run_name='__main__')\nexcept SystemExit as e:\n assert not e.code, e.code\n"
                 "print('COLD', time.perf_counter()-t, 'torch' in sys.modules)")
        webp = Path(tmp) / "in.webp"
        Image.fromarray(_load(image)).save(webp, quality=75)
        walls, inner, webp_walls, torch_loaded = [], [], [], False
        env = {**_python_env(), "SLIMFAST_CACHE_DIR": str(Path(tmp) / "graphs")}
        # As installed: pip compiles the package's bytecode, so no run compiles it again (the
        # first run, not counted, writes it where an environment forbade that).
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        for i in range(repeats + 1):
            t = time.perf_counter()
            r = subprocess.run([sys.executable, "-c", probe, str(src), str(Path(tmp) / f"out{i}.png"), str(threads)],
                               capture_output=True, text=True, env=env, timeout=300)
            walls.append((time.perf_counter() - t) * 1000)
            if r.returncode != 0:
                return {"error": (r.stderr.strip().splitlines() or ["failed"])[-1]}
            webp_walls.append(_pillow_cold(webp, Path(tmp) / f"webp{i}.png", env))
            line = [x for x in r.stdout.splitlines() if x.startswith("COLD")][-1].split()
            inner.append(float(line[1]) * 1000)
            torch_loaded |= line[2] == "True"
        t = time.perf_counter()
        rt = subprocess.run([sys.executable, "-c", "import torch"], capture_output=True, timeout=300)
        torch_ms = (time.perf_counter() - t) * 1000 if rt.returncode == 0 else None
    return {"model": codec.name, "decompress_ms": statistics.median(walls[1:]),
            "decompress_in_process_ms": statistics.median(inner[1:]), "first_decompress_ms": walls[0],
            "first_decompress_in_process_ms": inner[0], "imports_torch": torch_loaded,
            "pillow_webp_ms": statistics.median(webp_walls[1:]),
            "bare_import_torch_ms": torch_ms, "repeats": repeats}


def _pillow_cold(src: Path, dst: Path, env: dict) -> float:
    """Wall ms of a fresh Python process that decodes ``src`` (WebP) with Pillow and writes a PNG:
    the cold-start yardstick of the speed targets."""
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import sys; from PIL import Image; Image.open(sys.argv[1]).save(sys.argv[2])",
                    str(src), str(dst)], check=True, capture_output=True, env=env, timeout=300)
    return (time.perf_counter() - t) * 1000


def install_sizes() -> dict:
    """Bytes on disk of slimfast's dependency closure, without and with the torch extra, and what the
    openvino extra (bf16 where the CPU computes it) adds."""
    from importlib import metadata

    def closure(reqs: list[str]) -> set[str]:
        from packaging.requirements import Requirement  # onnxruntime depends on it

        seen: set[str] = set()
        todo = list(reqs)
        while todo:
            req = Requirement(todo.pop())
            if req.marker is not None and not req.marker.evaluate({"extra": ""}):
                continue  # another platform's or an extra's dependency
            name = req.name.lower().replace("_", "-")
            if name in seen:
                continue
            try:
                dist = metadata.distribution(name)
            except metadata.PackageNotFoundError:
                continue
            seen.add(name)
            todo += dist.requires or []
        return seen

    def size(names: set[str]) -> int:
        total = 0
        for n in names:
            for f in metadata.distribution(n).files or []:
                try:
                    total += f.locate().stat().st_size
                except OSError:
                    pass
        return total

    try:
        me = metadata.distribution("slimfast")
    except metadata.PackageNotFoundError:
        return {"error": "slimfast is not installed as a distribution"}
    core_reqs = list(me.requires or [])  # extras' requirements fall to their markers in closure()
    core = closure(core_reqs) - {"slimfast"}
    with_torch = closure(core_reqs + ["torch"]) - {"slimfast"}
    with_ov = closure(core_reqs + ["openvino"]) - {"slimfast"}
    return {"core_mb": size(core) / 1e6, "core_packages": sorted(core),
            "with_torch_mb": size(with_torch) / 1e6, "torch_adds": sorted(with_torch - core),
            "openvino_adds_mb": size(with_ov - core) / 1e6 if "openvino" in with_ov else None,
            "openvino_adds": sorted(with_ov - core)}


def _f(v, spec=".1f"):
    return "-" if v is None else format(v, spec)


def _tried_md(res: dict) -> list[str]:
    t = res.get("tried")
    if not t or not t.get("rows"):
        return []
    ok = [r for r in t["rows"] if r.get("error") is None]
    ref = ok[0] if ok and ok[0] is t["rows"][0] else None  # the shipped defaults (auto is fp32 without bf16)
    L = ["", "## What was tried", "",
         f"The default model ({t['model']}" + (f", width {t['width']}" if t.get("width") else "")
         + ") under each setting, the shipped defaults first, then the fp32 transforms and one change at a time "
         "from those, each in a fresh process in this run "
         f"(median of {res['settings']['repeats']} after a warm-up), the settings in turn"
         + (f" for {t['rounds']} rounds, each time the median over rounds" if t.get("rounds", 1) > 1 else "")
         + ". WebP and HEIC at the quality closest in bpp. Fresh processes differ from one another even "
         "with identical settings, so settings whose decode ranges over the rounds overlap are not told apart "
         "by this run.", "",
         "| setting | encode ms | decode ms | decode ms over rounds | PSNR | decode vs the first row | enc+dec vs WebP | "
         "decode vs HEIC |",
         "|---|---|---|---|---|---|---|---|"]
    for r in t["rows"]:
        if r.get("error"):
            L.append(f"| {r['variant']} | failed: {r['error']} |||||||")
            continue
        b = r.get("baselines", {})
        webp = f"{b['webp']['ratio']['total']:.2f}" if "webp" in b else "-"
        heic = f"{b['heic']['ratio']['dec']:.2f}" if "heic" in b else "-"
        vs = f"{r['dec_ms'] / ref['dec_ms']:.2f}" if ref else "-"
        rounds = r.get("round_dec_ms") or []
        spread = f"{min(rounds):.1f}-{max(rounds):.1f}" if len(rounds) > 1 else "-"
        L.append(f"| {r['variant']} | {r['enc_ms']:.1f} | {r['dec_ms']:.1f} | {spread} | {r['psnr']:.2f} | {vs} | "
                 f"{webp} | {heic} |")
    missing = []
    if not t.get("bf16"):
        flags = set(res.get("environment", {}).get("cpu_flags") or [])
        native = "avx512_bf16" in flags or "amx_bf16" in flags
        missing.append("bf16 and OpenVINO (" + ("OpenVINO is not installed here: pip install "
                       "'slimfast[openvino]'" if native else "this CPU has neither AVX-512 BF16 nor AMX") + ")")
    missing.append("a fused GDN kernel (ONNX Runtime runs GDN as a 1x1 convolution of x², a square root and "
                   "a division)")
    missing.append("int8 analysis")
    L += ["", "Not timed here: " + "; ".join(missing) + "."]
    return L


def _cold_line(cold: dict, image: str) -> str:
    """The cold-start bullet of the Markdown."""
    first = (f" The very first run, which builds and caches the ONNX graphs, took {cold['first_decompress_ms']:.0f} ms "
             f"({cold['first_decompress_in_process_ms']:.0f} ms inside Python)."
             if cold.get("first_decompress_ms") is not None else "")
    return (f"- `slimfast decompress` of one {image} file ({cold['model']}) as a fresh process: "
            f"{cold['decompress_ms']:.0f} ms wall (median of {cold['repeats']}, graphs cached; "
            f"{cold['decompress_in_process_ms']:.0f} ms of it inside Python after start-up).{first} Imports torch: "
            f"{'yes' if cold['imports_torch'] else 'no'}. A bare `import torch` alone takes "
            f"{_f(cold.get('bare_import_torch_ms'), '.0f')} ms."
            + (f" A fresh Python process that decodes the same image's WebP (q75) with Pillow and writes a PNG: "
               f"{cold['pillow_webp_ms']:.0f} ms ({cold['decompress_ms'] / cold['pillow_webp_ms']:.2f}x). That "
               "process writes its PNG with Pillow's defaults; `slimfast decompress` writes PNG with zlib's RLE "
               "strategy (the same pixels, files a few percent larger, written several times faster)."
               if cold.get("pillow_webp_ms") else ""))


def bench_md(res: dict) -> str:
    im, st = res["image"], res["settings"]
    L = ["# Benchmark", "",
         f"Image {im['name']} ({im['width']}x{im['height']}, {im['mp']:.3f} MP). Models: {st['threads']} threads, "
         f"backend {', '.join(sorted({r.get('backend', '?') for r in res.get('models', [])})) or '?'} "
         f"(ort: ONNX Runtime, torch: reference), a fresh process per point; median of {st['repeats']} runs "
         "after one warm-up"
         + (f" (the widths of a slimmable model: one more process codes all its widths in turn, {st['width_repeats']} rounds, "
            "and their medians are the times shown; memory, bpp and PSNR stay per-width processes)"
            if st.get("width_repeats") else "")
         + ". Baselines: "
         "same run, library default threading, quality closest in bpp to each model point. "
         "Ratios are model time / baseline time (below 1 = model faster). Rows marked *int8 synthesis* "
         "decode with `slimfast decompress --int8` (same file, same symbols; the card's calibration), rows marked "
         "*bf16* run both the analysis and the synthesis in bf16 (`--bf16` on compress and decompress; OpenVINO, "
         "native bf16); *(default)*: what precision `auto`, the default, runs that point at on this machine (its "
         "card allows bf16 and the CPU computes it natively); elsewhere the default is the fp32 row.", ""]
    if res["skipped"]:
        L += ["Skipped baselines: " + "; ".join(f"{k} ({v})" for k, v in res["skipped"].items()), ""]
    L += ["## Baselines", "", "| codec | quality | bpp | PSNR | encode ms | decode ms |", "|---|---|---|---|---|---|"]
    for n, b in res["baselines"].items():
        for t in sorted(b["timings"], key=lambda t: t["bpp"]):
            L.append(f"| {b['label']} | {t['quality']:g} | {t['bpp']:.3f} | {_f(t['psnr'], '.2f')} | "
                     f"{t['enc_ms']:.1f} | {t['dec_ms']:.1f} |")
    names = list(res["baselines"])
    L += ["", "## Models", "",
          "| model | width | params | kMAC/px enc / dec | bpp | PSNR | encode ms | decode ms | enc MP/s | dec MP/s | "
          "peak RSS MB | coding RSS MB | " + " | ".join(f"vs {n} enc/dec/total" for n in names) + " |",
          "|---" * (12 + len(names)) + "|"]
    for r in res["models"]:
        if r.get("error"):
            L.append(f"| {r['model']} | {_f(r.get('width'), 'd') if r.get('width') else '-'} | failed: {r['error']} |")
            continue
        cells = []
        for n in names:
            b = r["baselines"].get(n)
            cells.append("-" if not b else f"{b['ratio']['enc']:.2f} / {b['ratio']['dec']:.2f} / "
                                            f"{b['ratio']['total']:.2f} (q{b['quality']:g})")
        cx = (f"{r['params'] / 1e6:.2f}M | {r['kmac_encode']:.1f} / {r['kmac_decode']:.1f}" if r.get("params")
              else "- | -")
        label = r["model"] + {"int8": " int8 synthesis", "bf16": " bf16"}.get(r.get("synthesis", "fp32"), "")
        label += " (default)" if r.get("default_precision") and r.get("synthesis", "fp32") != "fp32" else ""
        L.append(f"| {label} | {r['width'] if r['width'] is not None else '-'} | {cx} | {r['bpp']:.3f} | "
                 f"{r['psnr']:.2f} | {r['enc_ms']:.1f} | {r['dec_ms']:.1f} | {r['enc_mps']:.2f} | "
                 f"{r['dec_mps']:.2f} | {r['peak_rss_mb']:.0f} | {r['delta_rss_mb']:.0f} | " + " | ".join(cells) + " |")
    L += stages_md(res)
    L += _tried_md(res)
    if res["sizes"]:
        L += ["", "## Size sweep (default operating point)", "",
              f"Mirror-tiled copies of the image; median of {st['size_repeats']} runs.", "",
              "| model | MP | size | encode ms | decode ms | dec MP/s | peak RSS MB | coding RSS MB | "
              "JPEG enc/dec ms | ratio vs JPEG total |", "|---|---|---|---|---|---|---|---|---|---|"]
        for r in res["sizes"]:
            if r.get("error"):
                L.append(f"| {r['model']} | {r['mp_target']:g} | failed: {r['error']} |||||||| ")
                continue
            j = r.get("jpeg")
            L.append(f"| {r['model']} | {r['mp']:.2f} | {r['width_px']}x{r['height']} | {r['enc_ms']:.0f} | "
                     f"{r['dec_ms']:.0f} | {r['dec_mps']:.2f} | {r['peak_rss_mb']:.0f} | {r['delta_rss_mb']:.0f} | "
                     + (f"{j['enc_ms']:.0f} / {j['dec_ms']:.0f} | {j['ratio']['total']:.1f} |" if j else "- | - |"))
    cold, inst = res.get("cold_start"), res.get("install")
    if cold or inst:
        L += ["", "## Cold start and install size", ""]
    if cold and not cold.get("error"):
        L.append(_cold_line(cold, res["image"]["name"]))
    elif cold:
        L.append(f"- cold start failed: {cold['error']}")
    if inst and not inst.get("error"):
        L.append(f"- install size: {inst['core_mb']:.0f} MB for `pip install slimfast` "
                 f"({', '.join(inst['core_packages'])}); {inst['with_torch_mb']:.0f} MB with the torch extra "
                 f"(adds {', '.join(inst['torch_adds']) or 'nothing'})"
                 + (f"; the openvino extra (bf16) adds {inst['openvino_adds_mb']:.0f} MB "
                    f"({', '.join(inst['openvino_adds'])})" if inst.get("openvino_adds_mb") else "") + ".")
    return "\n".join(L) + "\n"


def write_trace(res: dict, path: Path) -> None:
    """One Chrome trace of every model point's timed round (a process per point)."""
    from .profiling import trace

    events = []
    for pid, r in enumerate((r for r in res["models"] if r.get("trace_spans")), start=1):
        label = r["model"] + (f" width {r['width']}" if r.get("width") else "") + f" ({r.get('synthesis', 'fp32')})"
        events += trace([tuple(s) for s in r["trace_spans"]], label, pid)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"traceEvents": events, "displayTimeUnit": "ms"}))


def stages_md(res: dict) -> list[str]:
    """Where the time goes, per model point (median ms of each stage; see slimfast.tools.profiling)."""
    from .profiling import DECODE, ENCODE

    # fp32 rows: the stages of a bf16 row would time the encoder's (fp32) synthesis (profiling.one_round)
    rows = [r for r in res["models"] if r.get("stages") and r.get("synthesis", "fp32") == "fp32"]
    if not rows:
        return []
    cols = [f"encode: {s}" for s in ENCODE] + ["encode: other"] + [f"decode: {s}" for s in DECODE] + ["decode: other"]
    L = ["", "## Where the time goes", "",
         "Median ms of each stage, one process per point (`slimfast.tools.profiling`); other: what the API call costs "
         "beyond its stages (image conversion, padding, container, PIL image). `--profile` writes the same as a trace.",
         "Entropy coding: million y and z symbols per second through the entropy coder new files use (rANS where "
         "its native code is built; encode / decode). The fp32 transforms; the bf16 rows of the table above give "
         "the totals at the precision the default runs at here.",
         "", "| model | width | " + " | ".join(cols) + " | encode / decode total | entropy coding Msymbols/s |",
         "|---" * (len(cols) + 4) + "|"]
    for r in rows:
        st = r["stages"]
        L.append(f"| {r['model']} | {r['width'] if r['width'] is not None else '-'} | "
                 + " | ".join(f"{st.get(c, 0.0):.1f}" for c in cols)
                 + f" | {st['encode: total']:.1f} / {st['decode: total']:.1f} | "
                 + f"{st.get('encode: Msymbols/s', 0.0):.1f} / {st.get('decode: Msymbols/s', 0.0):.1f} |")
    return L


def run(args) -> int:
    if args.worker:
        print(RESULT_MARK + json.dumps(worker(json.loads(args.worker))), flush=True)
        return 0
    try:
        res = bench(args)
    except SlimfastError as e:
        print(f"slimfast bench: {e}", file=sys.stderr)
        return 2
    from .evaluate import write_json

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if getattr(args, "profile", None):
        write_trace(res, Path(args.profile))
        print(f"wrote {args.profile}")
    write_json(res, out / "bench.json")
    (out / "bench.md").write_text(bench_md(res))
    if res["sizes"] and any(r.get("error") is None for r in res["sizes"]):
        try:
            from . import plots

            res_plot = plots.size_plot(res["sizes"], out / "bench_sizes.png")
            print(f"wrote {res_plot}")
        except ImportError as e:
            print(f"no size plot ({e})", file=sys.stderr)
    for n, reason in res["skipped"].items():
        print(f"skipped {n}: {reason}", file=sys.stderr)
    print(f"wrote {out / 'bench.json'} and {out / 'bench.md'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="slimfast bench", description=__doc__.splitlines()[0])
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
