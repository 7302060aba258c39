"""What every reasoning task shares: problems, prompts, answer reading and checking, data sources."""

from __future__ import annotations

import os
import re
import socket
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from ..envs.base import Env
from ..records import DataError, check_messages, check_record, read_jsonl  # noqa: F401  (the tasks' names for them)

ANSWER_INSTRUCTION = "Think step by step, then finish with a line of the form 'The answer is X.'"


@dataclass
class Problem:
    id: str
    question: str  # the user-facing prompt body
    answer: str  # gold answer, canonical form
    meta: dict[str, Any] = field(default_factory=dict)


class Task(Env):
    """A list of problems plus how to prompt for, extract and check an answer: an Env of one step, which the
    layouts of `teamtune.team.Team` run over."""

    name = "task"
    layouts = ("single", "vote", "leader", "pipeline")
    instruction = ANSWER_INSTRUCTION
    stop: tuple[str, ...] = ()  # stop strings for every generation on this task (after the agents' own)
    max_new_tokens = 256  # the generation budget of agents that set none

    def __init__(self, problems: list[Problem], split: str):
        self.problems = problems
        self.split = split

    def prompt(self, problem: Problem) -> str:
        return f"{problem.question}\n\n{self.instruction}"

    def extract(self, text: str) -> str | None:
        """The canonical answer written in `text`, or None."""
        raise NotImplementedError

    def trim(self, text: str) -> str:
        """`text` up to the first of the task's stop strings (generation already stops there; this is for
        text from elsewhere)."""
        cut = min((text.find(s) for s in self.stop if s in text), default=-1)
        return text if cut < 0 else text[:cut]

    def is_correct(self, predicted: str | None, problem: Problem) -> bool:
        return predicted is not None and predicted == problem.answer

    def read_answer(self, text: str, problem: Problem) -> str | None:
        """The answer in `text` to `problem`: `extract`, unless what is valid differs between records (the
        letters of a multiple-choice record)."""
        return self.extract(text)

    def solution(self, problem: Problem) -> str:
        """A gold answer written as the instruction asks: the worked steps when the data has them, then the
        answer line (for supervised warm starts)."""
        steps = problem.meta.get("solution", "").strip()
        return f"{steps}\nThe answer is {problem.answer}." if steps else f"The answer is {problem.answer}."

    def solves(self, text: str, problem: Problem) -> bool:
        """Whether the answer in `text` is right: what accuracy counts (a reward may give partial credit)."""
        return self.is_correct(self.read_answer(text, problem), problem)

    def reward(self, text: str, problem: Problem) -> float:
        return float(self.solves(text, problem))

    def team(self, cfg, pool=None):
        from ..team import Team

        return Team(cfg, pool)


def best_constant(problems: Iterable[Problem]) -> tuple[str, float]:
    """The most frequent gold answer and the share of `problems` it is: what always giving one answer scores
    (the floor a multiple-choice model must beat before its accuracy says anything)."""
    counts = Counter(p.answer for p in problems)
    if not counts:
        raise ValueError("best_constant needs at least one problem")
    answer, n = counts.most_common(1)[0]
    return answer, n / counts.total()


LOCAL_PLACES = "task.source, $TEAMTUNE_DATA/<task>, shared/datasets/<task> in the working folder or above"
SAMPLE_DIR = Path(__file__).resolve().parent.parent / "assets" / "data"  # task.source=sample


def load_hub(name: str, config: str | None, split: str) -> list[dict]:
    """Records of a Hugging Face `datasets` dataset (for online users)."""
    looked = f"no local copy was found (looked in {LOCAL_PLACES})"
    try:
        import datasets
    except ImportError:  # pragma: no cover - datasets is a dependency
        raise DataError(f"{looked}, and reading {name!r} from the hub needs the `datasets` package") from None
    hint = "set task.source to a local file or folder (task.source=sample: the small sample teamtune ships)"
    if not datasets.config.HF_HUB_OFFLINE and not hub_reachable():  # offline, datasets fails at once itself
        raise DataError(f"{looked}, and the Hugging Face hub cannot be reached to read {name!r}: {hint}")
    try:
        ds = datasets.load_dataset(name, config, split=split)
    except Exception as e:  # datasets raises many kinds; all mean the same to the user
        msg = " ".join(str(e).split())
        raise DataError(
            f"could not load hub dataset {name!r} (config {config!r}, split {split!r}): {msg}; {looked}: {hint}"
        ) from None
    return [dict(r) for r in ds]


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the hub's host answers a TCP connection within `timeout` s (`datasets` itself retries for ~30 s)."""
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        socket.create_connection((host.hostname, host.port or 443), timeout=timeout).close()
    except OSError:
        return False
    return True


def default_data_dir() -> Path | None:
    """Local dataset folder: $TEAMTUNE_DATA, else shared/datasets in the working folder or any folder above it."""
    env = os.environ.get("TEAMTUNE_DATA")
    if env:
        return Path(env)
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / "shared" / "datasets").is_dir():
            return folder / "shared" / "datasets"
    return None


_NUM = r"-?\$?\d[\d,]*(?:\.\d+)?"


def last_answer_span(text: str) -> str | None:
    """The text after the last 'answer is', else in the last \\boxed{}, else None."""
    starts = [m.end() for m in re.finditer(r"answer is[:\s]*", text, flags=re.IGNORECASE)]
    if starts:  # the last statement, also when a line holds two
        return text[starts[-1] :].split("\n", 1)[0].strip()
    return last_boxed(text)


def last_boxed(text: str) -> str | None:
    """Content of the last \\boxed{...} (or \\fbox{...}), braces balanced."""
    start = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if start < 0:
        return None
    i = text.find("{", start)
    if i < 0:
        return None
    depth = 0
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i + 1 : j]
    return None


def canonical_number(s: str) -> str | None:
    """'$1,234.50' -> '1234.5'; None when s holds no number."""
    m = re.findall(_NUM, s)
    if not m:
        return None
    raw = m[0].replace("$", "").replace(",", "")
    try:
        val = float(raw)
    except ValueError:
        return None
    return str(int(val)) if val == int(val) else repr(val)


def last_number(text: str) -> str | None:
    nums = re.findall(_NUM, text)
    return canonical_number(nums[-1]) if nums else None
