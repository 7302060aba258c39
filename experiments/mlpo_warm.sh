#!/usr/bin/env bash
# MLPO in the learnable zone after an SFT warm start (RESULTS.md, "MLPO from an SFT warm start"):
#   1-2. SFT MODEL on the gold answers of 20,000 chain_sum problems and merge the adapter into RUNS_DIR/warm-model,
#      the base of the whole team: peers and leader (experiments/warm_model.sh),
#   3. calibrate that model over chain_sum settings of rising difficulty (configs/calibrate_warm.yaml),
#   4. pick the learnable setting nearest 40% pass@1 into RUNS_DIR/mlpo_gym_warm.yaml,
#   5. per seed: 200 MLPO steps, the five baselines on 1,000 test problems, and the paired comparison
#      (experiments/mlpo_200.sh).
# usage: [SFT_CONFIG=sft_gym_warm CALIBRATE_CONFIG=calibrate_warm MLPO_CONFIG=mlpo_gym_warm NAME=mlpo-warm] \
#        experiments/mlpo_warm.sh MODEL RUNS_DIR SEED...
#   The three configs are those of stages 1, 3 and 5 (the task of the last is replaced by the picked setting);
#   for MMLU-format multiple choice built from GSM8K (python experiments/build_mc.py data/mc_gsm8k --task gsm8k
#   source=...): SFT_CONFIG=sft_mc_warm CALIBRATE_CONFIG=calibrate_mc_warm MLPO_CONFIG=mlpo_mc_warm NAME=mlpo-mc.
#   Each stage is skipped when its output is there (a rerun after a kill goes on). WARM, CALIBRATE: extra
#   overrides of stages 1 and 3, PICK=--any (a smoke test on random weights); OVERRIDES passes on to mlpo_200.sh. Needs reasoning-gym.
set -euo pipefail
model=$1 runs=$2
shift 2
tt=${TEAMTUNE:-teamtune}
here=$(dirname "$0")
"$here/warm_model.sh" "$model" "$runs"
mlpo=${MLPO_CONFIG:-mlpo_gym_warm}
picked=$runs/$(basename "$mlpo" .yaml).yaml  # the MLPO config with the picked task
[ -f "$runs/calibrate/calibrate.json" ] ||
  $tt calibrate --config "${CALIBRATE_CONFIG:-calibrate_warm}" --model "$runs/warm-model" output="$runs/calibrate" \
    ${CALIBRATE:-}
python3 "$here/pick_setting.py" "$runs/calibrate/calibrate.json" "$mlpo" "$picked" ${PICK:-}
NAME=${NAME:-mlpo-warm} "$here/mlpo_200.sh" "$picked" "$runs/warm-model" "$runs" "$@"
