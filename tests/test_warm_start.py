"""SFT warm start before RL: gold solutions, one command, RL starts from the SFT adapter, its own baseline."""

import json

import pytest
import torch
import yaml
from safetensors.torch import load_file

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
