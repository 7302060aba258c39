"""SFT with the output layer on the labelled positions alone, against every position's logits, in the same run.

teamtune's SFT step (`sft.backward_step`, LoRA as in configs/prost_apps_long.yaml, fp32 master weights, bf16
autocast on CUDA) over the first steps of the ProST executor's training plan in the apps world (the shipped
train split, whole trajectories): the same micro-batches two ways: every position's logits, and the labelled
positions alone through `labelled_logits`. Reports seconds per optimiser step, real tokens/s and peak memory
(CUDA). Random weights of the model's config by default (the same speed as the real weights). (A third variant
that picked the labelled positions on the host, so that the host never waits for the GPU within a step, was
slower on an H100: 0.419 against 0.385 s/step; see BENCHMARKS.md.) `--compile` adds the labelled variant with
the decoder layers compiled regionally (`common.compile_layers`, as the RL recipes run), timed after `--warmup`
steps (compilation included in those).

    python benchmarks/sft_head.py [--model random:smollm2-135m] [--steps 8] [--rounds 2] [--role executor]
        [--profile PREFIX] [--compile] [--warmup N]

Each variant runs `--rounds` times, the order reversed every other round (every position first in the first), each run
from an empty CUDA allocator pool; seconds and tokens/s are the means over its runs.
"""

from __future__ import annotations

import argparse
import time

import torch

from teamtune.config import load_config
from teamtune.models import load_model
from teamtune.train.common import compile_layers, make_optimizer, make_trainable
from teamtune.train.data import encode_chat, load_records
from teamtune.train.losses import sft_loss
from teamtune.train.sft import SFTConfig, backward_step, labelled, train_plan

from common import device_name, record, save_records, sync

VARIANTS = ("every_position", "labelled")
COMPILED = "labelled_compiled"  # with --compile


def timed_steps(
    cfg: SFTConfig, role: str, steps: int, variant: str, profile: str | None = None, warmup: int = 1
) -> dict:
    """Seconds per step (after `warmup` steps), real tokens per second and peak memory of `steps` steps of one
    of VARIANTS or COMPILED; `profile`: write a torch profile of one more step, not timed, to that file."""
    if torch.cuda.is_available():
        torch.cuda.empty_cache()  # each run starts from an empty allocator pool, not the other variant's blocks
    loaded = load_model(cfg.model, dtype="float32", seed=0)
    model = make_trainable(loaded, "lora", cfg.lora)
    model.train()
    if variant == COMPILED:
        compile_layers(model)
    dev, tok = loaded.device, loaded.tokenizer
    records = load_records(cfg.data)
    segments = [encode_chat(tok, r["messages"]) for r in records]
    plan = train_plan(cfg, records, segments, {role})[: warmup + steps + bool(profile)]
    if len(plan) < warmup + steps:
        raise SystemExit(f"the {role}'s plan has {len(plan)} steps: fewer than --warmup + --steps")
    opt, _ = make_optimizer(model, cfg.optim, len(plan))
    head = model.get_output_embeddings()
    loss_fn = sft_loss if variant == "every_position" else None
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    seconds, tokens, losses = 0.0, 0, []
    for i, (_, micro) in enumerate(plan):
        prof = torch.profiler.profile() if profile and i == warmup + steps else None
        if prof:
            prof.__enter__()
        sync(dev)
        t0 = time.perf_counter()
        n_lab = labelled(micro, segments)
        losses.append(
            backward_step(model, head, micro, segments, cfg, tok.pad_token_id, dev, n_lab, loss_fn=loss_fn)
        )
        opt.step()
        opt.zero_grad(set_to_none=True)
        sync(dev)
        if warmup <= i < warmup + steps:  # after the warm-up; a profiled step comes after the timed ones
            seconds += time.perf_counter() - t0
            tokens += sum(ex.length for mb in micro for ex in mb)
        if prof:
            prof.__exit__(None, None, None)
            sort = "cuda_time_total" if dev.type == "cuda" else "cpu_time_total"
            with open(profile, "w") as f:
                f.write(prof.key_averages().table(sort_by=sort, row_limit=40))
    peak = torch.cuda.max_memory_allocated() / 2**20 if dev.type == "cuda" else 0.0
    return {
        "s_per_step": seconds / steps,
        "tokens_per_s": tokens / seconds,
        "peak_mib": peak,
        "losses": losses,
        "device": device_name(dev),
    }


