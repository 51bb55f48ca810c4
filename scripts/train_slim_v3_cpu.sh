#!/usr/bin/env bash
# slim-fasinet-l-mse version 3: version 2 (runs/slim-l2) continued with new per-width lambdas.
#
# Why: version 2's lambdas came from version 1's greedy schedule, which stopped with the three
# narrow widths on one lambda (0.0131). benchmarks/ceiling.py shows the narrow sub-networks are
# limited by their transforms, not by their rate: on kodim01, width 48 reaches 25.23 dB with y
# unquantized and 25.00 dB quantized, at 0.46 bpp on Kodak, where fasinet-l-mse-q1 gets the same
# PSNR from 0.20 bpp. So the narrow widths get a geometric ladder of lambdas (about x2.4 per
# width) that puts each on the rate its transforms can use, and the family spans about 0.15 to
# 1.4 bpp instead of 0.46 to 1.36. The widest width keeps 0.05.
# lr 5e-4 while the narrow widths' rates move, then 5e-5 (the drop at 50%).
#
# Usage: bash scripts/train_slim_v3_cpu.sh [train|release]   (re-running train resumes)
set -euo pipefail
cd "$(dirname "$0")/.."
WHICH=${1:-train}
SLIM_MIN=${SLIM_MIN:-88}
LAMBDAS="0.05 0.02 0.008 0.0035 0.0015"   # widths 192 144 96 72 48
mkdir -p runs

train() {
  python -m slimfast.train --arch slim-fasinet-l --init runs/slim-l2/final.safetensors --lambdas $LAMBDAS \
    --lr 5e-4 --lr-drop-at 0.5 --minutes "$SLIM_MIN" --out runs/slim-l3 --threads 1 --no-progress \
    > runs/slim-l3.log 2>&1
}

# Version 3 retires version 2 (slimfast/weights/retired.json). int8 storage, like version 2.
release() {
  python -m slimfast.release runs/slim-l3/final.safetensors --name slim-fasinet-l-mse \
    --family slim-fasinet-l-mse --version 3 --storage int8 --chain runs/lc-l-lr1e-3 runs/l2-q6 runs/slim-l2 \
    --card-extra '{"warm_start": "runs/slim-l2 (slim-fasinet-l-mse version 2)", "lambdas_from": "a geometric ladder (about x2.4 per width) set from benchmarks/ceiling.py; see scripts/train_slim_v3_cpu.sh"}'
  python -m slimfast.release --calibrate-int8 slim-fasinet-l-mse --float-last
}

"$WHICH"
