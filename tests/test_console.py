"""A closed stdout pipe must not end a run (rich's own Console exits with 1 at the next write)."""

import subprocess
import sys

SCRIPT = """
import sys
from pathlib import Path
from rich.console import Console
from teamtune.console import RunConsole
console = RunConsole() if sys.argv[1] == "run" else Console()
for i in range(2000):  # more than a pipe's buffer
    console.print(f"line {i} " + "x" * 100)
Path(sys.argv[2]).write_text("finished")
"""


def _with_closed_pipe(kind: str, marker) -> int:
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, kind, str(marker)], stdout=subprocess.PIPE)
    proc.stdout.close()  # the reader goes away, as `| head` does
    return proc.wait(timeout=60)


def test_run_console_carries_on_when_stdout_reader_is_gone(tmp_path):
    assert _with_closed_pipe("run", tmp_path / "run") == 0
    assert (tmp_path / "run").read_text() == "finished"


def test_plain_rich_console_would_have_ended_the_work(tmp_path):
    """What RunConsole is for: the same script on rich's Console exits 1 before its end."""
    assert _with_closed_pipe("rich", tmp_path / "rich") == 1
    assert not (tmp_path / "rich").exists()


def test_training_run_finishes_when_its_stdout_is_closed(tmp_path, chat_data):
    """`teamtune train ... | head`: the run must still write its weights and metrics (it used to exit 1 at its
    first print after the pipe closed, the end of its progress bar, before saving)."""
    data = chat_data(4)
    cfg = tmp_path / "sft.yaml"
    cfg.write_text(f"method: sft\nmodel: tiny-random\ndata: {data}\nmode: single\nepochs: 1\ndevice: cpu\n")
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "teamtune.cli", "train", "--config", str(cfg), f"output={out}"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    proc.stdout.close()
    assert proc.wait(timeout=300) == 0
    assert (out / "train_metrics.json").is_file()
