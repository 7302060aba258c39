"""Losses of the training recipes, as pure functions on tensors (SFT, and the policy gradient of MLPO and TeamTR).

Shapes: B sequences, T positions, V vocabulary; G completions per group. `mask` is 1.0 on the tokens a loss
counts (a role's own generated tokens), 0.0 elsewhere.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE = -100  # label of a position that no loss counts (the Hugging Face convention)


def token_logprobs(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """log p(tokens[:, t] | tokens[:, :t]); logits [B, T, V] predict the next token, out [B, T-1]."""
    logp = F.log_softmax(logits[:, :-1].float(), dim=-1)
    return logp.gather(-1, tokens[:, 1:].unsqueeze(-1)).squeeze(-1)


def sft_loss(logits: torch.Tensor, labels: torch.Tensor, normalizer: float | None = None) -> torch.Tensor:
    """Summed next-token cross-entropy over labelled positions, divided by `normalizer` (default: their count).

    logits [B, T, V]; labels [B, T] with IGNORE where no loss is taken. A fixed normalizer (the labelled tokens
    of a whole accumulated step) makes micro-batch losses add up to the step's per-token mean.
    """
    targets = labels[:, 1:]
    summed = F.cross_entropy(
        logits[:, :-1].float().reshape(-1, logits.shape[-1]),
        targets.reshape(-1),
        ignore_index=IGNORE,
        reduction="sum",
    )
    n = normalizer if normalizer is not None else max(int((targets != IGNORE).sum()), 1)
    return summed / n


def next_labelled(labels: torch.Tensor) -> torch.Tensor:
    """[B, T] bool: the positions whose next token is labelled, the only positions whose logits sft_loss reads."""
    where = torch.zeros_like(labels, dtype=torch.bool)
    where[:, :-1] = labels[:, 1:] != IGNORE
    return where


def token_losses(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Each labelled position's cross-entropy [N]: logits [N, V] of N positions, targets [N] their next tokens."""
    return F.cross_entropy(logits.float(), targets, reduction="none")


def token_loss(logits: torch.Tensor, targets: torch.Tensor, normalizer: float) -> torch.Tensor:
    """sft_loss on the labelled positions alone: their summed cross-entropy over `normalizer` tokens."""
    return token_losses(logits, targets).sum() / normalizer


def group_advantages(rewards: torch.Tensor, scale: bool = True, eps: float = 1e-4) -> torch.Tensor:
    """GRPO advantages: each reward minus its group's mean, divided by the group's std when `scale`.

    rewards [N, G] (N groups of G completions) -> [N, G]. A group whose rewards are all equal gets zeros.
    """
    centred = rewards - rewards.mean(dim=1, keepdim=True)
    if not scale:
        return centred
    return centred / (rewards.std(dim=1, keepdim=True, unbiased=False) + eps)


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of x [B, T] over the positions where mask [B, T] is 1 (token-level, as in DAPO/TRL's default)."""
    return (x * mask).sum() / mask.sum().clamp(min=1.0)


def k3_kl(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Per-token KL(policy || reference), Schulman's k3 estimator: exp(r) - r - 1 with r = ref_logp - logp.

    Unbiased and never negative for samples drawn from the policy. logp, ref_logp [B, T] -> [B, T].
    """
    r = ref_logp - logp
    return torch.exp(r) - r - 1.0


def clipped_pg_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip: float = 0.2,
) -> tuple[torch.Tensor, torch.Tensor]:
    """PPO's clipped surrogate, negated to a loss; returns (loss, fraction of tokens clipped).

    logp, old_logp, mask [B, T]; advantages [B] (one per sequence, shared by its tokens).
    """
    ratio = torch.exp(logp - old_logp)
    adv = advantages.unsqueeze(1)
    unclipped = ratio * adv
    clipped = torch.clamp(ratio, 1.0 - clip, 1.0 + clip) * adv
    loss = masked_mean(-torch.minimum(unclipped, clipped), mask)
    clip_frac = masked_mean((clipped < unclipped).float(), mask)
    return loss, clip_frac


def grpo_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    ref_logp: torch.Tensor | None,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip: float = 0.2,
    kl_coef: float = 0.0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Clipped policy gradient plus kl_coef x k3 KL to the reference; returns (loss, stats: clip_frac, kl)."""
    pg, clip_frac = clipped_pg_loss(logp, old_logp, advantages, mask, clip)
    kl = (
        masked_mean(k3_kl(logp, ref_logp), mask)
        if ref_logp is not None
        else torch.zeros((), device=logp.device)
    )
    return pg + kl_coef * kl, {"clip_frac": clip_frac.detach(), "kl": kl.detach()}
