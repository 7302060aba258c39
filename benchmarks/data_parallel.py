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
    from torch.distributed.algorithms.ddp_comm_hooks import default_hooks

    from teamtune.fastgen import FastDecoder
    from teamtune.models import load_model
    from teamtune.train.common import OptimSettings, accelerator, autocast, make_optimizer
    from teamtune.train.losses import sft_loss

    acc = accelerator("auto")  # NCCL on GPUs, gloo on the CPU
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

    ids = torch.randint(100, 40000, (args.train_batch, args.seq), device=dev)

    def steps(net, opt, n: int) -> None:
        for _ in range(n):
            with autocast(dev):
                logits = net(input_ids=ids).logits
            sft_loss(logits, ids).backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

    train_s = {}
    for hook in args.hooks:  # a fresh model, optimiser and DDP wrapper for each way of averaging gradients
        train = load_model(args.model, device=str(dev), dtype="float32", seed=0).model.train()
        opt, _ = make_optimizer(train, OptimSettings(lr=1e-5), 10**6)
        n = sum(p.numel() for p in train.parameters())
        net = acc.prepare_model(train)
        if hook == "bf16" and acc.num_processes > 1:  # gradients sent as bf16, averaged, cast back
            net.register_comm_hook(None, default_hooks.bf16_compress_hook)
        steps(net, opt, 3)
        train_s[hook] = timed(lambda net=net, opt=opt: steps(net, opt, args.steps)) / args.steps
        del train, opt, net
    allreduce_ms = {}
    if acc.num_processes > 1:  # the bare all-reduce of a gradient-sized buffer, fp32 and bf16
        for dtype in (torch.float32, torch.bfloat16):
            buf = torch.ones(n, dtype=dtype, device=dev)
            torch.distributed.all_reduce(buf)
            allreduce_ms[str(dtype).split(".")[1]] = (
                1000 * timed(lambda b=buf: [torch.distributed.all_reduce(b) for _ in range(10)]) / 10
            )
    if acc.is_main_process:
        world = acc.num_processes
        out = {
            "world": world,
            "device": device_name(dev),
            "rollout_tokens_per_s": world * args.batch * args.new_tokens / roll_s,
            "train_tokens_per_s": {h: world * args.train_batch * args.seq / t for h, t in train_s.items()},
            "allreduce_ms": allreduce_ms,
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
    ap.add_argument(
        "--hooks",
        nargs="+",
        choices=["none", "bf16"],
        default=["none"],
        help="DDP gradient averaging: fp32, bf16",
    )
    ap.add_argument("--out", default="benchmarks/results/data_parallel.json")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--result", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args)
    base_n, n = args.gpus
    one, many = launch(args, base_n), launch(args, n)
    roll = "rollout_tokens_per_s"
    print(f"generated tokens/s: {n} processes {many[roll]:,.0f}, {base_n} {one[roll]:,.0f}")
    recs = [
        record(
            f"data_parallel_rollout_{n}gpu",
            many["device"],
            many[roll],
            f"generated tokens/s, {n} processes",
            f"{base_n} process(es), same share each",
            one[roll],
        )
    ]
    base = one["train_tokens_per_s"]["none" if "none" in args.hooks else args.hooks[0]]
    for hook, value in many["train_tokens_per_s"].items():
        print(f"training tokens/s, gradients {hook}: {n} processes {value:,.0f}, {base_n} {base:,.0f}")
        recs.append(
            record(
                f"data_parallel_train_{n}gpu" + ("" if hook == "none" else f"_{hook}_grads"),
                many["device"],
                value,
                f"training tokens/s, {n} processes, DDP gradients averaged in {'fp32' if hook == 'none' else hook}",
                f"{base_n} process(es), same share each",
                base,
                allreduce_ms=many["allreduce_ms"],
            )
        )
    save_records(args.out, recs)


if __name__ == "__main__":
    main()
