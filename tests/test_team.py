import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model

from teamtune.agents import AgentConfig, ModelPool
from teamtune.models import load_model
from teamtune.rollout import SamplingConfig
from teamtune.tasks import Problem
from teamtune.tasks.gsm8k import GSM8K
from teamtune.team import Team, TeamConfig, majority

SHORT = SamplingConfig(max_new_tokens=6, temperature=1.0)


@pytest.fixture(scope="module")
def toy():
    return GSM8K(
        [
            Problem("p1", "What is 2 + 3?", "5"),
            Problem("p2", "What is 10 - 4?", "6"),
            Problem("p3", "What is 3 * 3?", "9"),
        ],
        split="toy",
    )


@pytest.fixture(scope="module")
def pool():
    return ModelPool(device="cpu", dtype="float32", seed=0)


def team(pool, layout, names, **kw):
    agents = [AgentConfig(n, sampling=SHORT) for n in names]
    return Team(TeamConfig(layout=layout, model="tiny-random", agents=agents, **kw), pool)


def test_single(pool, toy):
    eps = team(pool, "single", ["solver"]).run(toy)
    assert [e.problem_id for e in eps] == ["p1", "p2", "p3"]
    assert all(len(e.turns) == 1 and e.turns[0].agent == "solver" for e in eps)
    assert eps[0].turns[0].messages[1]["content"].startswith("What is 2 + 3?")
    assert eps[0].cost.calls == 1 and eps[0].cost.generated_tokens == 6


def test_vote_takes_majority(pool, toy, monkeypatch):
    t = team(pool, "vote", ["solver"], samples=4)
    answers = iter(["The answer is 5.", "The answer is 4.", "The answer is 5.", "no idea"] * 3)
    monkeypatch.setattr(toy, "extract", lambda text, real=toy.extract: real(next(answers)))
    eps = t.run(toy)
    assert all(len(e.turns) == 4 for e in eps)
    assert eps[0].answer == "5" and eps[0].correct and not eps[1].correct
    assert majority(["7", None, "8", "8", "7"]) == "7" and majority([None]) is None


def test_leader_reads_every_peer(pool, toy):
    eps = team(pool, "leader", ["peer", "leader"], peers=3, rounds=2).run(toy)
    e = eps[1]
    assert [t.agent for t in e.turns] == ["peer"] * 6 + ["leader"]
    assert [t.round for t in e.turns] == [1, 1, 1, 2, 2, 2, 3]
    leader_msg = e.turns[-1].messages[1]["content"]
    for t in e.turns[3:6]:  # the leader reads the last round of peers
        assert t.text in leader_msg
    assert e.turns[0].text in e.turns[4].messages[1]["content"]  # round 2 peers see round 1 of the others
    assert e.turns[0].text not in e.turns[3].messages[1]["content"]  # but not their own answer
    assert set(e.cost_by_agent()) == {"peer", "leader"} and e.cost_by_agent()["peer"].calls == 6


def test_pipeline_shares_context(pool, toy):
    eps = team(pool, "pipeline", ["solver", "critic", "refiner"]).run(toy)
    e = eps[2]
    assert [t.agent for t in e.turns] == ["solver", "critic", "refiner"]
    refiner_msg = e.turns[2].messages[1]["content"]
    assert (
        e.turns[0].text in refiner_msg
        and e.turns[1].text in refiner_msg
        and "You are the refiner" in refiner_msg
    )
    assert e.turns[0].messages[0]["content"] != e.turns[1].messages[0]["content"]  # role prompts differ


def make_adapter(base, path, seed):
    torch.manual_seed(seed)
    peft = get_peft_model(
        base.model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    )
    peft.save_pretrained(path)
    peft.unload()  # give the base back untouched


def test_adapters_share_one_base(tmp_path, toy):
    base = load_model("tiny-random", device="cpu", dtype="float32")
    make_adapter(base, tmp_path / "a", 1)
    make_adapter(base, tmp_path / "b", 2)
    pool = ModelPool(device="cpu", dtype="float32", seed=0)
    greedy = SamplingConfig(max_new_tokens=6, do_sample=False)
    agents = [
        AgentConfig("solver", adapter=str(tmp_path / "a"), sampling=greedy),
        AgentConfig("critic", adapter=str(tmp_path / "b"), sampling=greedy),
        AgentConfig("refiner", sampling=greedy),
    ]
    t = Team(TeamConfig(layout="pipeline", model="tiny-random", agents=agents), pool)
    assert len(pool.engines) == 1
    model = pool.engines["tiny-random"].model
    assert isinstance(model, PeftModel) and set(model.peft_config) == {"solver", "critic"}
    ptrs = {t.engine.model.get_base_model().model.embed_tokens.weight.data_ptr() for t in t.agents}
    assert len(ptrs) == 1  # one copy of the base weights
    base_params = sum(p.numel() for n, p in model.named_parameters() if "lora_" not in n)
    assert base_params == base.num_parameters

    # A mixed-adapter batch gives what each adapter gives alone.
    eng = pool.engines["tiny-random"]
    reqs = [a.request("What is 2 + 3?") for a in t.agents]
    mixed = [c.text for c in eng.generate(reqs, greedy)]
    alone = [eng.generate([r], greedy)[0].text for r in reqs]
    assert mixed == alone and len(set(mixed)) == 3  # and the three roles really differ


def test_a_tasks_stop_strings_reach_every_generation(pool, toy, monkeypatch):
    from teamtune.tasks.bbh import BBH

    t = team(pool, "leader", ["peer", "leader"], peers=2)
    engine = t.agents[0].engine
    seen, real = [], engine.generate

    def spy(requests, sampling, desc=""):
        seen.append(list(sampling.stop))
        return real(requests, sampling, desc)

    monkeypatch.setattr(engine, "generate", spy)
    bbh = BBH([Problem("b1", "not True is", "false")], split="toy")
    t.run(bbh)
    assert seen == [["\nQ: "], ["\nQ: "]]  # the peers' stage and the leader's
    assert SHORT.stop == [] and t.agents[0].sampling.stop == []  # the agents' own configs stay as they were
    seen.clear()
    t.run(toy)  # GSM8K has none
    assert seen == [[], []]


def test_pool_ranks_share_weights_but_sample_apart():
    """What a data-parallel rank's pool of frozen models needs: the run's weights, its own sampling seed."""
    rank0 = ModelPool(device="cpu", dtype="float32", seed=0, load_seed=0).engine("tiny-random")
    rank1 = ModelPool(device="cpu", dtype="float32", seed=1_000, load_seed=0).engine("tiny-random")
    other = ModelPool(device="cpu", dtype="float32", seed=1_000).engine("tiny-random")  # loads with 1_000 too
    w = [e.model.get_input_embeddings().weight for e in (rank0, rank1, other)]
    assert torch.equal(w[0], w[1]) and not torch.equal(w[0], w[2])
    assert (rank0.seed, rank1.seed) == (0, 1_000)
