"""Lambda scheduling for slimmable models (SlimCAE, Yang et al. CVPR 2021; ``design/slimcae.md``).

A slimmable model trains all its widths jointly, minimizing ``sum_i lambda_i * D_i + R_i``.
Which lambda each width should get is not known in advance; the paper finds them greedily:

1. start "naive": the same lambda for every width; train; evaluate every width on a
   held-out validation split of the *training* images (never Kodak): bpp and PSNR;
2. for each adjacent pair (i, i+1), widest first: ``slope0`` = the chord slope
   ``(psnr_i - psnr_{i+1}) / (bpp_i - bpp_{i+1})``; then up to ``--max-tries`` (7) times:
   multiply the lambdas of all narrower widths (i+1, ...) by ``--factor`` (0.8), train one
   trial budget, re-evaluate, recompute the chord slope; continue while the slope does not
   increase, stop at the first trial where it increases.

Decision at the stopping trial (``--on-stop``): ``rollback`` (default, the faithful reading:
the last lambda cut made the chord worse, so the weights, optimizer state and lambdas from
before it are restored and its training is discarded) or ``keep`` (keep that trial's weights
and lambdas, spending no compute in vain). A pair that is not ordered yet, whose narrower width
spends at least as many bits as the wider one or reaches at least its PSNR (an undertrained wide
width), has an infinite chord slope: its lambdas keep being cut. (A negative chord slope would
otherwise stop the search at random: it means nothing about the RD curve's tangent.)

Every trial (lambdas, per-width bpp and PSNR, chord slope, decision) is appended to
``trials.csv`` and ``trials.jsonl`` in the run folder; the final lambdas go to
``lambdas.json`` and the final weights (tables frozen) to ``final.safetensors``. The run
folder also holds a checkpoint of the last *accepted* state and ``schedule_state.json``, so
an interrupted run resumes by re-running the trial in progress.

Lambdas follow :func:`slimfast.train.rd_loss`: ``loss = lambda * MSE + bpp`` with MSE on the
0..255 scale, i.e. the paper's [0, 1]-scale lambda divided by 255^2 (its 4000 is 0.0615).
"""
from __future__ import annotations

import argparse
import copy
import csv
import json
import math
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from .models import build
from .train import (DEFAULT_DATA, PatchSampler, list_images, load_checkpoint, load_rgb, rd_loss,
                    save_checkpoint, split_validation, validate)
from .weights import load_for_training, save_model

PAPER_SCALE = 255.0 ** 2


@dataclass
class ScheduleConfig:
    architecture: str | None = None  # None: slimcae, or the architecture of --init
    model_config: dict = field(default_factory=dict)
    data: list[str] = field(default_factory=lambda: [str(DEFAULT_DATA)])
    out: str = "runs/slimcae-schedule"
    init: str | None = None         # start from these weights (e.g. a jointly trained model)
    lmbda: float = 4000 / PAPER_SCALE  # the naive start: one lambda for every width
    lmbdas: list[float] | None = None  # or an explicit start, one per width, widest first
    init_steps: int | None = None   # training before the first evaluation (default: trial_steps)
    init_minutes: float | None = None
    trial_steps: int = 2000
    trial_minutes: float = 0.0      # > 0: each trial trains this long instead of trial_steps
    max_tries: int = 7
    factor: float = 0.8
    on_stop: str = "rollback"       # rollback | keep
    metric: str = "mse"
    batch_size: int = 8
    patch_size: int = 128
    lr: float = 1e-4
    aux_lr: float = 1e-3
    clip_grad: float = 1.0
    seed: int = 0
    threads: int = 0
    val_fraction: float = 0.05
    val_images: int = 24
    val_crop: int = 256
    progress: bool = True


def chord_slope(wide: dict, narrow: dict) -> float:
    """PSNR gained per extra bpp going from the narrower width's point to the wider one's.

    ``inf`` while the pair is not ordered: the narrower width spends at least as many bits, or
    reaches at least the wider one's PSNR (its lambda must come down either way).
    """
    d_bpp = wide["bpp"] - narrow["bpp"]
    if d_bpp <= 1e-9 or wide["psnr"] <= narrow["psnr"]:
        return math.inf
    return (wide["psnr"] - narrow["psnr"]) / d_bpp


