"""The one training step (:class:`Trainer`), and the model a run starts from."""
from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

from ...models import build
from ...models.weights import load_for_training
from .checkpoint import load_checkpoint, model_device, save_checkpoint
from .data import centre_crops, load_rgb
from .objective import RDObjective


def build_model(architecture: str | None, model_config: dict, init: str | None, default: str):
    """``init``'s weights (warm start) or a fresh ``architecture`` (``default`` where None)."""
    if init:
        try:
            return load_for_training(init, architecture, model_config)
        except ValueError as e:
            raise SystemExit(f"error: --init {init}: {e}") from None
    return build(architecture or default, model_config)


def sort_channels(model, files: list[Path], side: int, count: int = 16) -> None:
    """``model.sort_channels`` on centre crops of the first ``count`` training images (no RNG)."""
    if not hasattr(model, "sort_channels"):
        raise SystemExit(f"error: --sort-channels: {model.architecture} has no channel order to sort")
    images = [load_rgb(f) for f in files[:count]]
    side = min([max(side, 256)] + [min(im.shape[1:]) for im in images]) // 64 * 64  # one batch: one size
    if not images or side < 64:
        raise SystemExit("error: --sort-channels: needs training images of at least 64x64")
    crops = centre_crops(images, side)
    try:
        share = model.sort_channels(torch.stack(crops).float() / 255)
    except ValueError as e:
        raise SystemExit(f"error: --sort-channels: {e}") from None
    print(f"sorted channels on {len(crops)} training crops: the narrowest width holds "
          f"{100 * share['narrow_share_before']:.0f}% -> {100 * share['narrow_share_after']:.0f}% of y's bits",
          file=sys.stderr)


class StepTiming:
    """Seconds per step after a warm-up, and the share of them spent sampling patches."""

    def __init__(self, warmup: int = 10):
        self.warmup, self.steps, self.train_s, self.data_s = warmup, 0, 0.0, 0.0

    def add(self, t_start: float, t_data: float, t_end: float) -> None:
        self.steps += 1
        if self.steps > self.warmup:
            self.train_s += t_end - t_start
            self.data_s += t_data - t_start

    def summary(self) -> dict:
        measured = max(self.steps - self.warmup, 0)
        timed = self.train_s > 0
        return {"train_steps_per_s": measured / self.train_s if timed else None,
                "data_fraction": self.data_s / self.train_s if timed else None, "measured_steps": measured}


class Trainer:
    """A model, its objective and its two optimizers, and :meth:`step`, the one training step.

    ``slimfast train``'s loop and the lambda schedule's trials both call :meth:`step`; the
    caller sets :attr:`sampler` (whose numpy generator, :attr:`rng`, is the sampling state a
    checkpoint keeps) and, under ``torchrun``, :attr:`forward` and :attr:`dist`.
    """

    def __init__(self, model, objective: RDObjective, lr: float, aux_lr: float, batch_size: int,
                 clip_grad: float = 1.0, channels_last: bool = False):
        self.model = model
        self.objective = objective
        self.forward = objective  # its DistributedDataParallel wrapper under torchrun
        self.dist = None          # a Dist: the quantiles' gradients are averaged by hand
        self.opt = torch.optim.Adam(model.main_parameters(), lr=lr)
        self.aux_opt = torch.optim.Adam(model.aux_parameters(), lr=aux_lr)
        self.aux_params = list(model.aux_parameters())
        self.batch_size, self.clip_grad, self.channels_last = batch_size, clip_grad, channels_last
        self.device = model_device(model)
        self.sampler = None
        self.steps = 0
        self.timing = StepTiming()
        self.data_hash = None  # a hashlib object: tests check that ranks draw different patches
        self.ema = None        # a WeightAverage (--ema), updated after every step

    @property
    def rng(self):
        return self.sampler.rng

    def step(self, lr: float | None = None) -> dict:
        """Sample a batch; one step of the main optimizer (gradients clipped), one of the aux one.

        Returns the loss and the objective's figures (``bpp``, ``psnr``, ``dist``, per width
        ``bpp@W``...). ``lr``: the main optimizer's learning rate from this step on.
        """
        if lr is not None:
            for g in self.opt.param_groups:
                g["lr"] = lr
        t_start = time.perf_counter()
        x = self._batch()
        t_data = time.perf_counter()
        self.opt.zero_grad(set_to_none=True)
        noise = self._rng_states() if self.objective.balance is not None else None
        loss, stats = self.forward(x)
        loss.backward()
        # logged: lambda*D + R, comparable across runs (a balanced loss is not)
        loss_v = float(self.objective.last_terms.sum()) if noise is not None else float(loss.detach())
        if self.clip_grad > 0:
            torch.nn.utils.clip_grad_norm_(self.model.main_parameters(), self.clip_grad)
        self.opt.step()
        if noise is not None:
            stats.update(self._rebalance(x, noise))
        if self.ema is not None:
            self.ema.update()
        self.aux_opt.zero_grad(set_to_none=True)
        self.model.aux_loss().backward()
        if self.dist is not None:
            self.dist.all_reduce_mean_([p.grad for p in self.aux_params if p.grad is not None])
        self.aux_opt.step()
        self.steps += 1
        self.timing.add(t_start, t_data, time.perf_counter())
        return {"loss": loss_v, **stats}

    def _rng_states(self) -> list:
        """The torch generators that draw the quantization noise: the CPU's, and the GPU's on one."""
        states = [torch.get_rng_state()]
        if self.device.type == "cuda":
            states.append(torch.cuda.get_rng_state(self.device))
        return states

    def _set_rng_states(self, states: list) -> None:
        torch.set_rng_state(states[0])
        if len(states) > 1:
            torch.cuda.set_rng_state(states[1], self.device)

    def _rebalance(self, x: torch.Tensor, noise: list) -> dict:
        """--rd-balance: the terms again on the same batch and noise, after the step."""
        before = self.objective.last_terms
        after_state = self._rng_states()
        self._set_rng_states(noise)
        with torch.no_grad():
            self.forward(x)
        self._set_rng_states(after_state)  # the run's random stream goes on as without the re-evaluation
        self.objective.balance.update(before, self.objective.last_terms)
        return self.objective.balance.stats(self.objective.last_terms)

    def _batch(self) -> torch.Tensor:
        x = self.sampler.sample(self.batch_size).to(self.device)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if self.data_hash is not None:
            self.data_hash.update(x.detach().cpu().numpy().tobytes())
        return x

    def save(self, run: Path, state: dict, rng_states: list[dict] | None = None) -> None:
        extra = dict(self.ema.tensors() if self.ema is not None else {})
        if self.objective.balance is not None:
            extra.update(self.objective.balance.tensors())
        save_checkpoint(run, self.model, self.opt, self.aux_opt, dict(state, rng=self.rng), rng_states=rng_states,
                        extra=extra or None)

    def load(self, run: Path, rank: int = 0) -> dict:
        """Model, optimizers and RNG states from ``run``'s checkpoint; ``meta["rng"]`` as there."""
        meta = load_checkpoint(run, self.model, self.opt, self.aux_opt, rank=rank, device=self.device)
        if self.ema is not None and not self.ema.load(meta["extra"]):
            self.ema = type(self.ema)(self.ema.params, self.ema.decay)  # none saved: start from these weights
        if self.objective.balance is not None:
            self.objective.balance.load(meta["extra"])
        return meta
