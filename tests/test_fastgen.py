import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from peft import LoraConfig, get_peft_model
from torch.utils._python_dispatch import TorchDispatchMode

from teamtune import fastgen
from teamtune.fastgen import decoder
from teamtune.fastgen import model as model_part
from teamtune.models import LoadedModel
from teamtune.rollout import Engine, Request, SamplingConfig

GREEDY = SamplingConfig(max_new_tokens=24, do_sample=False)
PROMPTS = ["Hi", "A much longer prompt with many more words in it than the first one", "Mid length one"]


def req(text, adapter=None):
    return Request(messages=[{"role": "user", "content": text}], adapter=adapter)


def tiny_model(config_cls, model_cls, vocab: int, **extra):
    """A random two-layer model of `model_cls` and the tiny model's vocabulary (4 query heads over 2 KV heads)."""
    torch.manual_seed(0)
    cfg = config_cls(
        vocab_size=vocab,
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        **extra,
    )
    return model_cls(cfg).eval()


def tiny_qwen2(vocab: int):
    """A random Qwen2 (biased q/k/v projections) of the tiny model's vocabulary."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    model = tiny_model(Qwen2Config, Qwen2ForCausalLM, vocab)
    with torch.no_grad():
        for layer in model.model.layers:  # its biases start at zero: make them count
            for p in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj):
                p.bias.normal_(0, 0.5)
    return model


def tiny_gemma3(vocab: int):
    """A random Gemma 3 of the tiny model's vocabulary: a sliding layer (window 4) and a full one, a query scale
    other than 1/sqrt(head_dim), norms of nonzero weight."""
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    model = tiny_model(
        Gemma3TextConfig,
        Gemma3ForCausalLM,
        vocab,
        head_dim=16,
        query_pre_attn_scalar=32,
        sliding_window=4,
        layer_types=["sliding_attention", "full_attention"],
    )
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "norm" in n:  # they start at zero (a scale of 1): make them count
                p.normal_(0, 0.3)
    return model


def causal_attention(w, t: int):
    """`forward`'s attend for a whole prompt of t tokens: plain causal attention over grouped KV heads."""
    causal = torch.ones(t, t, dtype=torch.bool).tril()
    g = w.heads // w.kv_heads

    def attend(i, q, k, v):
        return F.scaled_dot_product_attention(
            q, k.repeat_interleave(g, 1), v.repeat_interleave(g, 1), attn_mask=causal
        )

    return attend


@pytest.mark.parametrize("kind", ["llama", "qwen2"])
def test_forward_matches_transformers_logits(tiny, kind):
    ids = tiny.tokenizer(["The cat sat on the mat and"], return_tensors="pt")["input_ids"]
    model = tiny.model if kind == "llama" else tiny_qwen2(len(tiny.tokenizer))
    w = model_part._Weights(model, [])
    pos = torch.arange(ids.shape[1])[None]
    attend = causal_attention(w, ids.shape[1])

    with torch.no_grad():
        ours = F.linear(fastgen.forward(w, ids, pos, {}, attend), w.lm_head)
        theirs = model(ids).logits
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)


def test_gemma3_forward_matches_transformers_logits(tiny):
    """Gemma 3's layer (scaled embedding, four norms, q/k norms, per-type rotary, query scale) and its sliding
    window: a prompt longer than the window gives transformers' logits."""
    model = tiny_gemma3(len(tiny.tokenizer))
    ids = tiny.tokenizer(["The cat sat on the mat and then it"], return_tensors="pt")["input_ids"]
    t = ids.shape[1]
    assert t > model.config.sliding_window
    w = model_part._Weights(model, [])
    g = w.heads // w.kv_heads
    windowed = decoder.window_mask(t, w.window, ids.device)

    def attend(i, q, k, v):
        k, v = k.repeat_interleave(g, 1), v.repeat_interleave(g, 1)
        if w.layer_types[i] == "sliding_attention":
            return F.scaled_dot_product_attention(q, k, v, attn_mask=windowed, scale=w.scale)
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=w.scale)

    def both():
        with torch.no_grad():
            ours = F.linear(fastgen.forward(w, ids, torch.arange(t)[None], {}, attend), w.lm_head)
            return ours, model(ids).logits

    torch.testing.assert_close(*both(), atol=1e-4, rtol=1e-4)
    # norm weights changed in place (full fine-tuning): `refresh` carries them into the norms' scales
    with torch.no_grad():
        for layer in model.model.layers:
            layer.pre_feedforward_layernorm.weight.add_(0.5)
            layer.self_attn.k_norm.weight.add_(0.5)
    w.refresh()
    torch.testing.assert_close(*both(), atol=1e-4, rtol=1e-4)


def test_gemma3_fast_generation_matches_plain_generate(tiny):
    """Prefill and decode of a Gemma 3 past its sliding window (prompts of 10-30 tokens, 24 new, window 4) give
    transformers' greedy tokens, with rows of different lengths in one batch."""
    gemma = LoadedModel(model=tiny_gemma3(len(tiny.tokenizer)), tokenizer=tiny.tokenizer, name="tiny-gemma3")
    assert model_part.unsupported(gemma.model) is None
    reqs = [req(p) for p in PROMPTS]
    plain = Engine(gemma, fast=False).generate(reqs, GREEDY)
    fast = Engine(gemma, fast=True).generate(reqs, GREEDY)
    assert [c.tokens for c in fast] == [c.tokens for c in plain]
    assert all(len(c.tokens) > gemma.model.config.sliding_window for c in fast)


