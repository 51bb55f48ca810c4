"""``python -m slimfast.tools.report`` (``make results``): regenerate ``RESULTS.md`` from real runs.

Steps: ``slimfast evaluate`` on Kodak (``../shared/data/kodak`` beside the repository; skipped
with a message when absent), ``slimfast bench`` on the bundled sample, then ``RESULTS.md`` at
the repository root from their JSON: RD table, BD-rates, plots (copied to ``docs/results/``),
the benchmark, the environment (CPU model, threads, library versions) and training curves
from ``runs/*/log.csv`` when present. ``--from-json`` only rewrites the Markdown from
existing JSON, ``--skip-eval`` / ``--skip-bench`` reuse one side's JSON.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import sys
from pathlib import Path

from .machine import environment

ROOT = Path(__file__).resolve().parents[2]
COMMAND = "make results  (python -m slimfast.tools.report)"


# -- training logs ------------------------------------------------------------------------------
def read_training_logs(runs_dir: Path) -> dict[str, list[dict]]:
    runs = {}
    for log in sorted(runs_dir.glob("*/log.csv")):
        rows = []
        with open(log, newline="") as f:
            for r in csv.DictReader(f):
                row = {}
                for k, v in r.items():
                    if k is None:
                        continue
                    try:
                        row[k] = float(v) if k != "kind" else v
                    except (TypeError, ValueError):
                        row[k] = v if k == "kind" else None
                if row.get("step") is not None:
                    rows.append(row)
        if rows:
            runs[log.parent.name] = rows
    return runs


def training_section(runs: dict[str, list[dict]], docs: Path, rel: str) -> list[str]:
    if not runs:
        return ["No training logs (`runs/*/log.csv`) were found."]
    L = []
    try:
        from . import plots

        p = plots.training_plot(runs, docs / "training.png")
        L += [f"![training curves]({rel}/{p.name})", ""]
    except ImportError as e:
        L += [f"(no plot: {e})", ""]
    L += ["| run | last step | minutes | last train loss | last train bpp | last train PSNR | best val PSNR (bpp) |",
          "|---|---|---|---|---|---|---|"]
    for name, rows in sorted(runs.items()):
        tr = [r for r in rows if r.get("kind", "train") == "train"] or rows
        va = [r for r in rows if r.get("kind") == "val" and r.get("psnr") is not None]
        last = tr[-1]
        best = max(va, key=lambda r: r["psnr"]) if va else None
        L.append(f"| {name} | {last['step']:.0f} | {_f(last.get('minutes'), '.1f')} | {_f(last.get('loss'), '.4g')} | "
                 f"{_f(last.get('bpp'), '.3f')} | {_f(last.get('psnr'), '.2f')} | "
                 + (f"{best['psnr']:.2f} ({_f(best.get('bpp'), '.3f')})" if best else "-") + " |")
    return L


def _f(v, spec):
    return "-" if v is None else format(v, spec)


# -- slimmable-model comparisons ---------------------------------------------------------------
def read_slim_comparisons(results_dir: Path) -> dict[str, dict]:
    """``benchmarks/results/slim_compare_*.json`` written by ``benchmarks/slim_compare.py``."""
    return {f.stem.removeprefix("slim_compare_"): json.loads(f.read_text())
            for f in sorted(results_dir.glob("slim_compare_*.json"))}


def _budget(info: dict) -> str:
    parts = [f"{info['steps']} steps" if info.get("steps") is not None else None,
             f"{info['minutes']:.0f} min" if info.get("minutes") is not None else None,
             f"{info['trials']} trials" if info.get("trials") else None,
             "lambdas " + ", ".join(f"{v:.4g}" for v in info["lambdas"] if v is not None) if info.get("lambdas") else None]
    return "; ".join(p for p in parts if p)


def slim_section(comparisons: dict[str, dict], docs: Path, rel: str) -> list[str]:
    if not comparisons:
        return ["No comparison JSON in `benchmarks/results/` (run `benchmarks/slim_compare.py`)."]
    L = []
    for name, res in comparisons.items():
        pts = lambda key: [{"bpp": q[1], "psnr": q[2], "width": q[0]} for q in res[key]]  # noqa: E731
        L += [f"### {name}", "",
              f"Kodak ({res.get('kodak_images', '?')} images), bpp from the entropy-coded streams, PSNR-RGB on the "
              f"8-bit output. Measured by `{res.get('command', 'benchmarks/slim_compare.py')}`; the runs come from "
              "the slimmable recipes at a reduced CPU budget (stated below; `recipes/`).", ""]
        runs = res.get("runs", {})
        if runs:
            L += [f"- scheduled: `{runs['sched']['run']}`: {_budget(runs['sched'])}",
                  f"- naive (equal lambdas, the same steps from the same warm-up): `{runs['naive']['run']}`: "
                  f"{_budget(runs['naive'])}"]
            L += [f"- alone: `{d}`: {_budget(i)}" for d, i in runs.get("alone", {}).items()]
            L.append("")
        L += ["| width | scheduled bpp | scheduled PSNR | naive bpp | naive PSNR |", "|---|---|---|---|---|"]
        for s_, n_ in zip(res["sched"], res["naive"]):
            L.append(f"| {s_[0]} | {s_[1]:.3f} | {s_[2]:.2f} | {n_[1]:.3f} | {n_[2]:.2f} |")
        bd, bdp = res.get("bd_rate_sched_vs_naive"), res.get("bd_psnr_sched_vs_naive")
        L += ["", f"**BD-rate, scheduled vs naive: {_f(bd, '+.1f')}%** (BD-PSNR {_f(bdp, '+.2f')} dB; negative "
              "BD-rate: scheduling needs fewer bits).", ""]
        if res.get("alone"):
            L += ["| width | trained alone bpp / PSNR | scheduled sub-network bpp / PSNR | "
                  "alone's rate vs the sub-network curve |", "|---|---|---|---|"]
            for d, (w, bpp, psnr) in res["alone"].items():
                sub = next((q for q in res["sched"] if q[0] == w), None)
                delta = (res.get("alone_rate_delta_vs_sched_curve") or {}).get(d)
                L.append(f"| {w} | {bpp:.3f} / {psnr:.2f} | "
                         + (f"{sub[1]:.3f} / {sub[2]:.2f}" if sub else "-") + f" | {_f(delta, '+.1f')}% |")
            L.append("")
        try:
            from . import plots

            curves = [{"name": "lambda-scheduled", "kind": "learned", "points": pts("sched")},
                      {"name": "naive (equal lambdas)", "kind": "learned", "points": pts("naive")}]
            curves += [{"name": f"width {w} trained alone", "kind": "learned", "points": [{"bpp": b, "psnr": q}]}
                       for w, b, q in res.get("alone", {}).values()]
            p = plots.rd_plot(curves, "psnr", docs / f"slim_compare_{name}.png",
                              title=f"{name}: scheduled vs naive, sub-networks vs alone (Kodak)")
            L += [f"![{name} comparison]({rel}/{p.name})", ""]
        except ImportError as e:
            L += [f"(no plot: {e})", ""]
    return L


def learning_section(results_dir: Path, docs: Path, rel: str) -> list[str]:
    """``benchmarks/results/learning_curve_*.json`` (``benchmarks/learning_curve.py``)."""
    L = []
    for f in sorted(results_dir.glob("learning_curve_*.json")):
        r = json.loads(f.read_text())
        L += [f"`{r['command']}` ({r['kodak_images']} Kodak images, real streams):", "",
              "| run | snapshots | hours | last Kodak bpp | last Kodak PSNR |", "|---|---|---|---|---|"]
        for name, pts in r["curves"].items():
            if pts:
                L.append(f"| {name} | {len(pts)} | {pts[-1]['hours']:.2f} | {pts[-1]['bpp']:.3f} | {pts[-1]['psnr']:.2f} |")
        png = f.with_suffix(".png")
        if png.exists():
            shutil.copy2(png, docs / png.name)
            L += ["", f"![learning curve]({rel}/{png.name})"]
        L.append("")
    return L or ["No learning curve yet: train with `--snapshot-minutes N`, then run `benchmarks/learning_curve.py`."]


def _model_path() -> tuple:
    """The model folders beyond the bundled one: like the API, from ``SLIMFAST_MODEL_PATH``."""
    from ..settings import Settings

    return Settings.from_env().model_path


def versions_section() -> list[str]:
    """Each family whose weights shipped in more than one version: the new curve against the old,
    both from the cards' Kodak points (real files, measured at release)."""
    from .. import zoo
    from .bdrate import bd_rate

    # installed versions first, then retired ones (their index entries keep the points); each (name, version) once
    path = _model_path()
    cards = [(m.name, m.family, m.version, m.points) for m in zoo.all_versions(model_path=path)]
    cards += [(r["name"], r.get("family"), str(r["version"]), r.get("points", []))
              for r in zoo.retired_versions(model_path=path)]
    curves: dict[tuple[str, str], list[dict]] = {}
    seen = set()
    for name, family, version, points in cards:
        if (name, version) in seen or not family:
            continue
        seen.add((name, version))
        curves.setdefault((family, version), []).extend(p for p in points if p.get("bpp"))
    L = []
    for family in sorted({f for f, _ in curves}):
        versions = sorted((v for f, v in curves if f == family), key=zoo.version_key)
        for old, new in zip(versions, versions[1:]):
            a, b = (sorted(curves[(family, v)], key=lambda p: p["bpp"]) for v in (old, new))
            bd = bd_rate([p["bpp"] for p in a], [p["psnr"] for p in a], [p["bpp"] for p in b], [p["psnr"] for p in b])
            pts = lambda c: ", ".join(f"{p['bpp']:.3f} / {p['psnr']:.2f}" for p in c)  # noqa: E731
            L += [f"- **{family}** v{new} against v{old}: BD-rate "
                  + (f"**{bd:+.1f}%**" if bd is not None else "n/a (curves do not overlap)")
                  + f" (PSNR-RGB). v{old}: {pts(a)}; v{new}: {pts(b)} (bpp / dB)."]
    return L or ["Every model is at its first version."]


