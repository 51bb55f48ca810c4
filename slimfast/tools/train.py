"""``slimfast train`` / ``python -m slimfast.tools.train``: the command line of :mod:`slimfast.tools.training`.

Runs wherever torch runs (CPU here, CUDA on a lent GPU), one process or several under
``torchrun`` (DistributedDataParallel: gloo on CPU, NCCL on CUDA). Checkpoints are
pickle-free and resuming reproduces the uninterrupted run's loss trajectory exactly (same
device, threads and world size; on CUDA add ``--deterministic``): see
:mod:`slimfast.tools.training.checkpoint`.

The names below are re-exported for the scripts, benchmarks and tests that import them from here.
"""
from __future__ import annotations

import argparse
import json
import sys

from ..metrics import ms_ssim_tensor as ms_ssim
from .training.checkpoint import (CHECKPOINT_FORMAT, capture_rng, has_checkpoint, load_checkpoint, restore_rng,
                                  save_checkpoint, state_hash)
from .training.config import TrainConfig
from .training.data import DEFAULT_DATA, IMAGE_EXTS, PatchSampler, list_images, load_rgb, split_validation
from .training.dist import Dist
from .training.log import LOG_FIELDS
from .training.loop import train
from .training.objective import MSSSIM_MIN_SIDE, RDObjective, distortion, rate_bpp, rd_loss
from .training.trainer import Trainer
from .training.validate import validate

__all__ = ["CHECKPOINT_FORMAT", "DEFAULT_DATA", "IMAGE_EXTS", "LOG_FIELDS", "MSSSIM_MIN_SIDE", "Dist", "PatchSampler",
           "RDObjective", "TrainConfig", "Trainer", "build_parser", "capture_rng", "distortion", "has_checkpoint",
           "list_images", "load_checkpoint", "load_rgb", "main", "ms_ssim", "rate_bpp", "rd_loss", "restore_rng",
           "save_checkpoint", "split_validation", "state_hash", "train", "validate"]


def build_parser() -> argparse.ArgumentParser:
    d = TrainConfig()
    p = argparse.ArgumentParser(
        prog="slimfast train", description="Train a slimfast model (see docs/training.md).",
        epilog="Re-running the same command resumes from the run folder's checkpoint. Several processes: "
               "torchrun --nproc_per_node N -m slimfast.tools.train ...")
    _model_flags(p.add_argument_group("model"))
    _objective_flags(p.add_argument_group("objective"), d)
    g = p.add_argument_group("budget")
    g.add_argument("--steps", type=int, default=d.steps, help="total steps (sets the lr schedule)")
    g.add_argument("--minutes", type=float, default=d.minutes, help="> 0: a wall-time budget instead of --steps")
    g.add_argument("--stop-at", type=int, default=d.stop_at,
                   help="checkpoint and exit at this step; re-run without it to continue")
    _data_flags(p.add_argument_group("data and optimization"), d)
    _speed_flags(p.add_argument_group("speed and device"), d)
    _log_flags(p.add_argument_group("logging and checkpoints"), d)
    return p


def _model_flags(g) -> None:
    g.add_argument("--arch", dest="architecture", default=None,
                   help="fasinet-l (default), fasinet-h, slimcae, slimcae-hyper, slim-fasinet-l, slim-fasinet-h; "
                        "with --init, the architecture of those weights unless given (slim-fasinet-l can "
                        "warm-start from fasinet-l weights)")
    g.add_argument("--model-config", type=json.loads, default={}, help="JSON constructor arguments")
    g.add_argument("--init", default=None, help="warm start from these weights (safetensors)")


