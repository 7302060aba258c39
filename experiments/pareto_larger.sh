#!/usr/bin/env bash
# The Pareto claim on chain_sum (RESULTS.md, "Pareto"): a larger single model beside the SmolLM2-135M teams of the
# MLPO warm-start cell, on the same 1,000 test problems with the same decoding (greedy, 32 new tokens):
#   1. the larger model fine-tuned with the team model's own warm start (configs/sft_gym_warm.yaml: LoRA r 16 on
#      the gold answers of 20,000 chain_sum problems, 3 epochs), the adapter merged;
#   2. the larger model alone, untrained and after that SFT (the evaluation config of the cell's single agent,
#      results/mlpo_gym_warm/s0/eval-single.yaml, with the model replaced).
# Then `teamtune pareto` and `teamtune compare` over these and the cell's team runs (RESULTS.md gives the command).
# usage: [SFT=...] [SFT_CONFIG=sft_gym_warm] [EVAL=<eval config>] experiments/pareto_larger.sh MODEL RUNS_DIR [LABEL]
#   LABEL: the run folders' prefix, default larger; SFT: overrides of the SFT, e.g. "batch_tokens=4096
#   grad_accum=4", about the same steps in a quarter of the memory, for a model of a large vocabulary. Another
#   cell's teams: SFT_CONFIG, their warm start (sft_mc_warm for MMLU-format multiple choice), and EVAL, their
#   single agent's evaluation config (e.g. RUNS/mc/mlpo-mc-s0/eval-single.yaml); SFT_CONFIG=none: untrained only.
set -euo pipefail
model=$1 runs=$2 label=${3:-larger}
tt=${TEAMTUNE:-teamtune}
ev=${EVAL:-$(dirname "$0")/../results/mlpo_gym_warm/s0/eval-single.yaml}
sft=${SFT_CONFIG:-sft_gym_warm}
mkdir -p "$runs"
whats=untrained
if [ "$sft" != none ]; then
  whats="sft untrained"
  [ -f "$runs/$label-warm/train_metrics.json" ] ||
    $tt train --resume --config "$sft" model="$model" output="$runs/$label-warm" ${SFT:-}
  [ -f "$runs/$label-warm-model/config.json" ] ||
    $tt export "$model" "$runs/$label-warm-model" --adapter "$runs/$label-warm/agent"
fi
for what in $whats; do
  m=$model
  [ "$what" = sft ] && m=$runs/$label-warm-model
  out=$runs/$label-$what
  [ -f "$out/metrics.json" ] ||
    $tt eval --config "$ev" team.model="$m" output="$out" label="$label alone, $what" method="$what"
done
