import json
import shutil
from pathlib import Path

import pytest

from teamtune.tasks import DataError, TaskConfig, load_task
from teamtune.tasks.bbh import normalize


def test_gsm8k_real_lines(data_dir):
    task = load_task(TaskConfig(name="gsm8k", split="test", source=str(data_dir / "gsm8k"), limit=50))
    assert len(task) == 50
    p = task.problems[0]
    assert p.answer == "18" and p.question.startswith("Janet")
    # the gold solutions of the real lines are recognised as correct answers
    lines = (data_dir / "gsm8k" / "test.jsonl").read_text().splitlines()
    for p, line in zip(task.problems, lines, strict=False):
        solution = json.loads(line)["answer"].replace("####", "The answer is")
        assert task.is_correct(task.extract(solution), p)
    assert task.extract("So she makes $1,234.00 in total. The answer is $1,234.") == "1234"
    assert task.extract("18 eggs... wait, 9 * 2 = 18") == "18"
    assert task.extract("no numbers here") is None
    assert not task.is_correct(task.extract("The answer is 17."), task.problems[0])


def test_math_both_formats(data_dir, tmp_path):
    task = load_task(TaskConfig(name="math", split="train", source=str(data_dir / "math"), limit=30))
    assert task.problems[0].answer == "2"
    for p in task.problems:
        assert task.is_correct(task.extract(f"Thus the result is \\boxed{{{p.answer}}}."), p)
    m500 = tmp_path / "test.jsonl"
    m500.write_text(
        json.dumps(
            {
                "problem": "Compute $\\sin 60^\\circ$.",
                "solution": "...",
                "answer": "\\frac{\\sqrt{3}}{2}",
                "subject": "Precalculus",
                "level": 2,
                "unique_id": "test/precalc/1.json",
            }
        )
        + "\n"
    )
    t5 = load_task(TaskConfig(name="math", split="test", source=str(tmp_path)))
    p = t5.problems[0]
    assert p.id == "math-test/precalc/1.json" and p.meta["subject"] == "Precalculus"
    assert t5.is_correct(t5.extract("so we get $\\boxed{\\dfrac{\\sqrt3}{2}}$"), p)
    assert not t5.is_correct(t5.extract("\\boxed{\\frac{1}{2}}"), p)


def test_bbh_split_and_exact_match(data_dir):
    kw = dict(name="bbh", source=str(data_dir / "bbh"), subset="date_understanding,boolean_expressions")
    train = load_task(TaskConfig(split="train", **kw))
    test = load_task(TaskConfig(split="test", **kw))
    everything = load_task(TaskConfig(split="all", **kw))
    assert len(train) + len(test) == len(everything) == 500
    assert not {p.id for p in train.problems} & {p.id for p in test.problems}
    for p in test.problems[:40]:
        assert test.is_correct(test.extract(f"Let's think. So the answer is {p.answer.upper()}."), p)
    date = next(p for p in everything.problems if p.meta["subtask"] == "date_understanding")
    assert date.answer.startswith("(") and everything.extract("So the answer is (B) 12/25/1937.") == "(B)"
    assert normalize("False.") == "false" and normalize("(c)") != "(C)"


def test_bbh_shots_prompt_and_trim(data_dir, tmp_path):
    kw = dict(name="bbh", source=str(data_dir / "bbh"), subset="boolean_expressions", split="test")
    zero, three = load_task(TaskConfig(**kw)), load_task(TaskConfig(shots=3, **kw))
    p0, p3 = zero.problems[0], three.problems[0]
    assert p0.id == p3.id and p0.question == p3.question
    assert three.prompt(p3).startswith("Evaluate the result of a random Boolean expression.\n\nQ: ")
    assert three.prompt(p3).count("\nQ: ") == 4 and "canary" not in three.prompt(p3)
    assert three.prompt(p3).endswith(f"Q: {p3.question}\nA: Let's think step by step.")
    one = load_task(TaskConfig(shots=1, **kw))
    assert one.prompt(one.problems[0]).count("\nQ: ") == 2
    assert zero.prompt(p0).endswith("The answer is X.'")
    # a completion that runs on into a question of its own: only the first part answers
    text = "not False = True. So the answer is True.\n\nQ: True and False is\nA: So the answer is False."
    assert three.trim(text) == "not False = True. So the answer is True.\n" and three.extract(text) == "true"
    assert (
        zero.trim(text) == three.trim(text)
        and load_task(TaskConfig(name="gsm8k", source=str(data_dir / "gsm8k"), limit=1)).trim(text) == text
    )
    with pytest.raises(ValueError, match="only for bbh"):
        TaskConfig(name="gsm8k", shots=3).validate()
    (tmp_path / "tasks").mkdir()
    shutil.copy(data_dir / "bbh" / "tasks" / "boolean_expressions.json", tmp_path / "tasks")
    with pytest.raises(DataError, match="cot-prompts"):
        load_task(TaskConfig(**{**kw, "source": str(tmp_path)}, shots=3))


