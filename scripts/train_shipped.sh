#!/usr/bin/env bash
# Train every shipped FasiNet model in one run. Each family trains its middle lambda first,
# then warm-starts the other lambdas from it (cheaper than from scratch).
# Usage: scripts/train_shipped.sh [MINUTES_MAIN] [MINUTES_FORK] [THREADS]
#   CPU here: 2 families in parallel with 1 thread each. GPU: set THREADS=0.
set -euo pipefail
MAIN=${1:-25}; FORK=${2:-12}; THREADS=${3:-1}
DATA=${DATA:-../shared/data/train}
PY=${PYTHON:-python}
family() {
  local arch=$1 tag=$2
  $PY -m slimfast.train --arch "$arch" --data $DATA --out runs/$tag-0.013 --lambda 0.013 \
      --minutes "$MAIN" --threads "$THREADS" --no-progress
  for l in 0.0035 0.05; do
    $PY -m slimfast.train --arch "$arch" --data $DATA --out runs/$tag-$l --lambda $l \
        --init runs/$tag-0.013/final.safetensors --minutes "$FORK" --threads "$THREADS" --no-progress
  done
}
family fasinet-l fasinet-l-mse > runs/fasinet-l.log 2>&1 &
family fasinet-h fasinet-h-mse > runs/fasinet-h.log 2>&1 &
wait
