#!/usr/bin/env bash
# FasiNet-H MSE version 3: q1, q4, q8, all three at once on the 2-core CPU.
#
# Version 2 (the paper's FasiNet-H: 5x5 synthesis kernels, GDN after the last analysis layer)
# stalled near 30 dB on Kodak whatever the lambda: with the rate term removed, the shipped q8
# stayed at 26.1 dB on validation crops. Behind FasiNet-L's trained analysis, a 32-channel
# synthesis learned from scratch reached 23.0 dB in 1,000 steps with the paper's 5x5 kernels and
# 28.3 dB with 7x7 (FasiNet-L's own 96-channel 7x7 synthesis: 30.2 dB; 96 channels at 5x5: 23.6 dB):
# benchmarks/synthesis_probe.py, docs/training.md "FasiNet-H version 3".
#
# So version 3 keeps the light 32-channel synthesis with 7x7 kernels (K = 7), and drops the last
# GDN with N1 = N2 = 96 so that the analysis is exactly FasiNet-L's and warm-starts from the
# shipped fasinet-l-mse weights at the neighbouring lambda (plus IQR). The hyperprior and the
# synthesis start fresh, hence lr 1e-3, dropping to 1e-4 at 70%.
#
# Usage: bash scripts/train_h4_cpu.sh [train|release]   (re-running resumes)
set -euo pipefail
cd "$(dirname "$0")/.."
WHICH=${1:-train}
H4_MIN=${H4_MIN:-100}
CONFIG='{"N1": 96, "N2": 96, "M": 192, "S": 32, "K": 7, "final_gdn": false}'
COMMON="--arch fasinet-h --threads 1 --no-progress --batch-size 8 --patch-size 128 --lr 1e-3 --lr-drop-at 0.7"
W=slimfast/weights
mkdir -p runs

one() {  # one <point> <lambda> <fasinet-l weights>
  python -m slimfast.train $COMMON --model-config "$CONFIG" --init "$W/$3.safetensors" --lambda "$2" \
    --minutes "$H4_MIN" --out "runs/h4-$1" >> "runs/h4-$1.log" 2>&1
}

train() {
  one q1 0.0012 fasinet-l-mse-q1 &
  one q4 0.013 fasinet-l-mse-q4 &
  one q8 0.05 fasinet-l-mse-q6 &
  wait
}

# Version 3 retires version 2 (slimfast/weights/retired.json). int8 storage, like the rest.
release() {
  for p in q1:fasinet-l-mse-q1 q4:fasinet-l-mse-q4 q8:fasinet-l-mse-q6; do
    q=${p%%:*}; src=${p#*:}
    python -m slimfast.release "runs/h4-$q/final.safetensors" --name "fasinet-h-mse-$q" \
      --family fasinet-h-mse --version 3 --storage int8 \
      --card-extra "{\"warm_start\": \"analysis and IQR from $src version 3 (slimfast/weights); hyperprior and synthesis from scratch\"}"
    python -m slimfast.release --calibrate-int8 "fasinet-h-mse-$q" --float-last
  done
}

"$WHICH"
