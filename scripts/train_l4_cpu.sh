#!/usr/bin/env bash
# FasiNet-L MSE, q1 and q2 version 3.
#
# q1 version 3 moves the family's smallest file down to about 0.14 bpp on Kodak (lambda 0.001,
# version 2: 0.0018 and 0.20 bpp): the training issue asks the MSE ladders to cover about 0.15 to
# 1.5 bpp, and version 2's ladder started at 0.20 bpp with an uneven step to q2 (x1.6, then x2.2
# and x1.9). It continues version 2's run at lr 1e-3 while the rate moves (about 30% of the
# budget: at 1e-3 the rate of l2-q1 settled within minutes and its PSNR then stayed flat), then
# 1e-4 for the rest.
# q2 version 3 is version 2 continued at lr 1e-4, then 1e-5 at 65%: the recipe of
# scripts/train_l3_cpu.sh, which gave q4 and q6 +0.21 / +0.38 dB on Kodak at fewer bits. It has a
# shorter budget (L4_Q2_MIN): it started beside q1, gave its core to slim-fasinet-l-mse version 3
# (scripts/train_slim_v3_cpu.sh) after 1,084 steps, and resumed when q1 had finished.
#
# Usage: bash scripts/train_l4_cpu.sh [train|release|train-q2|release-q2]   (re-running resumes)
set -euo pipefail
cd "$(dirname "$0")/.."
WHICH=${1:-train}
L4_MIN=${L4_MIN:-90}
L4_Q2_MIN=${L4_Q2_MIN:-42}
COMMON="--arch fasinet-l --threads 1 --no-progress --batch-size 8 --patch-size 128"
mkdir -p runs

train() {
  python -m slimfast.train $COMMON --init runs/l2-q1/final.safetensors --lambda 0.001 \
    --lr 1e-3 --lr-drop-at 0.3 --minutes "$L4_MIN" --out runs/l4-q1 > runs/l4-q1.log 2>&1
}

train-q2() {
  python -m slimfast.train $COMMON --init runs/l2-q2/final.safetensors --lambda 0.0035 \
    --lr 1e-4 --lr-drop-at 0.65 --minutes "$L4_Q2_MIN" --out runs/l4-q2 >> runs/l4-q2.log 2>&1
}

# Version 3 retires version 2 (slimfast/weights/retired.json). int8 storage, like the rest of
# the family.
release() {
  python -m slimfast.release runs/l4-q1/final.safetensors --name fasinet-l-mse-q1 \
    --family fasinet-l-mse --version 3 --storage int8 --chain runs/lc-l-lr1e-3 runs/l2-q2 runs/l2-q1 \
    --card-extra '{"warm_start": "runs/l2-q1 (fasinet-l-mse-q1 version 2, lambda 0.0018)"}'
  python -m slimfast.release --calibrate-int8 fasinet-l-mse-q1 --float-last
}

release-q2() {
  python -m slimfast.release runs/l4-q2/final.safetensors --name fasinet-l-mse-q2 \
    --family fasinet-l-mse --version 3 --storage int8 --chain runs/lc-l-lr1e-3 runs/l2-q2 \
    --card-extra '{"warm_start": "runs/l2-q2 (fasinet-l-mse-q2 version 2)"}'
  python -m slimfast.release --calibrate-int8 fasinet-l-mse-q2 --float-last
}

"$WHICH"
