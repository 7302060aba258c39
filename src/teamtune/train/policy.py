"""The policy-gradient step that MLPO and TeamTR share: sampled completions -> token batch -> log-probs ->
clipped updates with an optional KL penalty to a reference and an optional trust region on the KL to the
pre-update policy. The losses themselves are in losses.py."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from peft import PeftModel

from ..costs import FlopModel
from .common import autocast, compile_layers, train_flops
from .losses import grpo_loss, k3_kl, masked_mean, token_logprobs


@dataclass
class PolicySettings:
    group_size: int = 8  # completions sampled per prompt (GRPO's G)
    temperature: float = 1.0
    max_new_tokens: int = 256
    clip: float = 0.2
    kl_coef: float = 0.0  # k3 KL to the reference model (the base without adapter when LoRA)
    ppo_epochs: int = 2  # optimisation steps on each batch of rollouts
    micro_batch: int = 16  # sequences per forward/backward
    # and at most this many token positions per forward/backward (0: no limit): long few-shot prompts make
    # wide rows, and a backward's activations grow with rows x width (the gradient is the same either way)
    micro_tokens: int = 0
    scale_advantages: bool = True  # divide by the group's std (GRPO); False: only centre (Dr. GRPO)
    # DAPO's dynamic sampling: drop groups whose rewards are all equal (no advantage) and draw more problems
    # until the batch holds as many informative groups as asked, for at most `max_draws` draws of a batch
    dynamic_sampling: bool = False
    max_draws: int = 4
    # the training forward's decoder layers through torch.compile (regional: one compiled code for every layer);
    # None: on CUDA. Off by default: with decode.compile_step, about 3 minutes of compiling once per process
    # for a 2.99 s step against 4.74 s uncompiled on an H100 (BENCHMARKS.md), so it pays in long runs only
    compile: bool | None = False

    def validate(self) -> None:
        if self.group_size < 2:
            raise ValueError("group_size must be at least 2: advantages compare completions of one prompt")
        if self.max_draws < 1:
            raise ValueError("max_draws must be at least 1")
        if self.micro_batch < 1 or self.micro_tokens < 0:
            raise ValueError("micro_batch must be at least 1 and micro_tokens at least 0")


@dataclass
class Batch:
    ids: torch.Tensor  # [B, T] prompt then completion, right-padded
    attention: torch.Tensor  # [B, T]
    mask: torch.Tensor  # [B, T-1] 1.0 where position t+1 is a completion token
    advantages: torch.Tensor  # [B]
    old_logp: torch.Tensor | None = None  # [B, T-1] under the policy that sampled (None: `update` fills it)
    ref_logp: torch.Tensor | None = None  # [B, T-1] under the reference


def informative(rewards: torch.Tensor) -> torch.Tensor:
    """[P, G] rewards -> [P] bool: the groups whose rewards differ (the ones with a non-zero advantage)."""
    return (rewards != rewards[:, :1]).any(dim=1)


GROUP_COUNTS = ("groups_drawn", "groups_dropped", "groups_kept")


def fill_groups(draw, want: int, s: PolicySettings) -> tuple[list, torch.Tensor, dict]:
    """Groups for one update. `draw(r)` samples the r-th draw: (groups, rewards [P, G]).

    Without dynamic sampling: the first draw as it is. With it: informative groups from up to `s.max_draws`
    draws until `want` are held (the rest dropped); if no draw held one, the last draw as it is (no signal,
    as without). Also returns the counts of groups drawn, dropped and kept.
    """
    kept, rows, drawn, dropped = [], [], 0, 0
    for r in range(s.max_draws if s.dynamic_sampling else 1):
        groups, rewards = draw(r)
        drawn += len(groups)
        if not s.dynamic_sampling:
            kept, rows = groups, list(rewards)
            break
        mask = informative(rewards).tolist()
        dropped += mask.count(False)
        kept += [g for g, m in zip(groups, mask, strict=True) if m]
        rows += [row for row, m in zip(rewards, mask, strict=True) if m]
        if len(kept) >= want:
            dropped += len(kept) - want  # informative, but past the batch: not trained on
            kept, rows = kept[:want], rows[:want]
            break
    if not kept:
        kept, rows = groups, list(rewards)
        dropped -= len(groups)
    counts = {"groups_drawn": drawn, "groups_dropped": dropped, "groups_kept": len(kept)}
    return kept, torch.stack(rows), counts


def make_batch(
    prompts: list[list[int]], completions: list[list[int]], advantages: list[float], pad_id: int
) -> Batch:
    rows = [p + c for p, c in zip(prompts, completions, strict=True)]
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    mask = torch.zeros((len(rows), width - 1))
    for b, (p, r) in enumerate(zip(prompts, rows, strict=True)):
        ids[b, : len(r)] = torch.tensor(r)
        attention[b, : len(r)] = 1
        mask[b, len(p) - 1 : len(r) - 1] = 1.0
    return Batch(ids, attention, mask, torch.tensor(advantages, dtype=torch.float32))


def compile_policy(model, s: PolicySettings, device: torch.device) -> None:
    """Compile the training forward's layers when `s.compile` says so (None: on CUDA)."""
    if s.compile if s.compile is not None else device.type == "cuda":
        compile_layers(model)