def evaluate(model, val_images, widths, metric: str, crop: int) -> list[dict]:
    """Estimated bpp and PSNR of every width on the validation images (center crops)."""
    return [dict(width=w, **validate(model, val_images, metric, 0.0, crop=crop, width=w)) for w in widths]


class Scheduler:
    """The lambda search as a resumable state machine; :meth:`run` drives it to the end."""

    def __init__(self, cfg: ScheduleConfig):
        self.cfg = cfg
        self.run_dir = Path(cfg.out)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        if cfg.on_stop not in ("rollback", "keep"):
            raise SystemExit(f"error: --on-stop must be rollback or keep, not {cfg.on_stop!r}")
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        torch.manual_seed(cfg.seed)
        random.seed(cfg.seed)
        self.rng = np.random.default_rng(cfg.seed)

        files = list_images(cfg.data)
        if not files:
            raise SystemExit(f"error: no training images found in {', '.join(cfg.data)}")
        train_files, val_files = split_validation(files, cfg.val_fraction)
        if not val_files:
            raise SystemExit(f"error: --val-fraction {cfg.val_fraction} leaves no validation image among "
                             f"{len(files)}; raise it")
        if not train_files:
            raise SystemExit("error: no training image left after the validation split; lower --val-fraction")
        self.sampler = PatchSampler([load_rgb(f) for f in train_files], cfg.patch_size, self.rng)
        self.val_images = [load_rgb(f).to(self.device) for f in val_files[: cfg.val_images]]

        if cfg.init:
            try:
                self.model = load_for_training(cfg.init, cfg.architecture, cfg.model_config)
            except ValueError as e:
                raise SystemExit(f"error: --init {cfg.init}: {e}") from None
        else:
            self.model = build(cfg.architecture or "slimcae", cfg.model_config)
        if not self.model.widths:
            raise SystemExit(f"error: {self.model.architecture} is not slimmable; lambda scheduling needs widths")
        self.model.to(self.device).train()
        self.widths = tuple(self.model.widths)
        self.opt = torch.optim.Adam(self.model.main_parameters(), lr=cfg.lr)
        self.aux_opt = torch.optim.Adam(self.model.aux_parameters(), lr=cfg.aux_lr)

        lm = cfg.lmbdas if cfg.lmbdas else [cfg.lmbda] * len(self.widths)
        if len(lm) != len(self.widths):
            raise SystemExit(f"error: {len(lm)} lambdas for {len(self.widths)} widths {self.widths}")
        self.state = {"phase": "init", "pair": 0, "tries": 0, "lambdas": [float(v) for v in lm],
                      "eval": None, "slope_prev": None, "step": 0, "elapsed": 0.0, "trial": 0}
        self.t0 = time.monotonic()
        state_path = self.run_dir / "schedule_state.json"
        if state_path.exists():
            saved = json.loads(state_path.read_text())
            if saved["phase"] != "init" and (self.run_dir / "checkpoint.json").exists():
                meta = load_checkpoint(self.run_dir, self.model, self.opt, self.aux_opt)
                self.sampler.rng = self.rng = meta["rng"]
                self.state = saved
                self.t0 = time.monotonic() - float(saved["elapsed"])
                print(f"resuming {self.run_dir}: {saved['phase']}, pair {saved['pair']}, "
                      f"try {saved['tries']}", file=sys.stderr)
        (self.run_dir / "schedule_config.json").write_text(json.dumps(asdict(cfg), indent=2))

    # -- training ---------------------------------------------------------------------------
    def train_budget(self, lambdas: list[float], steps: int, minutes: float) -> dict:
        """Joint training of all widths: ``sum_i lambdas[i] * D_i + bpp_i`` per batch."""
        cfg, model = self.cfg, self.model
        model.train()
        start = time.monotonic()
        n, tot = 0, {"loss": 0.0}
        per_width = {w: {"bpp": 0.0, "psnr": 0.0} for w in self.widths}
        while (time.monotonic() - start < minutes * 60) if minutes > 0 else (n < steps):
            x = self.sampler.sample(cfg.batch_size).to(self.device)
            self.opt.zero_grad(set_to_none=True)
            loss = 0.0
            for w, lm in zip(self.widths, lambdas):
                l, s = rd_loss(model(x, width=w), x, lm, cfg.metric)
                loss = loss + l
                per_width[w]["bpp"] += s["bpp"]
                per_width[w]["psnr"] += s["psnr"]
            loss.backward()
            if cfg.clip_grad > 0:
                torch.nn.utils.clip_grad_norm_(model.main_parameters(), cfg.clip_grad)
            self.opt.step()
            self.aux_opt.zero_grad(set_to_none=True)
            model.aux_loss().backward()
            self.aux_opt.step()
            tot["loss"] += float(loss.detach())
            n += 1
            if cfg.progress and n % 50 == 0:
                print(f"  step {n}: loss {tot['loss'] / n:.4f}", file=sys.stderr)
        self.state["step"] += n
        d = max(n, 1)
        return {"steps": n, "loss": tot["loss"] / d,
                "train": {w: {k: v / d for k, v in s.items()} for w, s in per_width.items()}}

    def evaluate(self) -> list[dict]:
        return evaluate(self.model, self.val_images, self.widths, self.cfg.metric, self.cfg.val_crop)

    # -- bookkeeping ------------------------------------------------------------------------
    def _snapshot(self) -> dict:
        return {"model": copy.deepcopy(self.model.state_dict()), "opt": copy.deepcopy(self.opt.state_dict()),
                "aux": copy.deepcopy(self.aux_opt.state_dict())}

    def _restore(self, snap: dict) -> None:
        self.model.load_state_dict(snap["model"])
        self.opt.load_state_dict(snap["opt"])
        self.aux_opt.load_state_dict(snap["aux"])

    def _save(self) -> None:
        """Checkpoint the accepted state and the search state (both atomically)."""
        self.state["elapsed"] = time.monotonic() - self.t0
        save_checkpoint(self.run_dir, self.model, self.opt, self.aux_opt,
                        {"step": self.state["step"], "elapsed": self.state["elapsed"], "rng": self.rng,
                         "args": asdict(self.cfg)})
        tmp = self.run_dir / "schedule_state.json.tmp"
        tmp.write_text(json.dumps(self.state, indent=2))
        tmp.replace(self.run_dir / "schedule_state.json")

    def _log(self, row: dict) -> None:
        row = dict(row, trial=self.state["trial"], step=self.state["step"],
                   minutes=round((time.monotonic() - self.t0) / 60, 3))
        self.state["trial"] += 1
        with open(self.run_dir / "trials.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")
        path = self.run_dir / "trials.csv"
        header = ["trial", "phase", "pair", "try", "step", "minutes", "decision", "slope", "prev_slope",
                  "train_loss", "lambdas"]
        header += [f"{k}@{w}" for w in self.widths for k in ("bpp", "psnr")]
        new = not path.exists()
        with open(path, "a", newline="") as f:
            wr = csv.writer(f)
            if new:
                wr.writerow(header)
            ev = {e["width"]: e for e in row["eval"]}
            wr.writerow([row["trial"], row["phase"], row.get("pair", ""), row.get("try", ""), row["step"],
                         row["minutes"], row["decision"], _fmt(row.get("slope")), _fmt(row.get("prev_slope")),
                         f"{row['train_loss']:.5f}", " ".join(f"{v:.6g}" for v in row["lambdas"])]
                        + [f"{ev[w][k]:.5f}" for w in self.widths for k in ("bpp", "psnr")])
        ev_txt = "  ".join(f"{e['width']}: {e['bpp']:.3f} bpp {e['psnr']:.2f} dB" for e in row["eval"])
        print(f"[trial {row['trial']} {row['phase']} pair {row.get('pair', '-')} try {row.get('try', '-')}] "
              f"{row['decision']} slope {_fmt(row.get('slope'))} (prev {_fmt(row.get('prev_slope'))}) | {ev_txt}",
              file=sys.stderr)

    # -- the search -------------------------------------------------------------------------
    def run(self) -> dict:
        cfg, st = self.cfg, self.state
        n = len(self.widths)
        if st["phase"] == "init":
            steps = cfg.trial_steps if cfg.init_steps is None else cfg.init_steps
            minutes = cfg.trial_minutes if cfg.init_minutes is None else cfg.init_minutes
            tr = self.train_budget(st["lambdas"], steps, minutes)
            st["eval"] = self.evaluate()
            self._log({"phase": "init", "decision": "accept", "lambdas": st["lambdas"], "eval": st["eval"],
                       "train_loss": tr["loss"]})
            st.update(phase="pairs", pair=0, tries=0, slope_prev=None)
            self._save()
        while st["phase"] == "pairs":
            i = st["pair"]
            if i >= n - 1:
                st["phase"] = "done"
                break
            if st["tries"] >= cfg.max_tries:
                st.update(pair=i + 1, tries=0, slope_prev=None)
                self._save()
                continue
            # The accepted state's chord, recomputed rather than read back: a run resumed after
            # a change of chord_slope's rule compares like with like.
            prev = st["slope_prev"] = chord_slope(st["eval"][i], st["eval"][i + 1])
            trial_lm = [lm * (cfg.factor if j > i else 1.0) for j, lm in enumerate(st["lambdas"])]
            snap = self._snapshot() if cfg.on_stop == "rollback" else None
            tr = self.train_budget(trial_lm, cfg.trial_steps, cfg.trial_minutes)
            ev = self.evaluate()
            slope = chord_slope(ev[i], ev[i + 1])
            improving = slope <= prev
            if improving:
                decision = "accept"
            else:
                decision = "stop-rollback" if cfg.on_stop == "rollback" else "stop-keep"
            self._log({"phase": "pair", "pair": i, "try": st["tries"] + 1, "widths": [self.widths[i], self.widths[i + 1]],
                       "decision": decision, "slope": slope, "prev_slope": prev, "lambdas": trial_lm, "eval": ev,
                       "train_loss": tr["loss"]})
            if improving or cfg.on_stop == "keep":
                st["lambdas"], st["eval"], st["slope_prev"] = trial_lm, ev, slope
            else:
                self._restore(snap)
            if improving:
                st["tries"] += 1
            else:
                st.update(pair=i + 1, tries=0, slope_prev=None)
            self._save()
        return self.finish()

    def finish(self) -> dict:
        st = self.state
        st["phase"] = "done"
        self._save()
        result = {"architecture": self.model.architecture, "config": self.model.config,
                  "widths": list(self.widths), "lambdas": st["lambdas"],
                  "paper_lambdas": [lm * PAPER_SCALE for lm in st["lambdas"]],
                  "convention": "loss = lambda * MSE(0..255) + bpp; paper_lambdas use MSE on [0, 1]",
                  "validation": st["eval"], "trials": st["trial"], "steps": st["step"],
                  "minutes": st["elapsed"] / 60, "on_stop": self.cfg.on_stop}
        (self.run_dir / "lambdas.json").write_text(json.dumps(result, indent=2))
        model = copy.deepcopy(self.model).cpu().eval()
        model.update()
        save_model(model, self.run_dir / "final.safetensors", name=self.run_dir.name)
        print("final lambdas: " + "  ".join(f"{w}: {lm:.6g}" for w, lm in zip(self.widths, st["lambdas"])),
              file=sys.stderr)
        return result