def test_a_compute_dtype_casts_once_and_follows_changed_weights(tiny):
    """Decoding a float32 model in bfloat16 reads cast copies (a tied head shares the embedding's), gives the
    logits of the model cast to bfloat16, and `refresh` carries changed base weights (full fine-tuning)."""
    model = copy.deepcopy(tiny.model)
    ids = tiny.tokenizer(["The cat sat on the mat and"], return_tensors="pt")["input_ids"]
    w = model_part._Weights(model, [], torch.bfloat16)
    assert w.embed.dtype == torch.bfloat16 and w.layers[0][2]["qkv"].weight.dtype == torch.bfloat16
    assert (w.lm_head is w.embed) == (model.lm_head.weight is model.model.embed_tokens.weight)
    pos = torch.arange(ids.shape[1])[None]

    def logits(w):
        g = w.heads // w.kv_heads

        def attend(i, q, k, v):
            return F.scaled_dot_product_attention(
                q, k.repeat_interleave(g, 1), v.repeat_interleave(g, 1), is_causal=True
            )

        with torch.no_grad():
            return F.linear(fastgen.forward(w, ids, pos, {}, attend), w.lm_head).float()

    with torch.no_grad():
        exact = model(ids).logits
        theirs = copy.deepcopy(model).to(torch.bfloat16)(ids).logits.float()
    # as far from the float32 logits as transformers' own bfloat16 forward is
    ours_err, their_err = (logits(w) - exact).abs().mean(), (theirs - exact).abs().mean()
    assert ours_err < 1.5 * their_err, (ours_err, their_err)
    with torch.no_grad():
        model.model.layers[0].self_attn.q_proj.weight.mul_(3.0)
    before = logits(w)
    w.refresh()
    q_rows = w.layers[0][2]["qkv"].weight[: model.model.layers[0].self_attn.q_proj.weight.shape[0]]
    assert q_rows.equal(model.model.layers[0].self_attn.q_proj.weight.bfloat16())
    assert not torch.allclose(logits(w), before)
    assert fastgen.compute_dtype(model) == torch.float32  # on CPU the weights' own dtype
    assert fastgen.compute_dtype(model, "bfloat16") == torch.bfloat16


def test_greedy_batch_matches_plain_generate(tiny):
    reqs = [req(p) for p in PROMPTS]
    plain = Engine(tiny, fast=False).generate(reqs, GREEDY)
    fast = Engine(tiny, fast=True).generate(reqs, GREEDY)
    for a, b in zip(plain, fast, strict=True):
        assert a.tokens == b.tokens and a.prompt_ids == b.prompt_ids and a.text == b.text
        assert a.cost == b.cost or (a.cost.generated_tokens, a.finish) == (b.cost.generated_tokens, b.finish)


def test_stop_strings_end_rows_like_plain_generate(tiny):
    free = Engine(tiny, fast=False).generate([req("Count")], GREEDY)[0]
    stop = free.text[len(free.text) // 2 :][:3]
    s = SamplingConfig(max_new_tokens=24, do_sample=False, stop=[stop])
    reqs = [req("Count"), req("Something else entirely")]
    plain = Engine(tiny, fast=False).generate(reqs, s)
    fast = Engine(tiny, fast=True).generate(reqs, s)
    assert fast[0].finish == "stop" and stop not in fast[0].text
    for a, b in zip(plain, fast, strict=True):
        assert (a.text, a.finish, a.tokens, a.cost.generated_tokens) == (
            b.text,
            b.finish,
            b.tokens,
            b.cost.generated_tokens,
        )


def test_end_token_stops_a_row_and_pads_after(tiny):
    ids = tiny.tokenizer(["Tell me"], add_special_tokens=False)["input_ids"]
    dec = fastgen.FastDecoder()
    kw = dict(max_new_tokens=12, do_sample=False, temperature=1.0, top_p=1.0, pad=0)
    free = dec.generate(tiny.model, ids * 2, [None, None], eos=[10**6], **kw)[0]
    end = free[4]  # make the fifth greedy token an end token
    out = dec.generate(tiny.model, ids * 2, [None, None], eos=[end], **kw)
    first = free.index(end)
    assert out[0][: first + 1] == free[: first + 1] and set(out[0][first + 1 :]) <= {0}


@pytest.fixture(scope="module")
def two_adapters(tiny):
    base = copy.deepcopy(tiny.model)
    torch.manual_seed(0)
    cfg = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False)
    model = get_peft_model(base, cfg, adapter_name="solver")
    model.add_adapter(
        "critic",
        LoraConfig(r=2, lora_alpha=2, target_modules=["q_proj", "down_proj"], init_lora_weights=False),
    )
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.05)  # large enough to change greedy tokens
    return LoadedModel(model=model.eval(), tokenizer=tiny.tokenizer, name="tiny+lora")


def test_mixed_adapter_rows_match_each_adapter_alone(two_adapters):
    adapters = ["solver", None, "critic", "solver", "critic", None]
    reqs = [req(PROMPTS[i % 3], a) for i, a in enumerate(adapters)]
    mixed = Engine(two_adapters, fast=True, batch_size=8).generate(reqs, GREEDY)
    alone = [Engine(two_adapters, fast=False).generate([r], GREEDY)[0] for r in reqs]
    assert [c.tokens for c in mixed] == [c.tokens for c in alone]
    # the adapters do matter: the same prompt under a, b and the base gives three different answers
    assert len({tuple(mixed[i].tokens) for i in (0, 1, 2)} | {tuple(alone[3].tokens)}) >= 3


