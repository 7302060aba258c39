"""Bad input ends with exit code 2 and one line that names the problem: never a traceback, never a silent result."""

import errno
import json
import os
from pathlib import Path

import pytest

from teamtune.cli import main


def _gsm8k(tmp_path, lines) -> str:
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "test.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    return str(folder)


def _mmlu(tmp_path, answer) -> str:
    rec = {"question": "q?", "subject": "s", "choices": ["a", "b", "c", "d"], "answer": answer}
    (tmp_path / "test.jsonl").write_text(json.dumps(rec) + "\n")
    return str(tmp_path / "test.jsonl")


EVAL = ["eval", "--model", "tiny-random", "--limit", "1"]


def said_one_line(capsys, needle: str) -> None:
    """The command printed one line, an error naming the problem."""
    out = capsys.readouterr().out
    assert needle in out and out.startswith("error:") and out.count("\n") == 1, out


@pytest.mark.parametrize(
    "make, args, needle",
    [
        (
            lambda t: _gsm8k(t, [b'{"question": "caf\xe9?", "answer": "#### 1"}']),
            [],
            "test.jsonl:1: not UTF-8 text",
        ),
        (
            lambda t: _gsm8k(t, [b'{"question": 12345, "answer": "#### 1"}']),
            [],
            "'question' must be a string, got 12345",
        ),
        (
            lambda t: _gsm8k(t, [b'{"question": null, "answer": "#### 1"}']),
            [],
            "'question' must be a string, got None",
        ),
        (lambda t: _gsm8k(t, [b'{"question": "q", "answer": 7}']), [], "'answer' must be a string, got 7"),
        (lambda t: _mmlu(t, True), ["--task", "mmlu"], "'answer' must be an index into 'choices', got True"),
        (lambda t: _mmlu(t, 4), ["--task", "mmlu"], "'answer' must be an index into 'choices', got 4"),
    ],
)
def test_bad_dataset_records(make, args, needle, tmp_path, capsys):
    assert main([*EVAL, *args, "--source", make(tmp_path), "--output", str(tmp_path / "run")]) == 2
    said_one_line(capsys, needle)


def test_output_that_is_a_file(tmp_path, capsys):
    (tmp_path / "taken").write_text("x")
    assert main([*EVAL, "--source", "sample", "--output", str(tmp_path / "taken" / "run")]) == 2
    said_one_line(capsys, "part of this path is a file")


@pytest.mark.parametrize(
    "config, override, needle",
    [
        ("mlpo_gsm8k", "steps=-1", "steps must be at least 1, got -1"),
        ("mlpo_gsm8k", "problems_per_step=0", "problems_per_step must be at least 1, got 0"),
        ("mlpo_gsm8k", "save_every=-1", "save_every must be at least 0, got -1"),
        ("mlpo_gsm8k", "lora.r=0", "lora: r must be at least 1, got 0"),
        ("teamtr_gsm8k", "stages=0", "stages must be at least 1, got 0"),
        ("prost_apps", "max_length=0", "max_length must be at least 1, got 0"),
        ("prost_apps", "lora.dropout=1.5", "dropout must be in [0, 1), got 1.5"),
    ],
)
def test_bad_training_numbers(config, override, needle, tmp_path, capsys):
    assert main(["train", "--config", config, override, f"output={tmp_path / 'run'}"]) == 2
    said_one_line(capsys, needle)
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_train_config_whose_top_level_is_a_list(tmp_path, capsys):
    (tmp_path / "c.yaml").write_text("- method: mlpo\n")
    assert main(["train", "--config", str(tmp_path / "c.yaml")]) == 2
    said_one_line(capsys, "the top level must be a mapping of keys, not list")


