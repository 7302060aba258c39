"""Procedural reasoning tasks from `reasoning-gym`, with a difficulty knob: generated problems, its verifiers.

`task.subset` names one or more of its datasets (comma separated), `task.gym` their generator settings, e.g.
`{chain_sum: {min_terms: 2, max_terms: 3, max_digits: 2}}`. Every split draws from the same generator stream
but keeps only the problems whose question text hashes into the split's share (train 80%, dev 10%, test 10%),
so train and test never share a problem, whatever their sizes.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import re
from typing import Any

from .base import DataError, Problem, Task, last_answer_span

SPLITS = {"train": range(0, 80), "dev": range(80, 90), "test": range(90, 100)}  # question-hash buckets
GENERATOR_SEED = 20_251_202
DEFAULT_SIZE = 500  # problems per split when task.limit is unset
MAX_DRAWS = 50  # draws per kept problem before a too-small problem space is reported


def _gym():
    try:
        import reasoning_gym
        from reasoning_gym.factory import DATASETS
    except ImportError as e:
        lacks = "" if (e.name or "").startswith("reasoning_gym") else f" (it failed to import {e.name or e})"
        raise DataError(
            f"task gym needs the reasoning-gym package{lacks}: pip install 'teamtune[gym]' (or reasoning-gym)"
        ) from None
    return reasoning_gym, DATASETS


def bucket(question: str) -> int:
    """A stable 0-99 bucket of a question (the same on every machine and Python)."""
    return int.from_bytes(hashlib.sha256(question.encode("utf-8")).digest()[:8], "big") % 100


def make_dataset(name: str, settings: dict[str, Any], size: int):
    """reasoning-gym's generator `name` with `settings`; DataError naming a wrong dataset, key or value."""
    reasoning_gym, datasets = _gym()
    if name not in datasets:
        close = difflib.get_close_matches(name, list(datasets), n=3)
        hint = f"did you mean {', '.join(close)}?" if close else f"{len(datasets)} datasets, e.g. chain_sum"
        raise DataError(f"unknown reasoning-gym dataset {name!r} ({hint})")
    keys = {f.name for f in dataclasses.fields(datasets[name][1])} - {"seed", "size"}
    unknown = sorted(set(settings) - keys)
    if unknown:
        raise DataError(
            f"task.gym.{name}: unknown setting {unknown[0]!r} (settings of {name}: {', '.join(sorted(keys))})"
        )
    try:
        return reasoning_gym.create_dataset(name, seed=GENERATOR_SEED, size=size, **settings)
    except (AssertionError, ValueError, TypeError) as e:
        raise DataError(f"task.gym.{name}: settings {settings} are not valid: {e or 'rejected'}") from None


class Gym(Task):
    name = "gym"

    def __init__(self, problems: list[Problem], split: str, datasets: dict | None = None):
        super().__init__(problems, split)
        self.datasets = datasets or {}  # name -> the generator, whose score_answer verifies

    @classmethod
    def generate(cls, names: list[str], settings: dict[str, dict], split: str, size: int) -> Gym:
        """`size` problems of `split`, shared out evenly over `names` (round-robin)."""
        if split not in SPLITS:
            raise DataError(f"gym split must be one of {', '.join(SPLITS)}, not {split!r}")
        stray = sorted(set(settings) - set(names))
        if stray:
            raise DataError(f"task.gym has settings for {stray[0]!r}, which task.subset does not name")
        datasets, per = {}, []
        for k, name in enumerate(names):
            want = size // len(names) + (k < size % len(names))
            datasets[name] = ds = make_dataset(name, settings.get(name, {}), want * MAX_DRAWS)
            per.append(_draw(ds, name, split, want))
        n = min(len(group) for group in per)
        problems = [p for row in zip(*per, strict=False) for p in row] + [p for g in per for p in g[n:]]
        return cls(problems, split, datasets)

    def prompt(self, problem: Problem) -> str:
        return f"{problem.question}\n\n{self.instruction}"

    def extract(self, text: str) -> str | None:
        span = last_answer_span(text)
        if span is None:
            return None
        span = span.split("\n")[0].strip()
        span = re.sub(r"^\*+|\*+$", "", span).strip()
        return span[:-1].strip() if span.endswith(".") else span

    def score(self, predicted: str | None, problem: Problem) -> float:
        """reasoning-gym's own verifier: 1.0 right, partial credit for some datasets, 0.0 wrong."""
        if predicted is None:
            return 0.0
        ds = self.datasets[problem.meta["dataset"]]
        entry = {"question": problem.question, "answer": problem.answer, "metadata": problem.meta["metadata"]}
        return float(ds.score_answer(predicted, entry))

    def is_correct(self, predicted: str | None, problem: Problem) -> bool:
        return self.score(predicted, problem) >= 1.0

    def reward(self, text: str, problem: Problem) -> float:
        return self.score(self.read_answer(text, problem), problem)


def _draw(ds, name: str, split: str, want: int) -> list[Problem]:
    """The first `want` distinct problems of `ds` that fall into `split`."""
    keep, seen = SPLITS[split], set()
    problems = []
    for i in range(len(ds)):
        entry = ds[i]
        q = entry["question"]
        if q in seen or bucket(q) not in keep:
            continue
        seen.add(q)
        meta = {"dataset": name, "metadata": entry.get("metadata", {})}
        problems.append(Problem(f"gym-{name}-{split}-{len(problems)}", q, str(entry["answer"]), meta))
        if len(problems) == want:
            return problems
    raise DataError(
        f"gym dataset {name}: only {len(problems)} distinct {split} problems in {len(ds)} draws at these "
        f"settings, {want} asked: widen the settings or ask fewer (task.limit)"
    )
