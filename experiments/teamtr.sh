#!/usr/bin/env bash
# The TeamTR comparison of RESULTS.md: TeamTR vs stale-occupancy sequential vs simultaneous vs a single agent
# with the same number of updates, for teams of 2, 3 and 4 agents, per seed; then each trained team on the
# GSM8K test split. TASK=bbh switches to BBH boolean_expressions (held-out 60%, 3-shot prompts).
# CONFIG (default configs/teamtr_gsm8k.yaml) and NAME (the run folders' prefix, default TASK) run another recipe,
# e.g. CONFIG=teamtr_gym_warm (experiments/teamtr_warm.sh).
# usage: [TASK=gsm8k] [CONFIG=...] [NAME=...] [AGENTS="2 3 4"] [MODES="teamtr stale simultaneous single"] [JOBS=1] \
#        [OVERRIDES="stages=3"] [EVAL_OVERRIDES="task.limit=300"] experiments/teamtr.sh MODEL RUNS_DIR SEED...
# (TEAMTUNE: the command; JOBS runs that many trainings, each followed by its evaluation, at once; "{agents}" in
# OVERRIDES becomes each run's number of agents, e.g. warm_start.folder=RUNS/warm-{agents} for a shared warm start)
set -euo pipefail
model=$1 runs=$2
shift 2
tt=${TEAMTUNE:-teamtune}
task=${TASK:-gsm8k}
config=${CONFIG:-configs/teamtr_gsm8k.yaml}
name=${NAME:-teamtr-$task}
extra=""
[ "$task" = bbh ] && extra="'task={name: bbh, subset: boolean_expressions, split: train, shots: 3}' \
'eval_task={name: bbh, subset: boolean_expressions, split: test, shots: 3, limit: 64}'"
mkdir -p "$runs"
for seed in "$@"; do
  for n in ${AGENTS:-2 3 4}; do
    for mode in ${MODES:-teamtr stale simultaneous single}; do
      out=$runs/$name-$n-$mode-s$seed
      [ -f "$out/eval-test/metrics.json" ] && continue
      ov=${OVERRIDES:-}
      echo "$tt train --resume --config $config model=$model agents=$n mode=$mode seed=$seed \
output=$out $extra ${ov//\{agents\}/$n} >> $out.log 2>&1 && $tt eval --config $out/eval.yaml ${EVAL_OVERRIDES:-} >> $out.log 2>&1"
    done
  done
done | xargs -d '\n' -P "${JOBS:-1}" -I{} bash -c {}