def test_gemma3_mixed_adapter_rows_match_each_adapter_alone(tiny):
    """Gemma 3 (sliding window, q/k norms) with two LoRA adapters on different projections, rows of either and of
    none in one fast batch past the window: each row gets the greedy tokens of its adapter alone through
    transformers (the apps world's planner and executor on one Gemma base)."""
    torch.manual_seed(0)
    base = tiny_gemma3(len(tiny.tokenizer))
    cfg = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False)
    model = get_peft_model(base, cfg, adapter_name="planner")
    model.add_adapter(
        "executor",
        LoraConfig(
            r=2, lora_alpha=2, target_modules=["k_proj", "o_proj", "up_proj"], init_lora_weights=False
        ),
    )
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.05)
    gemma = LoadedModel(model=model.eval(), tokenizer=tiny.tokenizer, name="tiny-gemma3+lora")
    adapters = ["planner", None, "executor", "executor", "planner", None]
    reqs = [req(PROMPTS[i % 3], a) for i, a in enumerate(adapters)]
    mixed = Engine(gemma, fast=True, batch_size=8).generate(reqs, GREEDY)
    alone = [Engine(gemma, fast=False).generate([r], GREEDY)[0] for r in reqs]
    assert [c.tokens for c in mixed] == [c.tokens for c in alone]
    assert all(len(c.tokens) > base.config.sliding_window for c in mixed)
    # the same prompt under two of planner / executor / none gives two answers: the adapters count
    assert all(mixed[i].tokens != mixed[i + 3].tokens for i in range(3))


