"""SFT warm start before RL: supervised fine-tuning on the training task's gold solutions, so that RL starts
from a model that writes the task's answer format (and solves more problems) instead of from the base."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

from ..tasks import Task
from .common import LoraSettings, OptimSettings
from .data import gold_records

if TYPE_CHECKING:
    from .run import RunProcess


@dataclass
class WarmStart:
    problems: int = 512  # gold solutions drawn from the training split (all of it when smaller)
    epochs: int = 2
    optim: OptimSettings = field(default_factory=lambda: OptimSettings(lr=2e-4, warmup_steps=5))
    batch_tokens: int = 8192

    def validate(self) -> None:
        if self.problems < 1 or self.epochs < 1:
            raise ValueError("warm_start.problems and warm_start.epochs must be at least 1")


def warm_start(run: RunProcess, cfg, task: Task, system_prompt: str) -> Path:
    """Train (or, when already trained, reuse) the run's warm-start adapter (`cfg.warm_start`, on `cfg.model`
    with `cfg.lora`) in <run>/warm-start; every rank waits for it. Returns the adapter folder."""
    folder = _warm_start(
        cfg.warm_start, task, cfg.model, cfg.lora, system_prompt, run.out / "warm-start", cfg.seed, run.device,
        run.console,
    )  # fmt: skip
    run.acc.wait_for_everyone()
    return folder


def _warm_start(
    ws: WarmStart, task: Task, model: str, lora: LoraSettings, system_prompt: str, folder: Path, seed: int,
    device: str, console: Console,
) -> Path:  # fmt: skip
    from . import sft

    if not (folder / "train_metrics.json").is_file():
        folder.mkdir(parents=True, exist_ok=True)
        data = folder / "gold.jsonl"
        with data.open("w", encoding="utf-8") as f:
            for rec in gold_records(task, system_prompt, ws.problems, seed):
                f.write(json.dumps(rec, ensure_ascii=False) + "\n")
        cfg = sft.SFTConfig(
            model=model, data=str(data), mode="single", lora=lora, optim=ws.optim, epochs=ws.epochs,
            batch_tokens=ws.batch_tokens, save_every=0, seed=seed, device=device, output=str(folder),
        )  # fmt: skip
        console.print(f"[bold]warm start[/]: SFT on {ws.problems} gold solutions of {task.name} {task.split}")
        sft.train(cfg, console, eval_config=False)
    return folder / "agent"
