"""Training tokens/s and model FLOPs utilisation of one SFT step, compiled against plain, in the same run.

Both steps are teamtune's: fp32 master weights, bf16 autocast, fused AdamW (`common.make_optimizer`), the loss
`losses.sft_loss` on every token; the fast step adds `torch.compile` of the model and of the loss (which fuses the
fp32 cast and the cross-entropy over the 49,152-word vocabulary). Full fine-tuning, random weights.

    python benchmarks/sft_step.py --model random:smollm2-135m --batch 16 --seq 1024
"""

from __future__ import annotations

import argparse
import time

import torch

from teamtune.costs import FlopModel
from teamtune.models import load_model
from teamtune.train.common import OptimSettings, autocast, make_optimizer, train_flops
from teamtune.train.losses import sft_loss

from common import device_name, record, save_records, sync

BF16_PEAK = {"H100": 989.4e12, "H200": 989.4e12, "A100": 312e12}  # dense bf16 FLOP/s, SXM parts


def peak_flops(name: str) -> float | None:
    return next((v for k, v in BF16_PEAK.items() if k in name), None)


def run(model_name: str, batch: int, seq: int, steps: int, compiled: bool) -> float:
    """Seconds per optimiser step after warm-up."""
    loaded = load_model(model_name, dtype="float32", seed=0)
    model, dev = loaded.model.train(), loaded.device
    settings = OptimSettings(lr=1e-5)
    settings.validate()  # takes TEAMTUNE_CUDNN_ATTENTION from the environment
    opt, _ = make_optimizer(model, settings, 10**6)
    fwd = torch.compile(model) if compiled else model
    loss_fn = torch.compile(sft_loss) if compiled else sft_loss
    ids = torch.randint(100, 40000, (batch, seq), device=dev)

    def step():
        with autocast(dev):
            logits = fwd(input_ids=ids).logits
        loss = loss_fn(logits, ids)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(3):
        step()
    sync(dev)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sync(dev)
    return (time.perf_counter() - t0) / steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="random:smollm2-135m")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--out", default="benchmarks/results/sft_step.json")
    args = ap.parse_args()

    loaded = load_model(args.model, dtype="float32", seed=0)
    name = device_name(loaded.device)
    flops = train_flops(FlopModel.from_model(loaded.model), [args.seq] * args.batch)
    del loaded
    tokens = args.batch * args.seq
    plain = run(args.model, args.batch, args.seq, args.steps, compiled=False)
    fast = run(args.model, args.batch, args.seq, args.steps, compiled=True)
    peak = peak_flops(name)
    recs = []
    for label, sec in (("plain", plain), ("compiled", fast)):
        mfu = flops / sec / peak if peak else None
        print(
            f"{label}: {sec * 1000:.1f} ms/step, {tokens / sec:,.0f} tokens/s, MFU {mfu:.1%}"
            if mfu
            else f"{label}: {sec * 1000:.1f} ms/step, {tokens / sec:,.0f} tokens/s"
        )
    recs.append(
        record(
            "sft_step_tokens",
            name,
            tokens / fast,
            "training tokens/s (compiled step)",
            "plain step (eager), same shape",
            tokens / plain,
            batch=args.batch,
            seq=args.seq,
        )
    )
    if peak:
        recs.append(
            record(
                "sft_step_mfu",
                name,
                flops / fast / peak,
                f"model FLOPs utilisation of bf16 peak {peak / 1e12:.0f} TFLOP/s (compiled step)",
                "plain step (eager), same shape",
                flops / plain / peak,
                flops_per_step=flops,
            )
        )
    save_records(args.out, recs)
    print(f"ratio {plain / fast:.2f}x -> {args.out}")


if __name__ == "__main__":
    main()
