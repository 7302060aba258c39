"""Two processes given one run folder never interleave files: the second is refused with one line."""

import json
import os
import signal
import subprocess
import sys

import pytest
import yaml

from teamtune.cli import main

HOLD = """
import sys, time
from pathlib import Path
from teamtune.evaluate import claim_folder
claim_folder(Path(sys.argv[1]))
print("held", flush=True)
time.sleep(600)
"""


@pytest.fixture
def held(tmp_path):
    """Another process holding tmp_path/run, as a running eval or train does."""
    folder = tmp_path / "run"
    folder.mkdir()
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    yield folder, proc
    proc.kill()
    proc.wait()


EVAL = [
    "eval",
    *("--model", "tiny-random", "--source", "sample", "--limit", "1"),
    "team.agents=[{name: solver, sampling: {max_new_tokens: 4}}]",
]


def test_a_second_eval_into_a_held_folder_is_refused_and_writes_nothing(held, capsys):
    folder, proc = held
    assert main([*EVAL, "--output", str(folder)]) == 2
    out = capsys.readouterr().out
    assert f"is in use by another teamtune process (pid {proc.pid})" in out and out.count("\n") == 1, out
    assert sorted(p.name for p in folder.iterdir()) == [".lock"]  # no config.yaml, no episodes
    proc.send_signal(signal.SIGKILL)  # a killed holder frees the folder: no stale lock to clean up
    proc.wait()
    assert main([*EVAL, "--output", str(folder)]) == 0
    assert (folder / "metrics.json").is_file()


def test_a_train_into_a_held_folder_is_refused(held, capsys):
    folder, proc = held
    args = ["train", "--config", "mlpo_gsm8k", "model=tiny-random", "steps=1", f"output={folder}"]
    assert main(args) == 2
    out = capsys.readouterr().out
    assert f"is in use by another teamtune process (pid {proc.pid})" in out and out.count("\n") == 1, out
    assert not (folder / "config.yaml").exists()


def test_two_eval_processes_started_together_never_mix_a_folder(tmp_path):
    folder = tmp_path / "run"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "teamtune.cli", *EVAL, "--output", str(folder)]
    procs = [
        subprocess.Popen(
            [*cmd, f"team.seed={i}"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
        )
        for i in (1, 2)
    ]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    codes = [p.returncode for p in procs]
    assert "Traceback" not in "".join(outs), outs
    # each either ran whole or was refused; the folder holds the config of the run whose metrics it holds
    assert set(codes) <= {0, 2} and 0 in codes, outs
    for code, out in zip(codes, outs, strict=True):
        assert code == 0 or "is in use by another teamtune process" in out, out
    seed = yaml.safe_load((folder / "config.yaml").read_text())["team"]["seed"]
    assert json.loads((folder / "metrics.json").read_text())["seed"] == seed
