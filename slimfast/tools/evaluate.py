"""``slimfast evaluate DIR``: rate-distortion and speed of every model and baseline on a folder.

Every codec writes real bytes and decodes them back; bpp comes from the byte count, quality
is measured on the decoded 8-bit RGB image (PSNR-RGB, MS-SSIM, MS-SSIM dB; see
:mod:`slimfast.metrics`). Means are the mean of per-image values (the CompressAI convention),
for every field including bpp and MS-SSIM dB.

Learned codecs: every model from :func:`slimfast.zoo.list_models` (or ``--models``) at every
operating point: each width of a slimmable model, else the model itself. A *curve* is a
family (its non-slimmable models, one rate point each) or a slimmable model (its widths).
Baselines: :mod:`slimfast.tools.baselines` at their default quality sweeps, in a process pool with
``--jobs N`` (their timings are then taken while N codecs run at once; models always run
alone in this process).

Outputs in ``--out``: ``results.json`` (everything), ``results.csv`` (one row per image and
setting), ``summary.md`` and PNG plots (RD curves for PSNR and MS-SSIM dB, decode time vs
BD-rate against JPEG). BD-rates (:mod:`slimfast.tools.bdrate`) of every curve against every
baseline, and with ``--anchors`` against published CompressAI reference points.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

from . import baselines as _baselines
from . import bdrate
from .. import metrics
from ..errors import SlimfastError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".ppm", ".pgm", ".bmp", ".tif", ".tiff", ".webp"}
FIELDS = ["kind", "codec", "param_name", "param", "image", "height", "width", "bytes", "bpp",
          "psnr", "msssim", "msssim_db", "enc_ms", "dec_ms"]
MEAN_KEYS = ["bpp", "psnr", "msssim", "msssim_db", "enc_ms", "dec_ms"]
MEAN_NOTE = ("All means are means of per-image values (CompressAI convention), bpp and MS-SSIM dB "
             "included; bpp is from real file sizes.")

# Published reference points (Kodak, PSNR-RGB vs bpp) of the CompressAI model zoo, as the project's
# design notes (not part of the package) copied them. Not measured here: plots draw them dashed and say so.
ANCHORS = {
    "bmshj2018-factorized": [(0.123, 26.91), (0.189, 28.22), (0.288, 29.62), (0.440, 31.28),
                             (0.648, 32.96), (0.967, 35.38), (1.351, 37.40), (1.833, 39.62)],
    "bmshj2018-hyperprior": [(0.131, 27.58), (0.209, 29.20), (0.320, 30.97), (0.478, 32.84),
                             (0.669, 34.53), (0.939, 36.74), (1.259, 38.58), (1.660, 40.56)],
}
ANCHOR_ATTRIBUTION = "published values, CompressAI model zoo (bmshj2018), Kodak; not measured here"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", nargs="?", default=None, help="folder of test images (e.g. Kodak)")
    p.add_argument("--heldout", default=None, metavar="TRAIN_DATA",
                   help="evaluate the held-out training images listed in slimfast/data/heldout.txt instead, found "
                        "under this training data folder and downscaled 0.5x (which removes their JPEG artifacts)")
    p.add_argument("--out", default="out/eval", help="output folder (default: out/eval)")
    p.add_argument("--jobs", type=int, default=1, help="worker processes for the baselines (default 1)")
    p.add_argument("--models", nargs="+", default=None, metavar="NAME",
                   help="models to evaluate (default: every installed model; 'none' for none)")
    p.add_argument("--baselines", nargs="+", default=None, metavar="NAME",
                   help=f"baselines (default: all of {', '.join(_baselines.NAMES)}; 'none' for none)")
    p.add_argument("--limit", type=int, default=None, help="use only the first N images")
    p.add_argument("--anchors", action="store_true",
                   help="overlay published CompressAI bmshj2018 reference curves and BD-rate against them")
    p.add_argument("--threads", type=int, default=0, help="torch threads for the models (0: torch default)")
    p.add_argument("--no-ms-ssim", dest="ms_ssim", action="store_false", help="skip MS-SSIM (faster)")
    p.add_argument("--no-plots", dest="plots", action="store_false", help="skip the PNG plots")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")


# -- inputs -------------------------------------------------------------------------------------
def list_images(folder: str | Path, limit: int | None = None) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise SlimfastError(f"image folder {folder} does not exist")
    files = sorted(f for f in folder.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file())
    if limit is not None:
        files = files[: max(limit, 0)]
    if not files:
        raise SlimfastError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {folder}")
    return files


def load_image(path: str | Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return metrics.as_rgb_uint8(np.asarray(im.convert("RGB")))


def _row(kind, codec, param_name, param, image_name, img, data, dec, enc_s, dec_s, with_ms_ssim) -> dict:
    if dec.shape != img.shape:
        raise SlimfastError(f"{codec} decoded {image_name} to shape {dec.shape}, expected {img.shape}")
    h, w = img.shape[:2]
    q = metrics.quality(img, dec, with_ms_ssim)
    return {"kind": kind, "codec": codec, "param_name": param_name, "param": param, "image": image_name,
            "height": h, "width": w, "bytes": len(data), "bpp": metrics.bpp(len(data), h, w), **q,
            "enc_ms": enc_s * 1e3, "dec_ms": dec_s * 1e3}


# -- baselines (run in worker processes with --jobs) -------------------------------------------
def eval_baseline_image(name: str, path: str, qualities: list[float], with_ms_ssim: bool = True,
                        set_threads: bool = False) -> list[dict]:
    """Rows of one baseline on one image over ``qualities`` (picklable, for process pools)."""
    if set_threads:
        try:
            import torch

            torch.set_num_threads(1)
        except ImportError:
            pass
    codec = _baselines.get(name)
    img = load_image(path)
    rows = []
    for q in qualities:
        t0 = time.perf_counter()
        data = codec.encode(img, q)
        t1 = time.perf_counter()
        dec = codec.decode(data)
        t2 = time.perf_counter()
        rows.append(_row("baseline", name, "quality", q, Path(path).name, img, data, dec, t1 - t0, t2 - t1,
                         with_ms_ssim))
    return rows


def select_baselines(names: list[str] | None) -> tuple[list[_baselines.Baseline], dict[str, str]]:
    """Available baselines among ``names`` (default all) and ``{name: reason}`` for skipped ones."""
    if names and [n.lower() for n in names] == ["none"]:
        return [], {}
    wanted = names or _baselines.NAMES
    unknown = [n for n in wanted if n not in _baselines.NAMES]
    if unknown:
        raise SlimfastError(f"unknown baseline(s) {', '.join(unknown)}; known: {', '.join(_baselines.NAMES)}")
    avail = _baselines.availability()
    chosen, skipped = [], {}
    for n in wanted:
        ok, reason = avail[n]
        if ok:
            chosen.append(_baselines.get(n))
        else:
            skipped[n] = reason
    return chosen, skipped


# -- learned models -----------------------------------------------------------------------------
def select_models(names: list[str] | None) -> list:
    """ModelInfo of the models to evaluate (default: all installed; ``['none']``: none)."""
    if names and [n.lower() for n in names] == ["none"]:
        return []
    import slimfast

    infos = slimfast.list_models()
    if not names:
        return infos
    by_name = {m.name: m for m in infos}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise SlimfastError(f"unknown model(s) {', '.join(unknown)}; installed: {', '.join(by_name) or 'none'}")
    return [by_name[n] for n in names]


def operating_points(info) -> list[int | None]:
    return sorted(info.widths) if info.widths else [None]


def rd_settings():
    """The environment's settings, with precision ``auto`` as fp32: RD is measured with the fp32
    transforms every machine computes alike (:func:`bf16_cost` measures what bf16 changes)."""
    from ..settings import Settings

    s = Settings.from_env()
    return s.replace(**{p: "fp32" for p in ("analysis", "synthesis") if getattr(s, p) == "auto"})


def eval_model(info, images: list[tuple[str, np.ndarray]], with_ms_ssim: bool, progress=None) -> list[dict]:
    """Rows of one model at each of its operating points on every image (after one warm-up), at
    :func:`rd_settings`."""
    import slimfast

    settings = rd_settings()
    codec = slimfast.load(info.name, settings=settings)
    points = operating_points(info)
    first = images[0][1]
    for w in points:  # warm-up: lazy imports, weight loading, allocator
        slimfast.decompress(codec.compress(first, width=w), settings=settings)
    rows = []
    for name, img in images:
        for w in points:
            t0 = time.perf_counter()
            data = codec.compress(img, width=w)
            t1 = time.perf_counter()
            out = slimfast.decompress(data, settings=settings)
            t2 = time.perf_counter()
            dec = np.asarray(out.convert("RGB"))
            rows.append(_row("model", info.name, "width" if w is not None else "", w, name, img, data, dec,
                             t1 - t0, t2 - t1, with_ms_ssim))
            if progress is not None:
                progress.update(1)
    return rows


def bf16_cost(infos: list, images: list[tuple[str, np.ndarray]], progress=None) -> list[dict]:
    """What bf16 costs at every operating point (``slimfast compress/decompress --bf16``).

    Each image is coded twice, with the fp32 and the bf16 analysis, and the fp32 file decoded
    with both syntheses (the same symbols), the bf16 file with the bf16 one. One row per point,
    means of per-image values: ``bpp_fp32``, ``psnr_fp32`` (all fp32), ``psnr_bf16_synthesis``
    (fp32 file, bf16 decode), ``bpp_bf16`` and ``psnr_bf16`` (bf16 both ways), and
    ``max_abs_diff``, the largest 8-bit pixel difference between the fp32 file's two decodes; for
    models trained for MS-SSIM also ``msssim_db_fp32``, ``msssim_db_bf16_synthesis``, ``msssim_db_bf16``.
    """
    from ..codec import backend
    from ..settings import Settings

    settings = Settings.from_env()
    rows = []
    for info in infos:
        if backend(settings, info.architecture) == "ort":
            rows += [_bf16_cost_at(info, w, images, settings, progress) for w in operating_points(info)]
    return rows


def _bf16_cost_at(info, width: int | None, images: list[tuple[str, np.ndarray]], settings, progress) -> dict:
    """One row of :func:`bf16_cost`: ``info`` at ``width``."""
    import slimfast

    encoders = {p: slimfast.load(info.name, settings=settings, analysis=p) for p in ("fp32", "bf16")}

    def code(img, analysis, syntheses):
        data = encoders[analysis].compress(img, width=width)
        out = [np.asarray(slimfast.decompress(data, settings=settings, synthesis=p).convert("RGB")) for p in syntheses]
        return metrics.bpp(len(data), *img.shape[:2]), out

    msssim = info.card.get("metric") == "ms-ssim"  # its quality is also bounded in MS-SSIM dB
    v = {k: [] for k in ("bpp_fp32", "psnr_fp32", "psnr_bf16_synthesis", "bpp_bf16", "psnr_bf16")}
    if msssim:
        v.update({k: [] for k in ("msssim_db_fp32", "msssim_db_bf16_synthesis", "msssim_db_bf16")})
    max_diff = 0
    for _, img in images:
        bpp, (fp, bs) = code(img, "fp32", ("fp32", "bf16"))
        bpp_bf, (bb,) = code(img, "bf16", ("bf16",))
        v["bpp_fp32"].append(bpp)
        v["bpp_bf16"].append(bpp_bf)
        for tag, out in (("fp32", fp), ("bf16_synthesis", bs), ("bf16", bb)):
            v[f"psnr_{tag}"].append(metrics.psnr(img, out))
            if msssim and min(img.shape[:2]) >= metrics.MS_SSIM_MIN_SIDE:  # MS-SSIM's smallest image
                v[f"msssim_db_{tag}"].append(metrics.ms_ssim_db(metrics.ms_ssim(img, out)))
        max_diff = max(max_diff, int(np.abs(fp.astype(np.int16) - bs).max()))
        if progress is not None:
            progress.update(1)
    return {"model": info.name, "width": width, **{k: float(np.mean(x)) for k, x in v.items() if x},
            "max_abs_diff": max_diff, "images": len(images)}


# -- aggregation --------------------------------------------------------------------------------
def _mean(values):
    vals = [v for v in values if v is not None]
    if not vals:
        return None
    return float(np.mean(vals))


def means(rows: list[dict]) -> list[dict]:
    """One row per (kind, codec, param): mean of per-image values, plus the image count."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["kind"], r["codec"], r["param_name"], r["param"]), []).append(r)
    out = []
    for (kind, codec, pname, param), rs in groups.items():
        m = {"kind": kind, "codec": codec, "param_name": pname, "param": param, "images": len(rs)}
        for k in MEAN_KEYS:
            m[k] = _mean(r[k] for r in rs)
        out.append(m)
    out.sort(key=lambda m: (m["kind"] != "model", m["codec"], m["bpp"] or 0))
    return out


