#!/usr/bin/env bash
# slim-fasinet-h-mse version 1: a slimmable FasiNet-H warm-started from fasinet-h-mse-q4 version 3.
#
# Why this shape: slim-fasinet-l-mse (every layer slimmed, SlimCAE's rule) stays at -10.7% BD-rate
# against JPEG, because its narrow sub-networks are limited by their transforms
# (benchmarks/ceiling.py): at width 48 its synthesis has 24 channels, and FasiNet-H's 32-channel
# synthesis would have 8. So this model slims only what sets the rate and the decoder's cost, the
# latent (w of 192 channels), the IQR and the hyperprior, and keeps g_a's and g_s's hidden channels
# full at every width (slim_hidden = false), each width with its own hidden GDNs. Every width starts
# as fasinet-h-mse-q4 version 3 truncated to its leading w latent channels
# (SlimFasiNetH.load_unslimmed), after --sort-channels has put the channels that carry the most bits
# first (SlimFasiNetH.sort_channels). Without that sort, width 48 starts at 13.0 dB on validation
# crops (its first 48 channels carry 24% of y's bits); with it, at 26.0 dB (53%); width 96: 13.7
# against 28.3 dB. Lambdas: slim-fasinet-l-mse version 3's ladder.
#
# Version 2 (train_v2): version 1 trained further at lr 1e-4 (1e-5 for the last 40%), from the
# shipped weights, as two runs side by side, one thread each: SlimCAE's summed joint loss
# (runs/slim-h2-sum) and the sum of the widths' log losses (runs/slim-h2-log, slimfast train
# --width-loss log), which weighs each width's gradient by 1 / L_i. Under the sum, width 192's loss
# (about 2.8 at lambda 0.05) outweighs width 48's (about 0.46) six to one, and version 1's narrow
# and middle widths stayed about 0.9 dB under fasinet-h-mse on validation crops.
#
# Usage: bash scripts/train_slim_h_cpu.sh [train|release|train_v2|release_v2|train_v3|release_v3]   (re-running a train resumes)
set -euo pipefail
cd "$(dirname "$0")/.."
WHICH=${1:-train}
SLIMH_MIN=${SLIMH_MIN:-105}
THREADS=${THREADS:-1}
LAMBDAS="0.05 0.02 0.008 0.0035 0.0015"   # widths 192 144 96 72 48
CONFIG='{"N1": 96, "N2": 96, "M": 192, "S": 32, "K": 7, "final_gdn": false, "slim_hidden": false}'
SLIMH2_MIN=${SLIMH2_MIN:-80}
mkdir -p runs

train() {
  python -m slimfast.train --arch slim-fasinet-h --model-config "$CONFIG" \
    --init slimfast/weights/fasinet-h-mse-q4.safetensors --lambdas $LAMBDAS \
    --sort-channels --lr 5e-4 --lr-drop-at 0.75 --minutes "$SLIMH_MIN" --out runs/slim-h1 --threads "$THREADS" --no-progress \
    >> runs/slim-h1.log 2>&1
}

train_v2() {
  for loss in sum log; do
    python -m slimfast.train --arch slim-fasinet-h --model-config "$CONFIG" \
      --init slimfast/weights/slim-fasinet-h-mse.safetensors --lambdas $LAMBDAS --width-loss "$loss" \
      --lr 1e-4 --lr-drop-at 0.6 --minutes "$SLIMH2_MIN" --out "runs/slim-h2-$loss" --threads 1 --no-progress \
      >> "runs/slim-h2-$loss.log" 2>&1 &
  done
  wait
}

# Version 3 candidate: version 2 restarted at a higher lr (3e-4, 3e-5 for the last 40%) with the
# log loss, since the 1e-4 continuations were flat on validation after 1,000 steps.
train_v3() {
  python -m slimfast.train --arch slim-fasinet-h --model-config "$CONFIG" \
    --init slimfast/weights/slim-fasinet-h-mse.safetensors --lambdas $LAMBDAS --width-loss log \
    --lr 3e-4 --lr-drop-at 0.6 --minutes "${SLIMH3_MIN:-58}" --out runs/slim-h3-log --threads 1 --no-progress \
    >> runs/slim-h3-log.log 2>&1
}

# slim-fasinet-h-mse takes slimcae-mse's place in the weights budget (25 MiB): slimcae-mse version 1
# is discontinued (last bundled in slimfast 0.6.0; retired.json says where to get it).
release() {
  python -m slimfast.release --retire slimcae-mse@1 --discontinue --whole-family
  python -m slimfast.release runs/slim-h1/final.safetensors --name slim-fasinet-h-mse \
    --family slim-fasinet-h-mse --version 1 --storage int8 \
    --card-extra '{"warm_start": "fasinet-h-mse-q4 version 3 (slimfast/weights), every width truncated to its leading latent channels", "lambdas_from": "slim-fasinet-l-mse version 3 (scripts/train_slim_v3_cpu.sh)", "channel_order": "sorted by bits before training (slimfast train --sort-channels)"}'
  python -m slimfast.release --calibrate-int8 slim-fasinet-h-mse --float-last
}

# Version 2: the --width-loss log run (Kodak BD-rate -1.4% against version 1; the same steps with the
# summed loss gave -0.6%). It retires version 1 (slimfast/weights/retired.json).
release_v2() {
  python -m slimfast.release runs/slim-h2-log/final.safetensors --name slim-fasinet-h-mse \
    --family slim-fasinet-h-mse --version 2 --storage int8 --chain runs/slim-h1 \
    --card-extra '{"warm_start": "slim-fasinet-h-mse version 1 (slimfast/weights), itself from fasinet-h-mse-q4 version 3 with sorted channels", "lambdas_from": "slim-fasinet-l-mse version 3 (scripts/train_slim_v3_cpu.sh)", "width_loss": "log (slimfast train --width-loss log) in the last stage"}'
  python -m slimfast.release --calibrate-int8 slim-fasinet-h-mse --float-last
}

# Version 3: train_v3 (Kodak BD-rate -0.57% against version 2, -36.3% against JPEG). It retires
# version 2, and its file stores the hyper-synthesis once (slimfast 0.8.0: 0.6 MB smaller).
release_v3() {
  python -m slimfast.release runs/slim-h3-log/final.safetensors --name slim-fasinet-h-mse \
    --family slim-fasinet-h-mse --version 3 --storage int8 --chain runs/slim-h1 runs/slim-h2-log \
    --card-extra '{"warm_start": "slim-fasinet-h-mse version 2 (slimfast/weights), itself from version 1 and fasinet-h-mse-q4 version 3 with sorted channels", "lambdas_from": "slim-fasinet-l-mse version 3 (scripts/train_slim_v3_cpu.sh)", "width_loss": "log (slimfast train --width-loss log) in the last two stages"}'
  python -m slimfast.release --calibrate-int8 slim-fasinet-h-mse --float-last
}

"$WHICH"
