#!/usr/bin/env bash
# The slimmable models at a reduced budget that fits a 2-core CPU session (about 2 hours),
# plus the comparisons the slimmable-models issue asks for. Two chains run side by side,
# one thread each:
#
#   chain slim-l:  slim FasiNet-L warm-started from the shipped FasiNet-L (q6) weights;
#                  joint naive warm-up -> lambda scheduling (runs/slim-l-sched)
#                  and, from the same warm-up with the same number of steps, naive equal
#                  lambdas (runs/slim-l-naive); then FasiNet-L-shaped models trained alone at
#                  widths 96 and 48 with the same init, steps and lambdas (runs/slim-l-alone-*)
#   chain slimcae: SlimCAE (C = 192) from scratch, naive joint training, then lambda scheduling
#
# Then the shipped model (stage "ship", after the above): the scheduled slim FasiNet-L trains on
# at its scheduled lambdas for SHIP_MIN minutes, and slimfast.release publishes
# slim-fasinet-l-mse with its whole training chain and Kodak RD on the card. (SlimCAE trained on
# beside it, runs/slimcae-ship, but is not shipped: see docs/training.md.)
#
# Usage: bash scripts/train_slim_cpu.sh [slim-l|slimcae|all|ship]   (re-running resumes each stage)
# Budgets: WARM_MIN, TRIAL_STEPS, TRIES, CAE_MIN, CAE_TRIAL_STEPS, SHIP_MIN (environment).
set -euo pipefail
cd "$(dirname "$0")/.."
WHICH=${1:-all}
WARM_MIN=${WARM_MIN:-15}
TRIAL_STEPS=${TRIAL_STEPS:-300}
TRIES=${TRIES:-3}
CAE_MIN=${CAE_MIN:-45}
CAE_TRIAL_STEPS=${CAE_TRIAL_STEPS:-150}
SHIP_MIN=${SHIP_MIN:-85}
SLIM_L_LAMBDA=${SLIM_L_LAMBDA:-0.05}
INIT_L=${INIT_L:-slimfast/weights/fasinet-l-mse-q6.safetensors}
COMMON="--threads 1 --no-progress"
mkdir -p runs

lambdas_of() { python -c "import json,sys;print(*json.load(open(sys.argv[1]))['lambdas'])" "$1"; }
steps_of() { python -c "import json,sys;print(json.load(open(sys.argv[1]))['steps'])" "$1"; }

slim_l() {
  python -m slimfast.train --arch slim-fasinet-l --init "$INIT_L" \
    --lambdas $SLIM_L_LAMBDA $SLIM_L_LAMBDA $SLIM_L_LAMBDA $SLIM_L_LAMBDA $SLIM_L_LAMBDA \
    --lr 3e-4 --lr-drop-at 1.0 --minutes "$WARM_MIN" --out runs/slim-l-warm $COMMON
  python -m slimfast.schedule --arch slim-fasinet-l --init runs/slim-l-warm/final.safetensors \
    --lambda "$SLIM_L_LAMBDA" --init-steps 0 --trial-steps "$TRIAL_STEPS" --max-tries "$TRIES" \
    --lr 3e-4 --out runs/slim-l-sched $COMMON
  # Equal budget: as many steps as the search ran, discarded trials included.
  local k; k=$(steps_of runs/slim-l-sched/lambdas.json)
  python -m slimfast.train --arch slim-fasinet-l --init runs/slim-l-warm/final.safetensors \
    --lambdas $SLIM_L_LAMBDA $SLIM_L_LAMBDA $SLIM_L_LAMBDA $SLIM_L_LAMBDA $SLIM_L_LAMBDA \
    --lr 3e-4 --lr-drop-at 1.0 --steps "$k" --out runs/slim-l-naive $COMMON
  # Alone: one width, same init (the leading block of FasiNet-L), same total steps, its scheduled lambda.
  local warm total lm
  warm=$(python -c "import json;print(json.load(open('runs/slim-l-warm/summary.json'))['steps'])")
  total=$((warm + k))
  read -r -a lm <<< "$(lambdas_of runs/slim-l-sched/lambdas.json)"
  python -m slimfast.train --arch slim-fasinet-l --model-config '{"N": 48, "M": 96, "widths": [96]}' --init "$INIT_L" \
    --lambda "${lm[2]}" --lr 3e-4 --lr-drop-at 1.0 --steps "$total" --out runs/slim-l-alone-96 $COMMON
  python -m slimfast.train --arch slim-fasinet-l --model-config '{"N": 24, "M": 48, "widths": [48]}' --init "$INIT_L" \
    --lambda "${lm[4]}" --lr 3e-4 --lr-drop-at 1.0 --steps "$total" --out runs/slim-l-alone-48 $COMMON
}

slimcae() {
  python -m slimfast.train --arch slimcae --lambdas 0.0615 0.0615 0.0615 0.0615 0.0615 --lr 1e-3 --patch-size 96 \
    --minutes "$CAE_MIN" --out runs/slimcae-naive $COMMON
  python -m slimfast.schedule --arch slimcae --init runs/slimcae-naive/final.safetensors \
    --lambda 0.0615 --init-steps 0 --trial-steps "$CAE_TRIAL_STEPS" --max-tries "$TRIES" \
    --patch-size 96 --lr 1e-4 --out runs/slimcae-sched $COMMON
}

ship() {
  read -r -a la <<< "$(lambdas_of runs/slim-l-sched/lambdas.json)"
  read -r -a lc <<< "$(lambdas_of runs/slimcae-sched/lambdas.json)"
  python -m slimfast.train --arch slim-fasinet-l --init runs/slim-l-sched/final.safetensors --lambdas "${la[@]}" \
    --lr 5e-4 --lr-drop-at 0.85 --minutes "$SHIP_MIN" --out runs/slim-l-ship $COMMON > runs/slim-l-ship.log 2>&1 &
  python -m slimfast.train --arch slimcae --init runs/slimcae-sched/final.safetensors --lambdas "${lc[@]}" \
    --lr 1e-3 --lr-drop-at 0.85 --patch-size 96 --minutes "$SHIP_MIN" --out runs/slimcae-ship $COMMON \
    > runs/slimcae-ship.log 2>&1 &
  wait
  python -m slimfast.release runs/slim-l-ship/final.safetensors --name slim-fasinet-l-mse \
    --family slim-fasinet-l-mse --chain runs/slim-l-warm runs/slim-l-sched
}

case "$WHICH" in
  slim-l) slim_l ;;
  slimcae) slimcae ;;
  all) slim_l > runs/slim-l.log 2>&1 & slimcae > runs/slimcae.log 2>&1 & wait ;;
  ship) ship ;;
  *) echo "usage: $0 [slim-l|slimcae|all|ship]" >&2; exit 2 ;;
esac