def _point(m: dict) -> dict:
    return {k: m[k] for k in ("codec", "param_name", "param", *MEAN_KEYS)}


def build_curves(mean_rows: list[dict], model_infos: list, baseline_list: list, anchors: bool) -> list[dict]:
    """Learned curves (families and slimmable models), baseline curves and optional anchors."""
    by_codec: dict[str, list[dict]] = {}
    for m in mean_rows:
        by_codec.setdefault(m["codec"], []).append(m)
    curves = []
    families: dict[str, list] = {}
    for info in model_infos:
        if info.widths:
            pts = [_point(m) for m in by_codec.get(info.name, [])]
            curves.append({"name": info.name, "kind": "learned", "label": f"{info.name} (widths)",
                           "members": [info.name], "points": sorted(pts, key=lambda p: p["bpp"])})
        else:
            families.setdefault(info.family or info.name, []).append(info)
    for fam, infos in families.items():
        pts = [_point(m) for i in infos for m in by_codec.get(i.name, [])]
        curves.append({"name": fam, "kind": "learned", "label": f"{fam} (family)",
                       "members": [i.name for i in infos], "points": sorted(pts, key=lambda p: p["bpp"])})
    for b in baseline_list:
        pts = [_point(m) for m in by_codec.get(b.name, [])]
        curves.append({"name": b.name, "kind": "baseline", "label": b.label, "members": [b.name],
                       "points": sorted(pts, key=lambda p: p["bpp"])})
    if anchors:
        for name, pts in ANCHORS.items():
            curves.append({"name": name, "kind": "anchor", "label": f"{name} ({ANCHOR_ATTRIBUTION})",
                           "members": [], "points": [{"bpp": r, "psnr": q} for r, q in pts]})
    return [c for c in curves if c["points"]]


