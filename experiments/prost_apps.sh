#!/usr/bin/env bash
# The ProST comparison of RESULTS.md: {single agent, planner-executor} x {standard SFT, ProST} per seed, each
# trained with configs/prost_apps.yaml, then evaluated on the apps dev (100 tasks) and test_unseen (60) splits.
# All trainings run first (TRAIN_JOBS at once: GPU-bound), then all evaluations (EVAL_JOBS at once: these are
# bound by the host, and sharing the GPU with training would slow them most). Finished steps are skipped.
# usage: [MODES="single roles"] [CONFIG=configs/prost_apps.yaml] [SCHEDULES="none prost"] [PREFIX=] \
#        experiments/prost_apps.sh MODEL RUNS_DIR TRAIN_JOBS EVAL_JOBS SEED...
#   (runs are named [PREFIX]MODE-SCHEDULE-sSEED; PREFIX=gemma3- keeps another model's runs apart in one RUNS_DIR)
#   (SCHEDULES="none prost shuffled" adds the shuffled-curriculum ablation)
#   (SINGLE_EPOCHS=N: the single agent trains N epochs instead of the config's `epochs`; its loss still fell by a
#    quarter in the last of 6 epochs, 0.025 -> 0.018, as the planner's did before it was given 24)
# GPU memory: a planner-executor training of prost_apps_long.yaml held 15-17 GB with every position's logits (four
#   fit an 80 GB card, six did not), 10.5-11.4 GB with the labelled positions' alone (SFT's default now). Keep
#   TRAIN_JOBS (and runs started side by side) within that: five side by side fit (77.5 GB of 80 in use). An
#   evaluation held 7.5-16.7 GB: eight at once ran out of an 80 GB card, four did not; those that fail run again
#   one at a time after the others.
# Time on an H100: four such trainings side by side, then their eight evaluations (EVAL_JOBS 8): 11 min 44 s; five
#   side by side (two scripts, 2 + 3 trainings), then their ten evaluations (EVAL_JOBS 2 each): 13 min 53 s.
#   Gemma 3 270M: four side by side (13.7-13.9 GB each), then eight evaluations four at once: 14 min 2 s.
set -euo pipefail
model=$1 runs=$2 train_jobs=$3 eval_jobs=$4
shift 4
tt=${TEAMTUNE:-teamtune}
mkdir -p "$runs"
names=()
for seed in "$@"; do
  for mode in ${MODES:-single roles}; do
    for sched in ${SCHEDULES:-none prost}; do names+=("${PREFIX:-}$mode-$sched-s$seed"); done
  done
done
for name in "${names[@]}"; do
  IFS=- read -r mode sched s <<<"${name#"${PREFIX:-}"}"
  own=""
  [ "$mode" = single ] && own="'role_epochs={}'${SINGLE_EPOCHS:+ epochs=$SINGLE_EPOCHS}"  # role_epochs: the team's roles
  [ -f "$runs/$name/eval.yaml" ] || echo "$tt train --resume --config ${CONFIG:-configs/prost_apps.yaml} model=$model \
mode=$mode curriculum.schedule=$sched seed=${s#s} output=$runs/$name $own >> $runs/$name.log 2>&1"
done | xargs -P "$train_jobs" -I{} bash -c {} || echo "some trainings failed (see their logs); evaluating the others"
evaluations() {  # the commands of the evaluations not yet done
  for name in "${names[@]}"; do
    [ -f "$runs/$name/eval.yaml" ] || continue
    for split in dev:100 test_unseen:60; do
      [ -f "$runs/$name/eval-${split%:*}/metrics.json" ] || echo "$tt eval --config $runs/$name/eval.yaml \
task.split=${split%:*} task.limit=${split#*:} output=$runs/$name/eval-${split%:*} >> $runs/$name.log 2>&1"
    done
  done
}
evaluations | xargs -P "$eval_jobs" -I{} bash -c {} || echo "some evaluations failed; running them again one at a time"
evaluations | xargs -P 1 -I{} bash -c {}
