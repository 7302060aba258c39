#!/usr/bin/env bash
# TeamTR in the learnable zone after an SFT warm start (RESULTS.md, "TeamTR from an SFT warm start"):
#   1. the warm model of experiments/warm_model.sh (SFT on chain_sum gold answers, merged) in RUNS_DIR/warm-model;
#   2. per seed, for 2, 3 and 4 agents: teamtr, stale and single (CONFIG=teamtr_gym_warm through
#      experiments/teamtr.sh), each trained team on 1,000 chain_sum test problems, greedy;
#   3. the untrained team of each size (every agent the warm model, no adapter) on the same problems;
#   4. with a config that has a warm start (CONFIG=teamtr_gym_pipeline), the team of each size after it and
#      before RL (RUNS_DIR/NAME-N-warm-start; share one warm start per size: OVERRIDES=warm_start.folder=...);
#   5. per team size, the paired comparison against stale (`teamtune compare`), then the gap teamtr - stale
#      against the number of agents, regressions and trust-region stops (experiments/teamtr_gap.py).
# usage: [JOBS=9] [AGENTS="2 3 4"] [MODES="teamtr stale single"] [TEST=1000] [OVERRIDES=...] \
#        [CONFIG=teamtr_gym_warm] [NAME=gymwarm] experiments/teamtr_warm.sh MODEL RUNS_DIR SEED...
#   TEST: test problems per evaluation; OVERRIDES: of every training run. Each run is skipped when its evaluation is there (a rerun after a kill goes on). Needs reasoning-gym.
set -euo pipefail
model=$1 runs=$2
shift 2
tt=${TEAMTUNE:-teamtune}
here=$(dirname "$0")
agents=${AGENTS:-2 3 4}
modes=${MODES:-teamtr stale single}
"$here/warm_model.sh" "$model" "$runs"
name=${NAME:-gymwarm}
CONFIG=${CONFIG:-teamtr_gym_warm} NAME=$name AGENTS="$agents" MODES="$modes" JOBS=${JOBS:-9} \
  EVAL_OVERRIDES="task.limit=${TEST:-1000}" "$here/teamtr.sh" "$runs/warm-model" "$runs" "$@"
for n in $agents; do
  out=$runs/$name-$n-untrained  # greedy: one run serves every seed
  team=$runs/$name-$n-teamtr-s$1
  [ -d "$team" ] || team=$runs/$name-$n-stale-s$1
  [ -f "$out/metrics.json" ] || $tt eval --config "$team/eval-untrained.yaml" task.limit="${TEST:-1000}" output="$out"
  folders=()
  for mode in stale teamtr single; do for seed in "$@"; do
    f=$runs/$name-$n-$mode-s$seed/eval-test
    [ -f "$f/metrics.json" ] && folders+=("$f")
  done; done
  warm=$runs/$name-$n-warm-start  # the team after its warm start, before RL (shared by the runs: warm_start.folder)
  if [ -f "$team/eval-warm-start.yaml" ] && [ ! -f "$warm/metrics.json" ]; then
    $tt eval --config "$team/eval-warm-start.yaml" task.limit="${TEST:-1000}" output="$warm"
  fi
  $tt compare "${folders[@]}" "$out" --reference "$n agent(s), stale, teamtr-stale" --out "$runs/$name-$n-compare"
done
python3 "$here/teamtr_gap.py" "$runs" --name "$name" --agents $agents --out "$runs/$name-gap"
