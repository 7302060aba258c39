"""Rollout and training throughput on 2 GPUs against 1, data-parallel through accelerate (torch.distributed).

Launches itself with `torch.distributed.run` once per process count. Every process keeps the same share
(weak scaling): rollouts — the fast decoder samples `--batch` prompts x `--new-tokens`; training — one DDP step
of `--train-batch` x `--seq` tokens (bf16 autocast, fused AdamW, gradients averaged by DDP over NCCL).
Aggregate tokens/s is the sum over processes divided by the slowest one's time.

    python benchmarks/data_parallel.py --model random:smollm2-135m --gpus 1 2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import torch

from common import device_name, record, save_records, sync


def worker(args) -> None:
    from accelerate import Accelerator

    from teamtune.fastgen import FastDecoder
    from teamtune.models import load_model
    from teamtune.train.common import OptimSettings, autocast, make_optimizer
    from teamtune.train.losses import sft_loss

    acc = Accelerator()
    dev = acc.device
    torch.manual_seed(acc.process_index)
    loaded = load_model(args.model, device=str(dev), dtype="bfloat16", seed=0)
    prompts = torch.randint(100, 40000, (args.batch, args.prompt)).tolist()
    dec = FastDecoder()
    kw = dict(max_new_tokens=args.new_tokens, do_sample=True, temperature=0.7, top_p=0.95, pad=2, eos=[10**9])

    def timed(fn) -> float:
        sync(dev)
        acc.wait_for_everyone()
        t0 = time.perf_counter()
        fn()
        sync(dev)
        acc.wait_for_everyone()  # the slowest process sets the time
        return time.perf_counter() - t0

    with torch.inference_mode():
        dec.generate(loaded.model, prompts, [None] * args.batch, seed=0, **kw)
        roll_s = timed(lambda: dec.generate(loaded.model, prompts, [None] * args.batch, seed=1, **kw))

    train = load_model(args.model, device=str(dev), dtype="float32", seed=0).model.train()
    opt, _ = make_optimizer(train, OptimSettings(lr=1e-5), 10**6)
    net = acc.prepare_model(train)
    ids = torch.randint(100, 40000, (args.train_batch, args.seq), device=dev)

    def steps(n: int) -> None:
        for _ in range(n):
            with autocast(dev):
                logits = net(input_ids=ids).logits
            sft_loss(logits, ids).backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

    steps(3)
    train_s = timed(lambda: steps(args.steps)) / args.steps
    if acc.is_main_process:
        world = acc.num_processes
        out = {
            "world": world,
            "device": device_name(dev),
            "rollout_tokens_per_s": world * args.batch * args.new_tokens / roll_s,
            "train_tokens_per_s": world * args.train_batch * args.seq / train_s,
        }
        with open(args.result, "w") as f:
            json.dump(out, f)


def launch(args, n: int) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        path = f.name
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={n}", "--master_port=29517"]
    cmd += [__file__, "--worker", "--result", path] + [a for a in sys.argv[1:] if a != "--worker"]
    subprocess.run(cmd, check=True, env=os.environ | {"OMP_NUM_THREADS": "4"})
    with open(path) as f:
        return json.load(f)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="random:smollm2-135m")
    ap.add_argument("--gpus", type=int, nargs=2, default=[1, 2], metavar=("BASE", "N"))
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--prompt", type=int, default=128)
    ap.add_argument("--new-tokens", type=int, default=256)
    ap.add_argument("--train-batch", type=int, default=16)
    ap.add_argument("--seq", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--out", default="benchmarks/results/data_parallel.json")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--result", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args)
    base_n, n = args.gpus
    one, many = launch(args, base_n), launch(args, n)
    recs = []
    for key, what in (("rollout_tokens_per_s", "generated"), ("train_tokens_per_s", "training")):
        print(
            f"{what} tokens/s: {n} processes {many[key]:,.0f}, {base_n} {one[key]:,.0f}, {many[key] / one[key]:.2f}x"
        )
        recs.append(
            record(
                f"data_parallel_{key.split('_')[0]}_{n}gpu",
                many["device"],
                many[key],
                f"{what} tokens/s, {n} processes",
                f"{base_n} process(es), same share each",
                one[key],
            )
        )
    save_records(args.out, recs)


if __name__ == "__main__":
    main()