def micro_rows(batch: Batch, s: PolicySettings) -> int:
    """Sequences per forward/backward on `batch`: `s.micro_batch`, fewer when `s.micro_tokens` caps rows x width."""
    if not s.micro_tokens:
        return s.micro_batch
    return max(1, min(s.micro_batch, s.micro_tokens // batch.ids.shape[1]))


def _slices(batch: Batch, micro: int):
    for s in range(0, batch.ids.shape[0], micro):
        yield slice(s, s + micro)


def _logp(model, batch: Batch, sl: slice, device) -> torch.Tensor:
    """[b, T-1] log-probs of the slice's completion tokens, 0 where the mask is 0 before the first of them.

    Rows are right-padded, so causal attention alone is right for every real token: no attention mask, which
    lets the training forward take the flash kernel, and the slice is cut to its own longest row. Logits are
    made only from the slice's first completion position on (`logits_to_keep`): the prompt's positions carry
    no loss, and their logits over the vocabulary were most of a leader's forward."""
    T = batch.ids.shape[1]
    width = int(batch.attention[sl].sum(1).max())
    ids = batch.ids[sl, :width].to(device)
    rows = batch.mask[sl, : width - 1].any(dim=0).nonzero()
    first = int(rows[0]) if len(rows) else 0
    keep = {"logits_to_keep": width - first} if first else {}
    with autocast(device):
        logits = model(input_ids=ids, **keep).logits
    out = token_logprobs(logits, ids[:, first:])
    return F.pad(out, (first, T - width))


@torch.no_grad()
def logprobs(model, batch: Batch, micro: int, device, reference: bool = False) -> torch.Tensor:
    """Log-probs [B, T-1] of the batch's completion tokens (where `mask` is 1; prompt positions are 0 or
    the prompt's own); `reference`: with the LoRA adapters switched off."""
    was_training = model.training
    model.eval()
    ctx = model.disable_adapter() if reference and isinstance(model, PeftModel) else contextlib.nullcontext()
    with ctx:
        out = torch.cat([_logp(model, batch, sl, device).cpu() for sl in _slices(batch, micro)])
    model.train(was_training)
    return out


def update(
    model,
    params: list[torch.nn.Parameter],
    opt,
    sched,
    batch: Batch,
    s: PolicySettings,
    device,
    max_kl: float | None = None,
    dp=None,
    max_grad_norm: float = 1.0,
) -> dict:
    """`s.ppo_epochs` optimiser steps of the clipped objective on `batch`, gradients clipped to `max_grad_norm`.

    Without `batch.old_logp`, the old policy's log-probs are the first epoch's own forward, detached: before
    the first step the model is the policy that sampled, so no separate pass is needed. A model with active
    dropout scores them in a pass of its own in eval mode (its training forward is not the sampling policy).

    With `max_kl` (a trust region): after each step the mean k3 KL between the pre-update and the new policy
    is measured on the batch; a step that takes it past `max_kl` is undone and the update stops there.
    `dp`: (accelerate's Accelerator, the DDP-wrapped model) when each process holds its share of the rollouts:
    the loss and the trust region's KL are token means over every rank's batch, and DDP averages the gradients
    once per step, so every rank takes (or undoes) the same step.
    """
    micro = micro_rows(batch, s)
    if batch.old_logp is None and has_dropout(model):
        batch.old_logp = logprobs(model, batch, micro, device)
    fused = batch.old_logp is None  # taken from the first epoch's forward
    if fused:
        batch.old_logp = torch.zeros(batch.mask.shape)
    acc, net = dp if dp is not None else (None, model)
    n_local = n_tokens = float(batch.mask.sum())
    if acc is not None:
        n_tokens = float(acc.reduce(torch.tensor(n_tokens, device=device), "sum"))
    n_tokens = max(n_tokens, 1.0)
    scale = acc.num_processes if acc is not None else 1  # DDP averages over ranks: x world sums
    slices = list(_slices(batch, micro))
    stats = dict.fromkeys(("loss", "clip_frac", "kl_ref", "kl_old", "grad_norm"), 0.0)
    stats.update(steps=0, stopped=False)
    model.train()
    for epoch in range(s.ppo_epochs):
        before = [p.detach().clone() for p in params] if max_kl is not None else None
        for j, sl in enumerate(slices):
            # with DDP, gradients are exchanged on each rank's last micro-batch only (ranks may hold more or less)
            sync = acc is None or j == len(slices) - 1
            with contextlib.nullcontext() if sync else net.no_sync():
                logp = _logp(net, batch, sl, device)
                if fused and epoch == 0:
                    old = logp.detach()
                    batch.old_logp[sl] = old.cpu()
                else:
                    old = batch.old_logp[sl].to(device)
                mask = batch.mask[sl].to(device)
                ref = batch.ref_logp[sl].to(device) if batch.ref_logp is not None else None
                loss, st = grpo_loss(
                    logp,
                    old,
                    ref,
                    batch.advantages[sl].to(device),
                    mask,
                    s.clip,
                    s.kl_coef,
                )
                share = float(mask.sum()) / n_tokens  # micro-batch losses are token means: weight by tokens
                (loss * share * scale).backward()
            stats["loss"] += float(loss.detach()) * share / s.ppo_epochs
            stats["clip_frac"] += float(st["clip_frac"]) * share / s.ppo_epochs
            stats["kl_ref"] += float(st["kl"]) * share / s.ppo_epochs
        norm = torch.nn.utils.clip_grad_norm_(params, max_grad_norm)  # the norm before clipping
        stats["grad_norm"] += float(norm) / s.ppo_epochs
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        stats["steps"] += 1
        if max_kl is not None:
            kl = policy_kl(model, batch, micro, device)
            if acc is not None:
                kl = float(acc.reduce(torch.tensor(kl * n_local, device=device), "sum")) / n_tokens
            if kl > max_kl:
                with torch.no_grad():
                    for p, b in zip(params, before, strict=True):
                        p.copy_(b)
                stats["steps"] -= 1
                stats["stopped"] = True
                break
            stats["kl_old"] = kl
    if acc is not None:  # each rank's share is weighted by its tokens over all ranks': the sum is the mean
        for k in ("loss", "clip_frac", "kl_ref"):
            stats[k] = float(acc.reduce(torch.tensor(stats[k], device=device), "sum"))
    return stats


def has_dropout(model) -> bool:
    """Whether a training forward of `model` drops anything (LoRA dropout, attention or hidden dropout)."""
    if getattr(model.config, "attention_dropout", 0) > 0:  # Llama-family attention drops functionally
        return True
    return any(isinstance(m, torch.nn.Dropout) and m.p > 0 for m in model.modules())


def policy_kl(model, batch: Batch, micro: int, device) -> float:
    """Mean per-token KL(old || new) on the batch's completions (k3 on samples of the old policy)."""
    new = logprobs(model, batch, micro, device)
    return float(masked_mean(k3_kl(batch.old_logp, new), batch.mask))


def update_flops(fm: FlopModel, batch: Batch, s: PolicySettings, adapter_params: int, forwards: int) -> float:
    """Training FLOPs of one batch: `ppo_epochs` forward+backward passes plus `forwards` scoring passes
    (old policy, reference, trust-region checks)."""
    lens = batch.attention.sum(1).tolist()
    return s.ppo_epochs * train_flops(fm, lens, adapter_params) + forwards * sum(fm.prefill(n) for n in lens)