def _series(curve: dict, metric: str) -> tuple[list[float], list[float]]:
    pts = [(p["bpp"], p.get(metric)) for p in curve["points"]]
    pts = [(r, q) for r, q in pts if r is not None and q is not None]
    return [p[0] for p in pts], [p[1] for p in pts]


def bd_table(curves: list[dict]) -> list[dict]:
    """BD entries of every learned and baseline curve against every baseline and anchor curve.

    A curve with one usable point gets the rate change at that point's quality against the
    interpolated reference (``method: "point"``) instead of a BD integral.
    """
    refs = [c for c in curves if c["kind"] in ("baseline", "anchor")]
    tests = [c for c in curves if c["kind"] in ("learned", "baseline")]
    out = []
    for metric in ("psnr", "msssim_db"):
        for t in tests:
            tr, tq = _series(t, metric)
            if not tr:
                continue
            cleaned = bdrate.clean_curve(tr, tq)[0].size
            for r in refs:
                rr, rq = _series(r, metric)
                if len(rr) < 2 or r is t:
                    continue
                if cleaned >= 2:
                    e = {"method": "bd", "bd_rate": bdrate.bd_rate(rr, rq, tr, tq),
                         "bd_quality": bdrate.bd_quality(rr, rq, tr, tq)}
                else:
                    i = int(np.argmax(tq))
                    e = {"method": "point", "bd_rate": bdrate.rate_delta_at_point(rr, rq, tr[i], tq[i]),
                         "bd_quality": None}
                out.append({"test": t["name"], "test_kind": t["kind"], "ref": r["name"], "ref_kind": r["kind"],
                            "metric": metric, **e})
    return out


