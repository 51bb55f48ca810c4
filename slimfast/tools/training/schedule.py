"""The lambda schedule's search (SlimCAE's greedy lambda search; ``python -m slimfast.tools.schedule``).

Its trials train with :class:`~slimfast.tools.training.trainer.Trainer`'s step, the one of
``slimfast train``; see :mod:`slimfast.tools.schedule` for the search itself.
"""
from __future__ import annotations

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

from .checkpoint import export_weights
from .data import DEFAULT_DATA, PatchSampler, load_rgb, training_split
from .objective import RDObjective
from .trainer import Trainer, build_model
from .validate import validate_widths

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


def _fmt(v) -> str:
    if v is None:
        return ""
    return "inf" if v == math.inf else f"{v:.4f}"


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
        train_files, val_files = training_split(cfg.data, cfg.val_fraction, need_val=True)
        # Patches are cut on the CPU and moved: the trials' trajectories predate GPU sampling.
        self.sampler = PatchSampler([load_rgb(f) for f in train_files], cfg.patch_size, self.rng)
        self.val_images = [load_rgb(f).to(self.device) for f in val_files[: cfg.val_images]]
        self.model = build_model(cfg.architecture, cfg.model_config, cfg.init, default="slimcae")
        if not self.model.widths:
            raise SystemExit(f"error: {self.model.architecture} is not slimmable; lambda scheduling needs widths")
        self.model.to(self.device).train()
        self.widths = tuple(self.model.widths)
        lm = [float(v) for v in (cfg.lmbdas if cfg.lmbdas else [cfg.lmbda] * len(self.widths))]
        objective = RDObjective(self.model, 0.0, lm, cfg.metric, bf16=False)
        self.trainer = Trainer(self.model, objective, cfg.lr, cfg.aux_lr, cfg.batch_size, cfg.clip_grad)
        self.trainer.sampler = self.sampler
        self.state = {"phase": "init", "pair": 0, "tries": 0, "lambdas": lm,
                      "eval": None, "slope_prev": None, "step": 0, "elapsed": 0.0, "trial": 0}
        self.t0 = time.monotonic()
        self._resume()
        (self.run_dir / "schedule_config.json").write_text(json.dumps(asdict(cfg), indent=2))

    @property
    def opt(self):
        return self.trainer.opt

    @property
    def aux_opt(self):
        return self.trainer.aux_opt

    def _resume(self) -> None:
        state_path = self.run_dir / "schedule_state.json"
        if not state_path.exists():
            return
        saved = json.loads(state_path.read_text())
        if saved["phase"] != "init" and (self.run_dir / "checkpoint.json").exists():
            meta = self.trainer.load(self.run_dir)
            self.sampler.rng = self.rng = meta["rng"]
            self.state = saved
            self.t0 = time.monotonic() - float(saved["elapsed"])
            print(f"resuming {self.run_dir}: {saved['phase']}, pair {saved['pair']}, "
                  f"try {saved['tries']}", file=sys.stderr)

    # -- training ---------------------------------------------------------------------------
    def train_budget(self, lambdas: list[float], steps: int, minutes: float) -> dict:
        """Joint training of all widths: ``sum_i lambdas[i] * D_i + bpp_i`` per batch."""
        self.trainer.objective.set_lambdas(lambdas)
        self.model.train()
        start = time.monotonic()
        n, loss = 0, 0.0
        per_width = {w: {"bpp": 0.0, "psnr": 0.0} for w in self.widths}
        while (time.monotonic() - start < minutes * 60) if minutes > 0 else (n < steps):
            vals = self.trainer.step()
            loss += vals["loss"]
            for w, s in per_width.items():
                s["bpp"] += vals[f"bpp@{w}"]
                s["psnr"] += vals[f"psnr@{w}"]
            n += 1
            if self.cfg.progress and n % 50 == 0:
                print(f"  step {n}: loss {loss / n:.4f}", file=sys.stderr)
        self.state["step"] += n
        d = max(n, 1)
        return {"steps": n, "loss": loss / d,
                "train": {w: {k: v / d for k, v in s.items()} for w, s in per_width.items()}}

    def evaluate(self) -> list[dict]:
        return validate_widths(self.model, self.val_images, self.cfg.metric, self.cfg.val_crop, self.widths)

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
        self.trainer.save(self.run_dir, {"step": self.state["step"], "elapsed": self.state["elapsed"],
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
        self._log_csv(row)
        ev_txt = "  ".join(f"{e['width']}: {e['bpp']:.3f} bpp {e['psnr']:.2f} dB" for e in row["eval"])
        print(f"[trial {row['trial']} {row['phase']} pair {row.get('pair', '-')} try {row.get('try', '-')}] "
              f"{row['decision']} slope {_fmt(row.get('slope'))} (prev {_fmt(row.get('prev_slope'))}) | {ev_txt}",
              file=sys.stderr)

    def _log_csv(self, row: dict) -> None:
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

    # -- the search -------------------------------------------------------------------------
    def run(self) -> dict:
        st = self.state
        if st["phase"] == "init":
            self._initial_trial()
        while st["phase"] == "pairs":
            i = st["pair"]
            if i >= len(self.widths) - 1:
                st["phase"] = "done"
            elif st["tries"] >= self.cfg.max_tries:
                st.update(pair=i + 1, tries=0, slope_prev=None)
                self._save()
            else:
                self._pair_trial(i)
        return self.finish()

    def _initial_trial(self) -> None:
        cfg, st = self.cfg, self.state
        steps = cfg.trial_steps if cfg.init_steps is None else cfg.init_steps
        minutes = cfg.trial_minutes if cfg.init_minutes is None else cfg.init_minutes
        tr = self.train_budget(st["lambdas"], steps, minutes)
        st["eval"] = self.evaluate()
        self._log({"phase": "init", "decision": "accept", "lambdas": st["lambdas"], "eval": st["eval"],
                   "train_loss": tr["loss"]})
        st.update(phase="pairs", pair=0, tries=0, slope_prev=None)
        self._save()

    def _pair_trial(self, i: int) -> None:
        """One cut of the lambdas narrower than pair ``i``'s wide width: train, evaluate, decide."""
        cfg, st = self.cfg, self.state
        # The accepted state's chord, recomputed rather than read back: a run resumed after
        # a change of chord_slope's rule compares like with like.
        prev = st["slope_prev"] = chord_slope(st["eval"][i], st["eval"][i + 1])
        trial_lm = [lm * (cfg.factor if j > i else 1.0) for j, lm in enumerate(st["lambdas"])]
        snap = self._snapshot() if cfg.on_stop == "rollback" else None
        tr = self.train_budget(trial_lm, cfg.trial_steps, cfg.trial_minutes)
        ev = self.evaluate()
        slope = chord_slope(ev[i], ev[i + 1])
        improving = slope <= prev
        decision = "accept" if improving else ("stop-rollback" if cfg.on_stop == "rollback" else "stop-keep")
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
        export_weights(self.model, self.run_dir / "final.safetensors", name=self.run_dir.name)
        print("final lambdas: " + "  ".join(f"{w}: {lm:.6g}" for w, lm in zip(self.widths, st["lambdas"])),
              file=sys.stderr)
        return result


def schedule(cfg: ScheduleConfig) -> dict:
    return Scheduler(cfg).run()
