"""BIG-Bench Hard: 27 tasks of `{"input", "target"}` examples, exact-match answers."""

from __future__ import annotations

import random
import re

from .base import Problem, Task, last_answer_span

TRAIN_FRACTION = 0.4  # per task, after a fixed shuffle: the first 40% are `train`, the rest `test`
SPLIT_SEED = 1234


def split_examples(examples: list, split: str) -> list[tuple[int, dict]]:
    """`all`, or a fixed per-task `train`/`test` split (same shuffle everywhere, disjoint)."""
    indexed = list(enumerate(examples))
    if split == "all":
        return indexed
    if split not in ("train", "test"):
        raise ValueError(f"BBH split must be all, train or test, not {split!r}")
    random.Random(SPLIT_SEED).shuffle(indexed)
    cut = int(len(indexed) * TRAIN_FRACTION)
    return indexed[:cut] if split == "train" else indexed[cut:]


def normalize(ans: str) -> str:
    ans = ans.strip().strip("*").strip()
    m = re.match(r"^\(?([A-R])\)(?:\s|$)", ans)
    if m:
        return f"({m.group(1)})"
    return re.sub(r"\s+", " ", ans.rstrip(".").strip()).lower()


class BBH(Task):
    name = "bbh"
    fields = ("input", "target")
    text_fields = fields
    hub = ("lukaemon/bbh", None)
    stop = ("\nQ: ",)  # a few-shot completion that starts a question of its own is done

    @classmethod
    def problem(cls, rec: dict, index: int, subtask: str = "", shots: str = "") -> Problem:
        meta = {"subtask": subtask, "shots": shots} if shots else {"subtask": subtask}
        return Problem(
            id=f"bbh-{subtask}-{index}",
            question=rec["input"],
            answer=normalize(rec["target"]),
            meta=meta,
        )

    def prompt(self, problem: Problem) -> str:
        """Zero-shot: question + instruction; with shots, BBH's own format (examples, then Q:/A:)."""
        shots = problem.meta.get("shots")
        if not shots:
            return super().prompt(problem)
        return f"{shots}\n\nQ: {problem.question}\nA: Let's think step by step."

    def extract(self, text: str) -> str | None:
        span = last_answer_span(self.trim(text))
        if span is None:
            return None
        span = span.split("\n")[0]
        m = re.search(r"\(([A-R])\)", span)
        return f"({m.group(1)})" if m else normalize(span)
