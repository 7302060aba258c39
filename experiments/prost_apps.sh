#!/usr/bin/env bash
# The ProST comparison of RESULTS.md: {single agent, planner-executor} x {standard SFT, ProST} per seed, each
# trained with configs/prost_apps.yaml and evaluated on the apps dev (100 tasks) and test_unseen (60) splits.
# Runs JOBS trainings/evaluations at once (one GPU holds several 135M runs).
# usage: experiments/prost_apps.sh MODEL RUNS_DIR JOBS SEED...
set -euo pipefail
model=$1 runs=$2 jobs=$3
shift 3
tt=${TEAMTUNE:-teamtune}
mkdir -p "$runs"
for seed in "$@"; do
  for mode in single roles; do
    for sched in none prost; do
      out=$runs/$mode-$sched-s$seed
      echo "$tt train --config configs/prost_apps.yaml model=$model mode=$mode curriculum.schedule=$sched \
seed=$seed output=$out > $out.log 2>&1 && \
$tt eval --config $out/eval.yaml task.split=dev task.limit=100 output=$out/eval-dev >> $out.log 2>&1 && \
$tt eval --config $out/eval.yaml task.split=test_unseen task.limit=60 output=$out/eval-test_unseen >> $out.log 2>&1"
    done
  done
done | xargs -P "$jobs" -I{} bash -c {}
