"""Where one decode step of `teamtune.fastgen` spends its time, on the GPU.

Figures, each against the captured step as `Engine` runs it (top-p 0.95 sampling) in the same run:
  1. ms per step with plain temperature sampling (no top-p sort) and with greedy decoding: the sampler's share;
  2. top-p without the sort, eager: by rejection (`FastDecoder(nucleus="reject")`);
  3. ms per step with the model's part of the step through `torch.compile` (fused kernels) before it is captured
     as a CUDA graph (what `TEAMTUNE_COMPILE_DECODE=1` runs), for each sampler: the top-p sort stays eager, the
     rejection draw is compiled too;
and a torch profile of the eager step: kernels per step and the kernels that take the most GPU time.
Random weights of the model's shape; the cache holds `--prompt` + `--new` positions, read at every step.

    python benchmarks/decode_profile.py --model random:smollm2-135m
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict

import torch

from teamtune.fastgen.decoder import FastDecoder, _Key, _State
from teamtune.fastgen.model import _Weights
from teamtune.models import load_model

from common import device_name, record, save_records


def step_ms(dec: FastDecoder, w, st: _State, key: _Key, steps: int) -> float:
    """Mean ms of the decode step as `dec` captures it (compiled first when `dec.compile_step`)."""
    graph = dec._capture(dec._step_fn(w, st, key), st, key)
    st.cur.fill_(key.prompt)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        graph.replay()
    torch.cuda.synchronize()
    return (time.perf_counter() - t0) / steps * 1e3


def kernel_table(dec: FastDecoder, w, st: _State, key: _Key, steps: int = 4) -> tuple[int, float, list]:
    """Kernels per eager step, GPU ms per step, and the top kernels by GPU time."""
    from torch.profiler import ProfilerActivity, profile

    st.cur.fill_(key.prompt)
    dec._step(w, st, key)
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(steps):
            dec._step(w, st, key)
        torch.cuda.synchronize()
    times, counts = defaultdict(float), defaultdict(int)
    for ev in prof.events():
        if ev.device_type == torch.autograd.DeviceType.CUDA:
            times[ev.name] += ev.device_time / 1e3 / steps
            counts[ev.name] += 1
    top = sorted(times.items(), key=lambda kv: -kv[1])[:12]
    return (
        sum(counts.values()) // steps,
        sum(times.values()),
        [(name[:90], round(ms, 4), counts[name] // steps) for name, ms in top],
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="random:smollm2-135m")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--prompt", type=int, default=128)
    ap.add_argument("--new", type=int, default=256)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--out", default="benchmarks/results/decode_profile.json")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("decode_profile.py needs a CUDA device (the step is timed as a captured graph)")
    model = load_model(args.model, device="cuda", dtype="bfloat16").model.eval()
    dev = device_name(model.device)
    dec = FastDecoder()
    steps = min(args.steps, args.new - 1)

    def setup(sampling):
        w = _Weights(model, [])
        key = _Key((), args.batch, args.prompt, args.new, sampling, (2, 10**9))
        return w, _State(w, args.batch, args.prompt, args.new, 2, [10**9]), key

    records = []
    with torch.inference_mode():
        w, st, key = setup((True, 0.7, 0.95))
        base = step_ms(dec, w, st, key, steps)
        print(
            f"captured step, top-p 0.95: {base:.3f} ms (batch {args.batch}, cache {args.prompt + args.new})"
        )
        plain = {}  # per sampler label: its buffers and ms, for the compiled step below
        rows = [
            ("temperature only", dec, setup((True, 0.7, 1.0))),
            ("greedy", dec, setup((False, 1.0, 1.0))),
            ("top-p 0.95 by rejection (eager)", FastDecoder(nucleus="reject"), (w, st, key)),
        ]
        for label, decoder, state in rows:
            ms = step_ms(decoder, *state, steps)
            if decoder is dec:
                plain[label] = (state, ms)  # compiled below too
            print(f"captured step, {label}: {ms:.3f} ms ({base / ms:.2f}x)")
            records.append(
                record(
                    f"decode step, {label}",
                    dev,
                    ms,
                    "ms/step",
                    "captured step, top-p 0.95",
                    base,
                    speedup=base / ms,
                    batch=args.batch,
                    cache=args.prompt + args.new,
                )
            )
        n, gpu_ms, top = kernel_table(dec, w, st, key)
        print(f"eager step: {n} kernels, {gpu_ms:.3f} ms of GPU time per step")
        for name, ms, c in top:
            print(f"  {ms:8.4f} ms  x{c:<4} {name}")
        records.append(
            record(
                "decode step, GPU time of its kernels (eager profile)",
                dev,
                gpu_ms,
                "ms/step",
                "captured step, top-p 0.95 (wall)",
                base,
                kernels_per_step=n,
                top_kernels=top,
            )
        )
        if not args.no_compile:
            # the model's part of the step through torch.compile (compiled once, shape-generic), then captured as a
            # graph like the plain one; the sort eager, the other top-p draws compiled with it
            compiled = FastDecoder(compile_step=True, nucleus="sort")
            runs = [
                ("top-p 0.95", compiled, (w, st, key), "top-p 0.95", base),
                *((k, compiled, state, k, ms) for k, (state, ms) in plain.items()),
                (
                    "top-p 0.95 by rejection",
                    FastDecoder(compile_step=True, nucleus="reject"),
                    (w, st, key),
                    "top-p 0.95",
                    base,
                ),
            ]
            sorted_ms = None
            for label, decoder, state, plain_label, plain_ms in runs:
                t0 = time.perf_counter()
                try:
                    ms = step_ms(decoder, *state, steps)
                except Exception as e:  # report, do not hide: the figure is then missing
                    print(f"compiled step ({label}) failed: {type(e).__name__}: {str(e)[:400]}")
                    continue
                took = time.perf_counter() - t0
                print(f"compiled + captured step, {label}: {ms:.3f} ms ({plain_ms / ms:.2f}x; {took:.0f} s)")
                extra = {}
                if label == "top-p 0.95":
                    sorted_ms = ms
                elif decoder.nucleus != "sort" and sorted_ms:
                    extra = {"speedup_vs_compiled_with_sort": sorted_ms / ms}
                    print(f"  {decoder.nucleus} vs sort, both compiled: {sorted_ms / ms:.2f}x")
                records.append(
                    record(
                        f"decode step, {label}, model part through torch.compile, then captured",
                        dev,
                        ms,
                        "ms/step",
                        f"captured step, {plain_label}",
                        plain_ms,
                        speedup=plain_ms / ms,
                        compile_and_capture_seconds=took,
                        **extra,
                    )
                )
                save_records(args.out, records)  # after each figure: a run cut short keeps what it measured
    save_records(args.out, records)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
