"""SFT warm start before RL: supervised fine-tuning on the training task's gold solutions, so that RL starts
from a model that writes the task's answer format (and solves more problems) instead of from the base.

`layout: single` trains one adapter on the problems alone; `layout: pipeline` trains one adapter per role of a
TeamTR pipeline on the team's own prompt format (`pipeline_gold_records`), so that no role has to relearn the
answer format when it first reads its teammates' turns."""

from __future__ import annotations

import contextlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from rich.console import Console

from ..agents import ROLE_PROMPTS
from ..config import ConfigError
from ..tasks import Task
from . import sft
from .common import OptimSettings
from .data import gold_records, pipeline_gold_records

if TYPE_CHECKING:
    from .run import RunProcess


@dataclass
class WarmStart:
    problems: int = 512  # gold solutions drawn from the training split (all of it when smaller)
    epochs: int = 2
    optim: OptimSettings = field(default_factory=lambda: OptimSettings(lr=2e-4, warmup_steps=5))
    batch_tokens: int = 8192
    layout: Literal["single", "pipeline"] = "single"
    right: float = 0.5  # pipeline: how often an earlier role's turn is the gold solution
    # where the adapters go (default <run>/warm-start); runs naming one folder share one warm start: the first
    # trains it while the others wait, and they reuse it (the same roles, data and settings, checked)
    folder: str | None = None

    def validate(self) -> None:
        if self.problems < 1 or self.epochs < 1:
            raise ValueError("warm_start.problems and warm_start.epochs must be at least 1")
        if self.layout not in ("single", "pipeline"):
            raise ValueError(f"warm_start.layout must be single or pipeline, not {self.layout!r}")
        if not 0.0 <= self.right <= 1.0:
            raise ValueError(f"warm_start.right is a probability, not {self.right}")


def warm_adapters(ws: WarmStart, folder: Path, roles: list[str]) -> dict[str, Path]:
    """Role -> its warm-start adapter in `folder`: one shared adapter (`single`) or one per role (`pipeline`)."""
    return {r: folder / (r if ws.layout == "pipeline" else "agent") for r in roles}


def warm_folder(ws: WarmStart, out: Path) -> Path:
    return Path(ws.folder) if ws.folder else out / "warm-start"


def warm_start(
    run: RunProcess, cfg, task: Task, roles: list[str], prompt_role: str | None = None
) -> dict[str, Path]:
    """Train (or, when already trained, reuse) the run's warm-start adapters (`cfg.warm_start`, on `cfg.model`
    with `cfg.lora`) in `warm_folder`; every rank waits for them. Returns role -> adapter folder (`layout:
    single` trains one adapter for all of them, with `prompt_role`'s system prompt, default the first role's)."""
    ws, folder = cfg.warm_start, warm_folder(cfg.warm_start, run.out)
    if ws.folder and run.world > 1:
        raise ConfigError("warm_start.folder (a warm start shared by runs) needs single-process runs")
    prompt_role = prompt_role or roles[0]
    # what runs sharing a warm start must agree on (the seed is the first run's: it drew the problems)
    what = {"model": cfg.model, "task": asdict(cfg.task), "roles": roles, "lora": asdict(cfg.lora)}
    what["prompt_role"] = prompt_role
    what["warm_start"] = {k: v for k, v in asdict(ws).items() if k != "folder"}
    folder.mkdir(parents=True, exist_ok=True)
    with _held(folder / ".warm.lock") if ws.folder else contextlib.nullcontext():
        made = folder / "warm_start.json"
        if (folder / "train_metrics.json").is_file():
            held = json.loads(made.read_text()) if made.is_file() else None
            if ws.folder and held and {k: held.get(k) for k in what} != json.loads(json.dumps(what)):
                raise ConfigError(
                    f"warm_start.folder {folder} holds another warm start (roles, model, task or settings "
                    "differ, see its warm_start.json): name a folder of its own"
                )
        else:
            _warm_start(ws, task, cfg, roles, prompt_role, folder, run.device, run.console)
            made.write_text(json.dumps({**what, "seed": cfg.seed}, indent=1))
    run.acc.wait_for_everyone()
    return warm_adapters(ws, folder, roles)


@contextlib.contextmanager
def _held(path: Path):
    """An OS lock on `path` for the block (blocking: another process holding it is waited for)."""
    try:
        import fcntl
    except ImportError:  # Windows: no flock; shared warm starts are not guarded there
        yield
        return
    with path.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _warm_start(
    ws: WarmStart, task: Task, cfg, roles: list[str], prompt_role: str, folder: Path, device: str, console: Console
) -> None:  # fmt: skip
    model, lora, seed = cfg.model, cfg.lora, cfg.seed

    data = folder / "gold.jsonl"
    if ws.layout == "pipeline":
        records = pipeline_gold_records(task, roles, ws.problems, seed, ws.right)
    else:
        records = gold_records(task, ROLE_PROMPTS[prompt_role], ws.problems, seed)
    with data.open("w", encoding="utf-8") as f:
        for rec in records:
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    cfg = sft.SFTConfig(
        model=model, data=str(data), mode="roles" if ws.layout == "pipeline" else "single", lora=lora,
        optim=ws.optim, epochs=ws.epochs, batch_tokens=ws.batch_tokens, save_every=0, seed=seed, device=device,
        output=str(folder),
    )  # fmt: skip
    what = f"{len(roles)} roles' pipeline turns" if ws.layout == "pipeline" else "gold solutions"
    console.print(f"[bold]warm start[/]: SFT on {ws.problems} problems' {what} of {task.name} {task.split}")
    sft.train(cfg, console, eval_config=False)
