#!/usr/bin/env bash
# Learning signal on one GPU: calibrate SmolLM2-135M over procedural settings, pick the learnable-zone setting
# with the most mixed groups, then MLPO and TeamTR (3 agents) with and without dynamic sampling, same seed/steps.
#   experiments/signal.sh calibrate RUNS      # RUNS/calibrate (table, PNG, JSON)
#   experiments/signal.sh mlpo RUNS           # RUNS/mlpo-ds, RUNS/mlpo-plain (in parallel on the GPU)
#   experiments/signal.sh teamtr RUNS         # RUNS/teamtr-ds, RUNS/teamtr-plain
# MODEL (default smollm2-135m) picks the model, SEED the seed, EXTRA adds overrides; TEAMTUNE_DATA must hold
# gsm8k/ for the GSM8K row of the calibration.
set -euo pipefail
what=$1 runs=$2 model=${MODEL:-smollm2-135m} seed=${SEED:-0}
tt() { python3 -m teamtune.cli "$@"; }
case $what in
calibrate)
  tt calibrate --config configs/calibrate_gym.yaml --model "$model" --output "$runs/calibrate" ;;
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
  for ds in true false; do
    name=$what-$([ $ds = true ] && echo ds || echo plain)
    tt train --config configs/${what}_gym.yaml model="$model" seed=$seed "task=$task" "eval_task=$ev" \
      policy.dynamic_sampling=$ds output="$runs/$name" ${EXTRA:-} > "$runs/$name.log" 2>&1 &
  done
  wait ;;
esac
