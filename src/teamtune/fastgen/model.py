"""The model's forward as the fast path runs it: Llama-family and Gemma 3 weights read by reference (or cast once),
the LoRA adapters of one base mixed row by row, and the forward pass written out (embeddings, RMSNorm, rotary
attention with grouped KV heads, gated MLP), because a captured graph must read fixed buffers."""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
import torch.fx.experimental._config
import torch.nn.functional as F
from peft import PeftModel
from peft.tuners.lora import LoraLayer
from transformers.activations import ACT2FN

from ..models import pick_dtype
from . import lora_kernel

SUPPORTED_TYPES = ("llama", "qwen2", "gemma3_text")
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
    for cap in ("attn_logit_softcapping", "final_logit_softcapping"):
        if getattr(cfg, cap, None) is not None:
            return f"{cap} (fast decoding covers models without it)"
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
    stacked along the output, followed by the A rows of every adapter that has any of them, so that one matmul
    gives the base output and every adapter's rank activations; a row's mask then keeps its own adapter's
    columns and one in-place GEMM adds their B product (each projection's B block sits in its own output rows).
    A batch whose rows use different adapters costs one kernel per projection group more than the bare model
    where the Triton kernel masks while it multiplies (`lora_kernel`), else two (a mask product, a GEMM)."""

    def __init__(self, modules: list, adapters: list[str], take: Callable, layouts: dict, dtype: torch.dtype):
        bases = [getattr(m, "base_layer", m) for m in modules]
        self.sizes = [b.weight.shape[0] for b in bases]
        self.out = sum(self.sizes)
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
        if len(bases) == 1 and not cols:  # by reference (or one shared cast copy), as the weights are
            self.weight, self.bias = take(bases[0].weight), take(bases[0].bias)
            self._stack = []
        else:  # one stacked copy (base rows, then the adapters' A rows), refreshed from the live weights
            dev = bases[0].weight.device
            self._stack = [(b.weight, b.bias, size) for b, size in zip(bases, self.sizes, strict=True)]
            self.weight = torch.empty(self.out + len(cols), bases[0].weight.shape[1], dtype=dtype, device=dev)
            has_bias = bases[0].bias is not None
            self.bias = torch.zeros(self.out + len(cols), dtype=dtype, device=dev) if has_bias else None
        if cols:
            dev = self.weight.device
            layouts.setdefault(self.layout, torch.tensor(cols, device=dev))
            self.B = torch.zeros(rows, len(cols), dtype=self.weight.dtype, device=dev)
        self.refresh()

    def refresh(self) -> None:
        """Copy the live weights into the fixed buffers a captured graph reads: the stacked base weights, the
        adapters' A rows after them and their B blocks (those off each projection's own rows stay zero)."""
        at = 0
        for weight, bias, size in self._stack:
            self.weight[at : at + size].copy_(weight)
            if bias is not None:
                self.bias[at : at + size].copy_(bias)
            at += size
        for A, B, scale, row, col in self.pieces:
            r = A.shape[0]
            self.weight[self.out + col : self.out + col + r].copy_(A)
            self.B[row : row + B.shape[0], col : col + r].copy_(B * scale)

    def __call__(self, x: torch.Tensor, masks: dict) -> torch.Tensor:
        y = F.linear(x, self.weight, self.bias)
        if not self.layout:
            return y
        base = y[..., : self.out]  # a view: the GEMM below adds into it in place, no copy
        sel = masks[self.layout]
        if isinstance(sel, tuple):  # (each rank column's adapter, each row's): the kernel masks as it loads
            flat = y.view(-1, y.shape[-1])
            lora_kernel.masked_addmm(flat[:, : self.out], flat[:, self.out :], self.B, *sel, t=y.shape[-2])
            return base
        a = y[..., self.out :] * sel
        base.view(-1, self.out).addmm_(a.flatten(0, -2), self.B.t())
        return base


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
    """An RMSNorm's weight in the compute dtype; Gemma's also as its float32 scale 1 + weight, made once (and
    again by `refresh`) rather than in every step."""

    def __init__(self, module, take: Callable, gemma: bool = False):
        self.weight = take(module.weight)
        self.variance_epsilon = getattr(module, "variance_epsilon", None) or module.eps  # Gemma's: eps
        self._source = module.weight
        self.scale = 1.0 + module.weight.detach().float() if gemma else None

    def refresh(self) -> None:
        if self.scale is not None:
            self.scale.copy_(1.0 + self._source.detach().float())


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
        # Gemma 3 under transformers that keep one rotary module for its sliding layers
        self.rotary_local = getattr(inner, "rotary_emb_local", None)
        self.gemma = self.cfg.model_type == "gemma3_text"
        self.norm = _Norm(inner.norm, self._take, self.gemma)
        self.lm_head = self._take(base.lm_head.weight)  # a tied head is the embedding's copy
        self.act = ACT2FN[self.cfg.hidden_activation if self.gemma else self.cfg.hidden_act]
        self.layouts: dict[tuple, torch.Tensor] = {}
        self.layers = []
        # Gemma 3: four norms a layer and q/k norms; each layer's attention type (sliding window or full)
        norm_names = ["input_layernorm", "post_attention_layernorm"]
        if self.gemma:
            norm_names += ["pre_feedforward_layernorm", "post_feedforward_layernorm"]
        for layer in inner.layers:
            attn, mlp = layer.self_attn, layer.mlp
            groups = {"qkv": (attn, PROJECTIONS[:3]), "o_proj": (attn, ("o_proj",))}
            groups |= {"gate_up": (mlp, PROJECTIONS[4:6]), "down_proj": (mlp, ("down_proj",))}
            lin = {
                g: _Linear([getattr(m, p) for p in ps], adapters, self._take, self.layouts, self.dtype)
                for g, (m, ps) in groups.items()
            }
            norms = [_Norm(getattr(layer, n), self._take, self.gemma) for n in norm_names]
            if self.gemma:
                norms += [_Norm(attn.q_norm, self._take, True), _Norm(attn.k_norm, self._take, True)]
            self.layers.append((*norms, lin))
        self.heads = self.cfg.num_attention_heads
        self.kv_heads = self.cfg.num_key_value_heads
        self.head_dim = getattr(self.cfg, "head_dim", None) or self.cfg.hidden_size // self.heads
        self.scale = self.head_dim**-0.5
        self.layer_types = ["full_attention"] * len(self.layers)
        self.window: int | None = None  # keys within `window` positions of the query (sliding layers)
        if self.gemma:
            self.scale = self.cfg.query_pre_attn_scalar**-0.5
            self.layer_types = list(self.cfg.layer_types)
            self.window = self.cfg.sliding_window
            dev = self.embed.device  # made here, not in the step: a captured graph copies no host tensor
            self.embed_scale = torch.tensor(self.cfg.hidden_size**0.5, dtype=self.dtype, device=dev)

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
        self.norm.refresh()
        for *norms, lin in self.layers:
            for n in norms:
                n.refresh()
            for p in lin.values():
                p.refresh()

    def masks(self, rows: torch.Tensor) -> dict:
        """Per layout, what keeps each row's own adapter columns: (columns' adapters, rows' adapters) for the
        Triton kernel, else a (batch, 1, rank) 0/1 tensor."""
        if self.layouts and lora_kernel.available(rows.device):
            return {k: (cols, rows) for k, cols in self.layouts.items()}
        return {k: (cols == rows[:, None, None]).to(self.dtype) for k, cols in self.layouts.items()}


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin


def _rms(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    h = x.float()
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    return weight * h.to(x.dtype)


def _add_rms(x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor, eps: float):
    """The residual sum x + y and its RMSNorm (one fused kernel when compiled)."""
    x = x + y
    return x, _rms(x, weight, eps)


def _rope(qkv: torch.Tensor, cos, sin, sizes: list[int], heads: int, kv_heads: int, head_dim: int):
    """q, k, v (b, heads, t, head_dim) from the stacked projection's output, q and k rotated."""
    b, t = qkv.shape[:2]
    q, k, v = qkv.split(sizes, -1)
    q = q.view(b, t, heads, head_dim).transpose(1, 2)
    k = k.view(b, t, kv_heads, head_dim).transpose(1, 2)
    v = v.view(b, t, kv_heads, head_dim).transpose(1, 2)
    return _rotate(q, cos, sin), _rotate(k, cos, sin), v


