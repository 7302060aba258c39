"""Fast decoding for Llama-family models and Gemma 3: a static KV cache, the LoRA adapters of one base mixed row
by row in one forward pass, sampling on the device, and on CUDA one captured graph per decode step.

`Engine` uses it on CUDA for the models it supports (`unsupported(model)` says why not) and falls back to
transformers' `generate` elsewhere. The forward pass is written out here (embeddings, RMSNorm, rotary attention
with grouped KV heads, gated MLP; Gemma 3's extra norms and sliding-window layers) because a captured graph must
read fixed buffers; the tests check its logits and greedy tokens against transformers on the same weights.
"""

from __future__ import annotations

from .decoder import FastDecoder
from .model import compute_dtype, forward, unsupported
from .sampling import NUCLEI, draw_by_rejection, rejection_rounds, sample, seeded

__all__ = [
    "NUCLEI",
    "FastDecoder",
    "compute_dtype",
    "draw_by_rejection",
    "forward",
    "rejection_rounds",
    "sample",
    "seeded",
    "unsupported",
]
