"""The console teamtune prints to: rich's, except that a closed stdout pipe does not end the work."""

from __future__ import annotations

import os
import sys

from rich.console import Console


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
