"""SFT warm start before RL: gold solutions, one command, RL starts from the SFT adapter, its own baseline."""

import json

import pytest
import torch
import yaml
from safetensors.torch import load_file

from teamtune.agents import ROLE_PROMPTS
from teamtune.config import ConfigError, load_config
from teamtune.tasks import TaskConfig, load_task
from teamtune.train import mlpo, sft, teamtr
from teamtune.train.data import gold_records

GYM = {"name": "gym", "subset": "chain_sum", "split": "train", "limit": 12,
       "gym": {"chain_sum": {"min_terms": 2, "max_terms": 2, "max_digits": 2}}}  # fmt: skip
WARM = {"problems": 8, "epochs": 1, "batch_tokens": 2048, "optim": {"lr": 5e-3, "warmup_steps": 0}}


def _weights(folder):
    return load_file(str(folder / "adapter_model.safetensors"))


def test_gold_records_are_solutions_the_verifier_accepts():
    for cfg in (
        TaskConfig(name="gsm8k", split="train", source="sample", limit=20),
        TaskConfig(**GYM),
    ):
        task = load_task(cfg)
        recs = gold_records(task, "You solve problems.", 5, seed=0)
        assert len(recs) == 5
        for r in recs:
            user, gold = r["messages"][1]["content"], r["messages"][2]["content"]
            p = next(p for p in task.problems if task.prompt(p) == user)
            assert task.solves(gold, p)
    gsm = gold_records(load_task(TaskConfig(name="gsm8k", split="train", source="sample")), "s", 1, 0)
    assert "<<" not in gsm[0]["messages"][2]["content"] and "\n" in gsm[0]["messages"][2]["content"]


def test_mlpo_starts_from_the_warm_start(tmp_path):
    kw = dict(model="tiny-random", peers=1, problems_per_step=2, steps=1, device="cpu", output=str(tmp_path / "run"),
              task=GYM, warm_start=WARM, peer_sampling={"max_new_tokens": 4},
              policy={"group_size": 2, "max_new_tokens": 4, "ppo_epochs": 1, "micro_batch": 4},
              optim={"lr": 1e-12, "schedule": "constant", "warmup_steps": 0})  # fmt: skip
    cfg = load_config(mlpo.MLPOConfig, None, [f"{k}={json.dumps(v)}" for k, v in kw.items()])
    out = mlpo.train(cfg)
    warm, leader = _weights(out / "warm-start" / "agent"), _weights(out / "leader")
    assert any(float(v.abs().sum()) > 0 for k, v in warm.items() if "lora_B" in k)  # SFT moved the adapter
    assert warm.keys() == leader.keys()
    assert all(torch.allclose(warm[k], leader[k], atol=1e-6) for k in warm)  # RL (lr ~0) started from it
    ev = yaml.safe_load((out / "eval-leader-warm-start.yaml").read_text())
    assert ev["team"]["agents"][-1]["adapter"] == str(out / "warm-start" / "agent") and ev["method"] == "sft"
    assert (out / "eval-warm-start-alone.yaml").is_file() and (out / "warm-start" / "gold.jsonl").is_file()


def test_teamtr_roles_start_from_the_warm_start(tmp_path):
    kw = dict(model="tiny-random", agents=2, stages=1, problems_per_stage=2, device="cpu", output=str(tmp_path / "r"),
              task=GYM, warm_start=WARM, policy={"group_size": 2, "max_new_tokens": 4, "ppo_epochs": 1},
              optim={"lr": 1e-12, "schedule": "constant", "warmup_steps": 0})  # fmt: skip
    cfg = load_config(teamtr.TeamTRConfig, None, [f"{k}={json.dumps(v)}" for k, v in kw.items()])
    out = teamtr.train(cfg)
    warm = _weights(out / "warm-start" / "agent")
    for role in ("solver", "refiner"):
        got = _weights(out / "adapters" / role)
        assert len(got) == len(warm)
        assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(warm.values(), got.values(), strict=True))
    ev = yaml.safe_load((out / "eval-warm-start.yaml").read_text())
    assert {a["adapter"] for a in ev["team"]["agents"]} == {str(out / "warm-start" / "agent")}