def _glu(gate_up: torch.Tensor, sizes: list[int], act) -> torch.Tensor:
    gate, up = gate_up.split(sizes, -1)
    return act(gate) * up


def _attend_cache(q, k, v, bias, scale: float) -> torch.Tensor:
    """Decode attention of one query per row over a cache: q (b, kv_heads, g, d), k/v (b, kv_heads, T, d), bias
    (b, 1, 1, T) -> (b, kv_heads, g, d): two matmuls and a float32 softmax."""
    scores = (q @ k.transpose(-1, -2)).float() * scale + bias
    return scores.softmax(-1).to(v.dtype) @ v


def _attend_part(q, k, v, bias, scale: float):
    """Attention over one part of the keys: q (..., m, d), k/v (..., T, d), bias broadcast to (..., m, T) ->
    the output normalised over this part (..., m, d) and its log-sum-exp (..., m), -inf where no key is valid
    (its output then zero), for `_merge` with another part."""
    s = (q @ k.transpose(-1, -2)).float() * scale + bias
    lse = s.logsumexp(-1)
    safe = torch.where(lse.isinf(), 0.0, lse)  # a part with no valid key: zeros, not nan
    return (s - safe[..., None]).exp().to(v.dtype) @ v, lse


def _merge(o1, lse1, o2, lse2) -> torch.Tensor:
    """Two parts' attention (`_attend_part`) as one softmax over both: each weighted by its share of the mass."""
    lse = torch.logaddexp(lse1, lse2)
    w1, w2 = (lse1 - lse).exp()[..., None], (lse2 - lse).exp()[..., None]
    return (o1.float() * w1 + o2.float() * w2).to(o1.dtype)


