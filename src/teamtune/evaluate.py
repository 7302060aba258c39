"""`teamtune eval`: run a team on a task split and write episodes, metrics and a table."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from .agents import Episode, ModelPool
from .config import ConfigError, save_config
from .console import RunConsole, RunProgress
from .costs import Cost, peak_memory, reset_peak_memory, total
from .models import adapter_parameters
from .records import outcomes
from .rollout import DEFAULT_MAX_NEW_TOKENS
from .tasks import TaskConfig, check_layout, load_task
from .team import TeamConfig


@dataclass
class EvalConfig:
    task: TaskConfig = field(default_factory=TaskConfig)
    team: TeamConfig = field(default_factory=TeamConfig)
    output: str | None = None  # run folder; default runs/<time>-<task>-<layout>
    label: str | None = None  # how plots and reports name this run; default "<layout> (<model>)"
    # how the agents were trained, for reports (untrained, sft, prost, mlpo, teamtr)
    method: str = "untrained"
    price_per_million_tokens: dict[str, float] = field(default_factory=dict)  # by model name, in USD

    def validate(self) -> None:
        check_layout(self.task.name, self.team.layout)


def progress_bar(console: Console | None = None) -> Progress:
    return RunProgress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )


def run_eval(
    cfg: EvalConfig, console: Console | None = None, pool: ModelPool | None = None
) -> tuple[Path, dict]:
    """Run `cfg`; write config.yaml, episodes.jsonl and metrics.json to the run folder; return it and the metrics."""
    console = console or RunConsole()
    try:
        cfg.validate()
    except ValueError as e:
        raise ConfigError(str(e)) from None
    task = load_task(cfg.task)
    budget = getattr(task, "max_new_tokens", DEFAULT_MAX_NEW_TOKENS)
    cfg.team.validate()  # the layout's default agents, when none are given
    for a in cfg.team.agents:  # agents that set no budget get the task's, recorded in config.yaml
        if a.sampling.max_new_tokens is None:
            a.sampling = replace(a.sampling, max_new_tokens=budget)
    out = Path(cfg.output or f"runs/{time.strftime('%Y%m%d-%H%M%S')}-{cfg.task.name}-{cfg.team.layout}")
    out.mkdir(parents=True, exist_ok=True)
    claim_folder(out)
    try:
        return _run_eval(cfg, task, console, pool, out)
    finally:
        release_folder(out)


def _run_eval(
    cfg: EvalConfig, task, console: Console, pool: ModelPool | None, out: Path
) -> tuple[Path, dict]:
    save_config(cfg, out / "config.yaml")
    with progress_bar(console) as progress:
        if pool is None:
            pool = ModelPool(
                cfg.team.device,
                cfg.team.dtype,
                cfg.team.batch_size,
                cfg.team.seed,
                progress,
                decode=cfg.team.decode,
            )
        pool.progress = progress
        for engine in pool.engines.values():
            engine.progress = progress
        t0 = time.perf_counter()
        team = task.team(cfg.team, pool)
        load_seconds = time.perf_counter() - t0
        models = {a.name: a.engine.loaded.name for a in team.agents}
        missing = sorted(set(models.values()) - set(cfg.price_per_million_tokens))
        if cfg.price_per_million_tokens and missing:  # checked before the run, so no run is lost to it
            raise ConfigError(f"price_per_million_tokens has no price for model {missing[0]!r}")
        reset_peak_memory()
        t0 = time.perf_counter()
        episodes = team.run(task)
        wall = time.perf_counter() - t0
    records = [ep.to_dict() for ep in episodes]
    write_jsonl(out / "episodes.jsonl", records)
    write_json(out / "outcomes.json", outcomes(records, task))
    metrics = summarize(episodes, wall)
    metrics.update(task.metrics(episodes))
    agents = {
        a.name: {
            "model": models[a.name],
            "base_parameters": a.engine.loaded.num_parameters,
            "adapter_parameters": adapter_parameters(a.engine.model, a.adapter),
        }
        for a in team.agents
    }
    metrics.update(
        task=cfg.task.name,
        split=cfg.task.split,
        layout=cfg.team.layout,
        model=cfg.team.model,
        method=cfg.method,
        label=cfg.label or f"{cfg.team.layout} ({cfg.team.model})",
        seed=cfg.team.seed,
        load_seconds=load_seconds,
        peak_memory_bytes=peak_memory(),
        agents=agents,
        # the weights held in memory: each base once, each adapter apart
        parameters=sum(e.loaded.num_parameters for e in pool.engines.values())
        + sum(a["adapter_parameters"] for a in agents.values()),
    )
    usd = money_cost(metrics["per_agent"], agents, cfg.price_per_million_tokens)
    if usd is not None:
        metrics["usd_per_problem"] = usd / metrics["n"]
    write_json(out / "metrics.json", metrics)
    return out, metrics


def money_cost(per_agent: dict, agents: dict, prices: dict[str, float]) -> float | None:
    """USD for the run's tokens at the user's price per million tokens of each model; None without prices."""
    if not prices:
        return None
    return sum(
        (c["prompt_tokens"] + c["generated_tokens"]) / 1e6 * prices[agents[name]["model"]]
        for name, c in per_agent.items()
    )


def summarize(episodes: list[Episode], wall_seconds: float) -> dict:
    """Accuracy and per-problem costs of a run, in total and per agent."""
    n = len(episodes)
    cost = total(ep.cost for ep in episodes)
    per_agent: dict[str, Cost] = {}
    for ep in episodes:
        for name, c in ep.cost_by_agent().items():
            per_agent[name] = per_agent.get(name, Cost()) + c
    turns = [t for ep in episodes for t in ep.turns]
    cut: dict[str, int] = {}  # turns that ran out of their budget before they finished, by agent
    for t in turns:
        cut[t.agent] = cut.get(t.agent, 0) + (t.finish == "length")
    return {
        "n": n,
        "accuracy": sum(ep.correct for ep in episodes) / n,
        "answered": sum(ep.answer is not None for ep in episodes) / n,
        "cut_by_budget": sum(cut.values()) / max(len(turns), 1),  # share of all turns
        "cut_turns": cut,
        "tokens_per_problem": cost.tokens / n,
        "generated_tokens_per_problem": cost.generated_tokens / n,
        "flops_per_problem": cost.flops / n,
        "seconds_per_problem": wall_seconds / n,
        "wall_seconds": wall_seconds,
        "generated_tokens_per_second": cost.generated_tokens / wall_seconds if wall_seconds else 0.0,
        "total": cost.to_dict(),
        "per_agent": {k: v.to_dict() for k, v in per_agent.items()},
    }


def results_table(rows: list[tuple[str, dict]], title: str = "teamtune") -> Table:
    """A table of accuracy and efficiency, one row per (label, metrics)."""
    table = Table(title=title)
    for col in ("run", "accuracy", "answered", "cut", "tokens/prob", "GFLOPs/prob", "s/prob"):
        table.add_column(col, justify="left" if col == "run" else "right")
    for label, m in rows:
        table.add_row(
            label,
            f"{m['accuracy']:.1%}  ({round(m['accuracy'] * m['n'])}/{m['n']})",
            f"{m['answered']:.0%}",
            f"{m['cut_by_budget']:.0%}" if "cut_by_budget" in m else "",
            f"{m['tokens_per_problem']:.0f}",
            f"{m['flops_per_problem'] / 1e9:.1f}",
            f"{m['seconds_per_problem']:.2f}",
        )
    return table


def apps_table(m: dict) -> Table:
    """Sub-task error rates of an apps run, by position and by kind."""
    table = Table(
        title=f"task goal completion {m['task_goal_completion']:.1%}, "
        f"sub-task errors {m['subtask_error_rate']:.1%}, {m['steps_per_task']:.1f} API calls/task"
    )
    table.add_column("sub-task")
    table.add_column("error rate", justify="right")
    for k, v in m["subtask_error_by_position"].items():
        table.add_row(f"position {k}", f"{v:.1%}")
    for k, v in m["subtask_error_by_kind"].items():
        table.add_row(f"kind {k}", f"{v:.1%}")
    return table


_CLAIMED: dict[Path, object] = {}  # run folders this process holds: resolved path -> open lock file


def claim_folder(folder: Path) -> None:
    """Hold `folder` for this process (an OS lock on folder/.lock, freed when the process ends or is killed);
    ConfigError when another process holds it, so two runs never write one folder. Claiming again is a no-op."""
    key = folder.resolve()
    if key in _CLAIMED:
        return
    try:
        import fcntl
    except ImportError:  # Windows: no flock; runs there are not guarded
        return
    f = (folder / ".lock").open("a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.seek(0)
        pid = f.read().strip() or "?"
        f.close()
        raise ConfigError(
            f"{folder} is in use by another teamtune process (pid {pid}): wait for it to end, "
            "or choose another output"
        ) from None
    f.seek(0)
    f.truncate()
    f.write(str(os.getpid()))
    f.flush()
    _CLAIMED[key] = f


def release_folder(folder: Path) -> None:
    f = _CLAIMED.pop(folder.resolve(), None)
    if f is not None:
        f.close()  # closing the file frees the lock


def _tmp(path: Path) -> Path:
    """A temporary name beside `path` that no other process writing `path` shares."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def _json_line(record: dict) -> str:
    """One JSON line, readable UTF-8; text a model wrote with a lone surrogate (no UTF-8 form) is escaped."""
    line = json.dumps(record, ensure_ascii=False)
    try:
        line.encode("utf-8")
    except UnicodeEncodeError:
        line = json.dumps(record)
    return line


def write_jsonl(path: Path, records: list[dict]) -> None:
    """One JSON line per record, written whole or not at all."""
    _write_whole(path, "".join(_json_line(r) + "\n" for r in records))


def write_json(path: Path, data: dict) -> None:
    """`data` as JSON, written whole or not at all."""
    _write_whole(path, json.dumps(data, indent=2))


def _write_whole(path: Path, text: str) -> None:
    """Write beside `path`, then rename: a killed run never leaves half a file, a full disk no leftover."""
    tmp = _tmp(path)
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError):  # name the file the user asked for, not the temporary one
            raise OSError(e.errno, e.strerror, str(path)) from e
        raise
