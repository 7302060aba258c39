"""The mixed-LoRA B product at SmolLM2-135M's decode shapes (batch 256, 3 adapters of rank 16 on all linear layers):
the Triton kernel of `teamtune.fastgen.lora_kernel` in several tilings against the mask product and GEMM it
replaces, each timed per call inside a CUDA graph of 200 calls (as the decode step runs them). Also checks that
every tiling gives the mask product's result.

    python benchmarks/lora_kernel.py [--out benchmarks/results/rollout_lora_kernel.json]
"""

from __future__ import annotations

import argparse
from functools import partial

import torch

from teamtune.fastgen import lora_kernel

from common import device_name, record, save_records

# (row tile, column tile, rank tile, warps)
TILINGS = [
    (32, 64, 64, 4),  # the default (the fastest at 3 of 4 groups on an H100, 2026-12-07)
    (32, 64, 32, 4),
    (64, 64, 32, 4),
    (64, 128, 32, 4),
    (128, 64, 32, 4),
    (32, 32, 32, 2),
    (16, 64, 32, 2),
    (32, 64, 16, 4),  # rank tiles: K is 48 or 96 for o/down and gate/up, 144 for q/k/v
    (32, 128, 32, 4),
    (16, 128, 32, 4),
]
# projection group: (outputs, rank columns) for SmolLM2-135M with 3 adapters of rank 16 on every projection
GROUPS = {"qkv": (960, 144), "o_proj": (576, 48), "gate_up": (3072, 96), "down_proj": (576, 48)}


def mask_gemm(out: torch.Tensor, a: torch.Tensor, mask: torch.Tensor, B: torch.Tensor) -> None:
    """What the kernel replaces: the rank activations masked to each row's adapter, then an in-place GEMM."""
    out.addmm_(a * mask, B.t())


def per_call_us(fn, calls: int = 200, replays: int = 5) -> float:
    fn()
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(calls):
            fn()
    graph.replay()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(replays):
        graph.replay()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) * 1000 / (calls * replays)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--out", default="benchmarks/results/rollout_lora_kernel.json")
    args = ap.parse_args()
    dev = torch.device("cuda")
    if not lora_kernel.available(dev):
        raise SystemExit("error: the kernel needs CUDA and Triton (and TEAMTUNE_LORA_KERNEL not 0)")
    torch.manual_seed(0)
    M, recs = args.batch, []
    for group, (N, K) in GROUPS.items():
        buf = torch.randn(M, N + K, device=dev, dtype=torch.bfloat16)
        cols = torch.arange(K, device=dev) // (K // 3) + 1  # each adapter's rank columns
        rows = torch.arange(M, device=dev) % 3 + 1  # rows cycle through the adapters
        B = torch.randn(N, K, device=dev, dtype=torch.bfloat16) * 0.05
        mask = (cols == rows[:, None]).bfloat16()
        want = buf[:, :N].clone()  # the timed calls below add into buf: the check reads a copy of it
        mask_gemm(want, buf[:, N:], mask, B)
        fresh = buf.clone()
        base_us = per_call_us(partial(mask_gemm, buf[:, :N], buf[:, N:], mask, B))
        print(f"{group} ({M} x {N}, rank columns {K}): mask product + GEMM {base_us:.2f} us")
        for tiling in TILINGS:
            out = fresh.clone()
            lora_kernel.masked_addmm(out[:, :N], out[:, N:], B, cols, rows, 1, tiling)
            err = (out[:, :N].float() - want.float()).abs().max().item()
            us = per_call_us(
                partial(lora_kernel.masked_addmm, buf[:, :N], buf[:, N:], B, cols, rows, 1, tiling)
            )
            print(f"  kernel {tiling}: {us:.2f} us ({base_us / us:.2f}x), largest difference {err:.3g}")
            recs.append(
                record(
                    f"lora_kernel_{group}_{'x'.join(map(str, tiling))}",
                    device_name(dev),
                    us,
                    "microseconds per call",
                    "mask product + GEMM, same shapes",
                    base_us,
                    largest_difference=err,
                )
            )
    save_records(args.out, recs)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
