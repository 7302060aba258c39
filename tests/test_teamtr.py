import json

import pytest
import torch
from safetensors.torch import load_file

from teamtune.cli import main
from teamtune.config import ConfigError, load_config
from teamtune.evaluate import EvalConfig, run_eval
from teamtune.models import load_model
from teamtune.train import teamtr
from teamtune.train.teamtr import TeamTRConfig


def _cfg(tmp_path, name="run", **kw):
    base = dict(
        model="tiny-random",
        agents=2,
        stages=1,
        problems_per_stage=2,
        device="cpu",
        output=str(tmp_path / name),
        delta=100.0,
        policy={"group_size": 4, "max_new_tokens": 6, "ppo_epochs": 2, "micro_batch": 8, "temperature": 1.0},
        optim={"lr": 1e-2, "schedule": "constant", "warmup_steps": 0},
    )
    base.update(kw)
    return load_config(TeamTRConfig, None, [f"{k}={json.dumps(v)}" for k, v in base.items()])


def _spy_rollouts(monkeypatch):
    """Record, for each training rollout, how far the solver's adapter has moved from zero (lora_B starts at 0)."""
    seen = []
    real = teamtr.rollout

    def spy(agents, task, problems, g):
        model = agents[0].engine.model
        moved = sum(
            float(p.detach().abs().sum())
            for n, p in model.named_parameters()
            if "lora_B" in n and ".solver." in n
        )
        if g > 1:  # training rollouts (the judge samples one greedy chain)
            seen.append(moved)
        return real(agents, task, problems, g)

    monkeypatch.setattr(teamtr, "rollout", spy)
    return seen


def _rows(out):
    return [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]


def test_teamtr_resamples_after_each_agent_update(tmp_path, monkeypatch, toy_task):
    seen = _spy_rollouts(monkeypatch)
    out = teamtr.train(_cfg(tmp_path), task=toy_task)
    # two agents, one stage: two rollout batches; the second is sampled after the solver was updated
    assert len(seen) == 2 and seen[0] == 0.0 and seen[1] > 0.0
    metrics = json.loads((out / "train_metrics.json").read_text())
    assert metrics["rollouts"] == 2 * 2 * 4 and metrics["train_flops"] > 0 and metrics["rollout_flops"] > 0
    assert metrics["peak_memory_bytes"] > 2**20
    assert main(["report", str(out)]) == 0 and "- regressions: 0" in (out / "report.md").read_text()
    assert [r["agent"] for r in _rows(out)] == ["solver", "refiner"]
    for role in ("solver", "refiner"):
        assert (out / "adapters" / role / "adapter_config.json").is_file()


def test_stale_mode_reuses_one_rollout_batch(tmp_path, monkeypatch, toy_task):
    seen = _spy_rollouts(monkeypatch)
    out = teamtr.train(_cfg(tmp_path, mode="stale"), task=toy_task)
    assert len(seen) == 1  # both agents updated from rollouts sampled before either update
    assert json.loads((out / "train_metrics.json").read_text())["rollouts"] == 2 * 4


def test_stale_and_simultaneous_are_one_procedure_with_per_agent_adapters(tmp_path, toy_task):
    # each agent's loss on fixed rollouts does not depend on the other adapters: same updates (docs say so)
    a = teamtr.train(_cfg(tmp_path, "stale", mode="stale"), task=toy_task)
    b = teamtr.train(_cfg(tmp_path, "simultaneous", mode="simultaneous"), task=toy_task)
    for role in ("solver", "refiner"):
        wa = load_file(a / "adapters" / role / "adapter_model.safetensors")
        wb = load_file(b / "adapters" / role / "adapter_model.safetensors")
        assert all(torch.equal(wa[k], wb[k]) for k in wa)
        assert any(float(wa[k].abs().sum()) > 0 for k in wa if "lora_B" in k)  # and they did move


def test_trust_region_stops_an_update_past_delta(tmp_path, toy_task):
    out = teamtr.train(_cfg(tmp_path, delta=1e-12), task=toy_task)
    rows = _rows(out)
    assert all(r["trust_region_stop"] and r["optimiser_steps"] == 0 for r in rows)
    for role in ("solver", "refiner"):  # every step was undone: the adapters are still at their start
        w = load_file(out / "adapters" / role / "adapter_model.safetensors")
        assert all(float(v.abs().sum()) == 0.0 for k, v in w.items() if "lora_B" in k)
    loose = teamtr.train(_cfg(tmp_path, "loose"), task=toy_task)
    assert all(not r["trust_region_stop"] and r["optimiser_steps"] == 2 and r["kl"] > 0 for r in _rows(loose))
    # runs side by side: reward per stage as a PNG
    assert (
        main(
            [
                "curves",
                str(out),
                str(loose),
                "--y",
                "reward",
                "--x",
                "stage",
                "--out",
                str(tmp_path / "c.png"),
            ]
        )
        == 0
    )
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["curves", str(out), "--y", "nothing", "--out", str(tmp_path / "d.png")]) == 2
    assert main(["curves", str(tmp_path / "absent"), "--out", str(tmp_path / "e.png")]) == 2


