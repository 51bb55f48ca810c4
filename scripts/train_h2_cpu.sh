#!/usr/bin/env bash
# FasiNet-H MSE, version 2: five rate points covering about 0.15-1.5 bpp on Kodak, int8 storage.
#
# Version 1 had three points (0.34-1.05 bpp) of only 25 minutes (4,751 steps) each, from scratch.
# Version 2 continues each of them with the recipe FasiNet-L v2 validated (Adam lr 1e-3, a 10x
# drop at 85%), and adds q1 and q8 warm-started from their trained neighbours (q2, q6). The points
# run one after another on one thread (H_MIN minutes each), so that a second job can share the
# 2-core machine.
#
# Usage: bash scripts/train_h2_cpu.sh [train|release]   (re-running train resumes or skips each run)
# Measured: docs/training.md ("FasiNet-H version 2 on a CPU").
set -euo pipefail
cd "$(dirname "$0")/.."
WHICH=${1:-train}
H_MIN=${H_MIN:-19}
COMMON="--arch fasinet-h --threads 1 --no-progress --batch-size 8 --patch-size 128 --lr 1e-3 --lr-drop-at 0.85"
W=slimfast/weights
# point, lambda, warm start (shipped v1 weights, or an earlier point of this script)
POINTS=(
  "q4 0.013 $W/fasinet-h-mse-q4.safetensors"
  "q2 0.0035 $W/fasinet-h-mse-q2.safetensors"
  "q6 0.05 $W/fasinet-h-mse-q6.safetensors"
  "q1 0.0012 runs/h2-q2/final.safetensors"
  "q8 0.1 runs/h2-q6/final.safetensors"
)
mkdir -p runs

train() {
  for p in "${POINTS[@]}"; do
    read -r q lam init <<< "$p"
    [ -f "runs/h2-$q/final.safetensors" ] && continue
    # The v1 file is renamed NAME.v1.* once version 2 is released; resume from there.
    [ -f "$init" ] || init="${init%.safetensors}.v1.safetensors"
    python -m slimfast.train $COMMON --init "$init" --lambda "$lam" --minutes "$H_MIN" \
      --out "runs/h2-$q" > "runs/h2-$q.log" 2>&1
  done
}

# Only q1, q4 and q8 ship (the bundle's size budget: 3.6 MB per point in int8; q2 and q6 are the
# warm starts of q1 and q8). The release retires version 1 of q4 and discontinues version 1's q2
# and q6 (slimfast/weights/retired.json names the release that decodes their files).
SHIP=(q1 q4 q8)
release() {
  for p in "${POINTS[@]}"; do
    read -r q lam init <<< "$p"
    [[ " ${SHIP[*]} " == *" $q "* ]] || continue
    local chain=() from
    case $q in
      q1|q8) from=${init#runs/h2-}; from=${from%/final.safetensors}; chain=(--chain "runs/h2-$from")
             extra="{\"warm_start\": \"runs/h2-$from, which continued fasinet-h-mse-$from version 1 (25 min, 4,751 steps from scratch)\"}";;
      *) extra="{\"warm_start\": \"fasinet-h-mse-$q version 1 (25 min, 4,751 steps from scratch)\"}";;
    esac
    python -m slimfast.release "runs/h2-$q/final.safetensors" --name "fasinet-h-mse-$q" \
      --family fasinet-h-mse --version 2 --storage int8 "${chain[@]}" --card-extra "$extra"
    python -m slimfast.release --calibrate-int8 "fasinet-h-mse-$q"
  done
  for q in q2 q6; do
    [ -f "slimfast/weights/fasinet-h-mse-$q.json" ] && python -m slimfast.release --retire "fasinet-h-mse-$q@1" --discontinue
  done
  return 0
}

"$WHICH"
