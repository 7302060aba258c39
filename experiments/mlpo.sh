#!/usr/bin/env bash
# The MLPO comparison of RESULTS.md on GSM8K and BBH boolean_expressions: per seed, train the leader
# (configs/mlpo_<task>.yaml), then evaluate the five baselines the run wrote (single, vote of the peers,
# untrained leader with the team, trained leader with the team, trained leader alone) on the test split.
# usage: [TASKS="gsm8k bbh"] [OVERRIDES="steps=50"] [EVAL_OVERRIDES="task.limit=500"] \
#        experiments/mlpo.sh MODEL RUNS_DIR SEED...
#        (TEAMTUNE: the command, default teamtune; OVERRIDES: key=value pairs for every training config,
#        EVAL_OVERRIDES: for every evaluation)
set -euo pipefail
model=$1 runs=$2
shift 2
tt=${TEAMTUNE:-teamtune}
for seed in "$@"; do
  for task in ${TASKS:-gsm8k bbh}; do
    out=$runs/mlpo-$task-s$seed
    $tt train --resume --config configs/mlpo_$task.yaml model=$model seed=$seed output=$out ${OVERRIDES:-}
    for base in single vote leader-untrained leader-trained leader-alone; do
      [ -f "$out/eval-$base/metrics.json" ] || $tt eval --config "$out/eval-$base.yaml" ${EVAL_OVERRIDES:-}
    done
  done
done
[ -n "${NO_PARETO:-}" ] && exit 0
teamtune_pareto() { $tt pareto "$runs"/mlpo-"$1"-s*/eval-* --out "$runs/pareto-$1" --x tokens; }
for task in ${TASKS:-gsm8k bbh}; do teamtune_pareto "$task"; done
