#!/usr/bin/env bash
# Untrained points of the apps Pareto plot: one model, untrained, as the single agent and as the planner-executor
# team, on the splits and with the decoding of experiments/prost_apps.sh's evaluations (dev 100 tasks, test_unseen
# 60; the agents' decoding of their eval.yaml, `teamtune.train.sft.apps_agents`). Finished evaluations are skipped.
# usage: [PREFIX=] experiments/apps_untrained.sh MODEL RUNS_DIR   (runs: RUNS_DIR/[PREFIX]<layout>-untrained/eval-<split>)
set -euo pipefail
model=$1 runs=$2
tt=${TEAMTUNE:-teamtune}
for layout in single planner-executor; do
  # the agents (greedy, each role's new-token budget) of the trained runs' eval.yaml, without their weights
  agents=$(python3 -c 'import json, sys; from teamtune.train.sft import apps_agents; print(json.dumps(apps_agents(sys.argv[1])))' "$layout")
  for split in dev:100 test_unseen:60; do
    out=$runs/${PREFIX:-}$layout-untrained/eval-${split%:*}
    [ -f "$out/metrics.json" ] ||
      $tt eval --task apps --split "${split%:*}" --limit "${split#*:}" --layout "$layout" --model "$model" \
        --output "$out" team.batch_size=128 team.seed=0 "team.agents=$agents" label="$layout untrained" \
        method=untrained
  done
done
