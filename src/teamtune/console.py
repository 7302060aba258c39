"""The console teamtune prints to (rich's, except that a closed stdout pipe does not end the work) and its
progress display (rich's, with plain lines where the output is no terminal)."""

from __future__ import annotations

import os
import sys
import time

from rich.console import Console
from rich.progress import Progress, TaskID


class RunConsole(Console):
    """A rich Console for long work. When stdout's reader goes away (`teamtune train ... | head`, or a killed
    `tee`), rich's default raises SystemExit(1) at the next write: a run would die at its end, before saving,
    and in a launch group the other ranks would wait for it at their last barrier. Here the output goes to
    /dev/null instead and the work carries on; its results are files."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


class RunProgress(Progress):
    """rich's Progress, which draws nothing where the output is no terminal (a file, a pipe, a job log): there it
    prints a plain line for each task at its first step, then every `every` seconds, and when it finishes."""

    def __init__(self, *columns, every: float = 5.0, **kwargs):
        super().__init__(*columns, **kwargs)
        self.every = every
        self._said: dict[TaskID, float] = {}

    def start(self) -> None:
        if self.console.is_terminal:  # elsewhere a live display would only leave a blank line behind
            super().start()

    def stop(self) -> None:
        if self.console.is_terminal:
            super().stop()

    def advance(self, task_id: TaskID, advance: float = 1) -> None:
        super().advance(task_id, advance)
        self._line(task_id)

    def update(self, task_id: TaskID, **kwargs) -> None:
        super().update(task_id, **kwargs)
        self._line(task_id)

    def _line(self, task_id: TaskID) -> None:
        if self.console.is_terminal or self.console.quiet:
            return
        with self._lock:
            task = self._tasks[task_id]
        now = time.monotonic()
        if not task.finished and now - self._said.get(task_id, -self.every) < self.every:
            return
        self._said[task_id] = now
        total = f"/{task.total:.0f}" if task.total else ""
        values = "".join(f" · {k} {v:.4g}" for k, v in task.fields.items() if isinstance(v, int | float))
        self.console.print(
            f"{task.description}: {task.completed:.0f}{total}{values} ({task.elapsed or 0:.0f} s)",
            highlight=False,
            soft_wrap=True,
        )
