"""reasoning-gym tasks: generated problems, disjoint splits, its verifier, one-line errors."""

import builtins

import pytest

from teamtune.tasks import DataError, TaskConfig, load_task

EASY = {"chain_sum": {"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 2}}


def gym(split="train", limit=40, subset="chain_sum", settings=EASY, **kw):
    return load_task(TaskConfig(name="gym", subset=subset, split=split, limit=limit, gym=settings, **kw))


def test_splits_are_disjoint_and_reproducible():
    train, test = gym("train", 200), gym("test", 60)
    assert len(train) == 200 and len(test) == 60
    assert not {p.question for p in train.problems} & {p.question for p in test.problems}
    assert [p.question for p in gym("test", 60).problems] == [p.question for p in test.problems]
    assert len({p.question for p in train.problems}) == 200  # no repeats within a split


def test_difficulty_settings_reach_the_generator():
    hard = gym(settings={"chain_sum": {"min_terms": 5, "max_terms": 5, "min_digits": 3, "max_digits": 3}})
    assert all(p.question.count("+") + p.question.count("-") >= 4 for p in hard.problems)
    easy = gym()
    assert all(len(p.answer.lstrip("-")) <= 3 for p in easy.problems)


def test_verifier_reads_the_answer_line():
    task = gym("test", 4, subset="chain_sum,basic_arithmetic")
    assert {p.meta["dataset"] for p in task.problems} == {"chain_sum", "basic_arithmetic"}
    p = task.problems[0]
    assert task.reward(f"First I add.\nThe answer is {p.answer}.", p) == 1.0
    assert task.reward(f"The answer is **{p.answer}**", p) == 1.0
    assert task.reward(f"The answer is {int(p.answer) + 1}.", p) == 0.0
    assert task.reward("I do not know.", p) == 0.0
    assert task.is_correct(task.extract(f"The answer is {p.answer}."), p)


@pytest.mark.parametrize(
    "kw, needle",
    [
        (
            dict(subset="chain_summ", settings={}),
            "unknown reasoning-gym dataset 'chain_summ' (did you mean chain_sum",
        ),
        (
            dict(settings={"chain_sum": {"hardness": 3}}),
            "task.gym.chain_sum: unknown setting 'hardness' (settings",
        ),
        (dict(settings={"chain_sum": {"min_terms": 5, "max_terms": 2}}), "task.gym.chain_sum: settings"),
        (
            dict(settings={"basic_arithmetic": {}}),
            "settings for 'basic_arithmetic', which task.subset does not",
        ),
        (dict(split="validation"), "gym split must be one of train, dev, test"),
        (
            dict(limit=500, settings={"chain_sum": {"min_terms": 2, "max_terms": 2, "max_digits": 1}}),
            "distinct",
        ),
    ],
)
def test_bad_gym_settings_are_one_line(kw, needle):
    with pytest.raises(DataError) as e:
        gym(**kw)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_reasoning_gym_missing_is_named(monkeypatch):
    real = builtins.__import__

    def no_gym(name, *args, **kw):
        if name.startswith("reasoning_gym"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return real(name, *args, **kw)

    monkeypatch.setattr(builtins, "__import__", no_gym)
    with pytest.raises(DataError, match=r"needs the reasoning-gym package: pip install 'teamtune\[gym\]'"):
        gym()


def test_gym_needs_a_subset():
    from teamtune.config import ConfigError, from_dict

    with pytest.raises(ConfigError, match="task gym needs subset"):
        from_dict(TaskConfig, {"name": "gym"})


def test_gym_team_eval(tiny, tmp_path):
    """The same Task interface as GSM8K: a team runs on it and episodes are scored by its verifier."""
    from teamtune.cli import main

    out = tmp_path / "run"
    args = [
        "eval",
        "--task",
        "gym",
        "task.subset=chain_sum",
        "--split",
        "test",
        "--limit",
        "3",
        "--layout",
        "vote",
    ]
    args += ["--model", "tiny-random", "--output", str(out), "team.samples=2"]
    args += ["team.agents=[{name: solver, sampling: {max_new_tokens: 3}}]"]
    assert main(args) == 0
    assert (out / "metrics.json").is_file()


def test_partial_credit_is_a_reward_not_a_right_answer():
    """reasoning-gym gives partial credit when the answer holds the gold one: the reward, never the accuracy."""
    task = gym("test", 2, subset="letter_counting", settings={})
    p = task.problems[0]
    text = f"The answer is {p.answer} times."
    assert 0 < task.reward(text, p) < 1 and not task.solves(text, p)
    assert (
        task.solves(f"The answer is {p.answer}.", p) and task.reward(f"The answer is {p.answer}.", p) == 1.0
    )