def mean_run(runs: list[dict]) -> dict:
    """One variant's runs as one: mean seconds and tokens/s, largest peak memory, the first run's losses."""
    return {
        "s_per_step": sum(r["s_per_step"] for r in runs) / len(runs),
        "tokens_per_s": sum(r["tokens_per_s"] for r in runs) / len(runs),
        "peak_mib": max(r["peak_mib"] for r in runs),
        "losses": runs[0]["losses"],
        "device": runs[0]["device"],
        "each": [r["s_per_step"] for r in runs],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="random:smollm2-135m")
    ap.add_argument("--config", default="configs/prost_apps_long.yaml")
    ap.add_argument("--role", default="executor")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument(
        "--rounds", type=int, default=2, help="runs of each variant, alternating which goes first"
    )
    ap.add_argument("--out", default="benchmarks/results/sft_head.json")
    ap.add_argument(
        "--profile",
        help="write a torch profile of one more step of each variant, after the timed ones, to "
        "PROFILE.<variant>.txt",
    )
    ap.add_argument(
        "--compile", action="store_true", help=f"add {COMPILED}: the decoder layers compiled regionally"
    )
    ap.add_argument(
        "--warmup",
        type=int,
        help="untimed steps before the timed ones (default 1; 10 with --compile: the layers compile in "
        "several variants, for the first layer and for micro-batches with and without a padding mask)",
    )
    ap.add_argument("overrides", nargs="*", help="config overrides, e.g. batch_tokens=4096")
    args = ap.parse_args()
    if args.warmup is None:
        args.warmup = 10 if args.compile else 1
    if args.warmup < 0 or args.steps < 1 or args.rounds < 1:
        ap.error("--warmup must be 0 or more, --steps and --rounds 1 or more")
    cfg = load_config(
        SFTConfig, args.config, [f"model={args.model}", "curriculum.schedule=none", *args.overrides]
    )
    variants = (*VARIANTS, COMPILED) if args.compile else VARIANTS
    runs: dict[str, list[dict]] = {v: [] for v in variants}
    for r in range(args.rounds):
        for variant in variants if r % 2 == 0 else variants[::-1]:
            where = f"{args.profile}.{variant}.txt" if args.profile and r == 0 else None
            runs[variant].append(timed_steps(cfg, args.role, args.steps, variant, where, args.warmup))
    got = {v: mean_run(rs) for v, rs in runs.items()}
    full = got["every_position"]
    gap = max(abs(a - b) for g in got.values() for a, b in zip(full["losses"], g["losses"], strict=True))
    print(f"{args.role}, {args.model}, largest loss difference {gap:.2g}:")
    for v, g in got.items():
        print(
            f"  {v}: {g['s_per_step']:.3f} s/step ({g['tokens_per_s']:,.0f} tok/s, {g['peak_mib']:,.0f} MiB), "
            f"{full['s_per_step'] / g['s_per_step']:.2f}x every position's speed"
        )
    dev = full["device"]
    extra = {
        "model": args.model,
        "role": args.role,
        "steps": args.steps,
        "rounds": args.rounds,
        "warmup": args.warmup,
        "largest_loss_difference": gap,
        "s_per_step_each_run": {v: g["each"] for v, g in got.items()},
    }
    ours, unit = got["labelled"], "output layer on the labelled positions"
    base = "every position's logits, same steps"
    recs = [
        record(
            f"sft_head_{args.role}_seconds",
            dev,
            ours["s_per_step"],
            f"seconds per optimiser step ({unit})",
            base,
            full["s_per_step"],
            **extra,
        )
    ]
    if ours["peak_mib"]:
        recs.append(
            record(
                f"sft_head_{args.role}_memory",
                dev,
                ours["peak_mib"],
                f"peak MiB ({unit})",
                base,
                full["peak_mib"],
                **extra,
            )
        )
    if args.compile:
        fast = got[COMPILED]
        recs.append(
            record(
                f"sft_head_{args.role}_compiled_seconds",
                dev,
                fast["s_per_step"],
                f"seconds per optimiser step ({unit}, decoder layers compiled)",
                "the same, uncompiled",
                ours["s_per_step"],
                **extra,
            )
        )
    save_records(args.out, recs)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
