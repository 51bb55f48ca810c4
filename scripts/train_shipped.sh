#!/usr/bin/env bash
# Train every shipped model in one run, several jobs in parallel on one GPU (see docs/training.md).
#
#   scripts/train_shipped.sh [MAIN_MIN] [FORK_MIN]        (defaults 10 and 7: about 20 min on one GPU)
#
# Stage 1 (in parallel, MAIN_MIN minutes each):
#   fasinet-l-mse-0.013, fasinet-h-mse-0.013          MSE, the middle lambda, from scratch
#   slim-fasinet-l-joint, slimcae-joint               slimmable, all widths jointly, one naive lambda
# Stage 2 (in parallel, FORK_MIN minutes each, each as soon as its parent is done):
#   fasinet-{l,h}-mse-{0.0035,0.05}, fasinet-h-mse-0.1 warm-started from the family's 0.013 model
#   fasinet-l-msssim-{4.58,31.73}                     MS-SSIM loss lambda*(1-MS-SSIM)+bpp, from fasinet-l-mse-0.013
#   slim-fasinet-l-sched, slimcae-sched               python -m slimfast.schedule from the joint model
#   slim-fasinet-h-ladder                             slimmable FasiNet-H (full hidden channels), all widths
#                                                     jointly on SLIMH_LAMBDAS, from fasinet-h-mse-0.013
#
# Needs only torch, numpy and Pillow (no safetensors, tqdm, matplotlib or pytorch_msssim needed).
# Every job resumes from its checkpoint when the script is run again; finished jobs just re-export.
# Knobs (environment): DATA (default data/trainset if packed, else ../shared/data/train), RUNS (runs),
# PYTHON, THREADS (torch threads per job; 2 on GPU, 1 on CPU), BATCH/PATCH (MSE jobs; 16/256 on GPU,
# 8/128 on CPU), MS_BATCH/MS_PATCH (MS-SSIM jobs, patch >= 176; 8/256), MSSSIM_LAMBDAS ("4.58 31.73"),
# FORK_LR (1e-3, stage-2 warm starts), H_CONFIG (FasiNet-H's constructor arguments; default fasinet-h-mse
# version 3's: 7x7 synthesis, FasiNet-L's analysis), SCHED_TRIES (3), SLIMH_LAMBDAS (widest first), SLIM_LAMBDA (0.0615 = the paper's 4000 on the [0,1] scale), EXTRA (more train flags,
# e.g. "--bf16").
set -euo pipefail
cd "$(dirname "$0")/.."
MAIN=${1:-10}; FORK=${2:-7}
PY=${PYTHON:-python}
RUNS=${RUNS:-runs}
if [[ -z "${DATA:-}" ]]; then
  if [[ -d data/trainset ]]; then DATA=data/trainset; else DATA=../shared/data/train; fi
fi
CUDA=$($PY -c "import torch; print(int(torch.cuda.is_available()))")
if [[ "$CUDA" == 1 ]]; then
  THREADS=${THREADS:-2}; BATCH=${BATCH:-16}; PATCH=${PATCH:-256}
else
  THREADS=${THREADS:-1}; BATCH=${BATCH:-8}; PATCH=${PATCH:-128}
  echo "warning: no CUDA: 14 jobs will share the CPU (train single models with python -m slimfast.train instead)" >&2
fi
MS_BATCH=${MS_BATCH:-8}; MS_PATCH=${MS_PATCH:-256}
MSSSIM_LAMBDAS=${MSSSIM_LAMBDAS:-"4.58 31.73"}
SCHED_TRIES=${SCHED_TRIES:-3}
SLIM_LAMBDA=${SLIM_LAMBDA:-0.0615}
EXTRA=${EXTRA:-}
FORK_LR=${FORK_LR:-1e-3}
H_CONFIG=${H_CONFIG:-'{"N1": 96, "N2": 96, "M": 192, "S": 32, "K": 7, "final_gdn": false}'}
SLIMH_CONFIG=${SLIMH_CONFIG:-${H_CONFIG%\}}', "slim_hidden": false}'}
SLIMH_LAMBDAS=${SLIMH_LAMBDAS:-"0.05 0.02 0.008 0.0035 0.0015"}
mkdir -p "$RUNS/logs"
echo "data $DATA | cuda $CUDA | threads $THREADS | batch $BATCH patch $PATCH | stage 1 $MAIN min, stage 2 $FORK min | logs $RUNS/logs/"

