#!/usr/bin/env bash
# Untrained points of the apps Pareto plot: one model, untrained, as the single agent and as the planner-executor
# team, on the splits and with the decoding of experiments/prost_apps.sh's evaluations (dev 100 tasks, test_unseen
# 60; greedy; planner 64 new tokens, executor and single agent 128). Finished evaluations are skipped.
# usage: [PREFIX=] experiments/apps_untrained.sh MODEL RUNS_DIR   (runs: RUNS_DIR/[PREFIX]<layout>-untrained/eval-<split>)
set -euo pipefail
model=$1 runs=$2
tt=${TEAMTUNE:-teamtune}
g='do_sample: false'
for layout in single planner-executor; do
  agents="[{name: agent, sampling: {max_new_tokens: 128, $g}}]"
  [ "$layout" = planner-executor ] &&
    agents="[{name: planner, sampling: {max_new_tokens: 64, $g}}, {name: executor, sampling: {max_new_tokens: 128, $g}}]"
  for split in dev:100 test_unseen:60; do
    out=$runs/${PREFIX:-}$layout-untrained/eval-${split%:*}
    [ -f "$out/metrics.json" ] ||
      $tt eval --task apps --split "${split%:*}" --limit "${split#*:}" --layout "$layout" --model "$model" \
        --output "$out" team.batch_size=128 team.seed=0 "team.agents=$agents" label="$layout untrained" \
        method=untrained
  done
done
