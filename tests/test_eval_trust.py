"""Evaluation a user can trust: valid answers only, a seeded sample, the task's budget, cut answers counted,
one-line errors at any width, progress lines where the output is no terminal."""

import json
from pathlib import Path

import pytest

from teamtune.cli import main
from teamtune.tasks import TaskConfig, load_task

FIXTURES = Path(__file__).parent / "fixtures"


def _mmlu():
    return load_task(TaskConfig(name="mmlu", source="sample"))


def test_mmlu_reads_only_letters_of_the_record():
    task = _mmlu()
    p = task.problems[0]  # four choices: A-D
    assert task.read_answer("The answer is (B).", p) == "B"
    assert task.read_answer("The answer is (E).", p) is None  # E-J are no answer to four choices
    assert (
        task.read_answer("(J) and (H) are out. The answer is (N).", p) is None
    )  # no fall-back to earlier letters
    assert (
        task.read_answer("Between (C) and (A), I pick (A)", p) == "A"
    )  # no answer line: the last valid "(X)"
    assert task.read_answer("Maybe (G). Then (B).", p) == "B"
    assert task.read_answer("The answer is Apple.", p) is None
    assert task.read_answer("The answer is **D**", p) == "D"


def test_mmlu_extractor_on_real_model_outputs():
    """SmolLM2-135M's answers to the shipped multiple-choice sample, read by the extractor (see the fixture)."""
    rows = [json.loads(x) for x in (FIXTURES / "mmlu_smollm2_outputs.jsonl").read_text().splitlines()]
    task = _mmlu()
    problems = {p.id: p for p in task.problems}
    for r in rows:
        got = task.read_answer(r["text"], problems[r["problem_id"]])
        assert got == r["expected"], r["text"][-200:]
        assert got is None or got in "ABCD"


def test_random_sample_spans_the_file_and_is_seeded():
    first = load_task(TaskConfig(name="mmlu", source="sample", limit=4))
    rand = load_task(TaskConfig(name="mmlu", source="sample", limit=4, sample="random", sample_seed=1))
    again = load_task(TaskConfig(name="mmlu", source="sample", limit=4, sample="random", sample_seed=1))
    other = load_task(TaskConfig(name="mmlu", source="sample", limit=4, sample="random", sample_seed=2))
    assert [p.id for p in rand.problems] == [p.id for p in again.problems] != [p.id for p in other.problems]
    assert len({p.meta["subject"] for p in rand.problems}) > len({p.meta["subject"] for p in first.problems})
    index = [int(p.id.rsplit("-", 1)[1]) for p in rand.problems]
    assert index == sorted(index)  # file order kept


def test_task_budget_and_cut_answers(tmp_path, capsys):
    out = tmp_path / "m"
    assert main(["eval", "--task", "math", "--split", "train", "--source", "sample", "--limit", "1",
                 "--model", "tiny-random", "--output", str(out), "team.agents=[{name: solver, sampling: {do_sample: false}}]"]) == 0  # fmt: skip
    assert "max_new_tokens: 640" in (out / "config.yaml").read_text()  # MATH's budget, recorded
    m = json.loads((out / "metrics.json").read_text())
    assert m["cut_by_budget"] == 1.0 and m["cut_turns"] == {"solver": 1}  # a random model never finishes
    assert main(["eval", "--source", "sample", "--limit", "1", "--model", "tiny-random", "--output", str(tmp_path / "g"),
                 "team.agents=[{name: solver, sampling: {max_new_tokens: 3}}]"]) == 0  # fmt: skip
    assert "max_new_tokens: 3" in (tmp_path / "g" / "config.yaml").read_text()  # an agent's own budget wins


@pytest.mark.parametrize("width", ["40", "200"])
def test_errors_are_one_line_at_any_width(width, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", width)
    deep = tmp_path.joinpath(*["a-rather-long-folder-name"] * 6) / "missing.jsonl"
    assert main(["eval", "--source", str(deep), "--model", "tiny-random"]) == 2
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and str(deep) in out and out.startswith("error: dataset path not found")


def test_progress_lines_without_a_terminal(tmp_path, capsys):
    assert main(["eval", "--source", "sample", "--limit", "2", "--layout", "leader", "--model", "tiny-random",
                 "--output", str(tmp_path / "r"), "team.agents=[{name: peer, sampling: {max_new_tokens: 2}}, {name: leader, sampling: {max_new_tokens: 2}}]"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "peers round 1: 6/6" in out and "leader: 2/2" in out
    # outcomes.json keeps how many of the 3 peers were right on each problem (the bins of teamtune compare)
    kept = json.loads((tmp_path / "r" / "outcomes.json").read_text())
    assert kept["peers_right"].keys() == kept["correct"].keys() and len(kept["correct"]) == 2
    assert all(0 <= n <= 3 for n in kept["peers_right"].values())


def test_help_and_list_name_tasks_layouts_models(capsys):
    with pytest.raises(SystemExit):
        main(["eval", "--help"])
    helped = capsys.readouterr().out
    assert main(["list"]) == 0
    listed = capsys.readouterr().out
    for text in (helped, listed):
        for name in (
            "gsm8k",
            "bbh",
            "gym",
            "apps",
            "vote",
            "leader",
            "pipeline",
            "smollm2-135m",
            "tiny-random",
        ):
            assert name in text
        assert "mlpo_gym" in text and "samples (--source sample): bbh, gsm8k, math, mmlu" in text


def test_a_team_built_in_python_gets_the_task_budget():
    from teamtune.team import Team, TeamConfig

    task = load_task(TaskConfig(name="math", split="train", source="sample", limit=1))
    (ep,) = Team(TeamConfig(layout="single", model="tiny-random", device="cpu")).run(task)
    assert ep.turns[0].finish == "length" and ep.turns[0].cost.generated_tokens == task.max_new_tokens == 640
