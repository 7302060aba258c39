import torch

from teamtune.rollout import Engine, Request, SamplingConfig

GREEDY = SamplingConfig(max_new_tokens=8, do_sample=False)


def req(text):
    return Request(messages=[{"role": "user", "content": text}])


def test_left_padded_batch_matches_one_by_one(tiny):
    prompts = [
        "Hi",
        "A much longer prompt with many more words in it than the first one has",
        "Mid length one",
    ]
    batched = Engine(tiny, batch_size=8).generate([req(p) for p in prompts], GREEDY)
    alone = [Engine(tiny, batch_size=1).generate([req(p)], GREEDY)[0] for p in prompts]
    assert [c.text for c in batched] == [c.text for c in alone]
    assert [c.cost.prompt_tokens for c in batched] == [c.cost.prompt_tokens for c in alone]
    # what training recipes score: the unpadded prompt ids and the generated ids, the same in or out of a batch
    engine = Engine(tiny)
    for p, b, a in zip(prompts, batched, alone, strict=True):
        assert (
            b.prompt_ids
            == a.prompt_ids
            == tiny.tokenizer(engine.render(req(p).messages), add_special_tokens=False)["input_ids"]
        )
        assert b.tokens == a.tokens and len(b.tokens) == b.cost.generated_tokens


def test_costs_are_counted(tiny):
    out = Engine(tiny).generate([req("Hello there")], GREEDY)[0]
    n_prompt = len(
        tiny.tokenizer.apply_chat_template(
            [{"role": "user", "content": "Hello there"}],
            add_generation_prompt=True,
            tokenize=True,
            return_dict=True,
        )["input_ids"]
    )
    assert out.cost.prompt_tokens == n_prompt
    assert (
        out.finish == "length" and out.cost.generated_tokens == 8
    )  # random weights never say eos in 8 tokens
    n, attn = tiny.num_parameters, 4 * 2 * 4 * 16  # tied embeddings; 2 layers x 4 heads x 16 dims
    assert out.cost.prefill_flops == 2 * n * n_prompt + attn * n_prompt * (n_prompt + 1) / 2
    assert out.cost.decode_flops == 2 * n * 7 + attn * (7 * n_prompt + 28)  # 7 tokens fed back
    assert out.cost.seconds > 0 and out.cost.calls == 1


def test_stop_strings_cut_generation(tiny):
    free = Engine(tiny).generate([req("Count")], SamplingConfig(max_new_tokens=12, do_sample=False))[0]
    stop = free.text[len(free.text) // 2 :][:3]  # text the model is known to produce mid-way
    out = Engine(tiny).generate(
        [req("Count")], SamplingConfig(max_new_tokens=12, do_sample=False, stop=[stop])
    )[0]
    assert out.finish == "stop"
    assert stop not in out.text and free.text.startswith(out.text)
    assert out.cost.generated_tokens < 12


def test_seed_makes_sampling_repeatable(tiny):
    s = SamplingConfig(max_new_tokens=10, temperature=1.0)
    reqs = [req("Tell me a story")] * 4
    a = [c.text for c in Engine(tiny, seed=3).generate(reqs, s)]
    b = [c.text for c in Engine(tiny, seed=3).generate(reqs, s)]
    c = [c.text for c in Engine(tiny, seed=4).generate(reqs, s)]
    assert a == b and a != c
    assert len(set(a)) > 1  # samples within a batch differ


def test_results_keep_request_order_across_batches(tiny):
    prompts = [("word " * n).strip() for n in (1, 9, 3, 7, 5)]
    eng = Engine(tiny, batch_size=2)
    out = eng.generate([req(p) for p in prompts], GREEDY)
    lens = [c.cost.prompt_tokens for c in out]
    assert lens[1] - lens[0] == 8 and lens[3] - lens[2] == 4  # each result sits at its request's place
    assert [o.text for o in out] == [Engine(tiny).generate([req(p)], GREEDY)[0].text for p in prompts]
    assert torch.is_grad_enabled()
