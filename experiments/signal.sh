#!/usr/bin/env bash
# Learning signal on one GPU: calibrate SmolLM2-135M over task settings, then MLPO and TeamTR (3 agents) with and
# without dynamic sampling, same seed/steps, and an SFT warm start before MLPO.
#   experiments/signal.sh calibrate RUNS      # RUNS/calibrate: reasoning-gym settings, BBH 2 tasks, GSM8K
#   experiments/signal.sh calibrate-bbh RUNS  # RUNS/calibrate-bbh: 12 BBH tasks, 3-shot
#   experiments/signal.sh mlpo RUNS           # RUNS/mlpo-ds, RUNS/mlpo-plain on the gym setting picked from RUNS/calibrate
#   experiments/signal.sh teamtr RUNS         # RUNS/teamtr-ds, RUNS/teamtr-plain, the same
#   experiments/signal.sh mlpo-bbh RUNS       # RUNS/mlpo-bbh-ds, RUNS/mlpo-bbh-plain on BBH boolean_expressions 3-shot
#   experiments/signal.sh teamtr-bbh RUNS     # RUNS/teamtr-bbh-ds, RUNS/teamtr-bbh-plain, the same
#   experiments/signal.sh warm RUNS           # RUNS/mlpo-gsm8k-warm: SFT on GSM8K gold solutions, then MLPO
# The two runs of a pair run at once on the GPU. MODEL (default smollm2-135m) picks the model, SEED the seed,
# EXTRA adds overrides to every run; TEAMTUNE_DATA must hold gsm8k/ (and bbh/ for calibrate-bbh).
set -euo pipefail
what=$1 runs=$2 model=${MODEL:-smollm2-135m} seed=${SEED:-0}
tt() { python3 -m teamtune.cli "$@"; }

pair() {  # pair NAME CONFIG TASK EVAL_TASK [overrides]: the run with and without dynamic sampling, at once
  local name=$1 config=$2 task=$3 ev=$4
  shift 4
  for ds in true false; do
    local run=$name-$([ $ds = true ] && echo ds || echo plain)
    tt train --config "$config" model="$model" seed="$seed" "task=$task" "eval_task=$ev" \
      policy.dynamic_sampling=$ds output="$runs/$run" "$@" ${EXTRA:-} > "$runs/$run.log" 2>&1 &
  done
  wait
}

bbh='{name: bbh, subset: boolean_expressions, split: train, shots: 3}'
bbh_test='{name: bbh, subset: boolean_expressions, split: test, shots: 3, limit: 64}'
mkdir -p "$runs"
case $what in
calibrate)
  tt calibrate --config configs/calibrate_gym.yaml --model "$model" --output "$runs/calibrate" ;;
calibrate-bbh)
  tt calibrate --config configs/calibrate_bbh.yaml --model "$model" --output "$runs/calibrate-bbh" ;;
mlpo|teamtr)
  # the learnable-zone gym setting with the most mixed groups in the calibration (written to pick.yaml)
  python3 - "$runs" <<'PY'
import json, sys, yaml
runs = sys.argv[1]
rows = [r for r in json.load(open(f"{runs}/calibrate/calibrate.json"))["rows"] if r["task"]["name"] == "gym"]
zone = [r for r in rows if r["learnable"]]
if not zone:
    print("no gym setting in the learnable zone: taking the one with the most mixed groups")
best = max(zone or rows, key=lambda r: r["mixed"])["task"]
from teamtune.tasks import DataError, TaskConfig, load_task
for n in (1000, 300, 150):  # as many training problems as the setting holds
    try:
        load_task(TaskConfig(**{**best, "split": "train", "limit": n}))
        break
    except DataError:
        pass
pick = {"task": {**best, "split": "train", "limit": n}, "eval_task": {**best, "split": "test", "limit": min(128, n // 8)}}
yaml.safe_dump(pick, open(f"{runs}/pick.yaml", "w"))
print("picked:", json.dumps(best["gym"]))
PY
  task=$(python3 -c "import yaml,json,sys; p=yaml.safe_load(open('$runs/pick.yaml')); print(json.dumps(p['task']))")
  ev=$(python3 -c "import yaml,json,sys; p=yaml.safe_load(open('$runs/pick.yaml')); print(json.dumps(p['eval_task']))")
  pair "$what" "configs/${what}_gym.yaml" "$task" "$ev" ;;
mlpo-bbh|teamtr-bbh)
  # three-shot prompts are ~4x longer than the gym ones: micro-batches of 8 keep two runs inside one GPU's memory
  pair "$what" "configs/${what%-bbh}_gym.yaml" "$bbh" "$bbh_test" policy.micro_batch=8 policy.max_new_tokens=192 ;;
warm)
  tt train --config configs/mlpo_gsm8k.yaml model="$model" seed="$seed" output="$runs/mlpo-gsm8k-warm" \
    'warm_start={problems: 512, epochs: 2}' policy.dynamic_sampling=true ${EXTRA:-} > "$runs/mlpo-gsm8k-warm.log" 2>&1
  for b in single warm-start-alone leader-alone leader-warm-start leader-trained; do
    tt eval --config "$runs/mlpo-gsm8k-warm/eval-$b.yaml" --output "$runs/mlpo-gsm8k-warm/eval-$b" \
      > "$runs/mlpo-gsm8k-warm/eval-$b.log" 2>&1
  done ;;
*)
  echo "unknown step $what (calibrate, calibrate-bbh, mlpo, teamtr, mlpo-bbh, teamtr-bbh, warm)" >&2
  exit 2 ;;
esac
