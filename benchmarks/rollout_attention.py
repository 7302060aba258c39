"""Decode steps over long caches, the shape of a training rollout on few-shot prompts, on the GPU.

Figures, each against a baseline in the same run:
  1. ms per captured decode step for caches of a short chat prompt and of BBH 3-shot prompts (peers ~700
     tokens, leader ~1,100), at the batch of one rollout and of a dynamically sampled group batch, against the
     step over the shortest cache (what a long prompt costs). The records of `scaled_dot_product_attention` in
     the step were made by this script at commit ea7d466, which had that variant (no faster, since removed);
  2. seconds of a `generate` call whose shape is new (state, warm-up and graph capture) against one whose shape
     was seen, both of `--new` tokens: the price of each change of batch size or prompt bucket;
  3. seconds of 3 rounds of a peers' call (24 rows, ~700-token prompts) then a leader's call (64 rows, ~1,100
     tokens), as an MLPO step makes them, with the decoder holding one shape (`shapes=1`) against four.
Random weights of the model's shape; sampling at temperature 1.0, top-p 1 (the leader's training sampling).

    python benchmarks/rollout_attention.py --model random:smollm2-135m
"""

from __future__ import annotations

import argparse
import time

import torch
from decode_profile import step_ms

from teamtune.fastgen.decoder import FastDecoder, _Key, _State
from teamtune.fastgen.model import _Weights
from teamtune.models import load_model

from common import device_name, record, save_records

SAMPLING = (True, 1.0, 1.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="random:smollm2-135m")
    ap.add_argument("--batches", type=int, nargs="+", default=[256, 64])
    ap.add_argument("--prompts", type=int, nargs="+", default=[128, 768, 1152])
    ap.add_argument("--new", type=int, default=128)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--out", default="benchmarks/results/rollout_attention.json")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("rollout_attention.py needs a CUDA device (the step is timed as a captured graph)")
    model = load_model(args.model, device="cuda", dtype="bfloat16").model.eval()
    dev = device_name(model.device)
    steps = min(args.steps, args.new - 1)
    records, ms, dec = [], {}, FastDecoder()
    with torch.inference_mode():
        w = _Weights(model, [])
        for batch in args.batches:
            for prompt in args.prompts:
                key = _Key((), batch, prompt, args.new, SAMPLING, (2, 10**9))
                st = _State(w, batch, prompt, args.new, 2, [10**9])
                st.start.copy_(torch.randint(0, prompt // 2, (batch,), device=st.start.device))
                ms[batch, prompt] = step_ms(dec, w, st, key, steps)
                base = ms[batch, args.prompts[0]]
                print(
                    f"batch {batch}, cache {prompt + args.new}: {ms[batch, prompt]:.3f} ms ({ms[batch, prompt] / base:.2f}x)"
                )
                records.append(
                    record(
                        f"rollout decode step, batch {batch}, cache {prompt + args.new}",
                        dev,
                        ms[batch, prompt],
                        "ms/step",
                        f"the step over a {args.prompts[0] + args.new}-position cache",
                        base,
                    )
                )
        # a call of a new shape against a call of a seen one
        dec = FastDecoder()
        prompts = [[5] * (args.prompts[-1] - 7)] * args.batches[-1]
        kw = dict(max_new_tokens=args.new, do_sample=True, temperature=1.0, top_p=1.0, pad=2, eos=[10**9])
        times = []
        for _ in range(2):
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            dec.generate(model, prompts, [None] * len(prompts), **kw)
            torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
        print(f"generate, new shape: {times[0]:.3f} s; seen shape: {times[1]:.3f} s")
        records.append(
            record(
                f"rollout generate call of a new shape, batch {len(prompts)}, {args.new} tokens",
                dev,
                times[0],
                "s",
                "the same call once its shape was seen",
                times[1],
                prompt=len(prompts[0]),
            )
        )
        peers = [[5] * 700] * 24
        leader = [[5] * 1100] * 64
        took = {}
        for shapes in (1, 4):
            dec = FastDecoder(shapes=shapes)
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            for _ in range(3):
                for p in (peers, leader):
                    dec.generate(model, p, [None] * len(p), **kw)
            torch.cuda.synchronize()
            took[shapes] = time.perf_counter() - t0
        print(f"3 rounds of peers then leader: one shape held {took[1]:.3f} s, four {took[4]:.3f} s")
        records.append(
            record(
                "rollout of 3 peer + leader rounds, decoder holding 4 shapes",
                dev,
                took[4],
                "s",
                "decoder holding 1 shape",
                took[1],
                speedup=took[1] / took[4],
                new_tokens=args.new,
            )
        )
    save_records(args.out, records)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