def _fmt(v) -> str:
    if v is None:
        return ""
    return "inf" if v == math.inf else f"{v:.4f}"


def schedule(cfg: ScheduleConfig) -> dict:
    return Scheduler(cfg).run()


EPILOG = """\
examples:
  # the paper's recipe: naive equal lambdas (4000 on the [0,1] scale), 2000 steps per trial
  python -m slimfast.schedule --arch slimcae --out runs/slimcae-sched --trial-steps 2000

  # warm start from a jointly trained model, 20 minutes per trial, 5 tries per pair
  python -m slimfast.schedule --init runs/slimcae/final.safetensors --out runs/slimcae-sched \\
      --trial-minutes 20 --max-tries 5

  # then train longer with the lambdas it found:
  python -m slimfast.train --arch slimcae --init runs/slimcae-sched/final.safetensors \\
      --lambdas $(python -c "import json;print(*json.load(open('runs/slimcae-sched/lambdas.json'))['lambdas'])") ...

outputs in --out: trials.csv / trials.jsonl (one row per trial: lambdas, per-width bpp and
PSNR on the validation split, chord slope, decision), lambdas.json (final lambdas and
validation), final.safetensors, checkpoint.* + schedule_state.json (resume by re-running the
same command).

budget: a trial of T steps costs T * (number of widths) forward/backward passes; the search
runs at most 1 + (widths - 1) * max_tries trials. The reference code's 20 steps per trial
measure nothing but noise: give trials a real budget.
"""