class Ops:
    """The elementwise pieces of a layer, eager or through torch.compile (`Ops.compiled`). Compiling these
    functions, which every layer calls with tensors of the same shapes, rather than the whole step, compiles a
    few small graphs once (regional compilation) and fuses what the step spends most kernels on: RMSNorm with
    the residual sum, the rotary embedding, the attention softmax, the gated activation."""

    def __init__(self, wrap: Callable = lambda f: f):
        self.rms, self.add_rms, self.rope = wrap(_rms), wrap(_add_rms), wrap(_rope)
        self.glu, self.attend = wrap(_glu), wrap(_attend_cache)
        self.attend_part, self.merge = wrap(_attend_part), wrap(_merge)

    @staticmethod
    @functools.cache
    def compiled() -> Ops:
        """The compiled pieces, once per process (dynamic shapes: every batch, prompt and cache reuses them)."""
        return Ops(lambda f: compile_dynamic(f, fullgraph=True))


def compile_dynamic(fn, **kw):
    """`torch.compile(fn, dynamic=True)` (a module: compiled in place) without duck sizing: a dimension that
    happens to equal another (a prompt bucket of 576 tokens and SmolLM2's hidden size) must not share its symbol
    and be specialised with it. The setting is process-wide."""
    torch.fx.experimental._config.use_duck_shape = False
    if isinstance(fn, torch.nn.Module):
        fn.compile(dynamic=True, **kw)
        return fn
    return torch.compile(fn, dynamic=True, **kw)


EAGER = Ops()


