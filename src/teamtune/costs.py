"""Cost counters that every model call records and every episode and run adds up."""

from __future__ import annotations

import resource
from dataclasses import asdict, dataclass, fields

import torch


@dataclass
class Cost:
    calls: int = 0
    prompt_tokens: int = 0
    generated_tokens: int = 0
    seconds: float = 0.0  # wall time; a batched call's time is shared equally by its sequences
    prefill_flops: float = 0.0  # reading the prompt (FlopModel)
    decode_flops: float = 0.0  # generating, one token at a time

    def __add__(self, other: Cost) -> Cost:
        return Cost(**{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)})

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.generated_tokens

    @property
    def flops(self) -> float:
        return self.prefill_flops + self.decode_flops

    def to_dict(self) -> dict:
        return asdict(self) | {"flops": self.flops}


@dataclass(frozen=True)
class FlopModel:
    """Forward FLOPs of a decoder from its config: weight matmuls per token plus attention over earlier tokens."""

    linear: float  # per token: 2 x (block weights + output layer + adapter weights)
    attention: float  # per token and attended token: 4 x layers x heads x head_dim (QK^T and AV)

    @classmethod
    def from_model(cls, model, adapter_params: int = 0) -> FlopModel:
        cfg = model.config
        total = sum(p.numel() for n, p in model.named_parameters() if "lora_" not in n)
        vocab_dim = cfg.vocab_size * cfg.hidden_size
        # the input embedding is a lookup, not a matmul; a tied output layer reuses it as one
        matmul = total if getattr(cfg, "tie_word_embeddings", False) else total - vocab_dim
        head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        return cls(
            2.0 * (matmul + adapter_params), 4.0 * cfg.num_hidden_layers * cfg.num_attention_heads * head_dim
        )

    def prefill(self, prompt: int) -> float:
        """Causal prefill of `prompt` tokens: token t attends to t tokens."""
        return prompt * self.linear + self.attention * prompt * (prompt + 1) / 2

    def decode(self, prompt: int, generated: int) -> float:
        """The last generated token is never fed back: generated - 1 forwards, the j-th over prompt + j tokens."""
        steps = max(generated - 1, 0)
        return steps * self.linear + self.attention * (steps * prompt + steps * (steps + 1) / 2)


def total(costs) -> Cost:
    out = Cost()
    for c in costs:
        out = out + c
    return out


def reset_peak_memory() -> None:
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def peak_memory() -> int:
    """Peak accelerator memory when on CUDA, else the process's peak resident memory, in bytes."""
    if torch.cuda.is_available():
        return int(torch.cuda.max_memory_allocated())
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB
