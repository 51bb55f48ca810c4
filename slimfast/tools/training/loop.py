"""``slimfast train``: a run folder from scratch (or its checkpoint) to its final weights.

Rank 0 decides everything that depends on time or signals (stop, checkpoint, lr drop) and
broadcasts it, validates, and writes logs, checkpoints and weights; every rank steps.
"""
from __future__ import annotations

import hashlib
import json
from contextlib import nullcontext
import math
import os
import random
import signal
import sys
import threading
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from .checkpoint import capture_rng, export_weights, has_checkpoint, save_snapshot, state_hash
from .config import RESUMABLE_CHANGES, TrainConfig
from .data import PatchSampler, load_rgb, training_split
from .dist import Dist, wrap_ddp
from .log import Averages, LogFile, Progress, plot_log
from .objective import MSSSIM_MIN_SIDE, RDObjective, entropy_models_in_fp32
from .balance import RDBalance
from .ema import WeightAverage
from .qat import fake_quantize_hs, with_calibrated_hs
from .trainer import Trainer, build_model, sort_channels
from .validate import validate_widths


class StopSignals:
    """SIGINT/SIGTERM ask for a checkpoint and a clean exit after the current step."""

    def __init__(self):
        self.requested = False
        self._old = {}

    def _handler(self, signum, frame):
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True
        print(f"\nsignal {signum}: checkpointing after this step (Ctrl-C again to abort)", file=sys.stderr)

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                self._old[s] = signal.signal(s, self._handler)
        return self

    def __exit__(self, *exc):
        for s, h in self._old.items():
            signal.signal(s, h)
        return False


def train(cfg: TrainConfig) -> Path:
    if cfg.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    dd = Dist(cfg.device)
    try:
        return TrainingRun(cfg, dd).run()
    finally:
        dd.close()


def _configure_torch(cfg: TrainConfig, device: torch.device) -> None:
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if cfg.metric == "ms-ssim" and cfg.patch_size < MSSSIM_MIN_SIDE:
        raise SystemExit(f"error: --metric ms-ssim needs --patch-size >= {MSSSIM_MIN_SIDE} (5 scales of an 11-tap window)")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = not cfg.deterministic
    if cfg.deterministic:
        torch.backends.cudnn.deterministic = True
        torch.use_deterministic_algorithms(True, warn_only=True)


