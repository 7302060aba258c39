import pytest
import torch
from peft import LoraConfig, get_peft_model

from teamtune.models import load_model
from teamtune.train.losses import IGNORE, sft_loss
from teamtune.train.mixed import adapter_rows, train_all_adapters


def _three_roles(dropout: float = 0.0):
    loaded = load_model("tiny-random", device="cpu", dtype="float32", seed=0)
    torch.manual_seed(0)
    lora = dict(target_modules="all-linear", init_lora_weights=False, lora_dropout=dropout)
    model = get_peft_model(loaded.model, LoraConfig(r=4, lora_alpha=8, **lora), adapter_name="planner")
    model.add_adapter("executor", LoraConfig(r=2, lora_alpha=4, **lora))
    model.add_adapter(
        "verifier", LoraConfig(r=4, lora_alpha=4, **(lora | {"target_modules": ["q_proj", "up_proj"]}))
    )
    params = train_all_adapters(model)
    vocab = loaded.model.config.vocab_size
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(vocab, (7, 12), generator=g)
    labels = ids.clone()
    labels[:, :5] = IGNORE  # the prompt part carries no loss
    labels[3, 9:] = IGNORE  # rows of different lengths
    return model, params, ids, labels


ROLES = ["planner", "executor", "planner", "verifier", "executor", "planner", "verifier"]


def _role_loss(logits, labels, role):
    rows = [i for i, r in enumerate(ROLES) if r == role]
    n = float((labels[rows, 1:] != IGNORE).sum())
    return sft_loss(logits[rows], labels[rows], n)


def test_mixed_rows_give_each_adapter_the_gradient_of_its_own_rows():
    model, params, ids, labels = _three_roles()
    names = {id(p): n for n, p in model.named_parameters()}
    with adapter_rows(model, ROLES):
        logits = model(input_ids=ids).logits
    total = sum(_role_loss(logits, labels, r) for r in sorted(set(ROLES)))
    mixed = dict(zip([names[id(p)] for p in params], torch.autograd.grad(total, params), strict=True))
    for role in sorted(set(ROLES)):
        rows = [i for i, r in enumerate(ROLES) if r == role]
        model.base_model.set_adapter(role)  # peft's own forward, this adapter alone, on its rows alone
        own = [p for n, p in model.named_parameters() if f".{role}." in n and "lora_" in n]
        logits = model(input_ids=ids[rows]).logits
        n = float((labels[rows, 1:] != IGNORE).sum())
        grads = torch.autograd.grad(sft_loss(logits, labels[rows], n), own)
        assert own and all(float(g.abs().sum()) > 0 for g in grads)
        for p, g in zip(own, grads, strict=True):
            assert torch.allclose(mixed[names[id(p)]], g, atol=1e-6, rtol=1e-5), names[id(p)]
    # outside the context the layers are peft's again: the active adapter alone on every row
    model.base_model.set_adapter("planner")
    with adapter_rows(model, ["planner"] * len(ROLES)):
        inside = model(input_ids=ids).logits
    assert torch.allclose(model(input_ids=ids).logits, inside, atol=1e-6)


def test_adapter_rows_refuses_unknown_adapters():
    model, _, ids, _ = _three_roles()
    with (
        pytest.raises(ValueError, match="unknown adapter.*critic"),
        adapter_rows(model, ["planner", "critic"]),
    ):
        model(input_ids=ids[:2])