def test_log_cut_by_a_kill_mid_line_is_resumed_without_it(tmp_path):
    from teamtune.train.common import RunLog

    (tmp_path / "log.jsonl").write_text('{"step": 1, "loss": 1.0}\n{"step": 2, "loss": 0.9}\n{"step": 3, "lo')
    RunLog(tmp_path, resume_step=2).close()
    assert (tmp_path / "log.jsonl").read_text().splitlines() == [
        '{"step": 1, "loss": 1.0}',
        '{"step": 2, "loss": 0.9}',
    ]


def test_json_is_written_whole_under_a_name_of_its_own(tmp_path, monkeypatch):
    from teamtune import evaluate

    seen = []
    monkeypatch.setattr(evaluate.os, "replace", lambda a, b: seen.append(Path(a).name))
    evaluate.write_json(tmp_path / "train_metrics.json", {"a": 1})
    assert seen == [f".train_metrics.json.{os.getpid()}.tmp"]


def test_a_damaged_line_inside_the_log_is_named_not_dropped(tmp_path):
    from teamtune.config import ConfigError
    from teamtune.train.common import RunLog

    (tmp_path / "log.jsonl").write_text('{"step": 1}\nnot json\n{"step": 2}\n')
    with pytest.raises(ConfigError, match=r"log.jsonl:2: not a JSON row"):
        RunLog(tmp_path, resume_step=2)


def _yaml(tmp_path, name, text) -> str:
    (tmp_path / name).write_bytes(text if isinstance(text, bytes) else text.encode())
    return str(tmp_path / name)


SHORT = "team:\n  agents:\n    - name: solver\n      sampling: {max_new_tokens: %s}\n"


@pytest.mark.parametrize(
    "args, needle",
    [
        (lambda t: ["nosuch=1"], "unknown key 'nosuch' (known keys:"),
        (lambda t: ["team.nosuch=1"], "team: unknown key 'nosuch'"),
        (lambda t: ["team.samples=abc"], "team.samples: expected int, got 'abc'"),
        (lambda t: ["team.samples"], "override 'team.samples' must look like key=value"),
        (lambda t: ["team.device=tpu"], "unknown device 'tpu': use auto, cpu, cuda, cuda:N or mps"),
        (lambda t: ["team.dtype=int3"], "unknown dtype 'int3'"),
        (
            lambda t: ["--config", _yaml(t, "c.yaml", "team: [unclosed\n")],
            "not valid YAML at line 2, column 1",
        ),
        (lambda t: ["--config", _yaml(t, "c.yaml", b"team: {model: caf\xe9}\n")], "c.yaml: not UTF-8 text"),
        (lambda t: ["--config", str(t)], "is a folder: a config is a YAML file"),
        (lambda t: ["--config", str(t / "nope.yaml")], "config file not found:"),
        (
            lambda t: ["--config", _yaml(t, "c.yaml", SHORT % 10**9)],
            "max_new_tokens 1000000000 is past the context",
        ),
        (lambda t: ["--config", _yaml(t, "c.yaml", SHORT % 0)], "max_new_tokens must be at least 1"),
        (lambda t: ["--limit", "0"], "limit must be at least 1"),
        (lambda t: ["--layout", "nosuch"], "'nosuch' is not one of single, vote, leader"),
        (lambda t: ["--task", "nosuch"], "unknown task 'nosuch'"),
        (lambda t: ["--model", str(t / "nomodel")], "model folder not found:"),
        (lambda t: ["--model", str(t)], "is not a model folder: it has no config.json"),
        (lambda t: ["--model", str(t / "x.gguf")], "GGUF file not found:"),
        (
            lambda t: ["--model", "random:nosuch"],
            "random:<model> builds an untrained model from <model>'s config",
        ),
        (lambda t: ["--source", str(t / "none.jsonl")], "dataset path not found:"),
        (lambda t: ["--source", _yaml(t, "d.jsonl", "")], "has no problems"),
        (lambda t: ["--source", _yaml(t, "d.jsonl", '{"question": "q", "ans')], "d.jsonl:1: not valid JSON"),
        (
            lambda t: ["--source", _yaml(t, "d.jsonl", '{"question": "q"}\n')],
            "d.jsonl:1: record lacks key 'answer'",
        ),
        (lambda t: ["--output", _yaml(t, "taken", "x")], "taken is a file, not a folder"),
    ],
)
def test_bad_eval_input(args, needle, tmp_path, capsys):
    argv = [*EVAL, "--source", "sample", "--output", str(tmp_path / "run")]
    assert main([*argv, *args(tmp_path)]) == 2  # later flags win over the defaults before them
    said_one_line(capsys, needle)


