#!/usr/bin/env bash
# Train every shipped family from its recipe in one run: one scripts/run_recipe.py per recipe, all
# in parallel on one GPU (see docs/training.md, "GPU: every shipped model in one run").
#
#   scripts/train_shipped.sh [RECIPE ...]        (default: every recipes/*.json)
#
# Each recipe's stages run in order, up to JOBS at once where their warm starts are ready (the
# FasiNet-L points fork from one run). Every stage resumes from its checkpoint when the script is
# run again, and a finished stage is skipped. The recipes' budgets are steps (the cards' own), so
# a rerun trains what the shipped models trained; how long that takes on a GPU is not measured yet.
# Knobs (environment): DATA (default data/trainset if packed, else ../shared/data/train), RUNS (runs),
# PYTHON, THREADS (torch threads per stage; 2 on GPU, 1 on CPU), JOBS (stages at once per recipe; 3 on
# GPU, 1 on CPU), BATCH/PATCH (unset: the recipe's; set, they override every stage, which departs
# from the recipe), EXTRA (more train flags for every stage, e.g. "--bf16"), RELEASE=1 (afterwards,
# release each recipe's models as candidates in RUNS/<family>/release; slimfast/weights is untouched).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
RUNS=${RUNS:-runs}
if [[ -z "${DATA:-}" ]]; then
  if [[ -d data/trainset ]]; then DATA=data/trainset; else DATA=../shared/data/train; fi
fi
CUDA=$($PY -c "import torch; print(int(torch.cuda.is_available()))")
if [[ "$CUDA" == 1 ]]; then
  THREADS=${THREADS:-2}; JOBS=${JOBS:-3}
else
  THREADS=${THREADS:-1}; JOBS=${JOBS:-1}
  echo "warning: no CUDA: every recipe will share the CPU (run one recipe at a time with scripts/run_recipe.py instead)" >&2
fi
EXTRA=${EXTRA:-}
[[ -n "${BATCH:-}" ]] && EXTRA="$EXTRA --batch-size $BATCH"
[[ -n "${PATCH:-}" ]] && EXTRA="$EXTRA --patch-size $PATCH"
RELEASE_FLAG=()
[[ "${RELEASE:-0}" == 1 ]] && RELEASE_FLAG=(--release)
if [[ $# -gt 0 ]]; then RECIPES=("$@"); else RECIPES=(recipes/*.json); fi
mkdir -p "$RUNS/logs"
echo "data $DATA | cuda $CUDA | threads $THREADS | jobs $JOBS per recipe | extra '${EXTRA# }' | logs $RUNS/logs/ and $RUNS/<family>/logs/"

start=$(date +%s)
pids=(); names=()
for r in "${RECIPES[@]}"; do
  fam=$(basename "$r" .json)
  $PY scripts/run_recipe.py "$r" --runs "$RUNS" --data $DATA --threads "$THREADS" --jobs "$JOBS" \
      --extra "$EXTRA" ${RELEASE_FLAG[@]+"${RELEASE_FLAG[@]}"} > "$RUNS/logs/$fam.log" 2>&1 &
  pids+=($!); names+=("$fam")
done
rc=0
for i in "${!pids[@]}"; do
  if wait "${pids[$i]}"; then echo "done: ${names[$i]}"; else echo "FAILED: ${names[$i]} (see $RUNS/logs/${names[$i]}.log)" >&2; rc=1; fi
done

echo "finished in $(( ($(date +%s) - start) / 60 )) min"
for r in "${RECIPES[@]}"; do
  fam=$(basename "$r" .json)
  for d in "$RUNS/$fam"/*/; do
    [[ -f "$d/summary.json" ]] || continue
    $PY -c "import json,sys; s=json.load(open(sys.argv[1])); print(f\"{sys.argv[2]:36s} {s['steps']:7d} steps {s['minutes']:6.1f} min  {s.get('train_steps_per_s') or 0:7.2f} steps/s\")" "$d/summary.json" "$fam/$(basename "$d")"
  done
done
exit $rc
