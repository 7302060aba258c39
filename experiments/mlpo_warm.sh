#!/usr/bin/env bash
# MLPO in the learnable zone after an SFT warm start (RESULTS.md, "MLPO from an SFT warm start"):
#   1-2. SFT MODEL on the gold answers of 20,000 chain_sum problems and merge the adapter into RUNS_DIR/warm-model,
#      the base of the whole team: peers and leader (experiments/warm_model.sh),
#   3. calibrate that model over chain_sum settings of rising difficulty (configs/calibrate_warm.yaml),
#   4. pick the learnable setting nearest 40% pass@1 into RUNS_DIR/mlpo_gym_warm.yaml,
#   5. per seed: 200 MLPO steps, the five baselines on 1,000 test problems, and the paired comparison
#      (experiments/mlpo_200.sh).
# usage: experiments/mlpo_warm.sh MODEL RUNS_DIR SEED...
#   Each stage is skipped when its output is there (a rerun after a kill goes on). WARM, CALIBRATE: extra
#   overrides of stages 1 and 3, PICK=--any (a smoke test on random weights); OVERRIDES passes on to mlpo_200.sh. Needs reasoning-gym.
set -euo pipefail
model=$1 runs=$2
shift 2
tt=${TEAMTUNE:-teamtune}
here=$(dirname "$0")
"$here/warm_model.sh" "$model" "$runs"
[ -f "$runs/calibrate/calibrate.json" ] ||
  $tt calibrate --config calibrate_warm --model "$runs/warm-model" output="$runs/calibrate" ${CALIBRATE:-}
python3 "$here/pick_setting.py" "$runs/calibrate/calibrate.json" mlpo_gym_warm "$runs/mlpo_gym_warm.yaml" ${PICK:-}
NAME=mlpo-warm "$here/mlpo_200.sh" "$runs/mlpo_gym_warm.yaml" "$runs/warm-model" "$runs" "$@"
