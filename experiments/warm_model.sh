#!/usr/bin/env bash
# The SFT warm start of a whole team (RESULTS.md, "MLPO from an SFT warm start"): SFT MODEL on the gold answers of
# 20,000 chain_sum problems (configs/sft_gym_warm.yaml), then merge the adapter into RUNS_DIR/warm-model, the base
# every agent starts from. Each stage is skipped when its output is there. WARM: extra overrides of the SFT;
# SFT_CONFIG: another SFT config (configs/sft_mc_warm.yaml: the gold letters of MMLU-format multiple choice).
# usage: [SFT_CONFIG=sft_gym_warm] [WARM=...] experiments/warm_model.sh MODEL RUNS_DIR
set -euo pipefail
model=$1 runs=$2
tt=${TEAMTUNE:-teamtune}
mkdir -p "$runs"
[ -f "$runs/warm/train_metrics.json" ] || $tt train --config "${SFT_CONFIG:-sft_gym_warm}" model="$model" output="$runs/warm" ${WARM:-}
[ -f "$runs/warm-model/config.json" ] || $tt export "$model" "$runs/warm-model" --adapter "$runs/warm/agent"