def test_mixed_adapter_logits_match_peft_on_a_biased_model(tiny):
    """Qwen2's biased q/k/v with adapters on some projections only: each row's logits are its adapter's (or the
    base model's) as peft computes them, though the batch mixes them."""
    torch.manual_seed(1)
    model = get_peft_model(
        tiny_qwen2(len(tiny.tokenizer)),
        LoraConfig(
            r=4, lora_alpha=8, target_modules=["k_proj", "o_proj", "up_proj"], init_lora_weights=False
        ),
        adapter_name="solver",
    )
    model.add_adapter(
        "critic", LoraConfig(r=2, lora_alpha=2, target_modules="all-linear", init_lora_weights=False)
    )
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.2)
    model.eval()
    names = ["solver", "critic"]
    w = model_part._Weights(model, names)
    ids = tiny.tokenizer(["The cat sat on the mat and"] * 3, return_tensors="pt")["input_ids"]
    rows = torch.tensor([1, 0, 2])  # solver, the base model, critic
    pos = torch.arange(ids.shape[1])[None].expand(3, -1)
    attend = causal_attention(w, ids.shape[1])

    with torch.no_grad():
        ours = F.linear(fastgen.forward(w, ids, pos, w.masks(rows), attend), w.lm_head)
        for row, name in enumerate(["solver", None, "critic"]):
            if name is None:
                with model.disable_adapter():
                    theirs = model(ids[row : row + 1]).logits[0]
            else:
                model.set_adapter(name)
                theirs = model(ids[row : row + 1]).logits[0]
            torch.testing.assert_close(ours[row], theirs, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(ours[0], ours[1], atol=1e-3) and not torch.allclose(ours[2], ours[1], atol=1e-3)


class _OpCount(TorchDispatchMode):
    """Counts the aten ops that launch work (views and other metadata ops left out)."""

    FREE = {"view", "_unsafe_view", "t", "slice", "split", "split_with_sizes", "transpose", "unsqueeze"}
    FREE |= {"expand", "detach", "alias", "select", "flatten"}

    def __init__(self):
        super().__init__()
        self.ops: dict[str, int] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if name not in self.FREE:
            self.ops[name] = self.ops.get(name, 0) + 1
        return func(*args, **(kwargs or {}))


def test_mixed_adapters_cost_two_ops_per_projection_group(tiny):
    """Every layer's four projection groups (q/k/v, o, gate/up, down) each add one mask product and one in-place
    GEMM for a batch of mixed adapters: the A rows ride in the base GEMM (decode steps are bound by kernel count)."""
    cfg = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear")
    model = get_peft_model(copy.deepcopy(tiny.model), cfg, adapter_name="solver")
    model.add_adapter("critic", cfg)
    ids, pos = torch.zeros(2, 1, dtype=torch.long), torch.zeros(2, 1, dtype=torch.long)

    def ops(names, rows):
        w = model_part._Weights(model, names)
        masks = w.masks(rows)
        with torch.inference_mode(), _OpCount() as count:
            fastgen.forward(w, ids, pos, masks, lambda i, q, k, v: q)
        return count.ops

    bare, mixed = ops([], torch.zeros(2, dtype=torch.long)), ops(["solver", "critic"], torch.tensor([1, 2]))
    extra = {k: mixed.get(k, 0) - bare.get(k, 0) for k in mixed.keys() | bare.keys()}
    groups = 4 * tiny.model.config.num_hidden_layers
    assert {k: v for k, v in extra.items() if v} == {"mul": groups, "addmm_": groups}


def floor_by_sort(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """The reference floor: the smallest probability of the shortest sorted head whose mass reaches top_p."""
    s = probs.sort(-1, descending=True).values
    return s.masked_fill(s.cumsum(-1) - s >= top_p, float("inf")).amin(-1)


def test_adapter_updates_are_seen_by_the_next_call(two_adapters):
    eng = Engine(two_adapters, fast=True)
    before = eng.generate([req("Hi", "solver")], GREEDY)[0].tokens
    lora = [p for n, p in two_adapters.model.named_parameters() if "lora_B.solver" in n]
    saved = [p.detach().clone() for p in lora]
    with torch.no_grad():
        for p in lora:
            p.mul_(-3)
    try:
        after = eng.generate([req("Hi", "solver")], GREEDY)[0].tokens
        plain = Engine(two_adapters, fast=False).generate([req("Hi", "solver")], GREEDY)[0].tokens
    finally:
        with torch.no_grad():
            for p, s in zip(lora, saved, strict=True):
                p.copy_(s)
    assert after == plain != before


def draw_by_sort(probs: torch.Tensor, noise: torch.Tensor, top_p: float) -> torch.Tensor:
    """The reference draw in vocabulary order: the largest probs / noise among the tokens the sort keeps."""
    return (probs * (probs >= floor_by_sort(probs, top_p)[:, None]) / noise).argmax(-1)


@pytest.mark.parametrize("draw", [None, draw_by_sort, fastgen.draw_by_rejection])
def test_sampling_keeps_the_nucleus_and_its_proportions(draw):
    torch.manual_seed(0)
    probs = torch.tensor([0.5, 0.3, 0.15, 0.05])
    logits = probs.log().expand(40000, 4)
    got = fastgen.sample(logits, True, 1.0, 0.8, draw=draw)
    freq = torch.bincount(got, minlength=4).float() / len(got)
    assert freq[2] == 0 and freq[3] == 0  # 0.5 + 0.3 reaches 0.8: the rest is cut
    assert abs(freq[0] - 0.625) < 0.01
    full = torch.bincount(fastgen.sample(logits, True, 1.0, 1.0), minlength=4).float() / len(got)
    torch.testing.assert_close(full, probs, atol=0.01, rtol=0)
    assert (fastgen.sample(logits[:3], False, 1.0, 1.0) == 0).all()


def test_rejection_draws_the_token_the_sort_draws():
    """From the same noise, the sort-free rejection draw picks the reference's token on sharp and flat rows of a
    SmolLM2-sized vocabulary; where they differ, the two tokens sit on the nucleus's edge (float sums round
    differently) or the row missed every round and took its most probable token."""
    torch.manual_seed(0)
    for scale in (0.3, 1.0, 3.0, 10.0):
        probs = (torch.randn(64, 49152) * scale).softmax(-1)
        noise = torch.empty_like(probs).exponential_()
        for top_p in (0.5, 0.9, 0.95, 0.999):
            want = draw_by_sort(probs, noise, top_p)
            for rounds in (None, 64):
                got = fastgen.draw_by_rejection(probs, noise, top_p, rounds)
                for r in (want != got).nonzero().flatten():
                    above = [float((probs[r] * (probs[r] > probs[r, t])).sum()) for t in (want[r], got[r])]
                    edge = all(abs(a - top_p) < 1e-5 or a < top_p for a in above)
                    assert edge and (rounds is None or min(above) < top_p), (scale, top_p, rounds, above)
                assert (want != got).sum() <= (2 if rounds is None else 1), (scale, top_p, rounds)
    # nucleus {0, 1} at top-p 0.5: a round misses with probability 0.45, and one round leaves those rows on token 0
    probs = torch.tensor([0.3, 0.25, 0.2, 0.15, 0.1]).expand(40000, 5)
    noise = torch.empty_like(probs).exponential_()
    for rounds, share in ((1, 0.3 + 0.45), (None, 0.3 / 0.55)):
        got = fastgen.draw_by_rejection(probs, noise, 0.5, rounds)
        assert got.max() == 1 and abs(float((got == 0).float().mean()) - share) < 0.01
    assert fastgen.rejection_rounds(0.95) == 5 and fastgen.rejection_rounds(0.5) == 20
    assert fastgen.rejection_rounds(1e-3) == 32 and fastgen.rejection_rounds(1.0) == 1


def test_seeded_sampling_repeats(tiny):
    s = SamplingConfig(max_new_tokens=10, temperature=1.0)
    reqs = [req("Tell me a story")] * 4
    a = [c.tokens for c in Engine(tiny, seed=3, fast=True).generate(reqs, s)]
    b = [c.tokens for c in Engine(tiny, seed=3, fast=True).generate(reqs, s)]
    c = [c.tokens for c in Engine(tiny, seed=4, fast=True).generate(reqs, s)]
    assert a == b != c and len(set(map(tuple, a))) > 1


def test_unsupported_models_fall_back_or_fail_clearly(tiny):
    from transformers import GPT2Config, GPT2LMHeadModel

    gpt2 = LoadedModel(
        GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2)), tiny.tokenizer, "gpt2-tiny"
    )
    assert "gpt2" in fastgen.unsupported(gpt2.model)
    assert not Engine(gpt2).uses_fast_path()
    with pytest.raises(ValueError, match="fast decoding cannot run 'gpt2-tiny'"):
        Engine(gpt2, fast=True).uses_fast_path()
    assert not Engine(tiny).uses_fast_path()  # CPU: transformers' generate unless asked
    assert Engine(tiny, fast=True).uses_fast_path()


def test_one_decoder_follows_the_model_it_is_given(tiny):
    from teamtune.models import load_model

    other = load_model("tiny-random", device="cpu", dtype="float32", seed=1)
    ids = tiny.tokenizer(["Tell me"], add_special_tokens=False)["input_ids"]
    kw = dict(max_new_tokens=8, do_sample=False, temperature=1.0, top_p=1.0, pad=0, eos=[10**6])
    dec = fastgen.FastDecoder()
    a, b = dec.generate(tiny.model, ids, [None], **kw), dec.generate(other.model, ids, [None], **kw)
    assert a == fastgen.FastDecoder().generate(tiny.model, ids, [None], **kw)
    assert b == fastgen.FastDecoder().generate(other.model, ids, [None], **kw) != a


