import dataclasses
import json
import math

import pytest
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


@pytest.mark.parametrize("recipe", ["mlpo", "teamtr"])
def test_max_grad_norm_is_the_clip_the_update_uses(recipe, tmp_path, monkeypatch, toy_task):
    """optim.max_grad_norm reaches the RL update's gradient clip (it was fixed at 1.0), and the logged grad_norm
    is the norm before clipping."""
    from teamtune.config import load_config
    from teamtune.train import mlpo, teamtr

    seen = []
    real = torch.nn.utils.clip_grad_norm_

    def clip(params, max_norm, *a, **k):
        params = list(params)
        norm = real(params, max_norm, *a, **k)
        seen.append((max_norm, float(norm), float(torch.cat([p.grad.flatten() for p in params]).norm())))
        return norm

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", clip)
    module, extra = (
        (mlpo, {"peers": 2, "problems_per_step": 2}) if recipe == "mlpo" else (teamtr, {"agents": 2})
    )
    base = dict(
        model="tiny-random",
        steps=1,
        stages=1,
        problems_per_stage=2,
        delta=100.0,
        device="cpu",
        output=str(tmp_path / "run"),
        policy={"group_size": 4, "max_new_tokens": 6, "ppo_epochs": 1, "micro_batch": 8, "temperature": 1.0},
        optim={"lr": 1e-2, "schedule": "constant", "warmup_steps": 0, "max_grad_norm": 1e-4},
        **extra,
    )
    cls = module.MLPOConfig if recipe == "mlpo" else module.TeamTRConfig
    keys = {f.name for f in dataclasses.fields(cls)}
    cfg = load_config(cls, None, [f"{k}={json.dumps(v)}" for k, v in base.items() if k in keys])
    out = module.train(cfg, task=toy_task)
    assert seen and all(m == 1e-4 for m, _, _ in seen)
    assert all(after <= 1e-4 * 1.01 < before for _, before, after in seen)  # a real clip
    logged = [json.loads(x)["grad_norm"] for x in (out / "log.jsonl").read_text().splitlines()]
    assert logged[0] == pytest.approx(seen[0][1])


def _lora_model_and_batch():
    """tiny-random with a LoRA adapter of random weights, and a batch of 4 random prompts and completions."""
    from teamtune.models import load_model
    from teamtune.train.common import LoraSettings, make_trainable
    from teamtune.train.policy import make_batch

    loaded = load_model("tiny-random", device="cpu", dtype="float32", seed=0)
    model = make_trainable(loaded, "lora", LoraSettings(dropout=0.0))
    g = torch.Generator().manual_seed(0)
    for p in model.parameters():  # lora_B starts at zero: give the adapter a direction of its own
        if p.requires_grad:
            p.data.normal_(0, 0.05, generator=g)
    vocab = loaded.model.config.vocab_size
    prompts = [torch.randint(vocab, (n,), generator=g).tolist() for n in (9, 5, 12, 7)]
    done = [torch.randint(vocab, (n,), generator=g).tolist() for n in (4, 8, 3, 6)]
    return model, make_batch(prompts, done, [1.0, -1.0, 0.5, -0.5], 0)


def test_policy_forward_gives_the_full_masked_forwards_logprobs_and_gradients():
    """The policy's forward runs without an attention mask (rows are right-padded), cuts each micro-batch to its
    longest row and makes logits from the first completion position on: on the completion tokens its log-probs
    and the gradients of a loss over them equal those of the full forward with the mask."""
    from teamtune.train.policy import _logp

    model, batch = _lora_model_and_batch()
    params = [p for p in model.parameters() if p.requires_grad]

    def grads(logp):
        loss = (logp * batch.mask[: len(logp)]).sum()
        return torch.autograd.grad(loss, params)

    for rows in (4, 2):  # all rows, and the two shorter ones (13 of 15 positions: cut and padded back)
        fast = _logp(model, batch, slice(0, rows), torch.device("cpu"))
        logits = model(input_ids=batch.ids[:rows], attention_mask=batch.attention[:rows]).logits
        ref = token_logprobs(logits, batch.ids[:rows])
        on = batch.mask[:rows].bool()
        assert fast.shape == ref.shape and torch.allclose(fast[on], ref[on], atol=1e-5)
        for a, b in zip(grads(fast), grads(ref), strict=True):
            assert torch.allclose(a, b, atol=1e-5, rtol=1e-4)


def test_compiled_layers_give_the_same_logprobs_and_gradients():
    """`compile_layers` (regional torch.compile of the decoder layers, as the RL recipes run on CUDA): the same
    log-probs and gradients as the eager forward, and one compiled code for every layer."""
    from teamtune.train.common import compile_layers
    from teamtune.train.policy import _logp

    model, batch = _lora_model_and_batch()
    params = [p for p in model.parameters() if p.requires_grad]

    def run():
        logp = _logp(model, batch, slice(0, 4), torch.device("cpu"))
        return logp.detach(), torch.autograd.grad((logp * batch.mask).sum(), params)

    eager, eager_grads = run()
    torch._dynamo.reset()
    compile_layers(model)
    compiled, compiled_grads = run()
    assert (
        torch._dynamo.utils.counters["stats"]["unique_graphs"] > 0
    )  # the layers did go through torch.compile
    assert torch.allclose(compiled, eager, atol=1e-5)
    for a, b in zip(compiled_grads, eager_grads, strict=True):
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-4)
    graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    _logp(model, batch, slice(0, 2), torch.device("cpu"))  # a narrower batch: no new compile
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == graphs


