#!/usr/bin/env bash
# A background run for experiments/remote.sh's `start` step: runs each command (commands separated by ::, they run
# side by side) from the project's root with the GPU machine's paths set, waits for all of them, then touches
# ~/runs/done, which remote.sh's `wait` step watches. VAR=value words before a command set its environment.
# e.g. experiments/remote.sh start experiments/background.sh \
#        MODES=roles SCHEDULES=none CONFIG=configs/prost_apps_long.yaml \
#          experiments/prost_apps.sh '$HOME/m/smollm2' '$HOME/runs' 2 4 1 2 :: \
#        MODES=roles SCHEDULES=shuffled CONFIG=configs/prost_apps_long.yaml \
#          experiments/prost_apps.sh '$HOME/m/smollm2' '$HOME/runs' 3 6 0 1 2
#   (quoted $HOME is expanded here; unquoted, the calling shell expands it, which is the same machine)
set -uo pipefail
export PYTHONPATH=$HOME/site:$PWD/src PYTHONUNBUFFERED=1 TEAMTUNE="python3 -m teamtune.cli"
mkdir -p "$HOME/runs"
rm -f "$HOME/runs/done"
run() {  # one command: VAR=value words, then the program and its arguments
  local vars=() words=()
  for w in "$@"; do
    w=${w//\$HOME/$HOME}
    if [ ${#words[@]} -eq 0 ] && [[ $w =~ ^[A-Za-z_][A-Za-z0-9_]*= ]]; then vars+=("$w"); else words+=("$w"); fi
  done
  echo "$(date -u +%T) start: ${vars[*]} ${words[*]}"
  env "${vars[@]}" "${words[@]}"
  echo "$(date -u +%T) rc $?: ${words[*]}"
}
pids=() cmd=()
for w in "$@" ::; do
  if [ "$w" = "::" ]; then
    [ ${#cmd[@]} -gt 0 ] && { run "${cmd[@]}" & pids+=($!); }
    cmd=()
  else
    cmd+=("$w")
  fi
done
for p in "${pids[@]}"; do wait "$p"; done
date -u
touch "$HOME/runs/done"
