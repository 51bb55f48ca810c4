#!/usr/bin/env bash
# FasiNet-L MSE, version 2 of q2/q4/q6, with the recipe the learning curve chose on the
# validation split (benchmarks/learning_curve.py: Adam lr 1e-3 beat 3e-4 by 1.7 dB at 20 min).
# All three rate points warm-start from the lr-1e-3 learning-curve run (lambda 0.013, 20 min
# from scratch; runs/lc-l-lr1e-3), i.e. from a trained neighbour rather than from scratch or
# from the weaker v1 weights, and train side by side (one thread each) for L2_MIN minutes.
#
# Usage: bash scripts/train_v2_cpu.sh [train|release|q1|release-q1]   (re-running resumes each run)
# q1 adds the low-rate point (lambda 0.0018, CompressAI's quality 1) that the 0.15-1.5 bpp range
# needs: warm-started from the trained q2 run, Q1_MIN minutes (80 beside one other job).
# ARCH=fasinet-h runs the same recipe for FasiNet-H from scratch; fasinet-h-mse version 2 was
# trained by scripts/train_h2_cpu.sh instead (continuing version 1, five rate points).
set -euo pipefail
cd "$(dirname "$0")/.."
WHICH=${1:-train}
L2_MIN=${L2_MIN:-100}
Q1_MIN=${Q1_MIN:-80}
ARCH=${ARCH:-fasinet-l}
X=${ARCH#fasinet-}              # l or h
LC=runs/lc-$X-lr1e-3
INIT=${INIT:-$LC/final.safetensors}
COMMON="--threads 1 --no-progress --batch-size 8 --patch-size 128 --lr 1e-3 --lr-drop-at 0.85"
declare -A LAMBDA=([q2]=0.0035 [q4]=0.013 [q6]=0.05)
mkdir -p runs

train() {
  if [ ! -f "$INIT" ]; then
    python -m slimfast.train --arch "$ARCH" --lambda 0.013 --lr 1e-3 --lr-drop-at 0.9 --minutes 20 \
      --out "$LC" --threads 1 --no-progress
  fi
  for q in q2 q4 q6; do
    python -m slimfast.train --arch "$ARCH" --init "$INIT" --lambda "${LAMBDA[$q]}" \
      --minutes "$L2_MIN" --out "runs/${X}2-$q" $COMMON > "runs/${X}2-$q.log" 2>&1 &
  done
  wait
}

# Version 2 replaces version 1 as the current weights (version 1 is retired: slimfast/zoo.py).
# int8 storage keeps the bundle within its size budget (tests/test_zoo.py).
release() {
  for q in q2 q4 q6; do
    python -m slimfast.release "runs/${X}2-$q/final.safetensors" --name "$ARCH-mse-$q" \
      --family "$ARCH-mse" --version 2 --storage int8 --chain "$LC"
    python -m slimfast.release --calibrate-int8 "$ARCH-mse-$q"
  done
}

q1() {
  python -m slimfast.train --arch "$ARCH" --init "runs/${X}2-q2/final.safetensors" --lambda 0.0018 \
    --minutes "$Q1_MIN" --out "runs/${X}2-q1" $COMMON > "runs/${X}2-q1.log" 2>&1
}

# A new model name, released as version 2 (it is of the version-2 generation: a quality ladder
# pinned to version N then holds exactly that generation's points), int8 like the rest of it.
release-q1() {
  python -m slimfast.release "runs/${X}2-q1/final.safetensors" --name "$ARCH-mse-q1" \
    --family "$ARCH-mse" --version 2 --storage int8 --chain "$LC" "runs/${X}2-q2"
  python -m slimfast.release --calibrate-int8 "$ARCH-mse-q1"
}

"$WHICH"
