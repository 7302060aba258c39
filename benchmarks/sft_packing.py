"""Real (non-padding) training tokens/s of SFT steps on chat examples of varied length: packed rows against the
length-grouped padded micro-batches, in the same run.

Both use the trainer's own `plan_epoch` and `collate` (with `packed` or without) and its step: fp32 master
weights, bf16 autocast, fused AdamW, `sft_loss`. The examples are GSM8K train questions as user turns, each
answered by a random-length assistant turn (so lengths vary as in real trajectories); full fine-tuning, random
weights.

    python benchmarks/sft_packing.py --model random:smollm2-135m --source .gpu/data/gsm8k
    python benchmarks/sft_packing.py --model tiny-random --examples 32 --batch-tokens 2048 --max-length 512 --steps 2
"""

from __future__ import annotations

import argparse
import random
import time

import torch

from teamtune.models import load_model
from teamtune.tasks import TaskConfig, load_task
from teamtune.train.common import OptimSettings, autocast, make_optimizer
from teamtune.train.data import collate, encode_chat, plan_epoch
from teamtune.train.losses import IGNORE, sft_loss
from teamtune.train.sft import Curriculum, epoch_examples

from common import device_name, record, save_records, sync


def chat_records(source: str | None, n: int, seed: int = 0) -> list[dict]:
    task = load_task(TaskConfig(name="gsm8k", split="train", source=source, limit=n))
    rng = random.Random(seed)
    return [
        {
            "messages": [
                {"role": "user", "content": p.question},
                {"role": "assistant", "content": " ".join(["step"] * rng.randint(8, 600)) + f" {p.answer}"},
            ]
        }
        for p in task.problems
    ]


def run(model_name: str, records: list[dict], args, packed: bool) -> tuple[float, float]:
    """Real tokens/s and the share of padding over `args.steps` timed micro-batches (after 3 warm-up ones)."""
    loaded = load_model(model_name, dtype="float32", seed=0)
    model, dev, tok = loaded.model.train(), loaded.device, loaded.tokenizer
    opt, _ = make_optimizer(model, OptimSettings(lr=1e-5), 10**6)
    segs = [encode_chat(tok, r["messages"]) for r in records]
    exs = epoch_examples(Curriculum("none"), 0, records, segs, 0, None, args.max_length)
    plan = [mb for step in plan_epoch(exs, args.batch_tokens, 1, random.Random(0), packed) for mb in step]
    if len(plan) < args.steps + 3:
        raise SystemExit(f"only {len(plan)} micro-batches: raise --examples")

    def step(mb) -> tuple[int, int]:
        inputs, labels = collate(mb, segs, tok.pad_token_id, args.max_length, dev, packed)
        with autocast(dev):
            logits = model(**inputs, use_cache=False).logits
        sft_loss(logits, labels, float(max(int((labels != IGNORE).sum()), 1))).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return sum(e.length for e in mb), inputs["input_ids"].numel()

    for mb in plan[:3]:
        step(mb)
    sync(dev)
    real = cells = 0
    t0 = time.perf_counter()
    for mb in plan[3 : 3 + args.steps]:
        r, c = step(mb)
        real, cells = real + r, cells + c
    sync(dev)
    return real / (time.perf_counter() - t0), 1 - real / cells


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="random:smollm2-135m")
    ap.add_argument("--source", default=None, help="GSM8K folder (default: the local shared datasets)")
    ap.add_argument("--examples", type=int, default=2048)
    ap.add_argument("--batch-tokens", type=int, default=16384)
    ap.add_argument("--max-length", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--out", default="benchmarks/results/sft_packing.json")
    args = ap.parse_args()
    records = chat_records(args.source, args.examples)
    padded, pad_share = run(args.model, records, args, packed=False)
    packed, packed_pad = run(args.model, records, args, packed=True)
    name = device_name(load_model(args.model, dtype="float32", seed=0).device)
    print(
        f"padded (length-grouped): {padded:,.0f} real tokens/s, {pad_share:.1%} padding; "
        f"packed: {packed:,.0f} real tokens/s, {packed_pad:.1%} padding; {packed / padded:.2f}x"
    )
    save_records(
        args.out,
        [
            record(
                "sft_packed_real_tokens",
                name,
                packed,
                "real (non-padding) training tokens/s, packed rows",
                "length-grouped padded micro-batches, same examples",
                padded,
                padding_share_packed=packed_pad,
                padding_share_padded=pad_share,
                batch_tokens=args.batch_tokens,
                max_length=args.max_length,
                steps=args.steps,
            )
        ],
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