train() {  # train TAG MINUTES [flags...]
  local tag=$1 minutes=$2; shift 2
  $PY -m slimfast.train --data $DATA --out "$RUNS/$tag" --minutes "$minutes" --threads "$THREADS" \
      --no-progress --val-every 500 $EXTRA "$@" > "$RUNS/logs/$tag.log" 2>&1 \
    || { echo "FAILED: $tag (see $RUNS/logs/$tag.log)" >&2; return 1; }
  echo "done: $tag"
}

schedule() {  # schedule ARCH
  local arch=$1 joint=$1-joint
  # About FORK minutes in all: at most (widths - 1) * SCHED_TRIES = 4 * SCHED_TRIES trials.
  local trial
  trial=$($PY -c "print(round($FORK / (4 * $SCHED_TRIES), 3))")
  $PY -m slimfast.schedule --arch "$arch" --init "$RUNS/$joint/final.safetensors" --out "$RUNS/$arch-sched" \
      --data $DATA --lambda "$SLIM_LAMBDA" --init-steps 0 --init-minutes 0 --trial-minutes "$trial" \
      --max-tries "$SCHED_TRIES" --batch-size "$BATCH" --patch-size "$PATCH" --threads "$THREADS" --no-progress \
      > "$RUNS/logs/$arch-sched.log" 2>&1 \
    || { echo "FAILED: $arch-sched (see $RUNS/logs/$arch-sched.log)" >&2; return 1; }
  echo "done: $arch-sched"
}

family() {  # family ARCH: the middle lambda, then both forks in parallel
  local arch=$1 tag=$1-mse
  local config=()
  [[ "$arch" == fasinet-h ]] && config=(--model-config "$H_CONFIG")
  train "$tag-0.013" "$MAIN" --arch "$arch" "${config[@]}" --lambda 0.013 --batch-size "$BATCH" --patch-size "$PATCH" || return 1
  local pids=()
  local forks="0.0035 0.05"
  [[ "$arch" == fasinet-h ]] && forks="0.0035 0.05 0.1"  # the H ladder reaches about 1.5 bpp
  for l in $forks; do
    train "$tag-$l" "$FORK" --arch "$arch" --lambda "$l" --init "$RUNS/$tag-0.013/final.safetensors" \
        --lr "$FORK_LR" --batch-size "$BATCH" --patch-size "$PATCH" & pids+=($!)
  done
  if [[ "$arch" == fasinet-h ]]; then
    train slim-fasinet-h-ladder "$FORK" --arch slim-fasinet-h --model-config "$SLIMH_CONFIG" \
        --init "$RUNS/$tag-0.013/final.safetensors" --sort-channels --lambdas $SLIMH_LAMBDAS --lr 5e-4 \
        --batch-size "$BATCH" --patch-size "$PATCH" & pids+=($!)
  fi
  if [[ "$arch" == fasinet-l ]]; then
    for l in $MSSSIM_LAMBDAS; do
      train "fasinet-l-msssim-$l" "$FORK" --arch fasinet-l --metric ms-ssim --lambda "$l" \
          --init "$RUNS/$tag-0.013/final.safetensors" --lr "$FORK_LR" --batch-size "$MS_BATCH" --patch-size "$MS_PATCH" \
          & pids+=($!)
    done
  fi
  local rc=0
  for p in "${pids[@]}"; do wait "$p" || rc=1; done
  return $rc
}

slim() {  # slim ARCH: joint training of all widths at one lambda, then the lambda schedule
  local arch=$1
  train "$arch-joint" "$MAIN" --arch "$arch" --lambdas $SLIM_LAMBDA $SLIM_LAMBDA $SLIM_LAMBDA $SLIM_LAMBDA $SLIM_LAMBDA \
      --batch-size "$BATCH" --patch-size "$PATCH" || return 1
  schedule "$arch"
}

start=$(date +%s)
pids=()
family fasinet-l & pids+=($!)
family fasinet-h & pids+=($!)
slim slim-fasinet-l & pids+=($!)
slim slimcae & pids+=($!)
rc=0
for p in "${pids[@]}"; do wait "$p" || rc=1; done

echo "finished in $(( ($(date +%s) - start) / 60 )) min"
for f in "$RUNS"/*/final.safetensors; do
  d=$(dirname "$f")
  if [[ -f "$d/summary.json" ]]; then
    $PY -c "import json,sys; s=json.load(open(sys.argv[1])); print(f\"{sys.argv[2]:32s} {s['steps']:7d} steps {s['minutes']:6.1f} min  {s.get('train_steps_per_s') or 0:7.2f} steps/s\")" "$d/summary.json" "$(basename "$d")"
  else
    echo "$(basename "$d")  (lambda schedule: see $d/lambdas.json)"
  fi
done
exit $rc