# -- outputs ------------------------------------------------------------------------------------
def _clean_json(x):
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _clean_json(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean_json(v) for v in x]
    if isinstance(x, np.generic):
        return _clean_json(x.item())
    return x


def write_json(obj, path: str | Path) -> None:
    Path(path).write_text(json.dumps(_clean_json(obj), indent=1, allow_nan=False) + "\n")


def write_csv(rows: list[dict], path: str | Path) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if r.get(k) is None else (f"{r[k]:.6g}" if isinstance(r[k], float) else r[k]))
                        for k in FIELDS})


def fmt(v, spec=".2f", none="-") -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return none
    return format(v, spec)


def fmt_pct(v) -> str:
    return "n/a" if v is None else f"{v:+.1f}%"


def bd_matrix_md(bd: list[dict], metric: str, tests: list[str], refs: list[str]) -> list[str]:
    idx = {(e["test"], e["ref"]): e for e in bd if e["metric"] == metric}
    lines = ["| curve \\ reference | " + " | ".join(refs) + " |", "|---" * (len(refs) + 1) + "|"]
    for t in tests:
        cells = []
        for r in refs:
            e = idx.get((t, r))
            if t == r:
                cells.append("0")
            elif e is None:
                cells.append("n/a")
            else:
                cells.append(fmt_pct(e["bd_rate"]) + (" (1 pt)" if e["method"] == "point" else ""))
        lines.append(f"| {t} | " + " | ".join(cells) + " |")
    return lines


