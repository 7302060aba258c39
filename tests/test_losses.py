import math

import torch

from teamtune.train.losses import (
    IGNORE,
    clipped_pg_loss,
    group_advantages,
    grpo_loss,
    k3_kl,
    sft_loss,
    token_logprobs,
)


def test_sft_loss_counts_only_labelled_positions():
    # vocabulary of 2; logits at position 0 predict token 1 with p = e^1/(e^0+e^1)
    logits = torch.tensor([[[0.0, 1.0], [2.0, 0.0], [0.0, 0.0]]])
    labels = torch.tensor([[IGNORE, 1, IGNORE]])  # only position 1 is labelled, predicted by position 0
    expected = -math.log(math.e / (1 + math.e))
    assert math.isclose(float(sft_loss(logits, labels)), expected, rel_tol=1e-6)
    labels2 = torch.tensor([[IGNORE, 1, 0]])  # position 2 predicted by position 1: p(0) = e^2/(e^2+1)
    both = expected - math.log(math.e**2 / (math.e**2 + 1))
    assert math.isclose(float(sft_loss(logits, labels2)), both / 2, rel_tol=1e-6)
    assert math.isclose(float(sft_loss(logits, labels2, normalizer=4.0)), both / 4, rel_tol=1e-6)


def test_token_logprobs_hand_values():
    logits = torch.log(torch.tensor([[[0.25, 0.75], [0.5, 0.5], [0.9, 0.1]]]))
    tokens = torch.tensor([[0, 1, 0]])
    got = token_logprobs(logits, tokens)
    assert torch.allclose(got, torch.log(torch.tensor([[0.75, 0.5]])))


def test_group_advantages_by_hand():
    rewards = torch.tensor([[1.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 1.0], [3.0, 0.0, 0.0, 0.0]])
    adv = group_advantages(rewards, eps=0.0 + 1e-12)
    # group 1: mean 0.5, std 0.5 -> +-1
    assert torch.allclose(adv[0], torch.tensor([1.0, -1.0, -1.0, 1.0]))
    assert torch.equal(adv[1], torch.zeros(4))  # all equal: no signal
    # group 3: mean 0.75, std sqrt((2.25^2 + 3 * 0.75^2) / 4) = 1.299...
    std = math.sqrt((2.25**2 + 3 * 0.75**2) / 4)
    assert torch.allclose(adv[2], torch.tensor([2.25, -0.75, -0.75, -0.75]) / std)
    assert torch.allclose(
        group_advantages(rewards, scale=False)[2], torch.tensor([2.25, -0.75, -0.75, -0.75])
    )


def test_k3_kl_by_hand():
    logp = torch.log(torch.tensor([[0.5, 0.2]]))
    ref = torch.log(torch.tensor([[0.25, 0.2]]))
    # r = log(0.25/0.5) = -ln 2: e^r - r - 1 = 0.5 + ln 2 - 1
    got = k3_kl(logp, ref)
    assert math.isclose(float(got[0, 0]), 0.5 + math.log(2) - 1, rel_tol=1e-6)
    assert float(got[0, 1]) == 0.0
    assert bool((k3_kl(torch.randn(4, 5), torch.randn(4, 5)) >= 0).all())


def test_clipped_pg_loss_by_hand():
    # ratios: e^0.5 = 1.65 (clipped to 1.2 for A > 0), e^-0.5 = 0.61 (clipped to 0.8 for A < 0), 1.0
    logp = torch.tensor([[0.5, -0.5, 0.0]])
    old = torch.zeros(1, 3)
    mask = torch.tensor([[1.0, 1.0, 0.0]])  # the third token is not counted
    loss, frac = clipped_pg_loss(logp, old, torch.tensor([1.0]), mask, clip=0.2)
    # A = +1: min(1.65, 1.2) = 1.2 (clipped); min(0.61, 0.8) = 0.61 (not clipped)
    expected = -(1.2 + math.exp(-0.5)) / 2
    assert math.isclose(float(loss), expected, rel_tol=1e-6)
    assert math.isclose(float(frac), 0.5)
    loss, frac = clipped_pg_loss(logp, old, torch.tensor([-2.0]), mask, clip=0.2)
    # A = -2: min(-3.30, -2.4) = -3.30 (unclipped); min(-1.21, -1.6) = -1.6 (clipped)
    assert math.isclose(float(loss), -(-2 * math.exp(0.5) - 1.6) / 2, rel_tol=1e-6)
    assert math.isclose(float(frac), 0.5)


def test_grpo_loss_adds_kl_penalty():
    logp = torch.tensor([[math.log(0.5)]])
    ref = torch.tensor([[math.log(0.25)]])
    mask = torch.ones(1, 1)
    loss, stats = grpo_loss(logp, logp.clone(), ref, torch.tensor([1.0]), mask, kl_coef=0.1)
    kl = 0.5 + math.log(2) - 1
    assert math.isclose(float(stats["kl"]), kl, rel_tol=1e-6)
    assert math.isclose(float(loss), -1.0 + 0.1 * kl, rel_tol=1e-6)
    no_ref, stats = grpo_loss(logp, logp.clone(), None, torch.tensor([1.0]), mask)
    assert float(no_ref) == -1.0 and float(stats["kl"]) == 0.0