class TrainingRun:
    """One invocation of ``slimfast train`` on one process.

    The order of everything that draws random numbers (initial weights, channel sorting, the
    per-rank seeds, the checkpoint's restored states) is what makes resuming exact: keep it.
    """

    def __init__(self, cfg: TrainConfig, dd: Dist):
        self.cfg, self.dd, self.device = cfg, dd, dd.device
        self.run_dir = Path(cfg.out)
        if dd.main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        dd.barrier()
        _configure_torch(cfg, self.device)
        train_files, val_files = training_split(cfg.data, cfg.val_fraction)
        self.model = self._model(train_files)
        objective = RDObjective(self.model, cfg.lmbda, cfg.lmbdas, cfg.metric, cfg.bf16, cfg.width_loss)
        if cfg.rd_balance != "none":
            if dd.world > 1:  # each rank would weigh its own batches: the averaged gradient would mix balances
                raise SystemExit(f"error: --rd-balance {cfg.rd_balance} runs in one process (not under torchrun)")
            if len(objective.terms) > 1:
                raise SystemExit(f"error: --rd-balance {cfg.rd_balance} trains one width; this run trains "
                                 f"{len(objective.terms)}")
            objective.balance = RDBalance(cfg.rd_balance)
        self.trainer = Trainer(self.model, objective, cfg.lr, cfg.aux_lr, cfg.batch_size, cfg.clip_grad,
                               cfg.channels_last)
        if cfg.ema:
            self.trainer.ema = WeightAverage(self.model.main_parameters(), cfg.ema)
        self.averages = Averages()
        rng, self.elapsed = self._seed_and_resume()
        self.trainer.sampler = PatchSampler([load_rgb(f) for f in train_files], cfg.patch_size, rng,
                                            device=self.device)
        self.val_images = [load_rgb(f).to(self.device) for f in val_files[:cfg.val_images]] if dd.main else []
        if dd.world > 1:
            self.trainer.forward, self.trainer.dist = wrap_ddp(objective, self.model, self.device), dd
        if cfg.debug_state_hash:
            self.trainer.data_hash = hashlib.sha256()
        self.log = None
        if dd.main:
            (self.run_dir / "config.json").write_text(json.dumps(dict(asdict(cfg), world_size=dd.world), indent=2))
            self.log = LogFile(self.run_dir / "log.csv", self.trainer.steps)

    def _model(self, train_files: list[Path]):
        cfg = self.cfg
        torch.manual_seed(cfg.seed)  # the same initial weights on every rank (DDP also broadcasts them)
        model = build_model(cfg.architecture, cfg.model_config, cfg.init, default="fasinet-l")
        if cfg.sort_channels and not has_checkpoint(self.run_dir):
            sort_channels(model, train_files, cfg.patch_size)
        if cfg.lmbdas and not model.widths:
            raise SystemExit(f"error: --lambdas needs a slimmable model; {model.architecture} has one width "
                             "(use --lambda)")
        if cfg.qat_hs8 and not (model.config or {}).get("hs_steps"):
            model = with_calibrated_hs(model, cfg.init, train_files)
        model.to(self.device).train()
        if cfg.qat_hs8:
            fake_quantize_hs(model)
        if cfg.channels_last:
            model = model.to(memory_format=torch.channels_last)
        if cfg.bf16:
            entropy_models_in_fp32(model)
        return model

    def _seed_and_resume(self) -> tuple[np.random.Generator, float]:
        """Each rank draws its own patches and noise (seed + rank), unless the checkpoint holds its states."""
        cfg, rank = self.cfg, self.dd.rank
        torch.manual_seed(cfg.seed + rank)
        random.seed(cfg.seed + rank)
        rng = np.random.default_rng(cfg.seed + rank)
        if not has_checkpoint(self.run_dir):
            return rng, 0.0
        meta = self.trainer.load(self.run_dir, rank=rank)
        step, elapsed = int(meta["step"]), float(meta["elapsed"])
        self.trainer.steps = step
        self.averages = Averages(meta.get("log_acc"), meta.get("run_avg"))
        if meta["rng"] is None:
            print(f"warning: rank {rank}: the checkpoint has no RNG state for this rank "
                  f"(written by {meta.get('world_size', 1)} processes): reseeding, resume is not exact",
                  file=sys.stderr)
            ss = np.random.SeedSequence([cfg.seed, rank, step])
            rng = np.random.default_rng(ss)
            torch.manual_seed(int(ss.generate_state(1)[0]))
        else:
            rng = meta["rng"]
        if self.dd.main:
            print(f"resuming {self.run_dir} at step {step} ({elapsed / 60:.1f} min)", file=sys.stderr)
            old = meta.get("args", {})
            changed = sorted(k for k, v in asdict(cfg).items()
                             if k in old and old[k] != v and k not in RESUMABLE_CHANGES)
            if changed:
                print(f"warning: resuming with changed settings: {', '.join(changed)}", file=sys.stderr)
        return rng, elapsed

    # -- the loop -----------------------------------------------------------------------------
    def minutes(self) -> float:
        return (time.monotonic() - self.t0) / 60

    def _done(self) -> bool:
        if self.cfg.minutes > 0:
            return (time.monotonic() - self.t0) >= self.cfg.minutes * 60
        return self.trainer.steps >= self.cfg.steps

    def _budget_fraction(self) -> float:
        if self.cfg.minutes > 0:
            return (time.monotonic() - self.t0) / (self.cfg.minutes * 60)
        return self.trainer.steps / max(self.cfg.steps, 1)

    def run(self) -> Path:
        cfg, dd = self.cfg, self.dd
        self.progress = Progress(cfg.progress and dd.main, None if cfg.minutes > 0 else cfg.steps,
                                 self.trainer.steps)
        self.t0 = time.monotonic() - self.elapsed
        self.start_step = self.trainer.steps
        self.lr = cfg.lr
        with StopSignals() as signals:
            finished = self._loop(signals)
        self.progress.close()
        if finished and dd.main and self.trainer.steps > self.start_step:
            self._close_log()
        self._checkpoint()
        if cfg.debug_state_hash:
            self._write_state_hash(Path(cfg.debug_state_hash))
        if dd.main:
            self._finish(finished)
        dd.barrier()
        return self.run_dir

    def _loop(self, signals: StopSignals) -> bool:
        """Step until the budget, ``--stop-at`` or a signal; returns whether the budget is spent."""
        cfg, dd, tr = self.cfg, self.dd, self.trainer
        last_ckpt = time.monotonic()
        next_snapshot = self._next_snapshot(self.elapsed / 60)
        finished = self._done()
        stop, drop = dd.broadcast_flags([int(finished or (0 < cfg.stop_at <= tr.steps)),
                                         int(self._budget_fraction() >= cfg.lr_drop_at)])
        while not stop:
            self.lr = cfg.lr * (0.1 if drop else 1.0)
            self._record(tr.step(self.lr))
            finished = self._done()
            want_stop = finished or signals.requested or (0 < cfg.stop_at <= tr.steps)
            want_ckpt = (time.monotonic() - last_ckpt > cfg.checkpoint_minutes * 60
                         or (cfg.checkpoint_every > 0 and tr.steps % cfg.checkpoint_every == 0))
            stop, ckpt, finished, drop = dd.broadcast_flags([int(want_stop), int(want_ckpt), int(finished),
                                                             int(self._budget_fraction() >= cfg.lr_drop_at)])
            if ckpt and not stop:
                self._checkpoint()
                last_ckpt = time.monotonic()
            if dd.main and self.minutes() >= next_snapshot:
                with self._averaged():
                    save_snapshot(self.model, self.run_dir, tr.steps, self.minutes())
                next_snapshot = self._next_snapshot(self.minutes())
        return bool(finished)

    def _next_snapshot(self, minutes: float) -> float:
        every = self.cfg.snapshot_minutes
        return (math.floor(minutes / every) + 1) * every if every > 0 else math.inf

    def _record(self, vals: dict) -> None:
        """A step's figures into the averages, the log interval, the progress bar; validation."""
        cfg, main, step = self.cfg, self.dd.main, self.trainer.steps
        self.averages.add(vals)
        self.progress.update(step, self.averages.run_avg)
        at_log = bool(cfg.log_every) and step % cfg.log_every == 0
        if main and at_log:
            self.log.train_row(step, self.minutes(), self.averages.interval_means(), self.lr)
        if at_log:
            self.averages.reset_interval()
        if main and cfg.val_every and step % cfg.val_every == 0 and self.val_images:
            self._validate()
        elif main:
            self.progress.every_500(step, self.minutes(), self.averages.run_avg)

    def _averaged(self):
        """The weights validated and exported: the average with --ema, else the model's own."""
        return self.trainer.ema.swapped() if self.trainer.ema is not None else nullcontext()

    def _validate(self) -> None:
        with self._averaged():
            rows = validate_widths(self.model, self.val_images, self.cfg.metric, self.cfg.val_crop)
        for v in rows:
            self.progress.write(self.log.val_row(self.trainer.steps, self.minutes(), v, self.lr))
        self.log.flush()

    def _close_log(self) -> None:
        """The log ends at the last step: the partial interval's means and a last validation."""
        if self.averages.pending:
            self.log.train_row(self.trainer.steps, self.minutes(), self.averages.interval_means(), self.lr)
            self.averages.reset_interval()
        if self.val_images and self.cfg.val_every and self.trainer.steps % self.cfg.val_every:
            self._validate()
        self.log.flush()

    def _checkpoint(self) -> None:
        states = self.dd.all_gather(capture_rng(self.trainer.rng, self.device))  # a collective: every rank calls it
        if self.dd.main:
            self.trainer.save(self.run_dir, {"step": self.trainer.steps, "elapsed": time.monotonic() - self.t0,
                                             "args": asdict(self.cfg), **self.averages.state()}, rng_states=states)

    def _write_state_hash(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        tr = self.trainer
        (folder / f"rank{self.dd.rank}.json").write_text(json.dumps(
            {"rank": self.dd.rank, "world_size": self.dd.world, "step": tr.steps,
             "state": state_hash(self.model, tr.opt, tr.aux_opt), "data": tr.data_hash.hexdigest()}))

    def _finish(self, finished: bool) -> None:
        cfg, run, step = self.cfg, self.run_dir, self.trainer.steps
        self.log.close()
        speed = self.trainer.timing.summary()
        if finished:
            with self._averaged():
                export_weights(self.model, run / "final.safetensors", name=run.name)
            (run / "summary.json").write_text(json.dumps({
                "steps": step, "minutes": self.minutes(), "device": str(self.device), "world_size": self.dd.world,
                "architecture": self.model.architecture, "lmbda": cfg.lmbda, "lmbdas": cfg.lmbdas,
                "metric": cfg.metric, "batch_size": cfg.batch_size, "patch_size": cfg.patch_size, "init": cfg.init,
                "threads": torch.get_num_threads(), "bf16": cfg.bf16, "channels_last": cfg.channels_last,
                **speed}, indent=2))
            print(f"done: {run / 'final.safetensors'} after {step} steps ({self.minutes():.1f} min)", file=sys.stderr)
        else:
            print(f"stopped at step {step}: checkpoint in {run}; run the same command to resume", file=sys.stderr)
        if speed["train_steps_per_s"]:
            print(f"speed: {speed['train_steps_per_s']:.3f} steps/s over {speed['measured_steps']} steps after "
                  f"warm-up, data sampling {100 * speed['data_fraction']:.1f}% of step time", file=sys.stderr)
        if cfg.plot:
            plot_log(run)
