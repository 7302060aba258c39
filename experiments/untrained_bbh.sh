#!/usr/bin/env bash
# Untrained layouts of one model on BBH boolean_expressions (test split), for the Pareto worked example.
# usage: experiments/untrained_bbh.sh MODEL OUT_DIR SEED... (the single greedy agent runs with the first seed only)
set -euo pipefail
model=$1 out=$2; shift 2
common=(--task bbh --split test task.subset=boolean_expressions --model "$model" team.batch_size=256
        "price_per_million_tokens={$model: 0.1}")
s='{max_new_tokens: 192, temperature: 0.7}'
g='{max_new_tokens: 192, do_sample: false}'
first=$1
python3 -m teamtune.cli eval "${common[@]}" --layout single --output "$out/single-s$first" team.seed="$first" \
  label=single "team.agents=[{name: solver, sampling: $g}]"
for seed in "$@"; do
  python3 -m teamtune.cli eval "${common[@]}" --layout vote --output "$out/vote-s$seed" team.seed="$seed" \
    label="vote x5" team.samples=5 "team.agents=[{name: solver, sampling: $s}]"
  python3 -m teamtune.cli eval "${common[@]}" --layout leader --output "$out/leader-s$seed" team.seed="$seed" \
    label="leader 3+1" team.peers=3 "team.agents=[{name: peer, sampling: $s}, {name: leader, sampling: $g}]"
  python3 -m teamtune.cli eval "${common[@]}" --layout pipeline --output "$out/pipeline-s$seed" team.seed="$seed" \
    label="solver-critic-refiner" \
    "team.agents=[{name: solver, sampling: $s}, {name: critic, sampling: $s}, {name: refiner, sampling: $g}]"
done