def _turns(user: str) -> list[tuple[str, str]]:
    """(role, text) of the teammates' turns a pipeline prompt shows."""
    if "The team's work so far:" not in user:
        return []
    body = user.split("The team's work so far:\n\n", 1)[1].rsplit("\n\nYou are the ", 1)[0]
    return [tuple(t.split("\n", 1)) for t in body.split("### ")[1:]]


def test_pipeline_gold_records_put_each_role_after_its_teammates_turns():
    from teamtune.train.data import pipeline_gold_records

    task = load_task(TaskConfig(**GYM))
    roles = ["solver", "critic", "refiner"]
    for right in (1.0, 0.0):
        recs = pipeline_gold_records(task, roles, 4, seed=0, right=right)
        assert [r["role"] for r in recs] == roles * 4
        read, golds = [], []
        for i in range(0, len(recs), 3):
            first = recs[i]["messages"][1]["content"]
            p = next(
                p for p in task.problems if task.prompt(p) == first
            )  # the solver reads the problem alone
            gold = task.solution(p)
            for j, rec in enumerate(recs[i : i + 3]):
                system, user, answer = (m["content"] for m in rec["messages"])
                assert system == ROLE_PROMPTS[roles[j]] and answer == gold and task.solves(answer, p)
                assert user.startswith(task.prompt(p))
                turns = _turns(user)
                assert [role for role, _ in turns] == roles[:j]
                read += [text.strip() for _, text in turns]
                golds += [gold] * len(turns)
        if right == 1.0:
            assert read == golds
        else:  # other problems' answers (a few may equal this one's by chance)
            assert sum(a != b for a, b in zip(read, golds, strict=True)) >= len(read) // 2


def test_teamtr_pipeline_warm_start_trains_one_adapter_per_role(tmp_path):
    warm = {**WARM, "layout": "pipeline"}
    kw = dict(model="tiny-random", agents=2, stages=1, problems_per_stage=2, device="cpu", output=str(tmp_path / "r"),
              task=GYM, warm_start=warm, policy={"group_size": 2, "max_new_tokens": 4, "ppo_epochs": 1},
              optim={"lr": 1e-12, "schedule": "constant", "warmup_steps": 0})  # fmt: skip
    cfg = load_config(teamtr.TeamTRConfig, None, [f"{k}={json.dumps(v)}" for k, v in kw.items()])
    out = teamtr.train(cfg)
    recs = [json.loads(line) for line in (out / "warm-start" / "gold.jsonl").read_text().splitlines()]
    assert sorted({r["role"] for r in recs}) == ["refiner", "solver"] and len(recs) == 2 * WARM["problems"]
    warm_w = {role: _weights(out / "warm-start" / role) for role in ("solver", "refiner")}
    assert any(not torch.allclose(a, b) for a, b in zip(*(w.values() for w in warm_w.values()), strict=True))
    for role, w in warm_w.items():  # each role's RL adapter (lr ~0) starts from that role's warm start
        got = _weights(out / "adapters" / role)
        assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(w.values(), got.values(), strict=True))
    ev = yaml.safe_load((out / "eval-warm-start.yaml").read_text())
    assert {a["name"]: a["adapter"] for a in ev["team"]["agents"]} == {
        r: str(out / "warm-start" / r) for r in ("solver", "refiner")
    }