def test_decoder_top_p_without_the_sort(tiny):
    """A top-p so small that only the top token is kept: every nucleus method then decodes the greedy tokens."""
    ids = tiny.tokenizer(["Tell me a story", "Hi"], add_special_tokens=False)["input_ids"]
    kw = dict(max_new_tokens=12, temperature=0.7, pad=0, eos=[10**6], seed=3)
    greedy = fastgen.FastDecoder().generate(tiny.model, ids, [None, None], do_sample=False, top_p=1.0, **kw)
    for nucleus in ("sort", "reject"):
        dec = fastgen.FastDecoder(nucleus=nucleus)
        assert dec.generate(tiny.model, ids, [None, None], do_sample=True, top_p=1e-6, **kw) == greedy
    with pytest.raises(ValueError, match="nucleus"):
        fastgen.FastDecoder(nucleus="heap")


def test_a_wrong_nucleus_setting_names_the_variable(tiny, monkeypatch):
    monkeypatch.setenv("TEAMTUNE_NUCLEUS", "heap")
    with pytest.raises(ValueError, match="TEAMTUNE_NUCLEUS='heap': nucleus must be one of sort, reject"):
        Engine(tiny)
    monkeypatch.setenv("TEAMTUNE_NUCLEUS", "reject")
    assert Engine(tiny)._decoder.nucleus == "reject"


def test_compiled_step_gives_the_same_greedy_tokens(tiny, monkeypatch):
    reqs = [req(p) for p in PROMPTS]
    plain = Engine(tiny, fast=True).generate(reqs, GREEDY)
    monkeypatch.setenv("TEAMTUNE_COMPILE_DECODE", "1")
    engine = Engine(tiny, fast=True)
    assert engine._decoder.compile_step
    torch._dynamo.reset()
    compiled = engine.generate(reqs, GREEDY)
    assert [c.tokens for c in compiled] == [c.tokens for c in plain]
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] > 0  # the step did go through torch.compile
    sampled = SamplingConfig(max_new_tokens=12, temperature=0.7, top_p=0.9)
    engine.generate(reqs, sampled)  # compiles the top-p draw
    graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    # another batch size and prompt bucket: new buffers and graph, the compiled code reused
    other = [req("word " * (40 + 9 * i)) for i in range(5)]
    ref = Engine(tiny, fast=True)
    ref.calls = engine.calls  # the same sampling seed
    assert [c.tokens for c in engine.generate(other, sampled)] == [
        c.tokens for c in ref.generate(other, sampled)
    ]
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == graphs  # new shape, no new compile


def test_compiled_rejection_draw_decodes_the_eager_tokens(tiny):
    ids = tiny.tokenizer(["Tell me a story", "Hi"], add_special_tokens=False)["input_ids"]
    kw = dict(max_new_tokens=12, do_sample=True, temperature=1.0, top_p=0.9, pad=0, eos=[10**6], seed=3)
    eager = fastgen.FastDecoder(nucleus="reject").generate(tiny.model, ids, [None, None], **kw)
    dec = fastgen.FastDecoder(compile_step=True)
    assert dec.nucleus == "reject" and fastgen.FastDecoder().nucleus == "sort"  # the defaults
    assert dec._draw is not fastgen.draw_by_rejection  # the draw goes through torch.compile
    assert dec.generate(tiny.model, ids, [None, None], **kw) == eager
    sorted_ = fastgen.FastDecoder().generate(tiny.model, ids, [None, None], **kw)
    assert sorted_ != eager  # the sort draws in its own order: other tokens from the same seed


def test_alternating_shapes_reuse_their_buffers(tiny, monkeypatch):
    """A rollout alternates two shapes (peers, leader): each is built once, and the answers are unchanged."""
    tok = tiny.tokenizer
    short, long = [tok("Hi").input_ids] * 2, [tok(PROMPTS[1]).input_ids * 8] * 3
    kw = dict(max_new_tokens=6, do_sample=False, temperature=1.0, top_p=1.0, pad=0, eos=[10**6])
    built = []
    monkeypatch.setattr(decoder, "_State", lambda *a, _s=decoder._State: built.append(a[1:3]) or _s(*a))
    dec = fastgen.FastDecoder()
    out = [dec.generate(tiny.model, p, [None] * len(p), **kw) for p in (short, long, short, long)]
    assert built == [(2, 64), (3, 128)] and out[0] == out[2] and out[1] == out[3]
    one = fastgen.FastDecoder(shapes=1)
    assert [one.generate(tiny.model, p, [None] * len(p), **kw) for p in (short, long, short)] == out[:3]
    assert built[2:] == [(2, 64), (3, 128), (2, 64)]  # one shape held: each change builds again


def test_a_larger_held_shape_serves_a_smaller_call(tiny, monkeypatch):
    """On CUDA a call may run in held buffers with more rows and prompt positions: same answers, no new shape."""
    serves = decoder._serves
    monkeypatch.setattr(decoder, "_serves", lambda k, want, cuda: serves(k, want, True))
    tok = tiny.tokenizer
    ids = [tok(p).input_ids for p in PROMPTS]
    kw = dict(max_new_tokens=8, do_sample=False, temperature=1.0, top_p=1.0, pad=0, eos=[10**6])
    dec = fastgen.FastDecoder()
    big = dec.generate(tiny.model, ids + [ids[1] * 5], [None] * 4, **kw)  # 4 rows, a 128-position bucket
    small = dec.generate(tiny.model, ids, [None] * 3, **kw)
    assert [(k.batch, k.prompt) for k in dec._cached] == [(4, 128)]
    assert small == fastgen.FastDecoder().generate(tiny.model, ids, [None] * 3, **kw) == big[:3]
    assert not serves(
        decoder._Key((), 4, 128, 8, (False,), (0,)), decoder._Key((), 3, 64, 8, (False,), (0,)), False
    )
    assert not serves(
        decoder._Key((), 9, 64, 8, (False,), (0,)), decoder._Key((), 4, 64, 8, (False,), (0,)), True
    )


