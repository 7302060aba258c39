#!/usr/bin/env bash
# A 200-step MLPO cell of RESULTS.md: per seed, train the leader from CONFIG (configs/mlpo_bbh_200.yaml: BBH
# boolean_expressions; configs/mlpo_bbh_date_200.yaml: BBH date_understanding), evaluate the five baselines on the
# held-out 60%, then compare them paired problem by problem over all seeds (sign test against the vote, accuracy
# by peers right).
# usage: [PARALLEL=1] [NAME=prefix] [OVERRIDES="..."] experiments/mlpo_200.sh CONFIG MODEL RUNS_DIR SEED...
#   Runs go to RUNS_DIR/NAME-s<seed> (NAME defaults to CONFIG), the comparison to RUNS_DIR/NAME-compare.
#   PARALLEL=1 trains the seeds side by side on one GPU, each capping its backward at 16,384 token positions
#   (policy.micro_tokens: the same step, about a quarter of the memory of 64 rows of ~1,200 tokens). On an H200,
#   three seeds side by side took 10.9 s a step each against 4.4 s alone (1.2x the total throughput): within a
#   time-limited session, run seeds one after another so that each finishes.
#   TEAMTUNE: the command (default teamtune). Needs BBH with its cot-prompts/ ($TEAMTUNE_DATA/bbh or the hub).
set -euo pipefail
config=$1 model=$2 runs=$3
shift 3
name=${NAME:-$config}
tt=${TEAMTUNE:-teamtune}
mkdir -p "$runs"
extra=${OVERRIDES:-}
[ -n "${PARALLEL:-}" ] && extra="$extra policy.micro_tokens=16384"
train() { $tt train --resume --config "$config" model="$model" seed="$1" output="$runs/$name-s$1" $extra; }
evals() {
  for base in single vote leader-untrained leader-trained leader-alone; do
    out=$runs/$name-s$1
    [ -f "$out/eval-$base/metrics.json" ] || $tt eval --config "$out/eval-$base.yaml"
  done
}
if [ -n "${PARALLEL:-}" ]; then
  for seed in "$@"; do (train "$seed" > "$runs/$name-train-s$seed.log" 2>&1 && evals "$seed" > "$runs/$name-eval-s$seed.log" 2>&1) & done
  wait
else
  for seed in "$@"; do train "$seed"; evals "$seed"; done
fi
folders() { local b=$1; shift; for seed in "$@"; do echo "$runs/$name-s$seed/eval-$b"; done; }
$tt compare $(folders vote "$@") $(folders leader-trained "$@") $(folders leader-alone "$@") \
  $(folders leader-untrained "$@") $(folders single "$@") --out "$runs/$name-compare"