def test_runs_naming_one_warm_start_folder_share_it(tmp_path):
    shared = tmp_path / "warm"
    warm = {**WARM, "layout": "pipeline", "folder": str(shared)}

    def run(seed, agents=2):
        kw = dict(model="tiny-random", agents=agents, stages=1, problems_per_stage=2, device="cpu", seed=seed,
                  output=str(tmp_path / f"r{seed}-{agents}"), task=GYM, warm_start=warm,
                  policy={"group_size": 2, "max_new_tokens": 4, "ppo_epochs": 1},
                  optim={"lr": 1e-12, "schedule": "constant", "warmup_steps": 0})  # fmt: skip
        return teamtr.train(
            load_config(teamtr.TeamTRConfig, None, [f"{k}={json.dumps(v)}" for k, v in kw.items()])
        )

    first = run(0)
    trained = {r: _weights(shared / r) for r in ("solver", "refiner")}
    stamp = (shared / "gold.jsonl").stat().st_mtime_ns
    second = run(1)  # reuses the first run's warm start: not trained again
    assert (shared / "gold.jsonl").stat().st_mtime_ns == stamp
    assert json.loads((shared / "warm_start.json").read_text())["seed"] == 0
    assert not (first / "warm-start").exists() and not (second / "warm-start").exists()
    for role, w in trained.items():
        got = _weights(second / "adapters" / role)
        assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(w.values(), got.values(), strict=True))
    ev = yaml.safe_load((second / "eval-warm-start.yaml").read_text())
    assert {a["adapter"] for a in ev["team"]["agents"]} == {str(shared / r) for r in trained}
    with pytest.raises(ConfigError, match="holds another warm start"):
        run(2, agents=3)  # other roles


def test_warm_start_layout_is_checked():
    with pytest.raises(ConfigError, match="pipeline is TeamTR's"):
        load_config(mlpo.MLPOConfig, None, ['warm_start={"layout": "pipeline"}'])
    with pytest.raises(ConfigError, match="right is a probability"):
        load_config(teamtr.TeamTRConfig, None, ['warm_start={"layout": "pipeline", "right": 1.5}'])


def test_warm_start_needs_lora():
    with pytest.raises(ConfigError, match="warm_start trains a LoRA adapter"):
        load_config(mlpo.MLPOConfig, None, ["finetune=full", "warm_start={}"])


def test_sft_on_a_tasks_gold_solutions_then_merged_into_a_base(tmp_path):
    """The warm start as a model of its own: SFT on a task's gold solutions, then the adapter merged into the
    weights (`teamtune export --adapter`), so that a whole team (peers too) can start from it."""
    from peft import PeftModel

    from teamtune.evaluate import EvalConfig
    from teamtune.models import load_model, merge_adapter, save_model

    task = {**GYM, "instruction": "Reply with only the final answer."}
    kw = dict(model="tiny-random", mode="single", task=task, epochs=1, batch_tokens=2048, save_every=0,
              device="cpu", output=str(tmp_path / "warm"), optim={"lr": 5e-3, "warmup_steps": 0})  # fmt: skip
    cfg = load_config(sft.SFTConfig, None, [f"{k}={json.dumps(v)}" for k, v in kw.items()])
    out = sft.train(cfg)
    metrics = json.loads((out / "train_metrics.json").read_text())
    assert metrics["adapters"][0]["sequences"] == 12  # every problem of the task's `limit`, once
    ev = load_config(EvalConfig, str(out / "eval.yaml"), [])
    assert ev.task.split == "test" and ev.task.gym == GYM["gym"] and ev.team.layout == "single"
    assert ev.team.agents[0].adapter == str(out / "agent")

    base = load_model("tiny-random", device="cpu", dtype="float32")
    ids = base.tokenizer("The answer is 12.", return_tensors="pt").input_ids
    with torch.no_grad():
        before = base.model(ids).logits
        with_adapter = PeftModel.from_pretrained(
            load_model("tiny-random", device="cpu", dtype="float32").model, str(out / "agent")
        )(ids).logits
    assert not torch.allclose(before, with_adapter, atol=1e-4)  # the adapter changes the model
    folder = save_model(merge_adapter(base, out / "agent"), tmp_path / "merged")
    merged = load_model(str(folder), device="cpu", dtype="float32")
    assert not any("lora_" in n for n, _ in merged.model.named_parameters())
    with torch.no_grad():
        assert torch.allclose(merged.model(ids).logits, with_adapter, atol=1e-4)


def test_sft_task_data_is_single_agent_and_not_apps():
    with pytest.raises(ConfigError, match="mode single"):
        load_config(sft.SFTConfig, None, ["mode=roles", f"task={json.dumps(GYM)}"])
    with pytest.raises(ConfigError, match="for apps, use data: apps:<split>:<n>"):
        load_config(sft.SFTConfig, None, ["mode=single", 'task={"name": "apps", "split": "train"}'])
