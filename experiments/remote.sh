#!/usr/bin/env bash
# Steps on a GPU machine that is reached one command at a time (each command ends within minutes, the machine is
# kept between commands only while they follow each other closely, and what a command carries is capped, so a
# model file travels in parts: experiments/parts.py). Run from the project's root there; steps run in the order
# given, and the first that fails stops the rest:
#   install DIR         pip-install the wheels in DIR (packages the machine lacks) into ~/site
#   part FILE           keep a part of a split file in ~/parts
#   join DIR NAME       join ~/parts (DIR/manifest.json says how) into ~/m/NAME.gguf and export it to ~/m/NAME
#   start SCRIPT ARG..  run SCRIPT in its own session in the background (it outlives this command); it should
#                       end by touching ~/runs/done, as experiments/background.sh does for any commands
#   wait SECONDS        until ~/runs/done exists or SECONDS pass; fails at once on a fresh machine (no ~/runs/bg.log)
#   report              the background run's log, GPU memory, each run log's last lines
#   pack                ~/runs as $OUT/runs.tgz (no weights, episodes or tokenizers), the episodes in 15 MiB pieces
# e.g. experiments/remote.sh install .gpu/whl part .gpu/model/part00
#      experiments/remote.sh part .gpu/model/part01 join .gpu/model smollm2 \
#        start experiments/background.sh experiments/prost_apps.sh '$HOME/m/smollm2' '$HOME/runs' 4 8 1 2 wait 500 report
#      experiments/remote.sh wait 500 report pack
#   then here: python experiments/ingest.py <fetched>/runs.tgz results/<cell> [RUN_GLOB...] --job <name>
set -uo pipefail
export PYTHONPATH=$HOME/site:$PWD/src PYTHONUNBUFFERED=1 TEAMTUNE="python3 -m teamtune.cli"
R=$HOME/runs
mkdir -p "$R" "$HOME/parts" "$HOME/m"
fail() { echo "remote.sh: $*" >&2; exit 3; }
while [ $# -gt 0 ]; do
  step=$1; shift
  case $step in
    install)
      python3 -m pip install -q --no-index --no-deps --no-compile --target "$HOME/site" "$1"/*.whl || fail "install"
      shift
      nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
      python3 -c "import torch, transformers, peft; print(torch.__version__, transformers.__version__, peft.__version__)" ;;
    part) cp "$1" "$HOME/parts/" || fail "part $1"; shift; echo "parts: $(ls "$HOME/parts" | tr '\n' ' ')" ;;
    join)
      cp "$1/manifest.json" "$HOME/parts/" && name=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['name'])" "$1/manifest.json") \
        && python3 experiments/parts.py join "$HOME/parts" "$HOME/m/$name" \
        && $TEAMTUNE export "$HOME/m/$name" "$HOME/m/$2" || fail "join"
      shift 2 ;;
    start)
      script=$1; shift; args=()
      while [ $# -gt 0 ] && ! [[ $1 =~ ^(install|part|join|start|wait|report|pack)$ ]]; do args+=("$1"); shift; done
      setsid nohup bash "$script" "${args[@]}" > "$R/bg.log" 2>&1 < /dev/null &
      sleep 30; cat "$R/bg.log" ;;
    wait)
      [ -f "$R/bg.log" ] || fail "no background run here: this is a fresh machine (the last one went back)"
      end=$((SECONDS + $1)); shift
      while [ ! -f "$R/done" ] && [ $SECONDS -lt $end ]; do sleep 10; done
      [ -f "$R/done" ] && echo "done" || echo "still running" ;;
    report)
      date; cat "$R/bg.log" 2>/dev/null; nvidia-smi --query-gpu=memory.used,utilization.gpu --format=csv,noheader
      for f in "$R"/*.log; do [ "$f" = "$R/bg.log" ] || { echo "== $f"; tr '\r' '\n' < "$f" | grep -v '^\s*$' | tail -n 2 | cut -c1-300; }; done ;;
    pack)
      # no weights, episodes or tokenizer files (Gemma's tokenizer.json, 33 MB, in every adapter folder)
      (cd "$R" && tar czf "$OUT/runs.tgz" --exclude='*.safetensors' --exclude='episodes.jsonl' --exclude='*.pt' \
        --exclude='tokenizer.json' --exclude='tokenizer_config.json' --exclude='chat_template.jinja' . \
        && find . -name episodes.jsonl | tar czf - -T - | split -b 15m -d - "$OUT/eps.tgz.") || fail "pack"
      ls -la "$OUT" ;;
    *) fail "unknown step $step" ;;
  esac
done
