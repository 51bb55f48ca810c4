#!/usr/bin/env bash
# FasiNet-H MSE: extend the ladder to about 1.5 bpp (q10) and train q8 further, side by side on
# the 2-core CPU (one thread each).
#
# Both start from the widest width of slim-fasinet-h-mse v2, which is exactly a FasiNet-H
# (`SlimFasiNetH.full_width_state`; `slimfast train --arch fasinet-h --init <slim weights>`).
# Trained jointly at lambda 0.05, it reaches 1.090 bpp / 35.13 dB on Kodak against
# fasinet-h-mse-q8 v3's 1.163 bpp / 35.15 dB at the same lambda: the better neighbour.
#
# q8 continues at lr 1e-4 (1e-5 for the last 40%), like the slim-H continuations; q10 has a new
# lambda to move to, so it starts higher (3e-4, 3e-5 for the last 35%).
#
# Usage: bash scripts/train_h5_cpu.sh [train|release]   (re-running a train resumes)
set -euo pipefail
cd "$(dirname "$0")/.."
WHICH=${1:-train}
H5_MIN=${H5_MIN:-75}
COMMON="--arch fasinet-h --threads 1 --no-progress --batch-size 8 --patch-size 128"
W=slimfast/weights
mkdir -p runs

train() {
  python -m slimfast.train $COMMON --init "$W/slim-fasinet-h-mse.safetensors" --lambda 0.05 \
    --lr 1e-4 --lr-drop-at 0.6 --minutes "$H5_MIN" --out runs/h6-q8 >> runs/h6-q8.log 2>&1 &
  python -m slimfast.train $COMMON --init "$W/slim-fasinet-h-mse.safetensors" --lambda 0.1 \
    --lr 3e-4 --lr-drop-at 0.65 --minutes "$H5_MIN" --out runs/h6-q10 >> runs/h6-q10.log 2>&1 &
  wait
}

"$WHICH"