def summary_md(res: dict, plot_prefix: str = "") -> str:
    curves, bd, mean_rows = res["curves"], res["bd"], res["means"]
    L = ["# Evaluation summary", "",
         f"Images: {res['images']['count']} from `{res['images']['dir']}`. {MEAN_NOTE}",
         "Times are wall-clock per image in milliseconds (encode: image to bytes, decode: bytes to image)"
         + (f"; baselines ran {res['settings']['jobs']} at a time in a process pool, so their times are "
            "inflated by contention" if res["settings"]["jobs"] > 1 else "") + ".", ""]
    if res["skipped"]:
        L += ["Skipped baselines: " + "; ".join(f"{k} ({v})" for k, v in res["skipped"].items()), ""]
    L += ["## Mean results", "",
          "| codec | setting | bpp | PSNR-RGB (dB) | MS-SSIM | MS-SSIM (dB) | encode ms | decode ms |",
          "|---|---|---|---|---|---|---|---|"]
    for m in mean_rows:
        setting = f"{m['param_name']} {m['param']}" if m["param_name"] else "-"
        L.append(f"| {m['codec']} | {setting} | {fmt(m['bpp'], '.4f')} | {fmt(m['psnr'])} | "
                 f"{fmt(m['msssim'], '.4f')} | {fmt(m['msssim_db'])} | {fmt(m['enc_ms'], '.1f')} | "
                 f"{fmt(m['dec_ms'], '.1f')} |")
    tests = [c["name"] for c in curves if c["kind"] in ("learned", "baseline")]
    for metric, title in (("psnr", "PSNR-RGB"), ("msssim_db", "MS-SSIM (dB)")):
        refs = [c["name"] for c in curves if c["kind"] == "baseline" or (c["kind"] == "anchor" and metric == "psnr")]
        if not refs or not tests:
            continue
        L += ["", f"## BD-rate, {title}", "",
              "Average rate change at equal quality against each reference (piecewise-cubic; negative = "
              "fewer bits). `(1 pt)`: one operating point, rate change at its quality. "
              "`n/a`: quality ranges do not overlap." + (
                  f" Anchor columns are {ANCHOR_ATTRIBUTION}."
                  if metric == "psnr" and res["settings"]["anchors"] else ""),
              "", *bd_matrix_md(bd, metric, tests, refs)]
    if res.get("plots"):
        L += ["", "## Plots", ""] + [f"![{k}]({plot_prefix}{Path(v).name})" for k, v in res["plots"].items()]
    return "\n".join(L) + "\n"


