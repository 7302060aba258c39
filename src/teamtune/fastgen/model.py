"""The model's forward as the fast path runs it: Llama-family weights read by reference (or cast once), the LoRA
adapters of one base mixed row by row, and the forward pass written out (embeddings, RMSNorm, rotary attention
with grouped KV heads, SiLU MLP), because a captured graph must read fixed buffers."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from peft import PeftModel
from peft.tuners.lora import LoraLayer
from transformers.activations import ACT2FN

from ..models import pick_dtype

SUPPORTED_TYPES = ("llama", "qwen2")
PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def _base(model):
    return model.get_base_model() if isinstance(model, PeftModel) else model


def unsupported(model) -> str | None:
    """Why the fast path cannot run `model` (None when it can)."""
    cfg = _base(model).config
    if cfg.model_type not in SUPPORTED_TYPES:
        return f"model type {cfg.model_type!r} (fast decoding covers {', '.join(SUPPORTED_TYPES)})"
    if getattr(cfg, "use_sliding_window", False):
        return "sliding-window attention"
    for name, module in model.named_modules():
        if not isinstance(module, LoraLayer):
            continue
        if name.rsplit(".", 1)[-1] not in PROJECTIONS:
            return f"a LoRA adapter on {name} (fast decoding covers the attention and MLP projections)"
        if getattr(module, "merged_adapters", None):
            return f"merged adapters on {name}"
        if any(getattr(module, "use_dora", {}).values()):
            return "DoRA adapters"
    return None


class _Linear:
    """Projections that read the same input (q, k, v; gate, up; or one alone) as one matmul: their base weights
    stacked along the output, plus the LoRA of every adapter that has any of them, so that one pair of matmuls
    serves a batch whose rows use different adapters (a row's mask picks its adapter's rank columns; each
    projection's B block sits in its own output rows). Fewer, larger kernels per decode step."""

    def __init__(self, modules: list, adapters: list[str], take: Callable, layouts: dict, dtype: torch.dtype):
        bases = [getattr(m, "base_layer", m) for m in modules]
        self.sizes = [b.weight.shape[0] for b in bases]
        if len(bases) == 1:  # by reference (or one shared cast copy), as the weights are
            self.weight, self.bias = take(bases[0].weight), take(bases[0].bias)
            self._stack = []
        else:  # one stacked copy, refreshed from the live weights at every call
            dev = bases[0].weight.device
            self._stack = [(b.weight, b.bias, size) for b, size in zip(bases, self.sizes, strict=True)]
            self.weight = torch.empty(sum(self.sizes), bases[0].weight.shape[1], dtype=dtype, device=dev)
            has_bias = bases[0].bias is not None
            self.bias = torch.empty(sum(self.sizes), dtype=dtype, device=dev) if has_bias else None
        self.pieces = []  # (lora_A weight, lora_B weight, scaling, first output row, first rank column)
        cols: list[int] = []
        rows = 0
        for m, size in zip(modules, self.sizes, strict=True):
            if isinstance(m, LoraLayer):
                for i, a in enumerate(adapters):
                    if a in m.lora_A:
                        A, B = m.lora_A[a].weight, m.lora_B[a].weight
                        self.pieces.append((A, B, m.scaling[a], rows, len(cols)))
                        cols += [i + 1] * A.shape[0]  # adapter index 0 is "no adapter"
            rows += size
        self.layout = tuple(cols)
        if cols:
            dev = self.weight.device
            layouts.setdefault(self.layout, torch.tensor(cols, device=dev))
            self.A = torch.empty(len(cols), self.weight.shape[1], dtype=self.weight.dtype, device=dev)
            self.B = torch.zeros(rows, len(cols), dtype=self.weight.dtype, device=dev)
        self.refresh()

    def refresh(self) -> None:
        """Copy the live weights into the fixed buffers a captured graph reads: the stacked base weights and
        the adapters (the B blocks off each projection's own rows stay zero)."""
        at = 0
        for weight, bias, size in self._stack:
            self.weight[at : at + size].copy_(weight)
            if bias is not None:
                self.bias[at : at + size].copy_(bias)
            at += size
        for A, B, scale, row, col in self.pieces:
            r = A.shape[0]
            self.A[col : col + r].copy_(A)
            self.B[row : row + B.shape[0], col : col + r].copy_(B * scale)

    def __call__(self, x: torch.Tensor, masks: dict) -> torch.Tensor:
        y = F.linear(x, self.weight, self.bias)
        if self.layout:
            y = y + F.linear(F.linear(x, self.A) * masks[self.layout], self.B)
        return y


def compute_dtype(model, dtype: str | None = None) -> torch.dtype:
    """The dtype the fast path decodes in: `dtype` by name; None: bfloat16 for float32 weights on a CUDA device
    that has it (as a training forward computes under bf16 autocast), else the weights' own dtype."""
    weights = _base(model).model.embed_tokens.weight
    if dtype is not None:
        return pick_dtype(dtype, weights.device)
    if weights.dtype == torch.float32 and weights.device.type == "cuda":
        return pick_dtype("auto", weights.device)  # bf16 where the GPU has it
    return weights.dtype


class _Norm:
    """An RMSNorm's weight in the compute dtype."""

    def __init__(self, module, take: Callable):
        self.weight, self.variance_epsilon = take(module.weight), module.variance_epsilon


class _Weights:
    """The model's tensors as the fast forward reads them: base weights by reference, or cast once when the
    compute dtype differs from theirs; adapters in buffers of the compute dtype."""

    def __init__(self, model, adapters: list[str], dtype: torch.dtype | None = None):
        base = _base(model)
        inner = base.model
        self.cfg = base.config
        self.names = tuple(adapters)
        self.dtype = dtype or inner.embed_tokens.weight.dtype
        self._copies: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # id(source): (source, cast copy)
        self.embed = self._take(inner.embed_tokens.weight)
        self.rotary = inner.rotary_emb
        self.norm = _Norm(inner.norm, self._take)
        self.lm_head = self._take(base.lm_head.weight)  # a tied head is the embedding's copy
        self.act = ACT2FN[self.cfg.hidden_act]
        self.layouts: dict[tuple, torch.Tensor] = {}
        self.layers = []
        for layer in inner.layers:
            attn, mlp = layer.self_attn, layer.mlp
            groups = {"qkv": (attn, PROJECTIONS[:3]), "o_proj": (attn, ("o_proj",))}
            groups |= {"gate_up": (mlp, PROJECTIONS[4:6]), "down_proj": (mlp, ("down_proj",))}
            lin = {
                g: _Linear([getattr(m, p) for p in ps], adapters, self._take, self.layouts, self.dtype)
                for g, (m, ps) in groups.items()
            }
            norms = (
                _Norm(layer.input_layernorm, self._take),
                _Norm(layer.post_attention_layernorm, self._take),
            )
            self.layers.append((*norms, lin))
        self.heads = self.cfg.num_attention_heads
        self.kv_heads = self.cfg.num_key_value_heads
        self.head_dim = getattr(self.cfg, "head_dim", None) or self.cfg.hidden_size // self.heads
        self.scale = self.head_dim**-0.5

    def _take(self, t: torch.Tensor | None) -> torch.Tensor | None:
        """`t` itself when it has the compute dtype, else one cast copy of it (shared by every reader)."""
        if t is None or t.dtype == self.dtype:
            return t
        if id(t) not in self._copies:
            self._copies[id(t)] = (t, t.detach().to(self.dtype))
        return self._copies[id(t)][1]

    def refresh(self) -> None:
        """Copy the live weights into what a captured graph reads: cast copies of base weights (fully
        fine-tuned ones change between calls) and the adapters' buffers."""
        for src, copy in self._copies.values():
            copy.copy_(src)
        for _, _, lin in self.layers:
            for p in lin.values():
                p.refresh()

    def masks(self, rows: torch.Tensor) -> dict:
        """Per layout, a (batch, 1, rank) 0/1 tensor keeping each row's own adapter columns."""
        return {k: (cols == rows[:, None, None]).to(self.dtype) for k, cols in self.layouts.items()}


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin


def _rms(norm, x: torch.Tensor) -> torch.Tensor:
    h = x.float()
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + norm.variance_epsilon)
    return norm.weight * h.to(x.dtype)


