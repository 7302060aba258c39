"""Reasoning tasks (GSM8K, MATH, BIG-Bench Hard, MMLU-style multiple choice, reasoning-gym) from local files or
the hub, and `load_task`, which builds any Env by name (the apps world too)."""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..envs.apps.team import AppsTaskSet
from ..envs.base import Env
from .base import (
    SAMPLE_DIR,
    DataError,
    Problem,
    Task,
    best_constant,
    check_record,
    default_data_dir,
    load_hub,
    read_jsonl,
)
from .bbh import BBH, split_examples
from .gsm8k import GSM8K
from .gym import DEFAULT_SIZE, Gym
from .math import MATH
from .mmlu import MMLU

TASKS: dict[str, type[Task]] = {t.name: t for t in (GSM8K, MATH, BBH, MMLU, Gym)}
# every Env `load_task` builds: the reasoning tasks, read from records, and the worlds that build themselves
ENVS: dict[str, type[Env]] = {**TASKS, AppsTaskSet.name: AppsTaskSet}

__all__ = [
    "ENVS",
    "TASKS",
    "DataError",
    "Env",
    "Problem",
    "Task",
    "TaskConfig",
    "best_constant",
    "check_layout",
    "load_task",
]


@dataclass
class TaskConfig:
    # gsm8k | math | bbh | mmlu | gym (reasoning-gym, generated) | apps (the apps world: train, dev, test, test_unseen)
    name: str = "gsm8k"
    split: str = "test"
    # a local file or folder, a hub dataset name, or `sample` (the small sample teamtune ships);
    # default: $TEAMTUNE_DATA/<task>, else shared/datasets/<task> in the working folder or above, else the hub
    source: str | None = None
    # BBH task names (comma separated; default all 27), an MMLU subject, or reasoning-gym datasets (comma separated)
    subset: str | None = None
    limit: int | None = None  # keep N problems, as `sample` says
    # first: the file's first N (earlier results reproduce); random: N drawn with sample_seed across the whole
    # file, kept in file order (for files ordered by subject, as cais/mmlu's test split is)
    sample: Literal["first", "random"] = "first"
    sample_seed: int = 0
    shuffle_seed: int | None = None  # shuffle the problems' order (before `limit` takes the first N)
    # BBH: worked examples (0-3) from cot-prompts/<task>.txt before each question, as in the paper
    shots: int = 0
    # what follows each question (default: the task's own, e.g. think step by step)
    instruction: str | None = None
    # gym: each dataset's generator settings (its difficulty), e.g. {chain_sum: {min_terms: 2, max_terms: 3}}
    gym: dict[str, dict[str, Any]] = field(default_factory=dict)

    def validate(self) -> None:
        if self.name not in ENVS:
            raise ValueError(f"unknown task {self.name!r} (known: {', '.join(ENVS)})")
        if self.limit is not None and self.limit < 1:
            raise ValueError("limit must be at least 1")
        if not 0 <= self.shots <= 3 or (self.shots and self.name != "bbh"):
            raise ValueError("shots is 0-3 and only for bbh (its 3-shot chain-of-thought prompts)")
        if self.name == "gym" and not self.subset:
            raise ValueError(
                "task gym needs subset: one or more reasoning-gym datasets, e.g. subset=chain_sum"
            )
        if self.gym and self.name != "gym":
            raise ValueError("gym (generator settings) is only for task gym")


def check_layout(task: str, layout: str) -> None:
    """ValueError unless the Env named `task` runs `layout` (unknown names are TaskConfig.validate's to name)."""
    env = ENVS.get(task)
    if env is None or layout in env.layouts:
        return
    msg = f"{env.called()} runs the layouts {', '.join(env.layouts)}, not {layout!r}"
    homes = [e for e in ENVS.values() if layout in e.layouts]
    if len(homes) == 1:
        msg += f"; {layout!r} runs in {homes[0].called()} only (task.name={homes[0].name})"
    raise ValueError(msg)


def load_task(cfg: TaskConfig) -> Env:
    """Read the problems of `cfg` and wrap them in their Env (a Task for the reasoning tasks)."""
    task = _load(cfg)
    if cfg.instruction is not None:
        task.instruction = cfg.instruction
    return task


def _load(cfg: TaskConfig) -> Env:
    cfg.validate()
    if cfg.name not in TASKS:  # a world that builds its own tasks
        return ENVS[cfg.name].from_config(cfg)
    cls = TASKS[cfg.name]
    if cls is Gym:  # generated: the split and size decide the problems
        names = [s.strip() for s in cfg.subset.split(",") if s.strip()]
        task = Gym.generate(names, cfg.gym, cfg.split, cfg.limit or DEFAULT_SIZE)
        if cfg.shuffle_seed is not None:
            random.Random(cfg.shuffle_seed).shuffle(task.problems)
        return task
    problems = _bbh_problems(cfg) if cls is BBH else _record_problems(cls, cfg)
    if cfg.shuffle_seed is not None:
        random.Random(cfg.shuffle_seed).shuffle(problems)
    if cfg.limit is not None and cfg.sample == "random" and cfg.limit < len(problems):
        keep = sorted(random.Random(cfg.sample_seed).sample(range(len(problems)), cfg.limit))
        problems = [problems[i] for i in keep]
    elif cfg.limit is not None:
        problems = problems[: cfg.limit]
    if not problems:
        raise DataError(f"task {cfg.name} split {cfg.split!r} has no problems")
    return cls(problems, cfg.split)