def test_mmlu_records(tmp_path):
    recs = [
        {"question": "2+2?", "subject": "math", "choices": ["3", "4", "5", "6"], "answer": 1},
        {"question": "Capital of France?", "subject": "geo", "choices": ["Paris", "Rome"], "answer": 0},
    ]
    (tmp_path / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    task = load_task(TaskConfig(name="mmlu", source=str(tmp_path)))
    assert [p.answer for p in task.problems] == ["B", "A"]
    assert "(B) 4" in task.prompt(task.problems[0])
    assert task.extract("4 is right. The answer is (B).") == "B"
    assert task.extract("The answer is B") == "B"
    assert task.extract("I pick (C) over (A)") == "A"
    assert len(load_task(TaskConfig(name="mmlu", source=str(tmp_path), subset="geo"))) == 1


def test_bad_data_names_file_and_line(tmp_path):
    f = tmp_path / "test.jsonl"
    f.write_text('{"question": "a", "answer": "#### 3"}\n{"question": "b"\n')
    with pytest.raises(DataError, match=rf"{f}:2: not valid JSON"):
        load_task(TaskConfig(name="gsm8k", source=str(f)))
    f.write_text('{"question": "a", "answer": "#### 3"}\n{"question": "b", "solution": "x"}\n')
    with pytest.raises(DataError, match=rf"{f}:2: record lacks key 'answer'"):
        load_task(TaskConfig(name="gsm8k", source=str(f)))
    f.write_text('{"question": "a", "answer": "no number"}\n')
    with pytest.raises(DataError, match=rf"{f}:1: answer has no number"):
        load_task(TaskConfig(name="gsm8k", source=str(f)))
    with pytest.raises(DataError, match="dataset path not found"):
        load_task(TaskConfig(name="gsm8k", source=str(tmp_path / "missing")))
    with pytest.raises(DataError, match="no train.jsonl"):
        load_task(TaskConfig(name="gsm8k", split="train", source=str(tmp_path)))
    (tmp_path / "bad.jsonl").write_text(json.dumps({"question": "q", "choices": ["a"], "answer": 0}) + "\n")
    with pytest.raises(DataError, match="'choices' must be a list of 2"):
        load_task(TaskConfig(name="mmlu", source=str(tmp_path / "bad.jsonl")))


def test_hub_names_go_to_datasets(monkeypatch):
    calls = []

    def fake_load_dataset(name, config, split):
        calls.append((name, config, split))
        if name == "lukaemon/bbh":
            return [{"input": "not True is", "target": "False"}] * 10
        return [{"question": "q", "answer": "work #### 7"}, {"question": "r", "answer": "#### 1,000"}]

    import datasets

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    monkeypatch.setenv("TEAMTUNE_DATA", "/no/such/place")
    task = load_task(TaskConfig(name="gsm8k", split="train"))
    assert calls[-1] == ("openai/gsm8k", "main", "train") and [p.answer for p in task.problems] == [
        "7",
        "1000",
    ]
    load_task(TaskConfig(name="gsm8k", split="test", source="someone/gsm8k-copy"))
    assert calls[-1] == ("someone/gsm8k-copy", None, "test")
    bbh = load_task(TaskConfig(name="bbh", split="all", subset="boolean_expressions"))
    assert calls[-1] == ("lukaemon/bbh", "boolean_expressions", "test") and len(bbh) == 10


def test_default_data_dir_is_found_from_any_folder_below(tmp_path, monkeypatch):
    from teamtune.tasks.base import default_data_dir

    (tmp_path / "shared" / "datasets").mkdir(parents=True)
    deep = tmp_path / "project" / "benchmarks"
    deep.mkdir(parents=True)
    monkeypatch.delenv("TEAMTUNE_DATA", raising=False)
    monkeypatch.chdir(deep)
    assert default_data_dir() == (tmp_path / "shared" / "datasets").resolve()
    monkeypatch.setenv("TEAMTUNE_DATA", str(tmp_path / "elsewhere"))
    assert default_data_dir() == tmp_path / "elsewhere"


@pytest.mark.parametrize("name", ["gsm8k", "math", "bbh", "mmlu"])
def test_shipped_sample_of_each_task(name, tmp_path, monkeypatch):
    """task.source=sample reads the small sample inside the package, from any folder, with no shared data."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TEAMTUNE_DATA", str(tmp_path / "nothing"))
    split = {"math": "train", "bbh": "test"}.get(name, "test")
    kw = {"subset": "boolean_expressions", "shots": 3} if name == "bbh" else {}
    task = load_task(TaskConfig(name=name, split=split, source="sample", **kw))
    assert len(task) >= 10 and all(p.answer for p in task.problems)
    assert task.is_correct(task.problems[0].answer, task.problems[0])


def test_no_local_copy_and_no_hub_fails_at_once(tmp_path, monkeypatch):
    """Offline with no local data: one line naming where it looked and how to point at data, in seconds."""
    import time

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TEAMTUNE_DATA", raising=False)
    t0 = time.perf_counter()
    with pytest.raises(DataError) as e:
        load_task(TaskConfig(name="gsm8k", split="test"))
    assert time.perf_counter() - t0 < 10
    msg = str(e.value)
    assert "\n" not in msg and "TEAMTUNE_DATA" in msg and "task.source=sample" in msg
    with pytest.raises(DataError, match="no nosuch.jsonl for split 'nosuch' \\(splits here: test, train\\)"):
        load_task(TaskConfig(name="gsm8k", source="sample", split="nosuch"))


def test_unreachable_hub_fails_without_retries(tmp_path, monkeypatch):
    """Online mode but no route to the hub: one probe, then the same one line (datasets would retry ~30 s)."""
    import datasets

    from teamtune.tasks import base

    def refuse(address, timeout):
        assert address == ("huggingface.co", 443) and timeout <= 3
        raise OSError("no route")

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TEAMTUNE_DATA", raising=False)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(base.socket, "create_connection", refuse)
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: pytest.fail("reached load_dataset"))
    with pytest.raises(DataError, match="hub cannot be reached to read 'openai/gsm8k'.*task.source=sample"):
        load_task(TaskConfig(name="gsm8k", split="test"))


def test_numeric_choices_hide_the_gold_answer_among_its_neighbours(tmp_path):
    """Multiple choice built from numeric answers: valid `cais/mmlu` records that the mmlu task reads, the gold
    answer among the choices, and no structural shortcut: its rank in size among the choices is uniform, so
    picking the smallest, a middle or the largest choice scores chance; non-numeric answers are left out."""
    import random

    from teamtune.tasks.base import Problem
    from teamtune.tasks.mmlu import numeric_choices

    rng = random.Random(1)
    problems = [Problem(id=f"p{i}", question=f"q{i}", answer=str(rng.randrange(2000))) for i in range(4000)]
    problems.append(Problem(id="x", question="which?", answer="(B)"))
    records = numeric_choices(problems, "arith", n_choices=4, seed=0)
    assert len(records) == 4000
    assert all(r["choices"][r["answer"]] == p.answer for r, p in zip(records, problems, strict=False))
    ranks = [sorted(r["choices"], key=int).index(r["choices"][r["answer"]]) for r in records]
    for k in range(4):
        assert 0.21 < ranks.count(k) / len(ranks) < 0.29
    letters = [r["answer"] for r in records]
    assert all(0.21 < letters.count(k) / len(letters) < 0.29 for k in range(4))
    (tmp_path / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records[:10]))
    task = load_task(TaskConfig(name="mmlu", source=str(tmp_path), split="test"))
    assert [p.answer for p in task.problems] == ["ABCD"[r["answer"]] for r in records[:10]]
    # a warm start's gold line is the instruction's form, and it reads back right
    assert all(
        task.solution(p) == f"The answer is ({p.answer})." and task.solves(task.solution(p), p)
        for p in task.problems
    )
    with pytest.raises(ValueError, match="too few"):
        numeric_choices(problems[:3], "arith")


def test_build_mc_keeps_the_warm_start_questions_apart(tmp_path):
    """experiments/build_mc.py --warm N: the first N train questions become split `warm`, the rest stay `train`,
    each readable by the mmlu task, none in both; asking for all of them is refused."""
    import subprocess
    import sys

    src = tmp_path / "gsm8k"
    src.mkdir()
    rows = [
        {"question": f"What is {i} + 1?", "answer": f"{i} + 1 = {i + 1}\n#### {i + 1}"} for i in range(12)
    ]
    (src / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    script = Path(__file__).parents[1] / "experiments" / "build_mc.py"
    out = tmp_path / "mc"

    def build(warm: int) -> subprocess.CompletedProcess:
        cmd = [
            sys.executable,
            str(script),
            str(out),
            "--splits",
            "train",
            "--warm",
            str(warm),
            f"source={src}",
        ]
        return subprocess.run(cmd, capture_output=True, text=True)

    assert build(4).returncode == 0
    warm = load_task(TaskConfig(name="mmlu", source=str(out), split="warm")).problems
    train = load_task(TaskConfig(name="mmlu", source=str(out), split="train")).problems
    assert len(warm) == 4 and len(train) == 8
    assert not {p.question for p in warm} & {p.question for p in train}
    assert [p.question.split("\n")[0] for p in warm] == [r["question"] for r in rows[:4]]
    failed = build(12)
    assert failed.returncode != 0 and "leaves no train questions" in failed.stderr