def int8_codec_section(be: dict | None) -> list[str]:
    """The opt-in int8 synthesis of the codec: each calibrated card's Kodak cost, and the decode
    times of the same bench run with and without it."""
    from .. import zoo

    times = {}
    for r in (be or {}).get("models", []):
        if not r.get("error"):
            times[(r["model"], r.get("width"), r.get("synthesis", "fp32"))] = r
    L = ["| model | width | Kodak PSNR fp32 | int8 | change | decode ms fp32 | int8 | speed-up | vs HEIC dec (int8) |",
         "|---|---|---|---|---|---|---|---|---|"]
    for info in zoo.list_models(model_path=_model_path()):
        cal = info.card.get("int8_synthesis")
        if not cal:
            continue
        for p in cal.get("kodak", []):
            w = p.get("width")
            fp, i8 = times.get((info.name, w, "fp32")), times.get((info.name, w, "int8"))
            heic = ((i8 or {}).get("baselines") or {}).get("heic")
            speedup = f"{fp['dec_ms'] / i8['dec_ms']:.2f}x" if fp and i8 else "-"
            L.append(f"| {info.name} | {w or '-'} | {p['psnr_fp32']:.2f} | {p['psnr_int8']:.2f} | "
                     f"{p['psnr_change_db']:+.3f} dB | {_ms(fp)} | {_ms(i8)} | {speedup} | "
                     + (f"{heic['ratio']['dec']:.2f} |" if heic else "- |"))
    if len(L) == 2:
        return ["No model card is calibrated yet (`python -m slimfast.tools.release --calibrate-int8 NAME`)."]
    return L + [""]


def bf16_unavailable() -> str:
    """Why bf16 cannot run here, or ``""``."""
    from ..engines import openvino as ov_backend

    reason = ov_backend.unavailable_reason()
    return f"bf16 {reason}" if reason else ""