def _local_root(cfg: TaskConfig) -> Path | None:
    """Where the task's local files are, or None to read from the hub."""
    if cfg.source == "sample":
        if not (SAMPLE_DIR / cfg.name).is_dir():
            have = ", ".join(sorted(p.name for p in SAMPLE_DIR.iterdir() if p.is_dir()))
            raise DataError(f"teamtune ships no sample of task {cfg.name!r} (samples: {have})")
        return SAMPLE_DIR / cfg.name
    if cfg.source is not None:
        path = Path(cfg.source).expanduser()
        if path.exists():
            return path
        if "/" in cfg.source and not cfg.source.startswith((".", "/", "~")):
            return None  # looks like a hub name, e.g. openai/gsm8k
        raise DataError(f"dataset path not found: {cfg.source}")
    data = default_data_dir()
    if data is not None and (data / cfg.name).exists():
        return data / cfg.name
    return None


def _record_problems(cls, cfg: TaskConfig) -> list[Problem]:
    root = _local_root(cfg)
    if root is None:
        name, config = (cfg.source, None) if cfg.source else cls.hub
        config = cfg.subset or config
        records = [(f"{name}[{i}]", r) for i, r in enumerate(load_hub(name, config, cfg.split))]
        for where, rec in records:
            check_record(rec, cls.fields, where, cls.text_fields)
    else:
        path = root / f"{cfg.split}.jsonl" if root.is_dir() else root
        if root.is_dir() and not path.is_file():
            have = ", ".join(sorted(p.stem for p in root.glob("*.jsonl"))) or "none"
            raise DataError(f"{root}: no {cfg.split}.jsonl for split {cfg.split!r} (splits here: {have})")
        records = read_jsonl(path, cls.fields, cls.text_fields)
    if cls is MMLU and cfg.subset:
        records = [(w, r) for w, r in records if r.get("subject") == cfg.subset]
    return [_problem(cls.problem, where, rec, i) for i, (where, rec) in enumerate(records)]


def _problem(make, where: str, rec: dict, index: int, *args) -> Problem:
    try:
        return make(rec, index, *args)
    except (ValueError, TypeError, AttributeError) as e:
        raise DataError(f"{where}: {e}") from None


def _bbh_problems(cfg: TaskConfig) -> list[Problem]:
    root = _local_root(cfg)
    if root is not None and root.is_dir() and (root / "tasks").is_dir():
        root = root / "tasks"
    available = sorted(p.stem for p in root.glob("*.json")) if root is not None and root.is_dir() else []
    names = [s.strip() for s in cfg.subset.split(",")] if cfg.subset else available
    if root is None and not names:
        raise DataError(
            "reading BBH from the hub needs subset: the task name(s), e.g. subset=date_understanding"
        )
    problems = []
    for task in names:
        shots = _bbh_shots(root, task, cfg.shots) if cfg.shots else ""
        if root is None:
            examples = [
                (f"{cfg.source or BBH.hub[0]}/{task}[{i}]", r)
                for i, r in enumerate(load_hub(cfg.source or BBH.hub[0], task, "test"))
            ]
        else:
            path = root if root.is_file() else root / f"{task}.json"
            if not path.is_file():
                raise DataError(
                    f"BBH task file not found: {path} (tasks here: {', '.join(available) or 'none'})"
                )
            examples = _bbh_file(path)
        try:
            chosen = split_examples(examples, cfg.split)
        except ValueError as e:
            raise DataError(str(e)) from None
        for i, (where, rec) in chosen:
            check_record(rec, BBH.fields, where, BBH.text_fields)
            problems.append(_problem(BBH.problem, where, rec, i, task, shots))
    return problems


def _bbh_shots(root: Path | None, task: str, n: int) -> str:
    """The task's description and first `n` worked examples from BBH's cot-prompts/<task>.txt."""
    folder = root.parent / "cot-prompts" if root is not None else None
    path = folder / f"{task}.txt" if folder is not None else None
    if path is None or not path.is_file():
        raise DataError(
            f"shots={n} needs BBH's chain-of-thought prompts: {path or 'cot-prompts/<task>.txt'} not found "
            "(get cot-prompts/ from github.com/suzgunmirac/BIG-Bench-Hard and set task.source to the folder "
            "holding tasks/ and cot-prompts/)"
        )
    text = path.read_text(encoding="utf-8").split("-----", 1)[-1].strip()
    head, *examples = re.split(r"\n\n(?=Q: )", text)
    if len(examples) < n:
        raise DataError(f"{path}: has {len(examples)} worked examples, shots={n} asks for more")
    return "\n\n".join([head, *examples[:n]])


def _bbh_file(path: Path) -> list[tuple[str, dict]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None
    if not isinstance(data, dict) or not isinstance(data.get("examples"), list):
        raise DataError(f"{path}: expected an object with an 'examples' list")
    return [(f"{path} example {i}", r) for i, r in enumerate(data["examples"])]