def _runs_in_eval(out, tmp_path, data_dir, monkeypatch):
    """The trained team of `out` runs in `teamtune eval` as a solver -> refiner pipeline."""
    monkeypatch.setenv("TEAMTUNE_DATA", str(data_dir))
    cfg = load_config(
        EvalConfig,
        out / "eval.yaml",
        ["task.name=gsm8k", "task.limit=2", "team.device=cpu", f"output={tmp_path / 'ev'}"],
    )
    _, m = run_eval(cfg)
    assert m["layout"] == "pipeline" and set(m["agents"]) == {"solver", "refiner"}
    before = load_config(EvalConfig, out / "eval-untrained.yaml")  # the team before training
    assert [a.name for a in before.team.agents] == [a.name for a in cfg.team.agents]
    trained = {a.name: a for a in cfg.team.agents}
    for a in before.team.agents:  # a frozen agent_models role stays; no role has this run's adapter
        assert a.model == trained[a.name].model
        assert a.adapter is None or not a.adapter.startswith(str(out))
    assert before.method == "untrained" and before.output.endswith("eval-untrained")


def test_plug_and_play_retrains_only_the_named_agent(tmp_path, toy_task, data_dir, monkeypatch):
    first = teamtr.train(_cfg(tmp_path, "first"), task=toy_task)
    adapters = {r: str(first / "adapters" / r) for r in ("solver", "refiner")}
    second = teamtr.train(
        _cfg(tmp_path, "second", init_adapters=adapters, train_agents=["refiner"]), task=toy_task
    )
    for role, same in (("solver", True), ("refiner", False)):
        a = load_file(first / "adapters" / role / "adapter_model.safetensors")
        b = load_file(second / "adapters" / role / "adapter_model.safetensors")
        assert all(torch.equal(a[k], b[k]) for k in a) == same
    _runs_in_eval(second, tmp_path, data_dir, monkeypatch)


def test_plug_and_play_swaps_an_agent_for_another_model(tmp_path, toy_task, data_dir, monkeypatch):
    """agent_models: another model (a saved folder of different weights) plays the solver, frozen; only the
    refiner trains, and eval.yaml runs the same team."""
    other = load_model("tiny-random", device="cpu", dtype="float32", seed=7)
    other.model.save_pretrained(tmp_path / "other")
    other.tokenizer.save_pretrained(tmp_path / "other")
    seen = []
    real = teamtr.rollout

    def spy(agents, task, problems, g):
        seen.append({a.name: (a.engine.model, a.adapter) for a in agents})
        return real(agents, task, problems, g)

    monkeypatch.setattr(teamtr, "rollout", spy)
    out = teamtr.train(_cfg(tmp_path, agent_models={"solver": str(tmp_path / "other")}), task=toy_task)
    solver, refiner = seen[0]["solver"], seen[0]["refiner"]
    assert solver[1] is None and refiner[1] == "refiner" and solver[0] is not refiner[0]
    w = next(p for n, p in solver[0].named_parameters() if n.endswith("embed_tokens.weight"))
    assert torch.equal(w, other.model.get_input_embeddings().weight)  # the saved model, untouched
    assert [r["agent"] for r in _rows(out)] == ["refiner"]
    assert sorted(p.name for p in (out / "adapters").iterdir() if p.is_dir()) == ["refiner"]
    _runs_in_eval(out, tmp_path, data_dir, monkeypatch)
    for bad, match in (
        ({"agent_models": {"critic": "tiny-random"}}, "lacks"),
        ({"agent_models": {"solver": "x"}, "train_agents": ["solver"]}, "frozen"),
        ({"agent_models": {"solver": "x", "refiner": "x"}}, "no agent is left"),
    ):
        with pytest.raises(ConfigError, match=match):
            _cfg(tmp_path, **bad)


def test_single_mode_has_the_teams_update_budget(tmp_path, toy_task):
    out = teamtr.train(_cfg(tmp_path, mode="single", agents=3), task=toy_task)
    assert [r["agent"] for r in _rows(out)] == ["solver"] * 3
    with pytest.raises(ConfigError, match="agents must be 2, 3 or 4"):
        _cfg(tmp_path, agents=5)


def test_resume_after_a_kill_gives_the_same_adapters(tmp_path, toy_task):
    from teamtune.train.common import Interrupted

    whole = teamtr.train(_cfg(tmp_path, "whole", stages=2), task=toy_task)
    with pytest.raises(Interrupted):
        teamtr.train(_cfg(tmp_path, "killed", stages=2), stop_after=1, task=toy_task)
    resumed = teamtr.train(_cfg(tmp_path, "killed", stages=2), task=toy_task)
    for role in ("solver", "refiner"):
        a = load_file(whole / "adapters" / role / "adapter_model.safetensors")
        b = load_file(resumed / "adapters" / role / "adapter_model.safetensors")
        assert all(torch.equal(a[k], b[k]) for k in a)
    assert [r["step"] for r in _rows(resumed)] == [1, 2, 3, 4]


@pytest.mark.parametrize("every", ["update", "stage"])
def test_judge_counts_regressions_after_each_update_or_stage(tmp_path, toy_task, every):
    out = teamtr.train(_cfg(tmp_path, stages=2, judge_every=every), task=toy_task, eval_task=toy_task)
    rows = _rows(out)
    judged = [r for r in rows if "accuracy" in r]
    # two agents x two stages; judged after every update, or after each stage's last update
    assert [r["step"] for r in judged] == ([1, 2, 3, 4] if every == "update" else [2, 4])
    assert all(0 <= r["regressions"] <= 4 and 0.0 <= r["accuracy"] <= 1.0 for r in judged)
    metrics = json.loads((out / "train_metrics.json").read_text())
    assert metrics["regressions"] == sum(r["regressions"] for r in judged)
    assert all(r["rollout_seconds"] > 0 and r["update_seconds"] > 0 for r in rows)
