"""Decode attention as one Triton kernel that reads only each row's valid keys: from the row's first prompt
position (left padding skipped) to the current one, and for a sliding layer no further back than its window.

The matmul path (`model._attend_cache`) reads the whole static cache of every row in every step, masked by a
bias: the prompt bucket's padding and the positions not generated yet. Here one program per (row, KV head) walks
the valid range in blocks with an online softmax (flash decoding without splits), its `g` query heads padded to
16 for `tl.dot`; the range comes from device tensors, so a captured graph replays it as the cache fills. Used by
the fast path when `decode.attention_kernel` is on, on CUDA with Triton (the tests run it in Triton's interpreter).
"""

from __future__ import annotations

import functools

import torch

from .lora_kernel import _has_triton

BLOCK = 64  # cache positions per inner step


def available(device: torch.device) -> bool:
    """Whether the kernel runs on `device`: CUDA and Triton importable."""
    return device.type == "cuda" and _has_triton()


@functools.cache
def _kernel():
    import triton
    import triton.language as tl

    @triton.jit
    def decode_attention(
        q, k, v, out, lse, start, cur, scale, window,
        sq_b, sq_h, sq_g, sk_b, sk_h, sk_t, sv_b, sv_h, sv_t, so_b, so_h, so_g,
        G: tl.constexpr, GP: tl.constexpr, D: tl.constexpr, BN: tl.constexpr, PRECISION: tl.constexpr,
        LSE: tl.constexpr,
    ):  # fmt: skip
        b, h = tl.program_id(0), tl.program_id(1)
        last = tl.load(cur)
        first = tl.maximum(tl.load(start + b), last - window + 1)
        gi, di = tl.arange(0, GP), tl.arange(0, D)
        qs = tl.load(
            q + b * sq_b + h * sq_h + gi[:, None] * sq_g + di[None, :], mask=gi[:, None] < G, other=0.0
        )
        top = tl.full((GP,), float("-inf"), tl.float32)
        total = tl.zeros((GP,), tl.float32)
        acc = tl.zeros((GP, D), tl.float32)
        for s in range(first // BN * BN, last + 1, BN):
            n = s + tl.arange(0, BN)
            valid = (n >= first) & (n <= last)
            ks = tl.load(
                k + b * sk_b + h * sk_h + n[:, None] * sk_t + di[None, :], mask=valid[:, None], other=0.0
            )
            sc = tl.dot(qs, tl.trans(ks), input_precision=PRECISION)
            sc = tl.where(valid[None, :], sc.to(tl.float32) * scale, float("-inf"))
            new_top = tl.maximum(top, tl.max(sc, 1))
            p = tl.exp(sc - new_top[:, None])
            fade = tl.exp(top - new_top)
            vs = tl.load(
                v + b * sv_b + h * sv_h + n[:, None] * sv_t + di[None, :], mask=valid[:, None], other=0.0
            )
            acc = acc * fade[:, None] + tl.dot(p.to(vs.dtype), vs, input_precision=PRECISION)
            total = total * fade + tl.sum(p, 1)
            top = new_top
        o = out + b * so_b + h * so_h + gi[:, None] * so_g + di[None, :]
        tl.store(o, (acc / total[:, None]).to(out.dtype.element_ty), mask=gi[:, None] < G)
        if LSE:  # the log-sum-exp of each query's scores, (b, kv_heads, g) contiguous
            tl.store(lse + (b * tl.num_programs(1) + h) * G + gi, top + tl.log(total), mask=gi < G)

    return decode_attention


def decode_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    start: torch.Tensor,
    cur: torch.Tensor,
    scale: float,
    window: int | None = None,
    with_lse: bool = False,
):
    """Attention of one query per row over its cache: q (b, kv_heads, g, d); k/v (b, kv_heads, T, d), their
    positions start[r] .. cur (a 0-d tensor) valid, and within `window` of cur if given -> (b, kv_heads, g, d),
    and with `with_lse` also each query's log-sum-exp (b, kv_heads, g) in float32, for merging with another part
    of the keys. The head size must be a power of two; the last dimension of every tensor contiguous."""
    b, h, g, d = q.shape
    assert d & (d - 1) == 0 and q.stride(3) == k.stride(3) == v.stride(3) == 1, "head size: a power of two"
    out = torch.empty_like(q)
    lse = torch.empty(b, h, g, dtype=torch.float32, device=q.device) if with_lse else out
    gp = max(16, 1 << (g - 1).bit_length())
    _kernel()[(b, h)](
        q, k, v, out, lse, start, cur, scale, window or 2**30,
        q.stride(0), q.stride(1), q.stride(2), k.stride(0), k.stride(1), k.stride(2),
        v.stride(0), v.stride(1), v.stride(2), out.stride(0), out.stride(1), out.stride(2),
        G=g, GP=gp, D=d, BN=BLOCK, PRECISION="ieee" if q.dtype == torch.float32 else None,  # not TF32
        LSE=with_lse,
    )  # fmt: skip
    return (out, lse) if with_lse else out