def _decode_both(model, prompts, adapters, **kw):
    """The tokens without and with shared prompts."""
    own = fastgen.FastDecoder(nucleus="reject").generate(model, prompts, adapters, **kw)
    shared = fastgen.FastDecoder(nucleus="reject", share_prompts=True).generate(
        model, prompts, adapters, **kw
    )
    return own, shared


def test_shared_prompts_decode_what_a_cache_per_row_decodes(tiny):
    """Rows that sample from one prompt (an RL group) hold its keys and values once: the same greedy tokens for
    each model kind (Qwen2's biases; Gemma 3's sliding window, passed by prompt and answer), rows of one prompt
    apart moved together and put back; the same sampled tokens where each group's rows are next to each other."""
    tok = tiny.tokenizer
    ids = [tok(p).input_ids for p in PROMPTS]
    greedy = dict(max_new_tokens=20, do_sample=False, temperature=1.0, top_p=1.0, pad=0, eos=[10**6])
    sampled = greedy | dict(do_sample=True, temperature=0.9, top_p=0.95, seed=3)
    grouped = [ids[0]] * 2 + [ids[1]] * 4 + [ids[2]] * 2
    apart = [ids[0], ids[1], ids[0], ids[2], ids[1], ids[2]]
    models = {"llama": tiny.model, "qwen2": tiny_qwen2(len(tok)), "gemma3": tiny_gemma3(len(tok))}
    for name, model in models.items():
        own, shared = _decode_both(model, apart, [None] * 6, **greedy)
        assert shared == own, name
        own, shared = _decode_both(model, grouped, [None] * 8, **sampled)
        assert shared == own and len({tuple(r) for r in own[2:6]}) > 1, name  # a group's rows differ
    assert decoder.shared_prompts(apart, [None] * 6) == ([0, 2, 1, 4, 3, 5], 2)
    assert decoder.shared_prompts([ids[0]] * 3 + [ids[1]], [None] * 4)[1] == 1  # 3 and 1 rows: nothing shared
    assert decoder.shared_prompts([ids[0]] * 2, ["a", "b"])[1] == 1  # another adapter: another prompt cache


def test_shared_prompts_with_mixed_adapters(two_adapters):
    """One prompt under two adapters and the base: three prompt caches, each shared by its rows."""
    ids = two_adapters.tokenizer(PROMPTS[1]).input_ids
    adapters = ["solver"] * 2 + ["critic"] * 2 + [None] * 2
    kw = dict(max_new_tokens=12, do_sample=True, temperature=0.9, top_p=0.95, pad=0, eos=[10**6], seed=1)
    own, shared = _decode_both(two_adapters.model, [ids] * 6, adapters, **kw)
    assert shared == own
    kw |= dict(do_sample=False)
    own, shared = _decode_both(two_adapters.model, [ids] * 6, adapters, **kw)
    assert shared == own and len({tuple(own[0]), tuple(own[2]), tuple(own[4])}) == 3  # the adapters matter


def test_compiled_shared_prompts_decode_the_eager_tokens(tiny):
    ids = [tiny.tokenizer(p).input_ids for p in PROMPTS]
    prompts = [ids[0]] * 2 + [ids[1]] * 2 + [ids[2]] * 2
    kw = dict(max_new_tokens=12, do_sample=True, temperature=1.0, top_p=0.9, pad=0, eos=[10**6], seed=3)
    eager = fastgen.FastDecoder(nucleus="reject", share_prompts=True).generate(
        tiny.model, prompts, [None] * 6, **kw
    )
    compiled = fastgen.FastDecoder(compile_step=True, share_prompts=True)
    assert compiled.generate(tiny.model, prompts, [None] * 6, **kw) == eager


def test_shared_prompts_in_a_larger_held_shape(tiny, monkeypatch):
    """As on CUDA, a call runs in held buffers of more rows: its spare rows are whole groups of their own."""
    serves = decoder._serves
    monkeypatch.setattr(decoder, "_serves", lambda k, want, cuda: serves(k, want, True))
    ids = [tiny.tokenizer(p).input_ids for p in PROMPTS]
    kw = dict(max_new_tokens=10, do_sample=False, temperature=1.0, top_p=1.0, pad=0, eos=[10**6])
    dec = fastgen.FastDecoder(share_prompts=True)
    dec.generate(tiny.model, [ids[0]] * 2 + [ids[1]] * 2 + [ids[2]] * 4, [None] * 8, **kw)
    small = dec.generate(tiny.model, [ids[2]] * 2 + [ids[0]] * 2, [None] * 4, **kw)
    assert [(k.batch, k.group) for k in dec._cached] == [(8, 2)]  # the 8-row shape served the 4 rows
    assert small == fastgen.FastDecoder().generate(tiny.model, [ids[2]] * 2 + [ids[0]] * 2, [None] * 4, **kw)


def test_shared_prompts_hold_a_smaller_cache(tiny, monkeypatch):
    w = model_part._Weights(tiny.model, [])
    key = decoder._Key((), 16, 512, 64, (True, 1.0, 1.0), (0,))
    shared = decoder._Key((), 16, 512, 64, (True, 1.0, 1.0), (0,), group=8)
    # 16 rows x (512 + 64) positions against 2 prompts x 512 + 16 rows x 64
    assert decoder.cache_bytes(w, shared) / decoder.cache_bytes(w, key) == (2 * 512 + 16 * 64) / (16 * 576)
    assert not decoder._serves(key, shared, True) and not decoder._serves(shared, key, True)
    monkeypatch.setenv("TEAMTUNE_SHARE_PROMPTS", "1")
    assert Engine(tiny, fast=True)._decoder.share_prompts and not fastgen.FastDecoder().share_prompts