def make_plots(res: dict, out: Path) -> dict[str, str]:
    from . import plots

    curves = res["curves"]
    note = "Means of per-image values. Dashed: published reference points, not measured here." \
        if any(c["kind"] == "anchor" for c in curves) else "Means of per-image values."
    files = {
        "rd_psnr": plots.rd_plot(curves, "psnr", out / "rd_psnr.png", note=note),
        "rd_msssim_db": plots.rd_plot([c for c in curves if c["kind"] != "anchor"], "msssim_db",
                                      out / "rd_msssim_db.png", note="Means of per-image values."),
    }
    bd_jpeg = {e["test"]: e["bd_rate"] for e in res["bd"] if e["ref"] == "jpeg" and e["metric"] == "psnr"}
    bd_jpeg["jpeg"] = 0.0
    entries = []
    for c in curves:
        if c["kind"] in ("learned", "baseline") and c["name"] in bd_jpeg:
            entries.append({"name": c["name"], "kind": c["kind"], "bd_rate": bd_jpeg[c["name"]],
                            "dec_ms": _mean(p.get("dec_ms") for p in c["points"])})
    if any(e["bd_rate"] is not None for e in entries):
        jobs = res["settings"]["jobs"]
        files["speed"] = plots.speed_plot(
            entries, out / "speed_vs_bdrate.png",
            title="Decode time vs BD-rate (means per image" + (
                f"; baseline times measured {jobs} at a time)" if jobs > 1 else ")"))
    return {k: str(v) for k, v in files.items()}


class _NoBar:
    def update(self, n=1):
        pass

    def close(self):
        pass


def _bar(total: int, enabled: bool):
    if not enabled:
        return _NoBar()
    try:
        from tqdm import tqdm
    except ImportError:
        return _NoBar()
    return tqdm(total=total, unit="img", desc="evaluate", file=sys.stderr)


