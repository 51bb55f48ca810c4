"""Lambda scheduling for slimmable models (SlimCAE, Yang et al., CVPR 2021).

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

Lambdas follow :func:`slimfast.tools.train.rd_loss`: ``loss = lambda * MSE + bpp`` with MSE on the
0..255 scale, i.e. the paper's [0, 1]-scale lambda divided by 255^2 (its 4000 is 0.0615).
"""
from __future__ import annotations

import argparse
import json
import sys

# The search lives in slimfast.tools.training.schedule (Scheduler), its trials train with slimfast
# train's step (slimfast.tools.training.trainer.Trainer); this module is its command line.
from .training.schedule import PAPER_SCALE, ScheduleConfig, Scheduler, chord_slope, schedule

__all__ = ["PAPER_SCALE", "ScheduleConfig", "Scheduler", "build_parser", "chord_slope", "main", "schedule"]


EPILOG = """\
examples:
  # the paper's recipe: naive equal lambdas (4000 on the [0,1] scale), 2000 steps per trial
  python -m slimfast.tools.schedule --arch slimcae --out runs/slimcae-sched --trial-steps 2000

  # warm start from a jointly trained model, 20 minutes per trial, 5 tries per pair
  python -m slimfast.tools.schedule --init runs/slimcae/final.safetensors --out runs/slimcae-sched \\
      --trial-minutes 20 --max-tries 5

  # then train longer with the lambdas it found:
  python -m slimfast.tools.train --arch slimcae --init runs/slimcae-sched/final.safetensors \\
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
        prog="python -m slimfast.tools.schedule", description=__doc__.replace("``", ""),
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
