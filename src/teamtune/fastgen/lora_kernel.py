"""The B product of mixed LoRA rows as one Triton kernel: out += (a masked to each row's own adapter) @ B^T, the
mask applied while the rank activations are loaded, so a projection group costs one kernel, not a mask product
and a GEMM. Used by the fast path on CUDA when Triton is there (`TEAMTUNE_LORA_KERNEL=0` turns it off;
`TEAMTUNE_LORA_BLOCKS=BM,BN,BK,WARPS` sets its tiling, as benchmarks/lora_kernel.py names them)."""

from __future__ import annotations

import functools
import os

import torch


def available(device: torch.device) -> bool:
    """Whether the kernel runs on `device`: CUDA, Triton importable, and not turned off (read at each call)."""
    return device.type == "cuda" and os.environ.get("TEAMTUNE_LORA_KERNEL", "1") != "0" and _has_triton()


@functools.cache
def _has_triton() -> bool:
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def default_blocks() -> tuple[int, int, int, int]:
    """The tiling of `TEAMTUNE_LORA_BLOCKS` ("BM,BN,BK,WARPS": row, column and rank tiles, warps), else 32,64,64,4:
    of benchmarks/lora_kernel.py's tilings, the fastest at three of SmolLM2-135M's four projection groups and
    within 5% at the fourth, batch 256 (H100)."""
    text = os.environ.get("TEAMTUNE_LORA_BLOCKS", "32,64,64,4")
    try:
        blocks = tuple(int(v) for v in text.split(","))
    except ValueError:
        blocks = ()
    if len(blocks) != 4 or not all(b >= 1 and b & (b - 1) == 0 for b in blocks) or min(blocks[:3]) < 16:
        raise ValueError(
            f"TEAMTUNE_LORA_BLOCKS={text!r}: give four powers of two, the three tiles at least 16 (Triton's "
            "smallest dot), e.g. 32,64,32,4"
        )
    return blocks


@functools.cache
def _kernel():
    import triton
    import triton.language as tl

    @triton.jit
    def masked_addmm(
        out, a, B, cols, rows, M, N, K, t, s_out, s_a, s_b,
        BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr, IEEE: tl.constexpr,
    ):  # fmt: skip
        rm = tl.program_id(0) * BM + tl.arange(0, BM)
        rn = tl.program_id(1) * BN + tl.arange(0, BN)
        own = tl.load(rows + rm // t, mask=rm < M, other=-1)  # each row's adapter (0: none)
        acc = tl.full((BM, BN), 0.0, tl.float32)
        for k0 in range(0, K, BK):
            rk = k0 + tl.arange(0, BK)
            col = tl.load(cols + rk, mask=rk < K, other=-2)  # each rank column's adapter
            keep = (col[None, :] == own[:, None]) & (rm[:, None] < M)
            x = tl.load(a + rm[:, None] * s_a + rk[None, :], mask=keep, other=0.0)
            w = tl.load(
                B + rn[None, :] * s_b + rk[:, None], mask=(rk[:, None] < K) & (rn[None, :] < N), other=0.0
            )
            if IEEE:  # float32 in, float32 products (as torch's matmul), not TF32
                acc += tl.dot(x, w, input_precision="ieee")
            else:
                acc += tl.dot(x, w)
        o = out + rm[:, None] * s_out + rn[None, :]
        inside = (rm[:, None] < M) & (rn[None, :] < N)
        tl.store(
            o, (tl.load(o, mask=inside, other=0.0).to(tl.float32) + acc).to(o.dtype.element_ty), mask=inside
        )

    return masked_addmm


def masked_addmm(
    out: torch.Tensor,
    a: torch.Tensor,
    B: torch.Tensor,
    cols: torch.Tensor,
    rows: torch.Tensor,
    t: int,
    blocks: tuple[int, int, int, int] | None = None,
):
    """out (M, N) += (a (M, K) where cols[k] == rows[m // t], else 0) @ B (N, K)^T, in place; out and a may be
    column slices of one buffer (unit column stride), rows holds one adapter index per group of t rows.
    `blocks`: the kernel's row, column and rank tiles and its warps (default: `default_blocks()`)."""
    M, N = out.shape
    K = a.shape[1]
    assert out.stride(1) == 1 and a.stride(1) == 1 and B.stride(1) == 1 and B.shape == (N, K)
    BM, BN, BK, warps = blocks or default_blocks()
    grid = (-(-M // BM), -(-N // BN))
    _kernel()[grid](
        out, a, B, cols, rows, M, N, K, t, out.stride(0), a.stride(0), B.stride(0), BM=BM, BN=BN, BK=BK,
        IEEE=a.dtype == torch.float32, num_warps=warps,
    )  # fmt: skip
    return out