def evaluate(args) -> dict:
    """Run the evaluation described by ``args`` and return the results dict (also written)."""
    files = list_images(args.dir, args.limit)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    chosen, skipped = select_baselines(args.baselines)
    infos = select_models(args.models)
    if args.threads and infos:
        import torch

        torch.set_num_threads(args.threads)
    n_model = sum(len(operating_points(i)) for i in infos) * len(files)
    n_base = sum(len(b.qualities) for b in chosen) * len(files)
    bar = _bar(n_model + n_base, getattr(args, "progress", True))
    rows: list[dict] = []
    failed: dict[str, str] = {}
    try:
        tasks = [(b.name, str(f), list(b.qualities)) for b in chosen for f in files]
        jobs = max(1, int(args.jobs or 1))
        if jobs > 1 and len(tasks) > 1:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor, as_completed

            with ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("spawn")) as pool:
                futs = {pool.submit(eval_baseline_image, n, f, q, args.ms_ssim, True): (n, f, q) for n, f, q in tasks}
                for fut in as_completed(futs):
                    n, f, q = futs[fut]
                    try:
                        rows += fut.result()
                    except Exception as e:  # noqa: BLE001 - one broken codec must not stop the rest
                        failed.setdefault(n, f"failed on {Path(f).name}: {type(e).__name__}: {e}")
                    bar.update(len(q))
        else:
            for n, f, q in tasks:
                if n not in failed:
                    try:
                        rows += eval_baseline_image(n, f, q, args.ms_ssim)
                    except Exception as e:  # noqa: BLE001
                        failed[n] = f"failed on {Path(f).name}: {type(e).__name__}: {e}"
                bar.update(len(q))
        # a baseline that failed on any image is dropped: partial means would be biased
        rows = [r for r in rows if r["codec"] not in failed]
        skipped.update(failed)
        chosen = [b for b in chosen if b.name not in failed]
        if infos:
            images = [(f.name, load_image(f)) for f in files]
            for info in infos:
                rows += eval_model(info, images, args.ms_ssim, bar)
    finally:
        bar.close()
    rows.sort(key=lambda r: (r["kind"] != "model", r["codec"], r["param"] if r["param"] is not None else -1,
                             r["image"]))
    mean_rows = means(rows)
    curves = build_curves(mean_rows, infos, chosen, args.anchors)
    from .machine import environment

    res = {
        "generated_by": "slimfast evaluate",
        "note": MEAN_NOTE,
        "settings": {"jobs": int(args.jobs or 1), "anchors": bool(args.anchors), "ms_ssim": bool(args.ms_ssim),
                     "threads": args.threads or None, "models": [i.name for i in infos],
                     "baselines": {b.name: {"label": b.label, "qualities": list(b.qualities), "version": b.version()}
                                   for b in chosen}},
        "environment": environment(),
        "images": {"dir": str(args.dir), "count": len(files), "names": [f.name for f in files]},
        "skipped": skipped,
        "models": [i.public() if hasattr(i, "public") else {"name": i.name} for i in infos],
        "means": mean_rows,
        "curves": curves,
        "bd": bd_table(curves),
        "anchors_source": ANCHOR_ATTRIBUTION if args.anchors else None,
        "records": rows,
    }
    if args.plots:
        res["plots"] = make_plots(res, out)
    write_json(res, out / "results.json")
    write_csv(rows, out / "results.csv")
    (out / "summary.md").write_text(summary_md(res))
    return res


def prepare_heldout(train_data: str | Path, out: Path) -> Path:
    """The held-out training images, each halved (2x2 box filter), as PNGs in ``out``."""
    from PIL import Image

    from .training.heldout import heldout_names

    names = sorted(heldout_names())
    out.mkdir(parents=True, exist_ok=True)
    for name in names:
        src = Path(train_data) / name
        if not src.is_file():
            raise SlimfastError(f"held-out image {name} is not under {train_data}")
        dst = out / (Path(name).stem + ".png")
        if not dst.is_file():
            with Image.open(src) as im:
                im.convert("RGB").reduce(2).save(dst)
    return out


def run(args) -> int:
    try:
        if args.heldout:
            args.dir = str(prepare_heldout(args.heldout, Path(args.out) / "heldout-images"))
        elif not args.dir:
            raise SlimfastError("give a folder of test images, or --heldout TRAIN_DATA")
        res = evaluate(args)
    except SlimfastError as e:
        print(f"slimfast evaluate: {e}", file=sys.stderr)
        return 2
    for name, reason in res["skipped"].items():
        print(f"skipped {name}: {reason}", file=sys.stderr)
    print(f"wrote {Path(args.out) / 'results.json'}, results.csv, summary.md"
          + (", plots" if res.get("plots") else ""))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="slimfast evaluate", description=__doc__.splitlines()[0])
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