def test_bbh_subset_that_does_not_exist(tmp_path, capsys):
    tasks = tmp_path / "bbh" / "tasks"
    tasks.mkdir(parents=True)
    (tasks / "sports_understanding.json").write_text(
        json.dumps({"examples": [{"input": "q", "target": "yes"}]})
    )
    argv = [*EVAL, "--task", "bbh", "task.subset=nosuch", "--source", str(tmp_path / "bbh")]
    assert main([*argv, "--output", str(tmp_path / "run")]) == 2
    said_one_line(capsys, "tasks/nosuch.json (tasks here: sports_understanding)")


def _eval_run(tmp_path) -> Path:
    run = tmp_path / "good"
    assert (
        main(
            [
                *EVAL,
                "--config",
                _yaml(tmp_path, "e.yaml", SHORT % 2),
                "--source",
                "sample",
                "--output",
                str(run),
            ]
        )
        == 0
    )
    return run


def test_bad_analysis_input(tmp_path, capsys):
    """pareto, report, curves and subtasks over damaged or wrong run folders: one line each."""
    import shutil

    good = _eval_run(tmp_path)
    metrics = json.loads((good / "metrics.json").read_text())

    def variant(name, text=None, **change):
        shutil.copytree(good, tmp_path / name)
        (tmp_path / name / "metrics.json").write_text(text or json.dumps(metrics | change))
        return str(tmp_path / name)

    def training(name, metrics_text, config_text, log_text=None):
        (tmp_path / name).mkdir()
        (tmp_path / name / "train_metrics.json").write_text(metrics_text)
        (tmp_path / name / "config.yaml").write_text(config_text)
        if log_text is not None:
            (tmp_path / name / "log.jsonl").write_text(log_text)
        return str(tmp_path / name)

    cases = [
        (["pareto", variant("sa", accuracy="high")], "'accuracy' must be a number, got 'high'"),
        (
            ["pareto", variant("nf", flops_per_problem=None), "--x", "flops"],
            "'flops_per_problem' must be a number",
        ),
        (["pareto", variant("nn", n=True)], "'n' must be a number, got True"),
        (["pareto", variant("cm", text="{not json")], "metrics.json: not valid JSON"),
        (["pareto", variant("ls", text="[1, 2]")], "metrics.json: not a JSON object but list"),
        (["pareto", str(tmp_path / "norun")], "norun: not a run folder"),
        (["pareto", str(good), "--out", _yaml(tmp_path, "afile", "x")], "afile is a file, not a folder"),
        (["pareto", str(good), "--x", "nosuch"], "unknown axis 'nosuch'"),
        (
            ["report", training("t1", '{"total": {"tok', "method: mlpo\n")],
            "train_metrics.json: not valid JSON",
        ),
        (["report", training("t2", "{}", "method: [mlpo\n")], "config.yaml: not valid YAML at line 2"),
        (["report", training("t3", "{}", "- 1\n")], "config.yaml: not a run's config (the top level is list"),
        (["report", str(tmp_path / "norun")], "norun: not a run folder"),
        (
            ["curves", training("t4", "{}", "method: sft\n", '{"step": 1}\nnot json\n{"step": 2}\n')],
            "log.jsonl:2: not valid JSON",
        ),
        (["curves", str(tmp_path / "norun")], "no log.jsonl there"),
        (["subtasks", str(good)], "not an apps run (its metrics.json has no 'apps' section)"),
        (["subtasks", variant("cm2", text="{")], "metrics.json: not valid JSON"),
    ]
    capsys.readouterr()
    for argv, needle in cases:
        assert main(argv) == 2, argv
        said_one_line(capsys, needle)