def _objective_flags(g, d: TrainConfig) -> None:
    g.add_argument("--lambda", dest="lmbda", type=float, default=d.lmbda,
                   help="mse: loss = lambda * 255^2 * MSE + bpp; ms-ssim: lambda * (1 - MS-SSIM) + bpp")
    g.add_argument("--lambdas", dest="lmbdas", type=float, nargs="+", default=None,
                   help="slimmable models: one lambda per width, widest first (joint training)")
    g.add_argument("--width-loss", choices=["sum", "log"], default=d.width_loss,
                   help="slimmable joint loss over the widths' L_i = lambda_i*D_i + R_i: sum (SlimCAE's, "
                        "the widest width dominates) or log (sum of log L_i: each width's relative "
                        "improvement counts the same)")
    g.add_argument("--metric", choices=["mse", "ms-ssim"], default=d.metric)
    g.add_argument("--rd-balance", choices=["none", "famo", "famo-lambda"], default=d.rd_balance,
                   help="weigh the gradients of lambda*D and R adaptively (one more forward pass per step; one "
                        "width only): famo, weighted log terms (Zhang et al. 2025; moves the run along its curve), "
                        "or famo-lambda, weighted terms around lambda. Default: %(default)s")


def _data_flags(g, d: TrainConfig) -> None:
    g.add_argument("--data", nargs="+", default=[str(DEFAULT_DATA)])
    g.add_argument("--out", required=True, help="run folder (resumes from its checkpoint)")
    g.add_argument("--batch-size", type=int, default=d.batch_size, help="per process")
    g.add_argument("--patch-size", type=int, default=d.patch_size)
    g.add_argument("--lr", type=float, default=d.lr)
    g.add_argument("--aux-lr", type=float, default=d.aux_lr)
    g.add_argument("--lr-drop-at", type=float, default=d.lr_drop_at,
                   help="fraction of the budget after which the lr drops 10x (default %(default)s)")
    g.add_argument("--clip-grad", type=float, default=d.clip_grad)
    g.add_argument("--seed", type=int, default=d.seed)
    g.add_argument("--val-fraction", type=float, default=d.val_fraction)
    g.add_argument("--val-images", type=int, default=d.val_images)
    g.add_argument("--ema", type=float, default=d.ema, metavar="DECAY",
                   help="validate and export an exponential moving average of the weights, e.g. 0.999 "
                        "(the checkpoint keeps it; 0, the default: the weights themselves)")
    g.add_argument("--val-crop", type=int, default=d.val_crop,
                   help="side of the centre crop validated (default %(default)s); 0: whole images, as codecs are measured")


def _speed_flags(g, d: TrainConfig) -> None:
    g.add_argument("--device", choices=["auto", "cpu", "cuda"], default=d.device)
    g.add_argument("--threads", type=int, default=d.threads, help="torch threads (0: torch's default)")
    g.add_argument("--bf16", action="store_true", help="bfloat16 autocast (entropy models stay float32)")
    g.add_argument("--channels-last", action="store_true")
    g.add_argument("--sort-channels", action="store_true",
                   help="slim-fasinet-h from fasinet-h weights: reorder the latent and hyperprior channels "
                        "so each width's leading block holds the most bits (measured on training crops)")
    g.add_argument("--deterministic", action="store_true", help="deterministic CUDA kernels (bit-exact resume)")
    g.add_argument("--qat-hs8", action="store_true",
                   help="FasiNet-H with hs_steps: train through the 8-bit hyper-synthesis' rounding (weights and "
                        "activations as the coding path rounds them; calibrate again after: slimfast.tools.hyper8)")


def _log_flags(g, d: TrainConfig) -> None:
    g.add_argument("--log-every", type=int, default=d.log_every, help="CSV train row every N steps (means)")
    g.add_argument("--val-every", type=int, default=d.val_every, help="validate every N steps (0: never)")
    g.add_argument("--checkpoint-minutes", type=float, default=d.checkpoint_minutes)
    g.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every, help="also every N steps")
    g.add_argument("--snapshot-minutes", type=float, default=d.snapshot_minutes,
                   help="> 0: keep the weights every N minutes in OUT/snapshots/ (for benchmarks/learning_curve.py)")
    g.add_argument("--no-progress", dest="progress", action="store_false")
    g.add_argument("--no-plot", dest="plot", action="store_false")
    g.add_argument("--debug-state-hash", default=None, help=argparse.SUPPRESS)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    train(TrainConfig(**vars(args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
