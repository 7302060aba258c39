"""Milliseconds per decode step of plain transformers `generate` by batch size, sampled against greedy.

Diagnoses where the plain rollout path spends its time (random prompts, no padding, fixed length):

    python benchmarks/hf_generate_steps.py --model random:smollm2-135m --batch-sizes 1 64 192
"""

from __future__ import annotations

import argparse
import time

import torch

from teamtune.models import load_model

from common import device_name, record, save_records, sync


def step_ms(model, bs: int, n: int, prompt: int, sample: bool) -> float:
    dev = model.device
    ids = torch.randint(100, 40000, (bs, prompt), device=dev)
    kw = dict(do_sample=True, temperature=0.7, top_p=0.95, top_k=0) if sample else dict(do_sample=False)
    model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=4, pad_token_id=2, **kw)
    sync(dev)
    t0 = time.perf_counter()
    model.generate(
        input_ids=ids,
        attention_mask=torch.ones_like(ids),
        max_new_tokens=n,
        min_new_tokens=n,
        pad_token_id=2,
        **kw,
    )
    sync(dev)
    return (time.perf_counter() - t0) / n * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="tiny-random")
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 64, 192])
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--prompt", type=int, default=128)
    ap.add_argument("--out", default="benchmarks/results/hf_generate_steps.json")
    args = ap.parse_args()
    m = load_model(args.model)
    recs = []
    with torch.inference_mode():
        for bs in args.batch_sizes:
            sampled = step_ms(m.model, bs, args.new_tokens, args.prompt, True)
            greedy = step_ms(m.model, bs, args.new_tokens, args.prompt, False)
            recs.append(
                record(
                    f"hf_generate_step_ms_bs{bs}",
                    device_name(m.device),
                    sampled,
                    "ms per decode step (sampled)",
                    "greedy decoding, same batch",
                    greedy,
                    model=args.model,
                    prompt_tokens=args.prompt,
                )
            )
            print(
                f"batch {bs}: sampled {sampled:.1f} ms/step, greedy {greedy:.1f} ms/step, ratio {sampled / greedy:.2f}"
            )
    save_records(args.out, recs)


if __name__ == "__main__":
    main()