@pytest.mark.parametrize(
    "override, needle",
    [
        (
            "policy.max_new_tokens=1000000000",
            "max_new_tokens 1000000000 is past the context of model 'tiny-random'",
        ),
        ("optim.lr=-1", "lr must be positive, got -1.0"),
        ("optim.lr=abc", "optim.lr: expected float, got 'abc'"),
        ("nosuch=1", "unknown key 'nosuch'"),
        ("device=tpu", "unknown device 'tpu'"),
    ],
)
def test_bad_training_input(override, needle, tmp_path, capsys):
    argv = [
        "train",
        "--config",
        "mlpo_gsm8k",
        "model=tiny-random",
        "task.source=sample",
        "eval_task=null",
        "steps=1",
        "problems_per_step=1",
        "policy.group_size=2",
        override,
        f"output={tmp_path / 'run'}",
    ]
    assert main(argv) == 2
    said_one_line(capsys, needle)


def test_resume_over_a_corrupt_run_config(tmp_path, capsys):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.yaml").write_text("method: mlpo\nsteps: [2\n")
    argv = ["train", "--config", "mlpo_gsm8k", "--resume", "model=tiny-random", "task.source=sample"]
    assert main([*argv, "eval_task=null", f"output={tmp_path / 'run'}"]) == 2
    said_one_line(capsys, "run/config.yaml: not valid YAML at line 3")


def test_a_full_disk_leaves_no_partial_file(tmp_path, capsys, monkeypatch):
    """The disk fills while episodes.jsonl is written: one line, and no half-written temporary file."""
    real = Path.write_text

    def full(self, text, *a, **k):
        if self.name.startswith(".episodes.jsonl"):
            real(self, text[: len(text) // 2], *a, **k)
            raise OSError(errno.ENOSPC, "No space left on device", str(self))
        return real(self, text, *a, **k)

    monkeypatch.setattr(Path, "write_text", full)
    run = tmp_path / "run"
    argv = [
        "eval",
        "--config",
        _yaml(tmp_path, "e.yaml", SHORT % 2),
        "--model",
        "tiny-random",
        "--limit",
        "1",
    ]
    assert main([*argv, "--source", "sample", "--output", str(run)]) == 2
    out = capsys.readouterr().out
    last = out.splitlines()[-1]  # after the progress lines of the eval itself
    assert last == f"error: cannot write {run / 'episodes.jsonl'}: no space left on the device", out
    assert not list(run.glob(".*.tmp")) and not (run / "episodes.jsonl").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through read-only permissions")
def test_read_only_output(tmp_path, capsys):
    (tmp_path / "ro").mkdir(mode=0o555)
    argv = ["eval", "--model", "tiny-random", "--limit", "1", "--source", "sample"]
    assert main([*argv, "--output", str(tmp_path / "ro" / "run")]) == 2
    said_one_line(capsys, "permission denied")


def test_an_answer_with_a_lone_surrogate_is_kept(tmp_path, monkeypatch):
    """A model writes supervisor.complete(answer='\\ud800') (plain ASCII): the apps eval still writes its files."""
    from teamtune.costs import Cost
    from teamtune.rollout import Completion, Engine

    said = "Thought: done.\nsupervisor.complete(answer='\\ud800')"
    monkeypatch.setattr(
        Engine,
        "generate",
        lambda self, requests, sampling, desc="": [Completion(said, "eos", Cost()) for _ in requests],
    )
    run = tmp_path / "run"
    argv = ["eval", "--model", "tiny-random", "--task", "apps", "--split", "dev", "--limit", "1"]
    assert main([*argv, "--output", str(run)]) == 0
    rows = [json.loads(line) for line in (run / "episodes.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 1 and rows[0]["answer"] == "\ud800" and (run / "metrics.json").is_file()
