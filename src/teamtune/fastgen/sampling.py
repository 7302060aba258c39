"""Sampling on the device: temperature, top-p by a sort or by rejection, and seeded draws that leave the
caller's random stream alone."""

from __future__ import annotations

import contextlib
import math

import torch

NUCLEI = ("sort", "reject")  # the top-p draws: a full sort, or rejection


def rejection_rounds(top_p: float, miss: float = 1e-6, most: int = 32) -> int:
    """Rounds after which `draw_by_rejection` has missed the nucleus with probability at most `miss` (each round
    misses with probability at most 1 - top_p), but no more than `most`."""
    if top_p >= 1:
        return 1
    return max(1, min(most, math.ceil(math.log(miss) / math.log1p(-top_p))))


def draw_by_rejection(probs: torch.Tensor, noise: torch.Tensor, top_p: float, rounds: int | None = None):
    """A top-p draw without a sort: per row, the token of the nucleus with the largest probs / noise, which is
    what the sort's draw in vocabulary order picks from the same noise.

    The largest probs / noise among any set of tokens is a draw from that set in proportion to probs (an
    exponential race). A token is in the nucleus when the tokens more probable than it hold less than top_p.
    Each round takes the race's winner among the candidates (at first every token); if it is outside the
    nucleus, so is every token no more probable than it, and those leave the candidates. The nucleus stays
    among them, so the first winner inside it is the nucleus's winner. A round misses with probability at most
    1 - top_p; a row still missing after `rounds` (default `rejection_rounds(top_p)`) takes its most probable
    token. Fixed rounds, argmax, gather and sums only: no host sync, and inductor compiles it."""
    rounds = rounds or rejection_rounds(top_p)
    race = probs / noise
    token = probs.argmax(-1)  # a row that misses every round: the most probable token, always in the nucleus
    found = torch.zeros_like(token, dtype=torch.bool)
    pivot = torch.full_like(probs[..., 0], -1.0)  # candidates: probs > pivot
    for _ in range(rounds):
        t = race.masked_fill(probs <= pivot[..., None], -1.0).argmax(-1)
        pt = probs.gather(-1, t[..., None])
        inside = (probs * (probs > pt)).sum(-1) < top_p
        token = torch.where(inside & ~found, t, token)
        found |= inside
        pivot = torch.where(found, pivot, pt[..., 0])
    return token


def sample(
    logits: torch.Tensor, do_sample: bool, temperature: float, top_p: float, draw=None
) -> torch.Tensor:
    """Next tokens from (batch, vocab) logits: greedy, or temperature + nucleus sampling, without a host sync.
    Top-p sorts the scores, unless `draw(probs, noise, top_p)` (`draw_by_rejection`)
    picks the tokens from the probabilities and exponential noise; it then draws in vocabulary order (so the
    sort and a draw give different tokens from the same seed)."""
    if not do_sample:
        return logits.argmax(-1)
    logits = logits.float() / temperature
    if top_p >= 1 or draw is not None:
        probs = logits.softmax(-1)
        noise = torch.empty_like(probs).exponential_()
        return (probs / noise).argmax(-1) if top_p >= 1 else draw(probs, noise, top_p)
    sorted_logits, order = logits.sort(-1, descending=True)
    probs = sorted_logits.softmax(-1)
    # keep the smallest head of the sorted tokens whose mass reaches top_p (as transformers' top-p does)
    probs = probs.masked_fill(probs.cumsum(-1) - probs >= top_p, 0.0)
    choice = (probs / torch.empty_like(probs).exponential_()).argmax(-1, keepdim=True)
    return order.gather(-1, choice).squeeze(-1)


@contextlib.contextmanager
def seeded(seed: int | None, device: torch.device):
    """Inside: torch's random numbers (CPU, and `device` on CUDA) from `seed`; after: the caller's RNG state as
    it was, so that a seeded generation does not reseed the rest of the program. No-op for `seed=None`."""
    if seed is None:
        yield
        return
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.random.default_generator.manual_seed(seed)
        if device.type == "cuda":
            torch.cuda.default_generators[device.index or 0].manual_seed(seed)
        yield
