#!/usr/bin/env bash
# The 200-step MLPO run of RESULTS.md on BBH boolean_expressions 3-shot: per seed, train the leader
# (configs/mlpo_bbh_200.yaml), evaluate the five baselines on the held-out 60%, then compare them paired
# problem by problem over all seeds (McNemar against the vote, accuracy by peers right).
# usage: [PARALLEL=1] [OVERRIDES="..."] experiments/mlpo_bbh_200.sh MODEL RUNS_DIR SEED...
#   PARALLEL=1 trains the seeds side by side on one GPU, each capping its backward at 16,384 token positions
#   (policy.micro_tokens: the same step, about a quarter of the memory of 64 rows of ~1,200 tokens).
#   TEAMTUNE: the command (default teamtune). Needs BBH with its cot-prompts/ ($TEAMTUNE_DATA/bbh or the hub).
set -euo pipefail
model=$1 runs=$2
shift 2
tt=${TEAMTUNE:-teamtune}
mkdir -p "$runs"
extra=${OVERRIDES:-}
[ -n "${PARALLEL:-}" ] && extra="$extra policy.micro_tokens=16384"
train() { $tt train --resume --config mlpo_bbh_200 model="$model" seed="$1" output="$runs/mlpo-bbh-s$1" $extra; }
evals() {
  for base in single vote leader-untrained leader-trained leader-alone; do
    out=$runs/mlpo-bbh-s$1
    [ -f "$out/eval-$base/metrics.json" ] || $tt eval --config "$out/eval-$base.yaml"
  done
}
if [ -n "${PARALLEL:-}" ]; then
  for seed in "$@"; do (train "$seed" > "$runs/train-s$seed.log" 2>&1 && evals "$seed" > "$runs/eval-s$seed.log" 2>&1) & done
  wait
else
  for seed in "$@"; do train "$seed"; evals "$seed"; done
fi
folders() { local b=$1; shift; for seed in "$@"; do echo "$runs/mlpo-bbh-s$seed/eval-$b"; done; }
$tt compare $(folders vote "$@") $(folders leader-trained "$@") $(folders leader-alone "$@") \
  $(folders leader-untrained "$@") $(folders single "$@") --out "$runs/compare-bbh"
