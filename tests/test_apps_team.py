import json

import pytest

from teamtune.agents import AgentConfig, ModelPool
from teamtune.cli import main
from teamtune.envs.apps import AppsEnv, evaluate, make_tasks
from teamtune.envs.apps.roles import gold_trajectories, read_trajectories, write_trajectories
from teamtune.envs.apps.team import AppsTeam, apps_metrics
from teamtune.rollout import SamplingConfig
from teamtune.tasks import DataError
from teamtune.team import TeamConfig


def test_gold_trajectories_round_trip(tmp_path):
    tasks = make_tasks("train", 30)
    for layout in ("single", "planner-executor"):
        recs = gold_trajectories(tasks, layout)
        write_trajectories(tmp_path / f"{layout}.jsonl", recs)
        assert read_trajectories(tmp_path / f"{layout}.jsonl") == recs
    single = gold_trajectories(tasks, "single")
    for task, rec in zip(tasks, single, strict=True):
        marks = [m["subtask"] for m in rec["messages"]]
        assert marks[:2] == [None, None] and marks[2:] == sorted(marks[2:])  # sub-tasks in order
        assert set(marks[2:]) == set(range(len(task.subtasks)))
        # replaying the assistant turns solves the task
        env = AppsEnv(task)
        for m in rec["messages"]:
            if m["role"] == "assistant":
                env.act(m["content"])
        assert evaluate(env).success
    pe = gold_trajectories(tasks[:5], "planner-executor")
    planners = [r for r in pe if r["role"] == "planner"]
    assert len(planners) == 5 and all(r["messages"][-1]["content"].startswith("DONE") for r in planners)
    assert all(r["messages"][2]["content"].startswith("NEXT: ") for r in planners)
    executors = [r for r in pe if r["role"] == "executor"]
    assert all(r["messages"][-1]["content"].startswith("REPORT: ") for r in executors)


def test_read_trajectories_names_bad_line(tmp_path):
    p = tmp_path / "t.jsonl"
    cases = [
        (
            '{"messages": [{"role": "user", "content": "hi"}]}\n{"nope": 1}\n',
            r"t.jsonl:2: record lacks key 'messages'",
        ),
        ('{"messages": "hi"}\n', r"t.jsonl:1: 'messages' must be a list"),
        (
            '{"messages": [{"role": "bot", "content": "hi"}]}\n',
            r"t.jsonl:1: message 0 needs a role of system, user or assistant",
        ),
        (
            '{"messages": [{"role": "user", "content": "a"}, {"role": "assistant"}]}\n',
            r"t.jsonl:1: message 1 \(assistant\) needs a string 'content'",
        ),
    ]
    for text, message in cases:
        p.write_text(text)
        with pytest.raises(DataError, match=message):
            read_trajectories(p)


@pytest.mark.parametrize(
    "layout,names", [("single", ["agent"]), ("planner-executor", ["planner", "executor"])]
)
def test_apps_team_runs_layouts(layout, names):
    pool = ModelPool(device="cpu", dtype="float32", seed=0)
    agents = [AgentConfig(n, sampling=SamplingConfig(max_new_tokens=8)) for n in names]
    team = AppsTeam(TeamConfig(layout=layout, model="tiny-random", agents=agents), pool)
    tasks = make_tasks("dev", 3)
    eps = team.run(tasks)
    assert len(eps) == 3 and all(e.turns for e in eps)
    assert {t.agent for e in eps for t in e.turns} == set(names)
    assert all(
        e.info["template"] == t.template and len(e.info["subtask_success"]) == len(t.subtasks)
        for e, t in zip(eps, tasks, strict=True)
    )
    if layout == "planner-executor":
        ex = next(t for t in eps[0].turns if t.agent == "executor")
        assert ex.messages[1]["content"].startswith("Sub-task: ")  # the executor reads the planner's sub-task
        assert "APIs:" in ex.messages[0]["content"]
    m = apps_metrics(eps)
    assert 0 <= m["task_goal_completion"] <= 1 and set(m["subtask_error_by_kind"]) <= {
        "lookup",
        "act",
        "answer",
    }


def test_eval_apps_cli(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(
        [
            "eval",
            "--task",
            "apps",
            "--split",
            "test_unseen",
            "--limit",
            "2",
            "--layout",
            "single",
            "--model",
            "tiny-random",
            "--output",
            str(out),
            "team.agents=[{name: agent, sampling: {max_new_tokens: 6}}]",
        ]
    )
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["task"] == "apps" and "subtask_error_by_position" in metrics["apps"]
    episodes = [json.loads(line) for line in (out / "episodes.jsonl").open()]
    kept = json.loads((out / "outcomes.json").read_text())
    assert kept["subtask_success"] == {e["problem_id"]: e["info"]["subtask_success"] for e in episodes}
    assert len(kept["correct"]) == 2
    assert "task goal completion" in capsys.readouterr().out
    assert main(["eval", "--task", "apps", "--split", "holdout", "--output", str(out)]) == 2
    assert main(["eval", "--env", "apps", "--layout", "vote", "--output", str(tmp_path / "v")]) == 2
    assert main(["eval", "--layout", "planner-executor", "--output", str(tmp_path / "p")]) == 2
    text = " ".join(capsys.readouterr().out.split())  # the console wraps long lines
    assert "runs the layouts single, planner-executor, not 'vote'" in text
    assert "'planner-executor' runs in the apps world only" in text
