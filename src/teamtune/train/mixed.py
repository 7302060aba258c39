"""Several LoRA adapters of one base trained in one forward and backward: each row of a batch goes through its own
adapter, so a step over the rows of all roles replaces one step per role.

peft mixes adapters row by row only at inference (`adapter_names` is refused in training mode); inside
`adapter_rows` each LoRA linear layer adds, to the base layer's output, every adapter's update on that adapter's
rows (index_select, then index_add: autograd sees each adapter's rows alone). An adapter's gradient is then what
a forward of its own rows through it alone gives (tested).
"""

from __future__ import annotations

import contextlib
import functools

import torch
from peft import PeftModel
from peft.tuners.lora import LoraLayer
from peft.tuners.lora.layer import Linear as LoraLinear


def adapter_params(model, name: str) -> list[torch.nn.Parameter]:
    """The LoRA weights of adapter `name`."""
    return [p for n, p in model.named_parameters() if "lora_" in n and f".{name}." in n]


def train_all_adapters(model: PeftModel) -> list[torch.nn.Parameter]:
    """Make every adapter's LoRA weights trainable (peft trains only the active one); return them."""
    params = [p for n, p in model.named_parameters() if "lora_" in n]
    for p in params:
        p.requires_grad_(True)
    return params


def _mixed_forward(layer: LoraLinear, rows: dict[str, torch.Tensor], x: torch.Tensor, *args, **kwargs):
    out = layer.base_layer(x, *args, **kwargs)
    for name, idx in rows.items():
        if name not in layer.lora_A:
            continue
        a, b = layer.lora_A[name], layer.lora_B[name]
        sub = layer.lora_dropout[name](x.index_select(0, idx).to(a.weight.dtype))
        out = out.index_add(0, idx, (b(a(sub)) * layer.scaling[name]).to(out.dtype))
    return out


@contextlib.contextmanager
def adapter_rows(model: PeftModel, adapters: list[str]):
    """Inside: a forward of `model` on a batch of len(adapters) rows sends row i through adapter `adapters[i]`."""
    known = set(model.peft_config)
    unknown = sorted(set(adapters) - known)
    if unknown:
        raise ValueError(f"unknown adapter(s) {', '.join(unknown)}; the model has {sorted(known)}")
    layers = [m for m in model.modules() if isinstance(m, LoraLayer)]
    odd = sorted({type(m).__name__ for m in layers if not isinstance(m, LoraLinear) or m.lora_variant})
    if odd:
        raise ValueError(f"adapter_rows mixes plain LoRA linear layers only, not {', '.join(odd)}")
    device = next(model.parameters()).device
    rows = {
        a: torch.tensor([i for i, x in enumerate(adapters) if x == a], device=device)
        for a in sorted(set(adapters))
    }
    for m in layers:
        m.forward = functools.partial(_mixed_forward, m, rows)
    try:
        yield
    finally:
        for m in layers:
            del m.forward  # back to the class's forward