@pytest.mark.parametrize("max_kl", [None, 10.0])
def test_update_without_old_logprobs_takes_the_same_step_as_with_a_separate_pass(max_kl):
    """`update` without the old policy's log-probs takes them from its first forward: the loss, the gradient
    norm and the weights after two epochs (and the trust region's KL) equal those of a separate scoring pass."""
    from teamtune.train.common import OptimSettings, make_optimizer
    from teamtune.train.policy import PolicySettings, logprobs, update

    def run(separate: bool):
        model, batch = _lora_model_and_batch()
        s = PolicySettings(group_size=2, ppo_epochs=2, micro_batch=2)
        params = [p for p in model.parameters() if p.requires_grad]
        opt, sched = make_optimizer(model, OptimSettings(lr=1e-2, schedule="constant", warmup_steps=0), 10)
        if separate:
            batch.old_logp = logprobs(model, batch, s.micro_batch, torch.device("cpu"))
        st = update(model, params, opt, sched, batch, s, torch.device("cpu"), max_kl=max_kl)
        return st, [p.detach().clone() for p in params], batch.old_logp

    (a, wa, old_a), (b, wb, old_b) = run(True), run(False)
    assert a["steps"] == b["steps"] == 2
    for k in ("loss", "grad_norm", "kl_old", "clip_frac"):
        assert b[k] == pytest.approx(a[k], rel=1e-5, abs=1e-7), k
    assert torch.allclose(old_a, old_b, atol=1e-6)
    for x, y in zip(wa, wb, strict=True):
        assert torch.allclose(x, y, atol=1e-6)


def test_a_token_cap_on_micro_batches_takes_the_same_step():
    """`micro_tokens` splits the batch into smaller forwards/backwards; loss, gradient norm and weights stay."""
    from teamtune.train.common import OptimSettings, make_optimizer
    from teamtune.train.policy import PolicySettings, micro_rows, update

    def run(micro_tokens: int):
        model, batch = _lora_model_and_batch()
        s = PolicySettings(group_size=2, ppo_epochs=2, micro_batch=4, micro_tokens=micro_tokens)
        params = [p for p in model.parameters() if p.requires_grad]
        opt, sched = make_optimizer(model, OptimSettings(lr=1e-2, schedule="constant", warmup_steps=0), 10)
        st = update(model, params, opt, sched, batch, s, torch.device("cpu"))
        return st, [p.detach().clone() for p in params], micro_rows(batch, s)

    (a, wa, rows_a), (b, wb, rows_b) = run(0), run(1)
    assert (rows_a, rows_b) == (4, 1)  # the cap is below one row's width: one row per micro-batch
    for k in ("loss", "grad_norm", "clip_frac"):
        assert b[k] == pytest.approx(a[k], rel=1e-5, abs=1e-7), k
    for x, y in zip(wa, wb, strict=True):
        # sums in another order (each micro-batch is also cut to its own widest row): Adam's step, which
        # scales small gradients up to lr, differs by ~6e-5 at most (lr 1e-2)
        assert torch.allclose(x, y, atol=1e-4)
    with pytest.raises(ValueError, match="micro_tokens at least 0"):
        PolicySettings(micro_tokens=-1).validate()


def test_labelled_logits_give_sft_losses_loss_and_gradients():
    """SFT's output layer on the labelled positions alone (`labelled_logits`, `token_loss`): the same loss and
    LoRA gradients as `sft_loss` over every position's logits, on right-padded rows labelled in places, and the
    output layer saw only the labelled positions."""
    from teamtune.train.losses import next_labelled, token_loss
    from teamtune.train.sft import labelled_logits

    model, batch = _lora_model_and_batch()
    params = [p for p in model.parameters() if p.requires_grad]
    labels = torch.full_like(batch.ids, IGNORE)
    labels[:, 1:] = torch.where(batch.mask.bool(), batch.ids[:, 1:], IGNORE)  # mask [B, T-1]: each completion
    labels[0, 2] = batch.ids[0, 2]  # a labelled prompt token too: not only each row's tail
    inputs = {"input_ids": batch.ids, "attention_mask": batch.attention}
    n = float((labels[:, 1:] != IGNORE).sum())
    head = model.get_output_embeddings()
    seen = []
    probe = head.register_forward_hook(lambda _m, args, _out: seen.append(args[0].shape))
    logits, targets = labelled_logits(model, head, inputs, labels)
    probe.remove()
    assert seen == [(int(next_labelled(labels).sum()), model.config.hidden_size)]
    fast = token_loss(logits, targets, n)
    ref = sft_loss(model(**inputs).logits, labels, n)
    assert torch.allclose(fast, ref, atol=1e-6, rtol=1e-5)
    for a, b in zip(torch.autograd.grad(fast, params), torch.autograd.grad(ref, params), strict=True):
        assert torch.allclose(a, b, atol=1e-6, rtol=1e-4)
