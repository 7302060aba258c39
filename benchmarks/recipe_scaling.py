"""MLPO and TeamTR training throughput on N processes against 1, launched the way users launch them.

Runs `accelerate launch --num_processes K -m teamtune.cli train --config <recipe config> ...` for K = 1 and N, with
weak scaling: every process keeps the same share of problems (`problems_per_step` / `problems_per_stage` =
share x K), so the ideal is N times the problems per second. No evaluation, no checkpoints. The figure is
problems per second over the logged rows after the first step (MLPO) or stage (TeamTR), which hold compilation
and warm-up; rollout and update seconds are recorded beside it. Rank 0 logs its own time, and each row ends in
a collective (DDP's all-reduce, the metrics' reduce), so it waits for the slowest rank.

    python benchmarks/recipe_scaling.py --recipe mlpo --model random:smollm2-135m --gpus 1 2
    python benchmarks/recipe_scaling.py --recipe teamtr --model random:smollm2-135m --gpus 1 2
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from common import device_name, record, save_records

RECIPES = {  # config, the key of problems per logged unit, the log's unit
    "mlpo": ("configs/mlpo_gsm8k.yaml", "problems_per_step", "step"),
    "teamtr": ("configs/teamtr_gsm8k.yaml", "problems_per_stage", "stage"),
}


def launch(args, k: int, folder: Path) -> dict:
    """One run on `k` processes; its throughput read back from log.jsonl."""
    config, per, unit = RECIPES[args.recipe]
    if torch.cuda.is_available() or k == 1:
        cmd = [
            sys.executable,
            "-m",
            "accelerate.commands.launch",
            "--num_processes",
            str(k),
            "--num_machines",
            "1",
        ]
        cmd += ["--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(args.port)]
        cmd += ["--multi_gpu"] if k > 1 else []
    else:  # accelerate launch --cpu runs one process: CPU ranks over gloo come from torchrun
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            f"--nproc_per_node={k}",
            f"--master_port={args.port}",
        ]
    cmd += ["-m", "teamtune.cli", "train", "--config", config, f"model={args.model}", f"output={folder}"]
    cmd += [f"{per}={args.share * k}", f"{'steps' if unit == 'step' else 'stages'}={args.units}"]
    cmd += ["eval_task=null", f"policy.max_new_tokens={args.new_tokens}", f"seed={args.seed}"]
    if args.source:
        cmd += [f"task.source={args.source}"]
    cmd += ["save_every=0"] if args.recipe == "mlpo" else []
    cmd += args.overrides
    print("$", " ".join(cmd), flush=True)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "launch.log", "w") as log:  # every rank's output, kept for a failed or stalled run
        proc = subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=os.environ | {"OMP_NUM_THREADS": "4"},
            start_new_session=True,
        )
        try:
            code = proc.wait(timeout=args.timeout)
        except subprocess.TimeoutExpired:  # the launcher, and through it its ranks, stopped as a group
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
            code = f"none: stopped after {args.timeout} s"
    if code != 0:
        tail = (folder / "launch.log").read_text()[-3000:]
        raise SystemExit(f"{k} process(es) failed (exit {code}); the end of {folder}/launch.log:\n{tail}")
    if k > 1 and not (folder / f"weights-rank{k - 1}.sha256").is_file():
        raise SystemExit(f"{folder}: no weights-rank{k - 1}.sha256, so the run did not have {k} ranks")
    return throughput(folder, unit, args.share * k, k)


def throughput(folder: Path, unit: str, problems: int, k: int) -> dict:
    """Problems/s over a run's log rows after its first `unit` (`problems` per unit), with its phase times."""
    if not (folder / "log.jsonl").is_file():
        raise SystemExit(f"{folder}: no log.jsonl there, so not a training run's folder")
    rows = [json.loads(x) for x in (folder / "log.jsonl").read_text().splitlines() if x.strip()]
    timed = [r for r in rows if r.get(unit, r["step"]) > 1]
    if not timed:
        raise SystemExit(f"{folder}: no {unit} after the first was logged: raise --units")
    seconds = sum(r["seconds"] for r in timed)
    units = len({r.get(unit, r["step"]) for r in timed})
    rollout = sum(r["rollout_seconds"] for r in timed) / units
    return {
        "processes": k,
        "problems_per_s": units * problems / seconds,
        "rollout_seconds": rollout,
        "update_seconds": seconds / units - rollout,
        f"seconds_per_{unit}": seconds / units,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--recipe", choices=sorted(RECIPES), required=True)
    ap.add_argument("--model", default="random:smollm2-135m")
    ap.add_argument("--gpus", type=int, nargs=2, default=[1, 2], metavar=("BASE", "N"))
    ap.add_argument("--share", type=int, default=16, help="problems per process per step or stage")
    ap.add_argument(
        "--units", type=int, default=4, help="steps (MLPO) or stages (TeamTR); the first is warm-up"
    )
    ap.add_argument("--new-tokens", type=int, default=256)
    ap.add_argument("--source", default=None, help="GSM8K folder or HF name (default: the task's own)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=int, default=900, help="seconds one launch may take")
    ap.add_argument("--port", type=int, default=29531)
    ap.add_argument("--out", default="benchmarks/results/recipe_scaling.json")
    ap.add_argument("--runs", default=None, help="keep the runs' folders here (default: a temporary folder)")
    ap.add_argument(
        "--logs",
        nargs=2,
        metavar=("BASE_RUN", "N_RUN"),
        help="read two finished runs' folders instead of launching",
    )
    ap.add_argument("--device-label", default=None, help="the device that --logs' runs ran on")
    ap.add_argument("overrides", nargs="*", help="more key=value config overrides")
    args = ap.parse_args()
    base_n, n = args.gpus
    unit = RECIPES[args.recipe][2]
    if args.logs:
        one, many = (
            throughput(Path(f), unit, args.share * k, k) for f, k in zip(args.logs, (base_n, n), strict=True)
        )
    elif args.runs:
        one, many = (launch(args, k, Path(args.runs) / f"{args.recipe}-{k}proc") for k in (base_n, n))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            one, many = (launch(args, k, Path(tmp) / f"run{k}") for k in (base_n, n))
    dev = args.device_label or device_name(torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    ratio = many["problems_per_s"] / one["problems_per_s"]
    print(
        f"{args.recipe}: {n} processes {many['problems_per_s']:.2f} problems/s, {base_n} {one['problems_per_s']:.2f}"
    )
    print(f"  ratio {ratio:.2f}x; per process: {many} vs {one}")
    rec = record(
        f"{args.recipe}_train_{n}proc",
        dev,
        many["problems_per_s"],
        f"problems/s, {n} processes, {args.share} problems each per {RECIPES[args.recipe][2]}",
        f"{base_n} process(es), same share each",
        one["problems_per_s"],
        runs={"base": one, "scaled": many},
    )
    save_records(args.out, [rec])


if __name__ == "__main__":
    main()
