#!/usr/bin/env bash
# The slimmable models with the v2 recipe (Adam lr 1e-3, drop at 85%), two jobs side by side,
# one thread each, on a 2-core CPU:
#
#   slim-l2:  slim-fasinet-l-mse version 2, warm-started from FasiNet-L v2 at lambda 0.05
#             (runs/l2-q6, or the shipped fasinet-l-mse-q6 v2 when that run is gone), which is a
#             trained neighbour of the widest sub-network. The per-width lambdas are the ones the
#             lambda schedule chose for version 1 (its card's `lambdas`), so no CPU goes into a
#             second search.
#   slimcae:  SlimCAE (C = 192) continues runs/slimcae-ship (naive joint training, then the
#             lambda schedule, then joint training at the scheduled lambdas) up to CAE_MIN minutes.
#             It stopped at step 3,742 with widths 192 and 144 still on one point; sched2 and
#             ship2 below then made the shipped slimcae-mse (docs/training.md, "SlimCAE on a CPU").
#
# Usage: bash scripts/train_slim_v2_cpu.sh [train|release|sched2|ship2|release-slimcae]   (re-running "train" resumes both)
set -euo pipefail
cd "$(dirname "$0")/.."
WHICH=${1:-train}
SLIM_MIN=${SLIM_MIN:-97}
CAE_MIN=${CAE_MIN:-140}
INIT_L=${INIT_L:-runs/l2-q6/final.safetensors}
[ -f "$INIT_L" ] || INIT_L=slimfast/weights/fasinet-l-mse-q6.safetensors
COMMON="--threads 1 --no-progress"
mkdir -p runs

card_lambdas() { python -c "import json,sys;print(*json.load(open(sys.argv[1]))['lambdas'])" "$1"; }
# slim-fasinet-l-mse version 1's lambdas: its card, or its entry in retired.json once retired
v1_lambdas() {
  python -c "import json,sys;r=json.load(open(sys.argv[1]));print(*[e for e in r if e['name']=='slim-fasinet-l-mse' and e['version']=='1'][0]['lambdas'])" \
    slimfast/weights/retired.json
}

train() {
  local la lc pids=()
  # version 1's lambdas (the retired card of version 1 once version 2 has shipped)
  local card=slimfast/weights/slim-fasinet-l-mse.json
  if [ -f slimfast/weights/retired.json ]; then
    read -r -a la <<< "$(v1_lambdas)"
  else
    read -r -a la <<< "$(card_lambdas "$card")"
  fi
  read -r -a lc <<< "$(card_lambdas runs/slimcae-sched/lambdas.json)"
  if [ "${#la[@]}" -ne 5 ] || [ "${#lc[@]}" -ne 5 ]; then
    echo "error: expected 5 lambdas each from $card and runs/slimcae-sched/lambdas.json" >&2; exit 1
  fi
  python -m slimfast.train --arch slim-fasinet-l --init "$INIT_L" --lambdas "${la[@]}" \
    --lr 1e-3 --lr-drop-at 0.85 --minutes "$SLIM_MIN" --out runs/slim-l2 $COMMON > runs/slim-l2.log 2>&1 &
  pids+=($!)
  python -m slimfast.train --arch slimcae --init runs/slimcae-sched/final.safetensors --lambdas "${lc[@]}" \
    --lr 1e-3 --lr-drop-at 0.85 --patch-size 96 --minutes "$CAE_MIN" --out runs/slimcae-ship $COMMON \
    >> runs/slimcae-ship.log 2>&1 &
  pids+=($!)
  local rc=0
  for p in "${pids[@]}"; do wait "$p" || rc=1; done
  return $rc
}

# int8 storage keeps the bundle within its size budget (tests/test_zoo.py); each card records
# the storage cost against fp16.
release() {
  python -m slimfast.release runs/slim-l2/final.safetensors --name slim-fasinet-l-mse \
    --family slim-fasinet-l-mse --version 2 --storage int8 --chain runs/lc-l-lr1e-3 runs/l2-q6 \
    --card-extra '{"lambdas_from": "the lambda schedule of version 1 (runs/slim-l-sched: 9 trials, 2,400 steps), reused as is"}'
  # The usual int8 calibration cost 1.2 to 4.0 dB on Kodak, nearly all in the last convolution:
  # keep it float (docs/training.md).
  python -m slimfast.release --calibrate-int8 slim-fasinet-l-mse --float-last
}

# SlimCAE ships once its widths are ordered (tests/test_zoo.py). Its stages: naive joint training
# (runs/slimcae-naive), the first lambda schedule (runs/slimcae-sched), joint training at its lambdas
# (runs/slimcae-ship), the schedule again from there with the rule for unordered pairs
# (runs/slimcae-sched2), and, where it exists, joint training at those lambdas (runs/slimcae-ship2).
sched2() {
  python -m slimfast.schedule --arch slimcae --init runs/slimcae-ship/step3742.safetensors --lambda 0.0615 \
    --init-steps 0 --trial-steps 200 --patch-size 96 --out runs/slimcae-sched2 $COMMON >> runs/slimcae-sched2.log 2>&1
}

ship2() {
  read -r -a lc <<< "$(card_lambdas runs/slimcae-sched2/lambdas.json)"
  python -m slimfast.train --arch slimcae --init runs/slimcae-sched2/final.safetensors --lambdas "${lc[@]}" \
    --lr 1e-3 --lr-drop-at 0.85 --patch-size 96 --minutes "${SHIP2_MIN:-40}" --out runs/slimcae-ship2 $COMMON \
    >> runs/slimcae-ship2.log 2>&1
}

release-slimcae() {
  local chain=(runs/slimcae-naive runs/slimcae-sched runs/slimcae-ship runs/slimcae-sched2) final=runs/slimcae-sched2
  if [ -f runs/slimcae-ship2/final.safetensors ]; then final=runs/slimcae-ship2; else chain=("${chain[@]:0:3}"); fi
  python -m slimfast.release "$final/final.safetensors" --name slimcae-mse --family slimcae-mse --storage int8 \
    --chain "${chain[@]}"
}

"$WHICH"