def forward(
    w: _Weights,
    ids: torch.Tensor,  # (b, t)
    pos: torch.Tensor,  # (b, t) rotary positions
    masks: dict,
    attend: Callable[[int, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    """Hidden states after the final norm; `attend(layer, q, k, v)` stores k/v and returns the attention."""
    b, t = ids.shape
    x = F.embedding(ids, w.embed)
    cos, sin = w.rotary(x, pos)
    cos, sin = cos[:, None], sin[:, None]
    for i, (ln1, ln2, lin) in enumerate(w.layers):
        h = _rms(ln1, x)
        q, k, v = lin["qkv"](h, masks).split(lin["qkv"].sizes, -1)
        q = q.view(b, t, w.heads, w.head_dim).transpose(1, 2)
        k = k.view(b, t, w.kv_heads, w.head_dim).transpose(1, 2)
        v = v.view(b, t, w.kv_heads, w.head_dim).transpose(1, 2)
        a = attend(i, _rotate(q, cos, sin), _rotate(k, cos, sin), v)  # (b, heads, t, head_dim)
        x = x + lin["o_proj"](a.transpose(1, 2).reshape(b, t, -1), masks)
        h = _rms(ln2, x)
        gate, up = lin["gate_up"](h, masks).split(lin["gate_up"].sizes, -1)
        x = x + lin["down_proj"](w.act(gate) * up, masks)
    return _rms(w.norm, x)
