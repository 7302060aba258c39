"""The skeleton every recipe shares around its loop: `RunProcess.open` before it (accelerator, this process's
place, console, run folder, seed), `close` after it (weights digest per rank, log, the trained weights,
train_metrics.json, the eval configs). The loop between them is the recipe's algorithm."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from accelerate import Accelerator
from rich.console import Console

from ..config import ConfigError
from ..console import RunConsole
from ..costs import Cost, peak_memory, reset_peak_memory
from ..evaluate import release_folder, write_json
from .common import (
    RunLog,
    accelerator,
    end_step,
    process_device,
    record_rank_weights,
    run_folder,
    save_checkpoint,
    seed_everything,
)


@dataclass
class RunProcess:
    """This process's part of a run: accelerate's view of the launch group (one process, or a rank of a
    torchrun / accelerate launch group), the device it loads on, a console only rank 0 prints to, the run
    folder."""

    acc: Accelerator
    console: Console
    device: str
    out: Path

    @property
    def world(self) -> int:
        return self.acc.num_processes

    @property
    def rank(self) -> int:
        return self.acc.process_index

    @property
    def main(self) -> bool:
        return self.acc.is_main_process

    @classmethod
    def open(
        cls,
        cfg,
        name: str,
        console: Console | None = None,
        share: tuple[str, int] | None = None,
        find_unused_parameters: bool = False,
        folder: Path | None = None,
    ) -> RunProcess:
        """Seed, take this process's place, check that `share` = (key, problems) splits evenly over the
        processes, and open the run folder (`folder`, or cfg.output / runs/<name>-<time>, with config.yaml)."""
        seed_everything(cfg.seed)
        acc = accelerator(cfg.device, find_unused_parameters)
        reset_peak_memory()  # after accelerate has set this rank's GPU, so no rank touches another's
        if share and share[1] % acc.num_processes:
            raise ConfigError(
                f"{share[0]} ({share[1]}) must be a multiple of the {acc.num_processes} processes"
            )
        console = (console or RunConsole()) if acc.is_main_process else Console(quiet=True)
        out = folder or run_folder(cfg.output, name, cfg if acc.is_main_process else None)
        return cls(acc, console, process_device(acc, cfg.device), out)

    def log(self, start: int) -> RunLog | None:
        """The step log, continued from row `start` (rank 0 only)."""
        return RunLog(self.out, start) if self.main else None

    def step_done(self, row: dict, log: RunLog | None, step: int, total: int, every: int, state: tuple, stop_after,
                  start: int) -> None:  # fmt: skip
        """After step `step` of `total`: its log row (rank 0), a checkpoint of `state` = (model, optimiser,
        scheduler, counters) every `every` steps and at the end (rank 0), the stop of `stop_after` (tests)."""
        if self.main:
            log.write(row)
        save = functools.partial(save_checkpoint, self.out, step, *state) if self.main else None
        end_step(step, total, every, save, stop_after, start, [log])

    def close(
        self,
        model,
        log: RunLog | None,
        save: Callable[[], object],
        stats: dict,
        evals: Callable[[], None] | None = None,
        release: bool = True,
    ) -> bool:
        """After the loop: every rank's weights digest; then on rank 0 the log closed, `save()` (the trained
        weights), train_metrics.json (`stats` and the peak memory), `evals()` (the eval configs) and the
        folder released. Whether this process wrote them (rank 0)."""
        record_rank_weights(self.acc, self.out, model)
        if not self.main:
            return False
        if log:
            log.close()
        save()
        stats["peak_memory_bytes"] = peak_memory()  # the whole run (CUDA: torch's allocations)
        write_json(self.out / "train_metrics.json", stats)
        if evals:
            evals()
        if release:
            release_folder(self.out)
        return True


def count_rollout(counters: dict, costs: Iterable[Cost]) -> None:
    """Add the generated tokens and FLOPs of these calls to a recipe's rollout counters."""
    costs = list(costs)
    counters["rollout_tokens"] += sum(c.generated_tokens for c in costs)
    counters["rollout_flops"] += sum(c.flops for c in costs)
