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

release() {
  for p in "${POINTS[@]}"; do
    read -r q lam init <<< "$p"
    case $q in
      q1|q8) extra="{\"warm_start\": \"runs/h2-${init#runs/h2-}; that point continues fasinet-h-mse-${init#runs/h2-} version 1\"}";;
      *) extra="{\"warm_start\": \"fasinet-h-mse-$q version 1 (25 min, 4,751 steps from scratch)\"}";;
    esac
    extra=${extra//\/final.safetensors/}
    python -m slimfast.release "runs/h2-$q/final.safetensors" --name "fasinet-h-mse-$q" \
      --family fasinet-h-mse --version 2 --storage int8 --card-extra "$extra"
    python -m slimfast.release --calibrate-int8 "fasinet-h-mse-$q"
  done
}

"$WHICH"
