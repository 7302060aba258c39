import json

import pytest

from teamtune.analysis.pareto import RunError
from teamtune.analysis.subtasks import subtasks
from teamtune.cli import main


def _run(folder, label, seed, completion, by_pos, by_kind, split="dev"):
    folder.mkdir(parents=True)
    errors = list(by_pos.values())
    m = {
        "task": "apps",
        "split": split,
        "accuracy": completion,
        "n": 10,
        "layout": "planner-executor",
        "model": "m",
        "label": label,
        "seed": seed,
        "tokens_per_problem": 100,
        "apps": {
            "task_goal_completion": completion,
            "subtask_error_rate": sum(errors) / len(errors),
            "subtask_error_by_position": {str(k): v for k, v in by_pos.items()},
            "subtask_error_by_kind": by_kind,
        },
    }
    (folder / "metrics.json").write_text(json.dumps(m))
    return str(folder)


def test_subtask_table_averages_seeds_and_draws_png(tmp_path):
    runs = [
        _run(tmp_path / "a0", "sft", 0, 0.2, {1: 0.5, 2: 0.9}, {"act": 0.6, "lookup": 0.4}),
        _run(tmp_path / "a1", "sft", 1, 0.4, {1: 0.3, 2: 0.7}, {"act": 0.4, "lookup": 0.2}),
        _run(tmp_path / "b0", "prost", 0, 0.5, {1: 0.1, 2: 0.2, 3: 0.6}, {"act": 0.2}),
    ]
    md = subtasks(runs, tmp_path / "out").read_text()
    assert (
        "| run | seeds | task goal completion | sub-task error | pos 1 | pos 2 | pos 3 | act | lookup |" in md
    )
    assert "| sft | 2 | 30.0% (20.0%–40.0%) | 60.0% (50.0%–70.0%) | 40% | 80% |  | 50% | 30% |" in md
    assert "| prost | 1 | 50.0% | 30.0% | 10% | 20% | 60% | 20% |  |" in md
    png = (tmp_path / "out" / "subtasks.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


def test_subtasks_refuses_non_apps_and_mixed_splits(tmp_path, capsys):
    a = _run(tmp_path / "a", "x", 0, 0.1, {1: 0.5}, {"act": 0.5})
    b = _run(tmp_path / "b", "x", 0, 0.1, {1: 0.5}, {"act": 0.5}, split="test_unseen")
    with pytest.raises(RunError, match="different tasks or splits"):
        subtasks([a, b], tmp_path / "o")
    m = json.loads((tmp_path / "b" / "metrics.json").read_text())
    del m["apps"]
    (tmp_path / "b" / "metrics.json").write_text(json.dumps(m))
    assert main(["subtasks", a, str(tmp_path / "b"), "--out", str(tmp_path / "o")]) == 2
    assert "not an apps run" in " ".join(capsys.readouterr().out.split())


def test_subtasks_sets_each_label_against_the_reference_seed_by_seed(tmp_path):
    runs = [
        _run(tmp_path / "a0", "sft", 0, 0.2, {1: 0.6}, {"act": 0.6}),
        _run(tmp_path / "a1", "sft", 1, 0.4, {1: 0.4}, {"act": 0.4}),
        _run(tmp_path / "a2", "sft", 2, 0.3, {1: 0.5}, {"act": 0.5}),
        _run(tmp_path / "b0", "prost", 0, 0.3, {1: 0.4}, {"act": 0.4}),
        _run(tmp_path / "b2", "prost", 2, 0.5, {1: 0.2}, {"act": 0.2}),
        _run(tmp_path / "b7", "prost", 7, 0.9, {1: 0.0}, {"act": 0.0}),  # no sft seed 7: not paired
    ]
    md = subtasks(runs, tmp_path / "out").read_text()
    # completion differences +0.1 and +0.2: mean +0.15, t(1) 12.706 * sd 0.0707 / sqrt 2 = 0.635; power over
    # seeds: (12.706 + 1.376) * 0.0707 / sqrt 2 = 0.704 (no projection of the seeds needed from two)
    assert (
        "| prost | sft | 2 | +15.0 ± 63.5 points (80% power at 70.4) |  "
        "| -25.0 ± 63.5 points (80% power at 70.4) |  |" in md
    )  # no episodes: no tests
    got = json.loads((tmp_path / "out" / "subtasks.json").read_text())["versus"]
    assert got[0]["paired_seeds"] == 2 and got[0]["completion"][0] == pytest.approx(0.15)
    md = subtasks(runs, tmp_path / "o2", reference="prost").read_text()
    assert (
        "| sft | prost | 2 | -15.0 ± 63.5 points (80% power at 70.4) |  "
        "| +25.0 ± 63.5 points (80% power at 70.4) |  |" in md
    )
    with pytest.raises(RunError, match="reference 'x' is not a run label"):
        subtasks(runs, tmp_path / "o3", reference="x")


def test_three_seed_pairs_project_the_seeds_a_difference_needs(tmp_path):
    completions = {"sft": [0.2, 0.4, 0.3], "prost": [0.3, 0.6, 0.35]}  # differences +0.1, +0.2, +0.05
    runs = [
        _run(tmp_path / f"{label}{s}", label, s, c, {1: 0.5}, {"act": 0.5})
        for label, cs in completions.items()
        for s, c in enumerate(cs)
    ]
    md = subtasks(runs, tmp_path / "out").read_text()
    # sd 0.0764: (4.303 + 1.061) * 0.0764 / sqrt 3 = 0.2366; 6 seeds (2.571 + 0.920) * 0.0764 / sqrt 6 = 0.1089
    # <= 0.1167, 5 seeds (2.776 + 0.941) * 0.0764 / sqrt 5 = 0.127
    assert "+11.7 ± 19.0 points (80% power at 23.7; 6 seeds to find +11.7)" in md
    assert "+0.0 ± 0.0 points (80% power at 0.0; over 100 seeds to find +0.0)" in md  # errors: no difference


def _episodes(folder, outcomes):
    """episodes.jsonl of an apps run: per task, its sub-tasks' outcomes; the task succeeds when all do."""
    lines = [
        {"problem_id": f"dev-{i}", "correct": all(subs), "turns": [], "info": {"subtask_success": subs}}
        for i, subs in enumerate(outcomes)
    ]
    (folder / "episodes.jsonl").write_text("\n".join(json.dumps(e) for e in lines))


def test_subtasks_sign_tests_over_the_same_tasks_and_subtasks(tmp_path):
    sft = _run(tmp_path / "a", "sft", 0, 0.25, {1: 0.5, 2: 0.5}, {"act": 0.5})
    prost = _run(tmp_path / "b", "prost", 0, 0.5, {1: 0.0, 2: 0.5}, {"act": 0.25})
    _episodes(tmp_path / "a", [[True, True], [False, True], [True, False], [False]])
    _episodes(
        tmp_path / "b", [[True, True], [True, True], [True, False], [False], [True]]
    )  # dev-4: sft lacks it
    md = subtasks([sft, prost], tmp_path / "out").read_text()
    # tasks: dev-1 gained, none lost (p = 1); sub-tasks: dev-1#1 gained only
    # differences over the 4 paired tasks: +1 once, so +25.0 ± 1.96 * 0.5 / 2; over the 7 sub-tasks: one +1
    assert (
        "| prost | sft | 1 | +25.0 points | 1 / 0, p = 1; +25.0 ± 49.0; 80% power at none | -25.0 points "
        "| 1 / 0, p = 1; -14.3 ± 28.0; 80% power at none |" in md
    )
    got = json.loads((tmp_path / "out" / "subtasks.json").read_text())["versus"][0]
    assert got["tasks_test"] == {
        "pairs": 4,
        "gained": 1,
        "lost": 0,
        "p": 1.0,
        "detectable": None,  # one task differs: no split of one is significant
        "difference": 0.25,
        "ci95": 0.49,
    }
    assert got["subtasks_test"]["pairs"] == 7  # dev-4 is not paired
    # tasks paired by their failed sub-tasks: dev-1 lost one error, the 3 other paired tasks none
    assert got["by_task_test"] == pytest.approx(
        {"pairs": 4, "gained": 1, "lost": 0, "p": 1.0, "detectable": None, "difference": 0.25, "ci95": 0.49}
    )
    assert "| 1 / 0, p = 1; -0.25 ± 0.49; 80% power at none |" in md


def test_subtasks_reads_outcomes_json_where_the_episodes_are_not_kept(tmp_path):
    sft = _run(tmp_path / "a", "sft", 0, 0.25, {1: 0.5, 2: 0.5}, {"act": 0.5})
    prost = _run(tmp_path / "b", "prost", 0, 0.5, {1: 0.0, 2: 0.5}, {"act": 0.25})
    _episodes(tmp_path / "a", [[True, True], [False, True], [True, False], [False]])
    subs = {"dev-0": [True, True], "dev-1": [True, True], "dev-2": [True, False], "dev-3": [False]}
    kept = {"correct": {k: all(v) for k, v in subs.items()}, "subtask_success": subs}
    (tmp_path / "b" / "outcomes.json").write_text(json.dumps(kept))
    md = subtasks([sft, prost], tmp_path / "out").read_text()
    assert "| prost | sft | 1 | +25.0 points | 1 / 0, p = 1; +25.0 ± 49.0; 80% power at none |" in md


def test_subtasks_every_seed_row_where_some_seed_has_no_pair(tmp_path):
    """sft has seeds 0 and 1, prost 0 and 2: the paired tests read seed 0 alone; the "every seed" row averages
    each task over both runs of each label."""
    runs = []
    outcomes = {
        ("sft", 0): [[True], [False], [False], [True]],
        ("sft", 1): [[True], [True], [False], [False]],
        ("prost", 0): [[True], [True], [False], [True]],
        ("prost", 2): [[True], [True], [True], [False]],
    }
    for (label, seed), outs in outcomes.items():
        done = sum(all(o) for o in outs) / len(outs)
        runs.append(_run(tmp_path / f"{label}{seed}", label, seed, done, {1: 1 - done}, {"act": 1 - done}))
        _episodes(tmp_path / f"{label}{seed}", outs)
    md = subtasks(runs, tmp_path / "out").read_text()
    # seed 0: dev-1 gained, nothing lost; every seed: sft means 1, .5, 0, .5; prost 1, 1, .5, .5 -> dev-1 and
    # dev-2 gained, differences 0, .5, .5, 0: mean +25.0 ± 1.96 * 0.2887 / 2 = 28.3
    assert "| prost | sft | 1 | +25.0 points | 1 / 0, p = 1; +25.0 ± 49.0; 80% power at none |" in md
    assert (
        "| prost | sft | every seed, 2 / 2 | +25.0 points (means) | 2 / 0, p = 0.5; +25.0 ± 28.3; 80% power at none |"
        in md
    )
    got = json.loads((tmp_path / "out" / "subtasks.json").read_text())["versus"][0]
    assert got["all_seeds"]["seeds"] == [2, 2] and got["all_seeds"]["tasks_test"]["pairs"] == 4
    same = subtasks(runs[:1] + runs[2:3], tmp_path / "o2")  # the same seeds on both sides: no such row
    assert "every seed" not in same.read_text().split("Differences")[0]
