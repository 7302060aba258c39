import json

import pytest
import torch

from teamtune.cli import main
from teamtune.config import load_config
from teamtune.evaluate import EvalConfig, run_eval
from teamtune.train import mlpo
from teamtune.train.mlpo import MLPOConfig


def _cfg(tmp_path, **kw):
    base = dict(
        model="tiny-random",
        peers=2,
        problems_per_step=2,
        steps=1,
        device="cpu",
        output=str(tmp_path / "run"),
        peer_sampling={"max_new_tokens": 6, "temperature": 1.0},
        policy={"group_size": 4, "max_new_tokens": 6, "ppo_epochs": 2, "micro_batch": 4},
        optim={"lr": 1e-2, "schedule": "constant", "warmup_steps": 0},
    )
    base.update(kw)
    return load_config(MLPOConfig, None, [f"{k}={json.dumps(v)}" for k, v in base.items()])


def _snapshot(model, lora: bool):
    return {n: p.detach().clone() for n, p in model.named_parameters() if ("lora_" in n) == lora}


def test_one_step_changes_only_the_leader(tmp_path, monkeypatch, toy_task):
    """Peers as their own model and as the leader's shared base: both stay byte-identical."""
    seen = {}
    real_load = mlpo.load_model

    def spy(*a, **k):  # keep a handle on the leader's model to compare its base weights after training
        loaded = real_load(*a, **k)
        seen.setdefault("leader", loaded)
        return loaded

    monkeypatch.setattr(mlpo, "load_model", spy)
    base_before = {
        n: p.detach().clone()
        for n, p in real_load("tiny-random", device="cpu", dtype="float32").model.named_parameters()
    }
    out = mlpo.train(_cfg(tmp_path), task=toy_task)
    model = seen["leader"].model
    base_after = {
        n.replace("base_model.model.", "").replace(".base_layer", ""): p
        for n, p in _snapshot(model, False).items()
    }
    assert base_after.keys() == base_before.keys()
    assert all(torch.equal(base_before[n], base_after[n]) for n in base_before)  # the shared peers' weights
    lora = _snapshot(model, True)
    assert any(float(p.abs().sum()) > 0 for n, p in lora.items() if "lora_B" in n)  # lora_B starts at zero
    row = json.loads((out / "log.jsonl").read_text().splitlines()[0])
    assert 0 < row["accuracy"] < 1 and row["kl"] == 0.0  # rewards varied within groups: a real update
    assert (out / "leader" / "adapter_config.json").is_file()
    m = json.loads((out / "train_metrics.json").read_text())
    assert m["train_flops"] > 0 and m["rollout_flops"] > 0 and m["rollout_tokens"] > 0
    assert m["peak_memory_bytes"] > 2**20
    assert main(["report", str(out)]) == 0
    text = (out / "report.md").read_text()
    assert "# training run run: mlpo" in text and "- train flops:" in text and "reward" in text


def test_peers_of_their_own_model_stay_frozen(tmp_path, toy_task):
    from teamtune.agents import ModelPool

    pool = ModelPool("cpu", "float32", 64, 0)
    policy = {"group_size": 4, "max_new_tokens": 6, "kl_coef": 0.1, "micro_batch": 4}
    out = mlpo.train(
        _cfg(tmp_path, peer_models=["tiny-random", "tiny-random"], policy=policy), task=toy_task, pool=pool
    )
    fresh = mlpo.load_model("tiny-random", device="cpu", dtype="float32").model.state_dict()
    (engine,) = pool.engines.values()  # both peers share one frozen copy
    assert all(torch.equal(fresh[n], p) for n, p in engine.model.state_dict().items())
    row = json.loads((out / "log.jsonl").read_text().splitlines()[0])
    assert row["kl"] > 0.0 and "clip_frac" in row  # the k3 penalty to the adapter-free reference is live


def test_eval_configs_cover_the_five_baselines(tmp_path, data_dir, monkeypatch):
    monkeypatch.setenv("TEAMTUNE_DATA", str(data_dir))
    out = mlpo.train(
        _cfg(tmp_path, task={"name": "gsm8k", "split": "train", "limit": 4}, problems_per_step=2)
    )
    names = sorted(p.name for p in out.glob("eval-*.yaml"))
    assert names == [
        f"eval-{n}.yaml"
        for n in sorted(["single", "vote", "leader-untrained", "leader-trained", "leader-alone"])
    ]
    for name in ("leader-trained", "leader-alone", "vote"):
        cfg = load_config(
            EvalConfig,
            out / f"eval-{name}.yaml",
            ["task.limit=2", "team.device=cpu", f"output={tmp_path / name}"],
        )
        for a in cfg.team.agents:
            a.sampling.max_new_tokens = 6
        _, m = run_eval(cfg)
        assert m["task"] == "gsm8k" and m["split"] == "test" and m["n"] == 2
        if name != "vote":
            assert m["method"] == "mlpo" and sum(a["adapter_parameters"] for a in m["agents"].values()) > 0


def test_leader_without_team_and_multi_round_peers(tmp_path, toy_task, monkeypatch):
    prompts = []
    real = mlpo.run_calls

    def spy(calls, desc, stop=()):
        prompts.extend((desc, p) for _, p in calls)
        return real(calls, desc, stop)

    monkeypatch.setattr(mlpo, "run_calls", spy)
    mlpo.train(_cfg(tmp_path, with_team=False), task=toy_task)
    assert {d for d, _ in prompts} == {"leader"}  # no peer calls: the leader reads the problem alone
    assert not any("Your team's answers" in p for _, p in prompts)
    prompts.clear()
    mlpo.train(_cfg(tmp_path, rounds=2, output=str(tmp_path / "r2")), task=toy_task)
    stages = [d for d, _ in prompts]
    assert stages.count("peers round 1") == stages.count("peers round 2") == 2 * 2  # 2 problems x 2 peers
    assert sum("Other agents answered" in p for d, p in prompts if d == "peers round 2") == 4
    assert all("Your team's answers" in p for d, p in prompts if d == "leader")


def test_resume_after_a_kill_gives_the_same_leader(tmp_path, toy_task):
    from safetensors.torch import load_file

    from teamtune.train.common import Interrupted

    whole = mlpo.train(_cfg(tmp_path, steps=2, save_every=1, output=str(tmp_path / "w")), task=toy_task)
    cfg = _cfg(tmp_path, steps=2, save_every=1, output=str(tmp_path / "k"))
    with pytest.raises(Interrupted):
        mlpo.train(cfg, stop_after=1, task=toy_task)
    resumed = mlpo.train(cfg, task=toy_task)
    a = load_file(whole / "leader" / "adapter_model.safetensors")
    b = load_file(resumed / "leader" / "adapter_model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    rows = [json.loads(x) for x in (resumed / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