def test_seeded_generation_leaves_the_global_rng_alone(tiny):
    """A seeded batch draws from its own seed and hands the caller's random stream back untouched."""
    s = SamplingConfig(max_new_tokens=6, temperature=1.0)
    for fast in (True, False):
        engine = Engine(tiny, seed=5, fast=fast)
        torch.manual_seed(123)
        expected = torch.rand(3)
        torch.manual_seed(123)
        first = [c.tokens for c in engine.generate([req("Tell me a story")] * 3, s)]
        assert torch.equal(torch.rand(3), expected)
        torch.manual_seed(999)  # another global state: the same seeded tokens
        assert [
            c.tokens for c in Engine(tiny, seed=5, fast=fast).generate([req("Tell me a story")] * 3, s)
        ] == first


def test_held_shapes_stay_within_a_memory_budget(tiny, monkeypatch):
    """Past the budget of held KV caches the oldest shapes go first; the newest shape is always built."""
    tok = tiny.tokenizer
    short, long = [tok("Hi").input_ids] * 2, [tok(PROMPTS[1]).input_ids * 8] * 3
    kw = dict(max_new_tokens=6, do_sample=False, temperature=1.0, top_p=1.0, pad=0, eos=[10**6])
    dec = fastgen.FastDecoder()
    dec.generate(tiny.model, short, [None] * 2, **kw)
    (k_short,) = dec._cached
    one = decoder.cache_bytes(dec._cached[k_short][1], k_short)
    assert (
        one == 2 * 2 * 2 * 2 * (64 + 6) * 16 * 4
    )  # K and V, layers, rows, KV heads, positions, head dim, fp32
    monkeypatch.setattr(
        decoder, "held_budget", lambda device, held: 1.5 * one
    )  # room for the short shape only
    dec.generate(tiny.model, long, [None] * 3, **kw)
    assert [k.batch for k in dec._cached] == [3]  # the long shape alone is over budget: the short one went
    dec.generate(tiny.model, short, [None] * 2, **kw)
    assert [k.batch for k in dec._cached] == [2]
    monkeypatch.setattr(decoder, "held_budget", lambda device, held: float("inf"))
    dec.generate(tiny.model, long, [None] * 3, **kw)
    assert [k.batch for k in dec._cached] == [2, 3]


def test_held_budget_leaves_room_for_processes_sharing_the_gpu(monkeypatch):
    """On CUDA the held caches may take a quarter of the GPU, and a new shape at most half of what is free: free
    on the device (other processes' use counted) plus this process's cached spare."""
    GB = 2**30
    cuda = torch.device("cuda")
    mem = {"free": 60 * GB, "reserved": 10 * GB, "allocated": 6 * GB}
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (mem["free"], 80 * GB))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: mem["reserved"])
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: mem["allocated"])
    assert decoder.held_budget(cuda, 0) == 20 * GB  # alone on the GPU: a quarter of it
    mem["free"] = 8 * GB  # others took the rest: 5 GB held, (8 + 4) / 2 more
    assert decoder.held_budget(cuda, 5 * GB) == 11 * GB
    assert decoder.held_budget(torch.device("cpu"), 0) == float("inf")


ATTENTION_CHECK = """
import sys
import torch
sys.path.insert(0, "tests")
from test_fastgen import PROMPTS, model_part, tiny_gemma3, tiny_qwen2
from teamtune import fastgen
from teamtune.fastgen import attention_kernel
from teamtune.models import load_model

# the kernel against the bias-masked matmul: each row's keys from its first prompt position to the current one,
# within a sliding window, over caches longer than one block and query heads not a power of two
torch.manual_seed(0)
for b, h, g, d, length, window in [(5, 2, 3, 16, 150, None), (4, 1, 4, 64, 70, 8), (3, 3, 3, 64, 200, None)]:
    q, k, v = torch.randn(b, h, g, d), torch.randn(b, h, length, d), torch.randn(b, h, length, d)
    start, cur = torch.randint(0, 60, (b,)), torch.tensor(length - 7)
    pos = torch.arange(length)[None]
    valid = (pos >= start[:, None]) & (pos <= cur) & (cur - pos < (window or length))
    bias = torch.zeros(valid.shape).masked_fill(~valid, float("-inf"))[:, None, None, :]
    got, lse = attention_kernel.decode_attention(q, k, v, start, cur, 0.3, window, with_lse=True)
    torch.testing.assert_close(got, model_part._attend_cache(q, k, v, bias, 0.3), atol=1e-5, rtol=1e-5)
    want = ((q @ k.transpose(-1, -2)) * 0.3 + bias).logsumexp(-1)
    torch.testing.assert_close(lse, want, atol=1e-5, rtol=1e-5)
# the fast path with it: the sampled tokens of the matmul path (Gemma 3 past its window)
attention_kernel.available = lambda device: True
tiny = load_model("tiny-random", device="cpu", dtype="float32", seed=0)
ids = [tiny.tokenizer(p).input_ids for p in PROMPTS]
kw = dict(max_new_tokens=16, do_sample=True, temperature=0.9, top_p=0.95, pad=0, eos=[10**6], seed=3)
grouped = [ids[0]] * 2 + [ids[1]] * 2 + [ids[2]] * 2
for model in (tiny.model, tiny_qwen2(len(tiny.tokenizer)), tiny_gemma3(len(tiny.tokenizer))):
    plain = fastgen.FastDecoder(nucleus="reject").generate(model, ids, [None] * 3, **kw)
    kernel = fastgen.FastDecoder(nucleus="reject", attention_kernel=True)
    assert kernel.generate(model, ids, [None] * 3, **kw) == plain
    # with shared prompts, the kernel reads each row's generated tokens
    plain = fastgen.FastDecoder(nucleus="reject").generate(model, grouped, [None] * 6, **kw)
    both = fastgen.FastDecoder(nucleus="reject", attention_kernel=True, share_prompts=True)
    assert both.generate(model, grouped, [None] * 6, **kw) == plain
print("ok")
"""


