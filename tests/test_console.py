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
