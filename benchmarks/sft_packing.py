"""Real (non-padding) training tokens/s of SFT steps on chat examples of varied length: length-grouped padded
micro-batches, packed rows, widths rounded to a multiple, cuDNN's attention kernel allowed or not (the
trainer leaves it out by default); all in the same run.

Every variant uses the trainer's own `plan_epoch`, `collate` (run before the timing) and step: fp32 master weights, bf16
autocast, fused AdamW, `sft_loss`. Each times the same micro-batches twice: the first pass meets each shape for
the first time (as a run's first epoch does), the second meets them again. The examples are GSM8K train
questions as user turns, each answered by a random-length assistant turn (so lengths vary as in real
trajectories); full fine-tuning, random weights.

    python benchmarks/sft_packing.py --model random:smollm2-135m --source .gpu/data/gsm8k
    python benchmarks/sft_packing.py --model tiny-random --examples 64 --batch-tokens 2048 --max-length 512 --steps 3"""

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


def run(model_name: str, records: list[dict], args, variant: str) -> dict:
    """Real tokens/s of `args.steps` micro-batches (after 3 warm-up ones), twice: the first pass meets each shape
    for the first time, as a run's first epoch does; the second meets them again. `variant`: padded or packed,
    then optionally `:N` (widths rounded up to a multiple of N) and `:cudnn` (cuDNN's attention kernel allowed,
    which the trainer's `autocast` leaves out unless `optim.cudnn_attention`)."""
    kind, *opts = variant.split(":")
    if kind not in ("padded", "packed") or any(not (o.isdigit() or o == "cudnn") for o in opts):
        raise SystemExit(f"variant {variant!r}: expected padded or packed, then optionally :N and :cudnn")
    multiple = next((int(o) for o in opts if o.isdigit()), 1)
    loaded = load_model(model_name, dtype="float32", seed=0)
    model, dev, tok = loaded.model.train(), loaded.device, loaded.tokenizer
    opt, _ = make_optimizer(model, OptimSettings(lr=1e-5, cudnn_attention="cudnn" in opts), 10**6)
    segs = [encode_chat(tok, r["messages"]) for r in records]
    exs = epoch_examples(Curriculum("none"), 0, records, segs, 0, None, args.max_length)
    packed = kind == "packed"
    plan = [mb for step in plan_epoch(exs, args.batch_tokens, 1, random.Random(0), packed) for mb in step]
    if len(plan) < args.steps + 3:
        raise SystemExit(f"only {len(plan)} micro-batches: raise --examples")
    batches = [collate(mb, segs, tok.pad_token_id, args.max_length, dev, packed, multiple) for mb in plan]
    real = [sum(e.length for e in mb) for mb in plan]

    def step(inputs, labels) -> None:
        with autocast(dev):
            logits = model(**inputs, use_cache=False).logits
        sft_loss(logits, labels, float(max(int((labels != IGNORE).sum()), 1))).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    def tokens_per_s(part: slice) -> float:
        sync(dev)
        t0 = time.perf_counter()
        for inputs, labels in batches[part]:
            step(inputs, labels)
        sync(dev)
        return sum(real[part]) / (time.perf_counter() - t0)

    tokens_per_s(slice(0, 3))
    timed = slice(3, 3 + args.steps)
    first, second = tokens_per_s(timed), tokens_per_s(timed)
    cells = sum(b[0]["input_ids"].numel() for b in batches[timed])
    shapes = len({tuple(b[0]["input_ids"].shape) for b in batches[timed]})
    padding = 1 - sum(real[timed]) / cells
    return {
        "first": first,
        "second": second,
        "padding": padding,
        "shapes": shapes,
        "device": device_name(dev),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="random:smollm2-135m")
    ap.add_argument("--source", default=None, help="GSM8K folder (default: the local shared datasets)")
    ap.add_argument("--examples", type=int, default=2048)
    ap.add_argument("--batch-tokens", type=int, default=16384)
    ap.add_argument("--max-length", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument(
        "--variants",
        nargs="+",
        default=["padded:cudnn", "packed:cudnn", "padded", "packed", "padded:64", "packed:64"],
        help="padded|packed[:N][:cudnn]; the first is the baseline",
    )
    ap.add_argument("--out", default="benchmarks/results/sft_packing.json")
    args = ap.parse_args()
    records = chat_records(args.source, args.examples)
    res = {v: run(args.model, records, args, v) for v in args.variants}
    name = res[args.variants[0]]["device"]
    base = res[args.variants[0]]["first"]
    recs = []
    for v, r in res.items():
        print(
            f"{v:>16}: first pass {r['first']:9,.0f} real tokens/s ({r['first'] / base:.2f}x), second pass "
            f"{r['second']:9,.0f}; {r['padding']:.1%} padding, {r['shapes']} shapes in {args.steps} micro-batches"
        )
        for pass_ in ("first", "second"):
            recs.append(
                record(
                    f"sft_{v.replace(':', '_')}_{pass_}_pass",
                    name,
                    r[pass_],
                    f"real (non-padding) training tokens/s, {v}, {pass_} pass over the micro-batches",
                    f"{args.variants[0]}, first pass (each shape new, as in a run's first epoch)",
                    base,
                    padding_share=r["padding"],
                    shapes=r["shapes"],
                    batch_tokens=args.batch_tokens,
                    max_length=args.max_length,
                    steps=args.steps,
                )
            )
    save_records(args.out, recs)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