def forward(
    w: _Weights,
    ids: torch.Tensor,  # (b, t)
    pos: torch.Tensor,  # (b, t) rotary positions
    masks: dict,
    attend: Callable[[int, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
    ops: Ops = EAGER,
) -> torch.Tensor:
    """Hidden states after the final norm; `attend(layer, q, k, v)` stores k/v and returns the attention."""
    if w.gemma:
        return _forward_gemma3(w, ids, pos, masks, attend, ops)
    b, t = ids.shape
    x = F.embedding(ids, w.embed)
    cos, sin = w.rotary(x, pos)
    cos, sin = cos[:, None], sin[:, None]
    norms = [layer[0] for layer in w.layers[1:]] + [w.norm]  # the norm that follows each layer
    h = ops.rms(x, w.layers[0][0].weight, w.layers[0][0].variance_epsilon)
    for i, ((_, ln2, lin), after) in enumerate(zip(w.layers, norms, strict=True)):
        q, k, v = ops.rope(lin["qkv"](h, masks), cos, sin, lin["qkv"].sizes, w.heads, w.kv_heads, w.head_dim)
        a = attend(i, q, k, v)  # (b, heads, t, head_dim)
        o = lin["o_proj"](a.transpose(1, 2).reshape(b, t, -1), masks)
        x, h = ops.add_rms(x, o, ln2.weight, ln2.variance_epsilon)
        y = lin["down_proj"](ops.glu(lin["gate_up"](h, masks), lin["gate_up"].sizes, w.act), masks)
        x, h = ops.add_rms(x, y, after.weight, after.variance_epsilon)
    return h


def _gemma_rms(x: torch.Tensor, norm: _Norm) -> torch.Tensor:
    """Gemma's RMSNorm: scaled by (1 + weight), in float32."""
    h = x.float()
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + norm.variance_epsilon)
    return (h * norm.scale).to(x.dtype)


def _forward_gemma3(w: _Weights, ids, pos, masks: dict, attend: Callable, ops: Ops) -> torch.Tensor:
    """`forward` for Gemma 3: the embedding scaled by sqrt(hidden), norms after attention and around the MLP,
    q and k normed per head, and rotary embeddings of each layer's type (sliding layers have their own base)."""
    b, t = ids.shape
    x = F.embedding(ids, w.embed) * w.embed_scale
    ropes = {}
    for kind in set(w.layer_types):
        if w.rotary_local is not None:  # older transformers: one rotary module a layer type
            cos, sin = (w.rotary_local if kind == "sliding_attention" else w.rotary)(x, pos)
        else:
            cos, sin = w.rotary(x, pos, kind)
        ropes[kind] = (cos[:, None], sin[:, None])
    for i, (ln_in, ln_attn, ln_pre, ln_post, q_norm, k_norm, lin) in enumerate(w.layers):
        qkv = lin["qkv"](_gemma_rms(x, ln_in), masks)
        q, k, v = qkv.split(lin["qkv"].sizes, -1)
        q = _gemma_rms(q.view(b, t, w.heads, w.head_dim), q_norm).transpose(1, 2)
        k = _gemma_rms(k.view(b, t, w.kv_heads, w.head_dim), k_norm).transpose(1, 2)
        v = v.view(b, t, w.kv_heads, w.head_dim).transpose(1, 2)
        cos, sin = ropes[w.layer_types[i]]
        a = attend(i, _rotate(q, cos, sin), _rotate(k, cos, sin), v)
        o = lin["o_proj"](a.transpose(1, 2).reshape(b, t, -1), masks)
        x = x + _gemma_rms(o, ln_attn)
        y = lin["down_proj"](
            ops.glu(lin["gate_up"](_gemma_rms(x, ln_pre), masks), lin["gate_up"].sizes, w.act), masks
        )
        x = x + _gemma_rms(y, ln_post)
    return _gemma_rms(x, w.norm)