def build_parser() -> argparse.ArgumentParser:
    d = ScheduleConfig()
    p = argparse.ArgumentParser(
        prog="python -m slimfast.schedule", description=__doc__.replace("``", ""),
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("model")
    g.add_argument("--arch", dest="architecture", default=None,
                   help="slimmable architecture: slimcae, slimcae-hyper, slim-fasinet-l, slim-fasinet-h")
    g.add_argument("--model-config", type=json.loads, default={},
                   help='JSON constructor arguments, e.g. \'{"gdn": "slim+"}\'')
    g.add_argument("--init", default=None, help="start from these weights (safetensors) instead of from scratch")
    g = p.add_argument_group("lambdas (loss = lambda * MSE on 0..255 + bpp; paper's [0,1] lambda / 65025)")
    g.add_argument("--lambda", dest="lmbda", type=float, default=d.lmbda,
                   help="naive start: this lambda for every width (default %(default).4g = paper 4000)")
    g.add_argument("--lambdas", dest="lmbdas", type=float, nargs="+", default=None,
                   help="explicit start, one per width, widest first (overrides --lambda)")
    g.add_argument("--factor", type=float, default=d.factor, help="lambda cut per try (default %(default)s)")
    g.add_argument("--max-tries", type=int, default=d.max_tries, help="cuts per adjacent pair (default %(default)s)")
    g.add_argument("--on-stop", choices=["rollback", "keep"], default=d.on_stop,
                   help="at the trial whose chord slope rises: restore the state before it (rollback, "
                        "default) or keep its weights and lambdas")
    g = p.add_argument_group("budget")
    g.add_argument("--trial-steps", type=int, default=d.trial_steps, help="steps per trial (default %(default)s)")
    g.add_argument("--trial-minutes", type=float, default=d.trial_minutes,
                   help="> 0: minutes per trial instead of --trial-steps")
    g.add_argument("--init-steps", type=int, default=None, help="steps before the first evaluation (default: a trial)")
    g.add_argument("--init-minutes", type=float, default=None, help="minutes before the first evaluation")
    g = p.add_argument_group("data and optimization")
    g.add_argument("--data", nargs="+", default=d.data, help="training image folders (validation split is held out)")
    g.add_argument("--out", required=True, help="run folder (resumes if it holds a schedule)")
    g.add_argument("--metric", choices=["mse", "ms-ssim"], default=d.metric,
                   help="training distortion (the chord slope always uses PSNR)")
    g.add_argument("--batch-size", type=int, default=d.batch_size)
    g.add_argument("--patch-size", type=int, default=d.patch_size)
    g.add_argument("--lr", type=float, default=d.lr, help="constant Adam learning rate (default %(default)s)")
    g.add_argument("--aux-lr", type=float, default=d.aux_lr)
    g.add_argument("--seed", type=int, default=d.seed)
    g.add_argument("--threads", type=int, default=d.threads, help="torch threads (0: torch's default)")
    g.add_argument("--val-fraction", type=float, default=d.val_fraction,
                   help="share of the training images held out for validation (CRC32 of the name)")
    g.add_argument("--val-images", type=int, default=d.val_images, help="at most this many validation images")
    g.add_argument("--val-crop", type=int, default=d.val_crop, help="center crop side for validation")
    g.add_argument("--no-progress", dest="progress", action="store_false")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result = schedule(ScheduleConfig(**vars(args)))
    print(json.dumps({"widths": result["widths"], "lambdas": result["lambdas"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
