import json

import pytest

from teamtune.cli import main


def test_help_lists_verbs(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for verb in ("eval", "demo", "export", "trajectories"):
        assert verb in out


def test_eval_writes_run_folder(tmp_path, data_dir, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"""
task: {{name: gsm8k, split: test, source: {data_dir / "gsm8k"}, limit: 3}}
team:
  layout: vote
  model: tiny-random
  samples: 2
  agents: [{{name: solver, sampling: {{max_new_tokens: 5}}}}]
""")
    out = tmp_path / "run"
    assert main(["eval", "--config", str(cfg), "team.samples=4", "--output", str(out), "team.samples=3"]) == 0
    episodes = [json.loads(line) for line in (out / "episodes.jsonl").open()]
    metrics = json.loads((out / "metrics.json").read_text())
    assert len(episodes) == 3 and all(len(e["turns"]) == 3 for e in episodes)
    assert metrics["n"] == 3 and metrics["total"]["calls"] == 9 and metrics["total"]["generated_tokens"] == 45
    assert metrics["layout"] == "vote" and (out / "config.yaml").is_file()
    kept = json.loads((out / "outcomes.json").read_text())  # each problem's outcome, small enough to keep
    assert kept == {"correct": {e["problem_id"]: e["correct"] for e in episodes}}
    assert "accuracy" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args,needle",
    [
        (["team.sampels=3"], "unknown key 'sampels'"),
        (["--task", "gsm8k", "--source", "/no/such/dir"], "dataset path not found: /no/such/dir"),
        (["--model", "/no/such.gguf", "--limit", "1"], "GGUF file not found"),
    ],
)
def test_eval_errors_are_one_line(args, needle, capsys, tmp_path, data_dir):
    assert main(["eval", "--output", str(tmp_path / "r"), "--source", str(data_dir / "gsm8k"), *args]) == 2
    out = capsys.readouterr().out
    assert needle in out and "Traceback" not in out


def test_export(tmp_path):
    assert main(["export", "tiny-random", str(tmp_path / "m")]) == 0
    assert (tmp_path / "m" / "config.json").is_file() and (tmp_path / "m" / "tokenizer.json").is_file()


def test_trajectories(tmp_path):
    out = tmp_path / "t.jsonl"
    assert main(["trajectories", "--split", "dev", "--n", "4", "--layout", "single", "--out", str(out)]) == 0
    lines = out.read_text().splitlines()
    assert len(lines) == 4 and json.loads(lines[0])["layout"] == "single"
    assert main(["trajectories", "--split", "nope", "--out", str(out)]) == 2