def test_attention_kernel_reads_the_valid_keys_as_the_masked_matmul_does(tiny, monkeypatch):
    """The decode attention kernel, run by Triton's interpreter on the CPU (in a process of its own: the
    interpreter must be chosen before Triton is imported), against the matmul path, directly and decoding."""
    pytest.importorskip("triton")
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    root = Path(__file__).parent.parent
    done = subprocess.run(
        [sys.executable, "-c", ATTENTION_CHECK], env=env, cwd=root, capture_output=True, text=True
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-3000:]
    monkeypatch.setenv("TEAMTUNE_ATTENTION_KERNEL", "1")
    assert Engine(tiny, fast=True)._decoder.attention_kernel


def test_attention_kernel_refuses_a_head_size_it_cannot_tile(tiny, monkeypatch):
    from transformers import LlamaConfig, LlamaForCausalLM

    from teamtune.fastgen import attention_kernel

    monkeypatch.setattr(attention_kernel, "available", lambda device: True)
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tiny.tokenizer), hidden_size=48, intermediate_size=64, num_hidden_layers=1,
                      num_attention_heads=4, num_key_value_heads=2)  # fmt: skip
    ids = [tiny.tokenizer("Hi").input_ids]
    kw = dict(max_new_tokens=4, do_sample=False, temperature=1.0, top_p=1.0, pad=0, eos=[10**6])
    with pytest.raises(ValueError, match="head size that is a power of two; this model's is 12"):
        fastgen.FastDecoder(attention_kernel=True).generate(LlamaForCausalLM(cfg).eval(), ids, [None], **kw)


def test_lora_kernel_tiling_from_the_environment(monkeypatch):
    from teamtune.fastgen import lora_kernel

    monkeypatch.delenv("TEAMTUNE_LORA_BLOCKS", raising=False)
    assert lora_kernel.default_blocks() == (32, 64, 64, 4)
    monkeypatch.setenv("TEAMTUNE_LORA_BLOCKS", "32, 128,32,8")
    assert lora_kernel.default_blocks() == (32, 128, 32, 8)
    for bad in ("64,64,32", "64,64,x,4", "0,64,32,4", "48,64,32,4", "8,64,32,4", "32,64,32,3"):
        monkeypatch.setenv("TEAMTUNE_LORA_BLOCKS", bad)
        with pytest.raises(ValueError, match="TEAMTUNE_LORA_BLOCKS"):
            lora_kernel.default_blocks()


def test_lora_kernel_matches_the_mask_product(tiny, monkeypatch):
    """The Triton kernel (run by Triton's interpreter on the CPU) gives each row its own adapter's B product, as
    the mask product and GEMM do: directly on column slices of one buffer, and through a mixed forward."""
    pytest.importorskip("triton")
    from teamtune.fastgen import lora_kernel

    monkeypatch.setenv("TRITON_INTERPRET", "1")
    lora_kernel._kernel.cache_clear()
    try:
        torch.manual_seed(0)
        M, t, N, K = 70, 2, 90, 40  # not multiples of the kernel's blocks
        buf = torch.randn(M, N + K)
        cols, rows = torch.randint(1, 4, (K,)), torch.randint(0, 4, (M // t,))
        B = torch.randn(N, K)
        want = buf[:, :N] + (buf[:, N:] * (cols == rows.repeat_interleave(t)[:, None])) @ B.t()
        lora_kernel.masked_addmm(buf[:, :N], buf[:, N:], B, cols, rows, t)
        torch.testing.assert_close(buf[:, :N], want, atol=1e-4, rtol=1e-4)
        monkeypatch.setenv("TEAMTUNE_LORA_BLOCKS", "16,32,16,2")  # another tiling, from the environment
        again = buf.clone()
        again[:, :N] = want - (buf[:, N:] * (cols == rows.repeat_interleave(t)[:, None])) @ B.t()
        lora_kernel.masked_addmm(again[:, :N], again[:, N:], B, cols, rows, t)
        torch.testing.assert_close(again[:, :N], want, atol=1e-4, rtol=1e-4)
        monkeypatch.delenv("TEAMTUNE_LORA_BLOCKS")

        cfg = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False)
        model = get_peft_model(copy.deepcopy(tiny.model), cfg, adapter_name="solver")
        model.add_adapter("critic", LoraConfig(r=2, lora_alpha=2, target_modules=["q_proj", "down_proj"]))
        with torch.no_grad():
            for n, p in model.named_parameters():
                if "lora_B" in n:
                    p.normal_(0, 0.2)
        w = model_part._Weights(model, ["solver", "critic"])
        ids = torch.randint(0, 100, (3, 5))
        pos = torch.arange(5)[None].expand(3, -1)
        rows = torch.tensor([1, 0, 2])
        with torch.no_grad():
            eager = fastgen.forward(w, ids, pos, w.masks(rows), causal_attention(w, 5))
            fused = {k: (cols, rows) for k, cols in w.layouts.items()}
            kernel = fastgen.forward(w, ids, pos, fused, causal_attention(w, 5))
        torch.testing.assert_close(kernel, eager, atol=1e-4, rtol=1e-4)
    finally:
        lora_kernel._kernel.cache_clear()
