"""Bad input ends with exit code 2 and one line that names the problem: never a traceback, never a silent result."""

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
    out = capsys.readouterr().out
    assert needle in out and out.count("\n") == 1, out


def test_output_that_is_a_file(tmp_path, capsys):
    (tmp_path / "taken").write_text("x")
    assert main([*EVAL, "--source", "sample", "--output", str(tmp_path / "taken" / "run")]) == 2
    out = capsys.readouterr().out
    assert out.startswith("error:") and "Not a directory" in out and out.count("\n") == 1


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
    out = capsys.readouterr().out
    assert needle in out and out.count("\n") == 1, out
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_train_config_whose_top_level_is_a_list(tmp_path, capsys):
    (tmp_path / "c.yaml").write_text("- method: mlpo\n")
    assert main(["train", "--config", str(tmp_path / "c.yaml")]) == 2
    out = capsys.readouterr().out
    assert "the top level must be a mapping of keys, not list" in out and out.count("\n") == 1


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