def bf16_section(bf16: dict | None, be: dict | None) -> list[str]:
    """Each operating point's Kodak bpp and PSNR with fp32 and bf16, and the bench's times."""
    if not bf16 or not bf16.get("rows"):
        return [f"Not measured: {bf16_unavailable() or 'no Kodak evaluation in this run'}.", ""]
    times = {(r["model"], r.get("width"), r.get("synthesis", "fp32")): r
             for r in (be or {}).get("models", []) if not r.get("error")}
    L = ["| model | width | fp32 bpp / PSNR | bf16 synthesis: PSNR change | largest pixel difference | "
         "bf16 both ways: bpp change | PSNR change | encode ms fp32 / bf16 | decode ms fp32 / bf16 | "
         "enc+dec vs WebP (bf16) | dec vs HEIC (bf16) |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for p in bf16["rows"]:
        w = p.get("width")
        fp, bf = times.get((p["model"], w, "fp32")), times.get((p["model"], w, "bf16"))
        base = (bf or {}).get("baselines") or {}
        enc = f"{fp['enc_ms']:.1f} / {bf['enc_ms']:.1f}" if fp and bf else "-"
        dec = f"{fp['dec_ms']:.1f} / {bf['dec_ms']:.1f}" if fp and bf else "-"
        L.append(f"| {p['model']} | {w or '-'} | {p['bpp_fp32']:.3f} / {p['psnr_fp32']:.2f} | "
                 f"{p['psnr_bf16_synthesis'] - p['psnr_fp32']:+.3f} dB | {p['max_abs_diff']} | "
                 f"{100 * (p['bpp_bf16'] / p['bpp_fp32'] - 1):+.2f}% | {p['psnr_bf16'] - p['psnr_fp32']:+.3f} dB | "
                 f"{enc} | {dec} | "
                 + (f"{base['webp']['ratio']['total']:.2f} | " if "webp" in base else "- | ")
                 + (f"{base['heic']['ratio']['dec']:.2f} |" if "heic" in base else "- |"))
    return L + [""]


TARGETS_FILE = ROOT / "benchmarks" / "targets.json"
_LABELS = {"default_family": "default family", "best_slimmable": "best slimmable model",
           "highest_effort": "highest effort", "default_point": "default model", "every_point": "every shipped point",
           "fastest_point_26db": "fastest point with >= 26 dB on Kodak", "decompress": "cold `slimfast decompress`"}


def load_targets(path: Path = TARGETS_FILE) -> list[dict]:
    """The targets RESULTS.md checks: one data file (benchmarks/targets.json), no numbers in code."""
    return json.loads(path.read_text())["targets"] if path.is_file() else []


def _families() -> dict[str, str]:
    """Family name -> architecture, and the default model's family under the key ``None``."""
    from .. import zoo

    models = zoo.list_models(model_path=_model_path())
    out = {m.family: m.architecture for m in models}
    out[None] = next((m.family for m in models if m.default), None)
    return out


def _bd(ev: dict | None, t: dict) -> tuple[float, str] | None:
    fams = _families()
    wanted = {"default_family": [fams[None]],
              "best_slimmable": [f for f, a in fams.items() if f and a.startswith("slim")]}.get(t["subject"], [])
    rows = [(r["bd_rate"], r["test"]) for r in (ev or {}).get("bd", []) if r["ref"] == t["ref"]
            and r["metric"] == "psnr" and r["test"] in wanted and r.get("bd_rate") is not None]
    return min(rows) if rows else None


def _kodak_psnr(ev: dict | None) -> dict[tuple, float]:
    return {(p["codec"], p.get("param")): p["psnr"] for c in (ev or {}).get("curves", [])
            for p in c.get("points", []) if p.get("psnr") is not None and "codec" in p}


def default_rows(be: dict | None) -> list[dict]:
    """One bench row per operating point: the one at the precision the default (``auto``) runs it
    at on the bench's machine (``default_precision``), else its fp32 row."""
    chosen: dict[tuple, dict] = {}
    for r in (be or {}).get("models", []):
        key = (r["model"], r.get("width"))
        if r.get("error") or not (r.get("default_precision") or r.get("synthesis", "fp32") == "fp32"):
            continue
        if key not in chosen or r.get("default_precision"):
            chosen[key] = r
    return list(chosen.values())


def _speed(ev: dict | None, be: dict | None, t: dict) -> tuple[float, str] | None:
    rows = default_rows(be)
    ratio, precision = {}, {}
    for r in rows:
        b = (r.get("baselines") or {}).get(t["ref"])
        if b:
            ratio[(r["model"], r.get("width"))] = b["ratio"][t["part"]]
            precision[(r["model"], r.get("width"))] = r.get("synthesis", "fp32")
    psnr = _kodak_psnr(ev)
    if t["subject"] == "default_point":
        from .. import zoo

        default = zoo.get(None, model_path=_model_path())
        keys = [k for k in ratio if k[0] == default.name and k[1] in (None, default.default_width)]
    elif t["subject"] == "fastest_point_26db":
        ok = [r for r in rows if psnr.get((r["model"], r.get("width")), 0) >= 26 and (r["model"], r.get("width")) in ratio]
        keys = [(r["model"], r.get("width")) for r in sorted(ok, key=lambda r: r["dec_ms"])[:1]]
    else:  # every_point: the worst
        keys = sorted(ratio, key=lambda k: ratio[k])[-1:]
    if not keys:
        return None
    k = keys[0]
    return ratio[k], k[0] + (f" width {k[1]}" if k[1] else "") + (f", {precision[k]}" if precision[k] != "fp32" else "")


def _cold(be: dict | None, t: dict) -> tuple[float, str] | None:
    cold = (be or {}).get("cold_start") or {}
    ref = cold.get(f"{t['ref']}_ms")
    return (cold["decompress_ms"] / ref, cold.get("model", "")) if ref and cold.get("decompress_ms") else None


def _measure(ev: dict | None, be: dict | None, t: dict) -> tuple[float, str] | None:
    """(value, what it is of) for a target, or None where this run did not measure it."""
    if t["measure"] == "effort_gain" or t["subject"] == "highest_effort":
        return _effort(ev, t)
    if t["measure"] == "bd_rate":
        return _bd(ev, t)
    if t["measure"] == "speed_ratio":
        return _speed(ev, be, t)
    if t["measure"] == "cold_start_ratio":
        return _cold(be, t)
    if t["measure"] == "heldout_gap":
        return _heldout_gap(ev, t)
    return None


def _effort(ev: dict | None, t: dict, results: Path | None = None) -> tuple[float, str] | None:
    """From ``benchmarks/results/effort.json``: the highest level's BD-rate against the default
    effort (``effort_gain``), or its family curve against a baseline of the Kodak evaluation."""
    f = (results or ROOT / "benchmarks" / "results") / "effort.json"
    if not f.is_file():
        return None
    r = json.loads(f.read_text())
    top = str(max(r["efforts"]))
    what = f"effort {top}, {', '.join(r['models'])}"
    if t["measure"] == "effort_gain":
        bd = r["compare"][top]["bd_rate_percent"]
        return None if bd is None else (bd, what)
    curve = next((c for c in (ev or {}).get("curves", []) if c.get("name") == t["ref"]), None)
    if curve is None:
        return None
    from .bdrate import bd_rate

    levels = [m["levels"][top] for m in r["models"].values()]
    bd = bd_rate([p["bpp"] for p in curve["points"]], [p["psnr"] for p in curve["points"]],
                 [v["bpp"] for v in levels], [v["psnr"] for v in levels])
    return None if bd is None else (bd, what)


def _heldout_gap(ev: dict | None, t: dict) -> tuple[float, str] | None:
    """The default family's BD-rate against ``ref`` on the held-out images minus Kodak's."""
    kodak = _bd(ev, {**t, "measure": "bd_rate"})
    held = _bd((ev or {}).get("heldout"), {**t, "measure": "bd_rate"})
    if kodak is None or held is None:
        return None
    return held[0] - kodak[0], f"{held[1]}: {held[0]:+.1f}% held-out, {kodak[0]:+.1f}% Kodak"


def _target_text(t: dict) -> str:
    unit = "%" if t["measure"] in ("bd_rate", "effort_gain", "heldout_gap") else "x"
    what = {"bd_rate": f"BD-rate vs {t['ref']}", "speed_ratio": f"{t.get('part', '')} time vs {t['ref']}",
            "cold_start_ratio": f"wall time vs {t['ref']}", "effort_gain": "BD-rate vs the default effort",
            "heldout_gap": f"held-out BD-rate vs {t['ref']} minus Kodak's"}[t["measure"]]
    return f"{_LABELS.get(t['subject'], t['subject'])}: {what} <= {t['at_most']:g}{unit}"


def targets_section(ev: dict | None, be: dict | None, targets: list[dict] | None = None) -> list[str]:
    """Each target of benchmarks/targets.json next to what this run measured, and how far it is."""
    targets = load_targets() if targets is None else targets
    if not targets:
        return ["No targets (benchmarks/targets.json)."]
    L = ["| issue | target | required | measured | distance | met |", "|---|---|---|---|---|---|"]
    for t in targets:
        got = _measure(ev, be, t)
        unit = "x" if t["measure"].endswith("ratio") else "%"
        if got is None:
            L.append(f"| {t['issue']} | {_target_text(t)} | {'yes' if t['required'] else 'aim'} | not measured | - | - |")
            continue
        value, of = got
        L.append(f"| {t['issue']} | {_target_text(t)} | {'yes' if t['required'] else 'aim'} | {value:+.2f}{unit} "
                 f"({of}) | {value - t['at_most']:+.2f}{unit} | {'yes' if value <= t['at_most'] else 'no'} |")
    return L + ["", "Speed: each operating point through the Python API (a loaded codec, warm), at the precision the default "
                "(`auto`) runs it at on this machine: "
                "bf16 both ways where its card allows it (held-out cost within 0.05 dB) and the CPU computes bf16 "
                "natively (marked bf16), else fp32; the cold start is `slimfast decompress` of one image, which takes "
                "fp32 (OpenVINO's start costs more than bf16 saves there). RD: fp32 transforms, which every machine "
                "computes alike; what bf16 costs: the bf16 section. Distance: measured minus the bound (<= 0 is met).", ""]


def _ms(r: dict | None) -> str:
    return f"{r['dec_ms']:.1f}" if r else "-"


def int8_section(results_dir: Path) -> list[str]:
    """``benchmarks/results/int8_synthesis_*.json`` (``benchmarks/int8_synthesis.py``): the variants tried."""
    L = []
    for f in sorted(results_dir.glob("int8_synthesis_*.json")):
        r = json.loads(f.read_text())
        L += [f"{r['model']} at width {r['width']}, {r['threads']} threads, {r['images']} Kodak images, calibrated on "
              f"{r['calibration_images']} training images (`python benchmarks/int8_synthesis.py --model {r['model']} "
              f"--threads {r['threads']} --out {f.relative_to(ROOT)}`):", "",
              "| synthesis | ms per image | speed-up | PSNR | PSNR change |", "|---|---|---|---|---|"]
        for k, v in r["variants"].items():
            L.append(f"| {k} | {v['synthesis_ms']:.1f} | {v['speedup']:.2f}x | {v['psnr']:.2f} | "
                     f"{v['psnr_change_db']:+.3f} dB |")
        L.append("")
    return L or ["Not measured (`benchmarks/int8_synthesis.py`)."]


def hs8_section(results_dir: Path) -> list[str]:
    """``benchmarks/results/hs8_probe.json`` (``benchmarks/hs8_probe.py``): the 8-bit h_s against the 12-bit copy."""
    f = results_dir / "hs8_probe.json"
    if not f.is_file():
        return ["Not measured (`python benchmarks/hs8_probe.py`)."]
    r = json.loads(f.read_text())
    return [f"The 8-bit copy of {r['model']}'s hyper-synthesis (float32 GEMMs over 8-bit weights and activations, "
            f"exact by construction; steps calibrated on {r['calibration_images']} training images) against the "
            f"12-bit float64 copy, the same weights and latents, {len(r['images'])} Kodak images, "
            f"{r['threads']} threads (`python benchmarks/hs8_probe.py --model {r['model']} --threads {r['threads']}`):",
            "", "| hyper-synthesis | entropy parameters, median ms per image | bits |", "|---|---|---|",
            f"| 12-bit, float64 | {r['ms12_median']:.1f} | |",
            f"| 8-bit, float32 | {r['ms8_median']:.1f} | {r['bits_change']:+.2%} |", ""]


def knob_section(results_dir: Path, docs: Path, rel: str) -> list[str]:
    """``benchmarks/results/knob.json`` (``benchmarks/knob.py``): the quality knob against its ladder."""
    f = results_dir / "knob.json"
    if not f.is_file():
        return ["Not measured (`python benchmarks/knob.py`)."]
    r = json.loads(f.read_text())
    L = [f"{r['images']} Kodak images, real files (`python benchmarks/knob.py`). *Ladder*: the family's points at "
         "step 1 (what every file was before the knob); *knob*: `--quality` 0, 5, ..., 100; *one point alone*: "
         "the default point at steps 0.71 to 4, the single set of weights that would replace the ladder. "
         "BD-rate against the ladder over the range both cover (the knob's curve within the ladder's rates).", "",
         "| family | knob vs ladder | one point alone vs ladder | quality 0: bpp / PSNR | quality 100: bpp / PSNR |",
         "|---|---|---|---|---|"]
    for fam in r["families"]:
        lo, hi = fam["knob"][0], fam["knob"][-1]
        L.append(f"| {fam['family']} | {_pct(fam['bd_knob_vs_ladder'])} | {_pct(fam['bd_single_point_vs_ladder'])} "
                 f"({fam['single_point']}) | {lo['bpp']:.3f} / {lo['psnr']:.2f} | {hi['bpp']:.3f} / {hi['psnr']:.2f} |")
    return L + [""] + ([f"![quality knob]({rel}/knob.png)", ""] if (docs / "knob.png").is_file() else [])


def recipe_section(results_dir: Path) -> list[str]:
    """``benchmarks/results/recipe_probes.json`` (``benchmarks/compare_weights.py --out``): recipe choices
    measured on whole validation images."""
    f = results_dir / "recipe_probes.json"
    if not f.is_file():
        return ["Not measured (`python benchmarks/compare_weights.py ... --out benchmarks/results/recipe_probes.json`)."]
    r = json.loads(f.read_text())
    L = [f"Continuations of one model, each trained one way, coded as real files on {r['images']} whole validation "
         f"images of the training set (halved; never Kodak nor the held-out list), J = bpp + lambda * MSE at "
         f"lambda {r['lambda']} (lower is better), against the first row (`{r['command']}`).", "",
         "| recipe | bpp | PSNR | J | J vs the first | PSNR vs the first's curve at this bpp |",
         "|---|---|---|---|---|---|"]
    for row in r["rows"]:
        vs = row.get("psnr_vs_curve_db")
        L.append(f"| {row['label']} | {row['bpp']:.4f} | {row['psnr']:.3f} | {row['j']:.5f} | "
                 f"{row['j_vs_first_percent']:+.2f}% | {'-' if vs is None else f'{vs:+.3f} dB'} |")
    if r.get("curve"):
        steps = ", ".join(f"{c['step']:g}" for c in r["curve"])
        L += ["", f"The first row's curve: its weights at {steps} times their quantization step (the quality knob), "
              "for recipes that move a run along its curve, where J at one lambda would not compare them; "
              "a continuation trained at that rate would sit somewhat above this curve."]
    return L + [""]


def coders_section(results_dir: Path) -> list[str]:
    """``benchmarks/results/coders.json`` (``benchmarks/coders.py``): the bytes rANS files cost against range-coded ones."""
    f = results_dir / "coders.json"
    if not f.is_file():
        return ["Not measured (`python benchmarks/coders.py --out benchmarks/results/coders.json`)."]
    r = json.loads(f.read_text())
    L = [f"New files are rANS-coded and carry a `LAYT` chunk (format version 2); files without it are range-coded. "
         f"The same symbols, so the same pixels: only sizes differ. Mean file bytes over {r['images']} Kodak images, "
         f"whole files (`{r['command']}`); the speed each coder gives is in \"What was tried\".", "",
         "| model | width | range coder, bytes | rANS, bytes | size change (mean) | largest change |",
         "|---|---|---|---|---|---|"]
    for row in r["rows"]:
        L.append(f"| {row['model']} | {row['width'] or '-'} | {row['range_bytes']:.0f} | {row['rans_bytes']:.0f} | "
                 f"{row['change_percent']:+.3f}% | {row['max_change_percent']:+.3f}% |")
    return L + [""]


def _pct(v) -> str:
    return "-" if v is None else f"{v:+.2f}%"


def effort_section(results_dir: Path) -> list[str]:
    """``benchmarks/results/effort.json`` (``benchmarks/effort.py``): what each encoder effort level buys and costs."""
    f = results_dir / "effort.json"
    if not f.is_file():
        return ["Not measured (`python benchmarks/effort.py`)."]
    r = json.loads(f.read_text())
    pct = lambda v: "n/a" if v is None else f"{v:+.2f}%"  # noqa: E731
    L = [f"Each level refines the latents per image with the decoder fixed (SGA, scored by real bytes and the real "
         f"8-bit MSE; the file kept never has a higher bpp + lambda * MSE than effort 0's). {r['images']} Kodak "
         f"images, {r['threads']} thread(s), load average before {r['load_average_before']:.1f} (`{r['command']}`). "
         "BD-rate of the family's curve at each level against level 0: "
         + ", ".join(f"effort {e} {pct(c['bd_rate_percent'])}" for e, c in r["compare"].items() if e != "0") + ".",
         "", "| model | effort | bpp | PSNR | bpp change | PSNR change | rate change at equal PSNR | J change | "
         "encode s per image |", "|---|---|---|---|---|---|---|---|---|"]
    for name, m in r["models"].items():
        for e, lv in m["levels"].items():
            c = r["compare"][e]["models"][name]
            L.append(f"| {name} | {e} | {lv['bpp']:.4f} | {lv['psnr']:.2f} | {c['bpp_change']:+.2%} | "
                     f"{c['psnr_change_db']:+.3f} dB | {pct(c['rate_change_at_quality'])} | {c['j_change']:+.2%} | "
                     f"{lv['seconds']:.2f} |")
    return L + [""]


def batch_section(results_dir: Path) -> list[str]:
    """``benchmarks/results/batch_throughput.json`` (``benchmarks/batch_throughput.py``)."""
    f = results_dir / "batch_throughput.json"
    if not f.is_file():
        return ["Not measured (`python benchmarks/batch_throughput.py`)."]
    r = json.loads(f.read_text())
    names = {"shell": "a shell loop of `slimfast compress`", "local": "`--executor local`", "ray": "`--executor ray`"}
    L = [f"{r['corpus']}, {r['model']}, {r['threads_per_worker']} thread per worker; images/s over the whole run "
         "(steady: after the executor started), peak memory per worker; every output byte-identical to the shell "
         "loop's (`python benchmarks/batch_throughput.py`):", "",
         "| method | workers | images/s | steady images/s | start-up s | MB per worker | identical | load before |",
         "|---|---|---|---|---|---|---|---|"]
    for x in r["runs"]:
        start = "-" if x.get("startup_s") is None else f"{x['startup_s']:.1f}"
        L.append(f"| {names.get(x['method'], x['method'])} | {x['workers']} | {x['images_per_second']:.1f} | "
                 f"{x['steady_images_per_second']:.1f} | {start} | {max(x['peak_rss_mb_per_worker']):.0f} | "
                 f"{'yes' if x['identical_to_shell_loop'] else '**no**'} | {x['load_average_before']:.1f} |")
    return L + [""]


def serve_section(results_dir: Path) -> list[str]:
    """``benchmarks/results/serve_load.json`` (``benchmarks/serve_load.py``): the service under load."""
    f = results_dir / "serve_load.json"
    if not f.is_file():
        return ["Not measured (`python benchmarks/serve_load.py`)."]
    r = json.loads(f.read_text())
    L = [f"`slimfast serve` on {r['host']}, {r['image']}; {r['mix']}; load average before: "
         f"{r['load_average_1min_before']:.1f} (`python benchmarks/serve_load.py`):", "",
         "| workers | clients | requests/s | p50 ms | p90 ms | p99 ms | errors | server MB before -> after | "
         "growth under load MB |", "|---|---|---|---|---|---|---|---|---|"]
    for x in r["runs"]:
        lat = x["latency_ms"]
        L.append(f"| {x['workers']} | {x['clients']} | {x['throughput_rps']:.1f} | {lat['p50']:.0f} | "
                 f"{lat['p90']:.0f} | {lat['p99']:.0f} | {x['errors']} | {x['rss_before_mb']:.0f} -> "
                 f"{x['rss_after_mb']:.0f} | {x['rss_growth_under_load_mb']:+.1f} |")
    return L + [""]


def _repo_path(f: Path) -> str:
    return str(f.relative_to(ROOT)) if f.is_relative_to(ROOT) else str(f)


def fuzz_section(results_dir: Path) -> list[str]:
    """The last long fuzz run of the decoder (benchmarks/fuzz.py): cases, outcomes, time, memory."""
    path = results_dir / "fuzz.json"
    if not path.is_file():
        return ["Not measured (`python benchmarks/fuzz.py`)."]
    f = json.loads(path.read_text())
    refused = sum(n for k, n in f["outcomes"].items() if k.startswith("refused"))
    top = sorted(((n, k) for k, n in f["outcomes"].items() if k.startswith("refused")), reverse=True)[:5]
    sec, mem = f["seconds"], f["traced_peak_bytes"]
    return [f"`python benchmarks/fuzz.py --cases {f['cases']}`: {f['cases']:,} checksum-valid mutants of "
            f"{len(f['bases'])} files ({', '.join(f['bases'])}; format v1 files are range-coded, v2 files "
            f"rANS-coded), decoder pixel limit {f['max_pixels']:,}.", "",
            f"- outcomes: {f['decoded']:,} decoded, {refused:,} refused with a one-line error, "
            f"**{f['failures']} failures** (anything else raised, or work beyond the file's bounds)",
            f"- time per case: median {sec['p50'] * 1e3:.2f} ms, p99 {sec['p99'] * 1e3:.1f} ms, "
            f"max {sec['max'] * 1e3:.1f} ms; traced peak memory per case: median {mem['p50'] / 2**20:.2f} MiB, "
            f"max {mem['max'] / 2**20:.2f} MiB; process peak {f['max_rss_bytes'] / 2**20:.0f} MiB; "
            f"{f['wall_seconds']:.0f} s in all",
            "- most frequent refusals: " + "; ".join(f"{k.removeprefix('refused: ')} ({n:,})" for n, k in top), ""]


def ceiling_section(results_dir: Path) -> list[str]:
    """``benchmarks/results/ceiling.json`` (``benchmarks/ceiling.py``): transform ceiling against quantized PSNR."""
    f = results_dir / "ceiling.json"
    if not f.exists():
        return ["Not measured (`benchmarks/ceiling.py`)."]
    r = json.loads(f.read_text())
    rows, bound = r["rows"], r.get("linear_bound") or {}
    bound_arg = f" --linear-bound {' '.join(bound)}" if bound else ""
    L = [f"Mean PSNR-RGB over {rows[0]['images']} Kodak images of the 8-bit output with the latent y passed to the "
         "synthesis unquantized (the *ceiling*: what the transforms reach at any rate) and rounded as in coding "
         "(`python benchmarks/ceiling.py --models " + " ".join(dict.fromkeys(x["model"] for x in rows))
         + f"{bound_arg} --out {_repo_path(f)}`). "
         "A small gap means the bits buy detail the synthesis cannot draw: the model is limited by its transforms, "
         "not by its rate.", "",
         "| model | width | ceiling (dB) | quantized (dB) | quantization cost (dB) |", "|---|---|---|---|---|"]
    for x in rows:
        L.append(f"| {x['model']} v{x['version']} | {x['width'] or '-'} | {x['ceiling_psnr']:.2f} | {x['quantized_psnr']:.2f} | "
                 f"{x['quantized_psnr'] - x['ceiling_psnr']:+.2f} |")
    if bound:
        L += ["", "For scale, the best fixed linear transform with as many latents: principal components of 16x16 RGB "
              f"blocks (basis from {r['linear_bound_train_images']} training images, never Kodak): "
              + ", ".join(f"{k} per block {v:.2f} dB" for k, v in bound.items())
              + ". A ceiling below it means undertrained transforms, not too small a latent."]
    return L + [""]


# -- RESULTS.md ---------------------------------------------------------------------------------
def _rate_sections(docs: Path, rel: str) -> list[str]:
    """The saved measurements behind the rate work: 8-bit h_s, recipes, the knob, effort levels."""
    results = ROOT / "benchmarks" / "results"
    return (["", "## Entropy coders: rANS against the range coder", ""] + coders_section(results)
            + ["", "## The 8-bit hyper-synthesis (FasiNet-H's `hs_steps` option)", ""] + hs8_section(results)
            + ["", "## Recipe measurements (training on whole images)", ""] + recipe_section(results)
            + ["", "## Quality knob (`--quality`, hyperprior families)", ""] + knob_section(results, docs, rel)
            + ["", "## Encoder effort (opt-in: `slimfast compress --effort N`)", ""] + effort_section(results))


def results_md(ev: dict | None, be: dict | None, runs: dict, docs: Path, root: Path, eval_note: str = "",
               slim: dict | None = None, bf16: dict | None = None) -> str:
    from .bench import bench_md
    from .evaluate import fmt, summary_md

    rel = os.path.relpath(docs, root)
    env = (ev or be or {}).get("environment") or environment()
    L = ["# Results", "",
         f"_Generated by `{COMMAND}` on {env['date']}. Do not edit by hand: rerun the command._", ""]
    L += ["## Environment", "",
          f"- CPU: {env['cpu']} ({env['cpus_usable']} usable cores; flags: {', '.join(env['cpu_flags']) or 'n/a'})",
          f"- Model threads: evaluation {((ev or {}).get('settings') or {}).get('threads') or 'torch default'}, "
          f"benchmark {(be or {}).get('settings', {}).get('threads', '-')}",
          f"- Python {env['python']} on {env['platform']}",
          "- Libraries: " + ", ".join(f"{k} {v}" for k, v in env["versions"].items() if v)]
    if ev:
        for n, b in ev["settings"]["baselines"].items():
            L.append(f"- {b['label']}: {b['version']}")
    L.append("")
    L += ["## Targets", "", "The targets of benchmarks/targets.json (this round's speed and rate issues, required or "
          "aimed at), against this run's measurements.", ""] + targets_section(ev, be)
    L += ["## Rate-distortion on Kodak", ""]
    if ev:
        body = summary_md(ev, plot_prefix=rel + "/").split("\n", 2)[2]  # drop its title
        L += [body.replace("\n## ", "\n### ")]
        for c in ev["curves"]:
            if c["kind"] == "learned":
                L.append(f"- curve **{c['name']}**: " + ", ".join(
                    f"{p['codec']}{' w' + str(p['param']) if p['param_name'] == 'width' else ''} "
                    f"{fmt(p['bpp'], '.3f')} bpp / {fmt(p['psnr'])} dB" for p in c["points"]))
    else:
        L += [eval_note or "Not run.", ""]
    L += ["", "## Speed", ""]
    if be:
        body = bench_md(be).split("\n", 2)[2]
        L += [body.replace("\n## ", "\n### ")]
        if (docs / "bench_sizes.png").exists():
            L += [f"![size sweep]({rel}/bench_sizes.png)", ""]
    else:
        L += ["Not run.", ""]
    L += ["", "## Transform ceilings (where quality is lost)", ""] + ceiling_section(ROOT / "benchmarks" / "results")
    L += ["", "## Hostile files (decoder fuzzing)", ""] + fuzz_section(ROOT / "benchmarks" / "results")
    L += ["", "## Slimmable models: lambda scheduling and sub-networks", ""] + slim_section(slim or {}, docs, rel)
    L += ["", "## Model versions", "",
          "A better set of weights ships as the model's next version; the one it replaces is retired from "
          "the bundle (`slimfast/weights/retired.json` names the release that decodes its files). Kodak points "
          "from the model cards.", ""] + versions_section()
    L += ["", "## int8 synthesis (opt-in: `slimfast decompress --int8`)", "",
          "Symbols are decoded before the synthesis, so reduced precision there changes pixels only: the same "
          "file decodes to the same symbols either way. The int8 decoder is ONNX Runtime's static QDQ form "
          "(per-channel int8 weights, uint8 activations, transposed convolutions as sub-pixel convolutions) "
          "with activation ranges calibrated on training images and stored in the model card "
          "(`python -m slimfast.tools.release --calibrate-int8 NAME`). PSNR: Kodak, from the card; decode times: "
          "the Speed section's run (whole decode: entropy decoding + synthesis).", ""]
    L += int8_codec_section(be)
    L += ["How the form was chosen (`codec` is the float decoder with ConvTranspose; `fp32` the same network "
          "with the transposed convolutions as sub-pixel convolutions, now the float form of FasiNet-L; "
          "`dynamic` is ORT's ConvInteger, `qdq` static "
          "per-channel QLinearConv with min/max ranges; speed-ups and PSNR changes against `codec`):", ""]
    L += int8_section(ROOT / "benchmarks" / "results")
    L += _rate_sections(docs, rel)
    L += ["", "## Batch compression (`slimfast batch`)", ""] + batch_section(ROOT / "benchmarks" / "results")
    L += ["", "## The HTTP service under load (`slimfast serve`)", ""] + serve_section(ROOT / "benchmarks" / "results")
    L += ["", "## bf16 (the default where the CPU computes it natively and OpenVINO is installed; `--bf16` asks for it)", "",
          "The float transforms run in bfloat16 by OpenVINO (`pip install 'slimfast[openvino]'`), on CPUs that "
          "compute bf16 natively (AVX-512 BF16 or AMX); ONNX Runtime has no bf16 convolutions on the CPU. "
          "Entropy coding and FasiNet-H's integer hyper-synthesis are untouched. bf16 synthesis: the fp32 "
          "file decoded both ways (the same symbols, so only pixels change). bf16 both ways: the file made "
          "with the bf16 analysis, decoded with the bf16 synthesis. Kodak means; times: the Speed section's "
          "run (its bf16 rows are bf16 both ways).", ""]
    L += bf16_section(bf16, be)
    L += ["", "## Learning curves (Kodak quality per training hour)", ""]
    L += learning_section(ROOT / "benchmarks" / "results", docs, rel)
    L += ["", "## Training curves", ""] + training_section(runs, docs, rel)
    return "\n".join(L).rstrip() + "\n"


def _copy_plots(res: dict | None, docs: Path) -> None:
    if not res:
        return
    for k, p in list((res.get("plots") or {}).items()):
        if Path(p).exists():
            shutil.copy2(p, docs / Path(p).name)


HELDOUT_BASELINES = ("webp", "avif")


def _evaluate_heldout(evaluate, train: str, out: Path, jobs: int) -> int:
    """The default family and the held-out targets' baselines on the held-out training images."""
    from .. import zoo

    default = zoo.get(None, model_path=_model_path())
    models = [m.name for m in zoo.list_models(model_path=_model_path()) if m.family == default.family]
    ep = argparse.ArgumentParser()
    evaluate.add_arguments(ep)
    return evaluate.run(ep.parse_args(["--heldout", train, "--out", str(out), "--jobs", str(jobs), "--models",
                                       *models, "--baselines", *HELDOUT_BASELINES, "--no-ms-ssim", "--no-plots"]))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m slimfast.tools.report", description=__doc__.splitlines()[0])
    p.add_argument("--kodak", default=str(ROOT.parent / "shared" / "data" / "kodak"), help="Kodak folder")
    p.add_argument("--out", default=str(ROOT / "out"), help="where evaluate/bench write (default: out/)")
    p.add_argument("--results", default=str(ROOT / "RESULTS.md"), help="Markdown to write (default: RESULTS.md)")
    p.add_argument("--docs", default=str(ROOT / "docs" / "results"), help="plot folder (default: docs/results)")
    p.add_argument("--jobs", type=int, default=1,
                   help="baseline worker processes (default 1: parallel runs distort the timings)")
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N Kodak images")
    p.add_argument("--sizes", type=float, nargs="*", default=[0.4, 2, 8, 24], help="bench size sweep (MP)")
    # 15: on a shared 2-core machine a few runs in five can be several ms slow, which moved 5-run medians
    p.add_argument("--repeats", type=int, default=15, help="bench repeats (default 15)")
    p.add_argument("--train", default=str(ROOT.parent / "shared" / "data" / "train"),
                   help="training data holding the held-out images (slimfast/data/heldout.txt)")
    p.add_argument("--skip-eval", action="store_true", help="reuse out/eval/results.json")
    p.add_argument("--skip-bench", action="store_true", help="reuse out/bench/bench.json")
    p.add_argument("--from-json", action="store_true", help="only rewrite the Markdown from existing JSON")
    args = p.parse_args(argv)
    from . import bench, evaluate

    out, docs = Path(args.out), Path(args.docs)
    docs.mkdir(parents=True, exist_ok=True)
    eval_dir, bench_dir = out / "eval", out / "bench"
    eval_note = ""
    if not (args.skip_eval or args.from_json):
        if Path(args.kodak).is_dir():
            ep = argparse.ArgumentParser()
            evaluate.add_arguments(ep)
            eargs = [args.kodak, "--out", str(eval_dir), "--jobs", str(args.jobs), "--anchors"]
            if args.limit:
                eargs += ["--limit", str(args.limit)]
            if evaluate.run(ep.parse_args(eargs)) != 0:
                return 1
        else:
            eval_note = f"Kodak not found at `{args.kodak}`: evaluation skipped."
            print(eval_note, file=sys.stderr)
    heldout_dir = out / "heldout"
    if not (args.skip_eval or args.from_json) and Path(args.train).is_dir():
        if _evaluate_heldout(evaluate, args.train, heldout_dir, args.jobs) != 0:
            return 1
    bf16_file = eval_dir / "bf16.json"
    if not (args.skip_eval or args.from_json) and not eval_note:
        bf16_note = bf16_unavailable()
        if bf16_note:
            bf16_file.unlink(missing_ok=True)
            print(f"bf16 not measured: {bf16_note}", file=sys.stderr)
        else:
            images = [(f.name, evaluate.load_image(f)) for f in evaluate.list_images(args.kodak, args.limit)]
            infos = evaluate.select_models(None)
            bar = evaluate._bar(len(images) * sum(len(evaluate.operating_points(i)) for i in infos), True)
            rows = evaluate.bf16_cost(infos, images, bar)
            bar.close()
            evaluate.write_json({"images": len(images), "rows": rows}, bf16_file)
    if not (args.skip_bench or args.from_json):
        bp = argparse.ArgumentParser()
        bench.add_arguments(bp)
        bargs = ["--out", str(bench_dir), "--repeats", str(args.repeats), "--sizes", *map(str, args.sizes)]
        if bench.run(bp.parse_args(bargs)) != 0:
            return 1
    ev_file = eval_dir / "results.json"
    ev = json.loads(ev_file.read_text()) if ev_file.exists() and not eval_note else None
    held_file = heldout_dir / "results.json"
    if ev is not None and held_file.exists():
        ev["heldout"] = json.loads(held_file.read_text())
    be = json.loads((bench_dir / "bench.json").read_text()) if (bench_dir / "bench.json").exists() else None
    _copy_plots(ev, docs)
    if (bench_dir / "bench_sizes.png").exists():
        shutil.copy2(bench_dir / "bench_sizes.png", docs / "bench_sizes.png")
    runs = read_training_logs(ROOT / "runs")
    root = Path(args.results).resolve().parent
    slim = read_slim_comparisons(ROOT / "benchmarks" / "results")
    bf16 = json.loads(bf16_file.read_text()) if bf16_file.exists() and not eval_note else None
    Path(args.results).write_text(results_md(ev, be, runs, docs.resolve(), root, eval_note, slim, bf16))
    print(f"wrote {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
