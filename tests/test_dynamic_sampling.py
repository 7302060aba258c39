"""Dynamic sampling (DAPO): groups with equal rewards dropped, more problems drawn, capped; off keeps the draw."""

import json

import torch
from test_mlpo import _cfg as mlpo_cfg

from teamtune.train import mlpo, teamtr
from teamtune.train.policy import PolicySettings, fill_groups, informative


def test_informative_marks_groups_whose_rewards_differ():
    rewards = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 1.0], [1.0, 1.0, 1.0], [0.1, 0.1, 0.0]])
    assert informative(rewards).tolist() == [False, True, False, True]


def _draws(*rows):
    """A draw function over fixed draws: draw r gives groups named r.i with the r-th rewards."""
    calls = []

    def draw(r):
        calls.append(r)
        rewards = torch.tensor(rows[r], dtype=torch.float32)
        return [f"{r}.{i}" for i in range(len(rewards))], rewards

    return draw, calls


def test_off_takes_the_first_draw_as_it_is():
    draw, calls = _draws([[0, 0], [1, 1]], [[0, 1], [1, 0]])
    groups, rewards, counts = fill_groups(draw, 2, PolicySettings())
    assert calls == [0] and groups == ["0.0", "0.1"] and rewards.tolist() == [[0, 0], [1, 1]]
    assert counts == {"groups_drawn": 2, "groups_dropped": 0, "groups_kept": 2}


def test_on_draws_until_the_batch_holds_informative_groups():
    draw, calls = _draws([[0, 0], [0, 1], [1, 1]], [[1, 1], [1, 0], [0, 0]], [[0, 1], [1, 0], [0, 1]])
    s = PolicySettings(dynamic_sampling=True, max_draws=4)
    groups, rewards, counts = fill_groups(draw, 3, s)
    assert calls == [0, 1, 2] and groups == ["0.1", "1.1", "2.0"]
    assert rewards.tolist() == [[0, 1], [1, 0], [0, 1]] and bool(informative(rewards).all())
    # 9 drawn: 4 all-equal dropped, 3 kept, 2 informative ones past the batch dropped too
    assert counts == {"groups_drawn": 9, "groups_dropped": 6, "groups_kept": 3}


def test_on_stops_at_the_cap_with_what_it_has():
    draw, calls = _draws([[0, 0], [0, 1]], [[1, 1], [0, 0]], [[1, 0], [1, 0]])
    groups, _, counts = fill_groups(draw, 2, PolicySettings(dynamic_sampling=True, max_draws=2))
    assert calls == [0, 1] and groups == ["0.1"]
    assert counts == {"groups_drawn": 4, "groups_dropped": 3, "groups_kept": 1}


def test_on_with_no_signal_anywhere_falls_back_to_the_last_draw():
    draw, calls = _draws([[0, 0]], [[1, 1]])
    groups, rewards, counts = fill_groups(draw, 1, PolicySettings(dynamic_sampling=True, max_draws=2))
    assert calls == [0, 1] and groups == ["1.0"] and rewards.tolist() == [[1, 1]]
    assert counts == {"groups_drawn": 2, "groups_dropped": 1, "groups_kept": 1}


def test_mlpo_logs_drawn_dropped_kept(tmp_path, toy_task):
    """On the toy task some groups of a random model agree: dynamic sampling keeps only the others."""
    policy = {
        "group_size": 2,
        "max_new_tokens": 4,
        "ppo_epochs": 1,
        "micro_batch": 4,
        "dynamic_sampling": True,
    }
    cfg = mlpo_cfg(tmp_path, steps=3, problems_per_step=4, policy=policy)
    rows = [json.loads(x) for x in (mlpo.train(cfg, task=toy_task) / "log.jsonl").read_text().splitlines()]
    assert all(r["groups_drawn"] == r["groups_kept"] + r["groups_dropped"] for r in rows)
    assert all(r["groups_drawn"] >= 4 for r in rows) and any(r["groups_dropped"] > 0 for r in rows)
    assert all(r["signal"] == 1.0 for r in rows if r["groups_kept"] == 4)
    off = mlpo_cfg(
        tmp_path / "off", steps=3, problems_per_step=4, policy={**policy, "dynamic_sampling": False}
    )
    rows = [json.loads(x) for x in (mlpo.train(off, task=toy_task) / "log.jsonl").read_text().splitlines()]
    assert all(r["groups_drawn"] == r["groups_kept"] == 4 and r["groups_dropped"] == 0 for r in rows)


def test_teamtr_logs_drawn_dropped_kept(tmp_path, toy_task):
    from teamtune.config import load_config

    kw = dict(model="tiny-random", agents=2, stages=2, problems_per_stage=4, device="cpu",
              output=str(tmp_path / "run"), optim={"lr": 1e-2, "schedule": "constant", "warmup_steps": 0},
              policy={"group_size": 2, "max_new_tokens": 4, "ppo_epochs": 1, "micro_batch": 4,
                      "dynamic_sampling": True})  # fmt: skip
    cfg = load_config(teamtr.TeamTRConfig, None, [f"{k}={json.dumps(v)}" for k, v in kw.items()])
    rows = [json.loads(x) for x in (teamtr.train(cfg, task=toy_task) / "log.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and all(r["groups_drawn"] == r["groups_kept"] + r["groups_dropped"] for r in rows)
    assert any(r["groups_dropped"] > 0 for r in rows)
    assert all(r["signal"] == 1.0 for r in rows if r["groups_kept"] == 4)
