"""Seconds per policy-gradient update (what MLPO and TeamTR run after each rollout), with cuDNN's attention
kernel allowed (the baseline) and left out (the trainers' default), in the same run.

An update is the trainers' own code: `logprobs` under the sampling policy and the reference, then `update`
(`ppo_epochs` clipped steps in micro-batches, fp32 LoRA weights, bf16 autocast, fused AdamW). Each batch has
new random prompt and completion lengths, so its width is new, as after every rollout in a real run; both
variants see the same batches, after two warm-up batches of other widths. The default shape is MLPO's leader
on GSM8K (16 problems x 8 samples, a prompt that holds 3 peers' answers, up to 256 new tokens).

    python benchmarks/rl_update.py --model random:smollm2-135m
    python benchmarks/rl_update.py --model tiny-random --sequences 8 --prompt 16 64 --completion 4 16 --updates 2"""

from __future__ import annotations

import argparse
import random
import time

from teamtune.models import load_model
from teamtune.train.common import LoraSettings, OptimSettings, make_optimizer, make_trainable
from teamtune.train.policy import PolicySettings, logprobs, make_batch, update

from common import device_name, record, save_records, sync


def batches(n: int, args, vocab: int, seed: int) -> list:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        prompts = [
            [rng.randrange(vocab) for _ in range(rng.randint(*args.prompt))] for _ in range(args.sequences)
        ]
        done = [[rng.randrange(vocab) for _ in range(rng.randint(*args.completion))] for _ in prompts]
        out.append(make_batch(prompts, done, [rng.gauss(0.0, 1.0) for _ in prompts], 0))
    return out


def run(args, variant: str) -> dict:
    loaded = load_model(args.model, dtype="float32", seed=0)
    model = make_trainable(loaded, "lora", LoraSettings(dropout=0.0))
    dev = loaded.device
    s = PolicySettings(kl_coef=0.01, ppo_epochs=2, micro_batch=args.micro_batch)
    params = [p for p in model.parameters() if p.requires_grad]
    opt, sched = make_optimizer(
        model,
        OptimSettings(lr=2e-5, schedule="constant", warmup_steps=0, cudnn_attention=variant == "cudnn"),
        10**6,
    )
    vocab = loaded.model.config.vocab_size

    def one(batch) -> None:
        batch.old_logp = logprobs(model, batch, s.micro_batch, dev)
        batch.ref_logp = logprobs(model, batch, s.micro_batch, dev, reference=True)
        update(model, params, opt, sched, batch, s, dev)

    for b in batches(2, args, vocab, seed=1):  # warm-up widths, not among the timed ones
        one(b)
    timed = batches(args.updates, args, vocab, seed=2)
    sync(dev)
    t0 = time.perf_counter()
    for b in timed:
        one(b)
    sync(dev)
    seconds = (time.perf_counter() - t0) / args.updates
    widths = sorted({b.ids.shape[1] for b in timed})
    return {"seconds": seconds, "widths": widths, "device": device_name(dev)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="random:smollm2-135m")
    ap.add_argument("--sequences", type=int, default=128, help="rollouts per update (problems x group size)")
    ap.add_argument("--prompt", type=int, nargs=2, default=[400, 900], help="prompt length range (tokens)")
    ap.add_argument("--completion", type=int, nargs=2, default=[16, 256], help="completion length range")
    ap.add_argument("--micro-batch", type=int, default=16)
    ap.add_argument("--updates", type=int, default=6)
    ap.add_argument("--out", default="benchmarks/results/rl_update.json")
    args = ap.parse_args()
    res = {v: run(args, v) for v in ("cudnn", "default")}
    base = res["cudnn"]["seconds"]
    name = res["cudnn"]["device"]
    for v, r in res.items():
        print(f"{v:>8}: {r['seconds']:.3f} s per update ({base / r['seconds']:.2f}x), widths {r['widths']}")
    rec = record(
        "rl_update_without_cudnn_attention",
        name,
        1.0 / res["default"]["seconds"],
        "policy-gradient updates/s (old + reference log-probs, 2 clipped steps), cuDNN attention left out",
        "the same updates with cuDNN's attention kernel allowed",
        1.0 / base,
        seconds_per_update={v: r["seconds"] for v, r in res.items()},
        widths=res["default"]["widths"],
        sequences=args.sequences,
        micro_batch=args.micro_batch,
    )
    save_records(args.out, [rec])
    print(f"ratio {rec['ratio']:.2f}x; wrote {args.out}")


if __name__ == "__main__":
    main()
