"""Training several LoRA roles of one base: one forward/backward over the rows of all roles, each row through its
own adapter (`teamtune.train.mixed.adapter_rows`), against one step per role in turn (peft's `set_adapter`).

Both sides train the same rows with the same loss (each role's token-mean cross-entropy, summed over roles) and
take AdamW steps over the same LoRA weights: the mixed step takes one step for all roles, the baseline one per
role. fp32 weights, bf16 autocast, as teamtune's SFT trainer runs. Random weights of the model's shape.

    python benchmarks/mixed_train.py --model random:smollm2-135m --roles 3 --rows 16 --seq 512
"""

from __future__ import annotations

import argparse
import time

import torch
from peft import LoraConfig, get_peft_model

from teamtune.models import load_model
from teamtune.train.common import autocast
from teamtune.train.losses import sft_loss
from teamtune.train.mixed import adapter_rows, train_all_adapters

from common import device_name, record, save_records, sync


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="random:smollm2-135m")
    ap.add_argument("--roles", type=int, default=3)
    ap.add_argument("--rows", type=int, default=16, help="rows per role in a step")
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--out", default="benchmarks/results/mixed_train.json")
    args = ap.parse_args()
    loaded = load_model(args.model, dtype="float32", seed=0)
    dev = loaded.device
    names = [f"role{i}" for i in range(args.roles)]
    lora = LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", init_lora_weights=False)
    model = get_peft_model(loaded.model, lora, adapter_name=names[0])
    for n in names[1:]:
        model.add_adapter(n, lora)
    model.train()
    params = train_all_adapters(model)
    opt = torch.optim.AdamW(params, lr=1e-5, fused=dev.type == "cuda")
    vocab = loaded.model.config.vocab_size
    ids = torch.randint(100, vocab, (args.roles * args.rows, args.seq), device=dev)
    roles = [names[i // args.rows] for i in range(len(ids))]
    n_lab = float(args.rows * (args.seq - 1))

    def mixed_step():
        with adapter_rows(model, roles), autocast(dev):
            logits = model(input_ids=ids, use_cache=False).logits
        loss = sum(
            sft_loss(
                logits[i * args.rows : (i + 1) * args.rows], ids[i * args.rows : (i + 1) * args.rows], n_lab
            )
            for i in range(args.roles)
        )
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    def in_turn_step():
        for i, name in enumerate(names):
            model.base_model.set_adapter(name)
            rows = ids[i * args.rows : (i + 1) * args.rows]
            with autocast(dev):
                logits = model(input_ids=rows, use_cache=False).logits
            sft_loss(logits, rows, n_lab).backward()
            torch.nn.utils.clip_grad_norm_([p for p in params if p.grad is not None], 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
        train_all_adapters(model)

    timings, memory = {}, {}
    for label, step in (("in turn", in_turn_step), ("mixed", mixed_step)):
        for _ in range(args.warmup):
            step()
        sync(dev)
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
        t0 = time.perf_counter()
        for _ in range(args.steps):
            step()
        sync(dev)
        timings[label] = (time.perf_counter() - t0) / args.steps
        memory[label] = torch.cuda.max_memory_allocated(dev) if dev.type == "cuda" else 0
        print(
            f"{label}: {timings[label] * 1e3:.1f} ms per step of {args.roles} roles x {args.rows} rows x {args.seq}"
        )
    speed = timings["in turn"] / timings["mixed"]
    print(
        f"mixed / in turn: {speed:.2f}x faster; peak memory {memory['mixed'] / 2**20:.0f} vs {memory['in turn'] / 2**20:.0f} MiB"
    )
    save_records(
        args.out,
        [
            record(
                f"mixed-adapter training step, {args.roles} LoRA roles x {args.rows} rows x {args.seq} tokens",
                device_name(dev),
                timings["mixed"],
                "s/step",
                "one step per role in turn (peft set_adapter)",
                timings["in turn"],
                speedup=speed,
                peak_memory_bytes=memory["mixed"],
                baseline_peak_memory_bytes=memory["in turn"],
            )
        ],
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
