"""GSM8K grade-school math: numeric answers after '####'."""

from __future__ import annotations

import re

from .base import Problem, Task, canonical_number, last_answer_span, last_number


class GSM8K(Task):
    name = "gsm8k"
    fields = ("question", "answer")
    text_fields = fields
    hub = ("openai/gsm8k", "main")

    @classmethod
    def problem(cls, rec: dict, index: int) -> Problem:
        gold = canonical_number(rec["answer"].split("####")[-1])
        if gold is None:
            raise ValueError("answer has no number after '####'")
        steps = re.sub(r"<<[^>]*>>", "", rec["answer"].split("####")[0]).strip()  # without calculator notes
        return Problem(id=f"gsm8k-{index}", question=rec["question"], answer=gold, meta={"solution": steps})

    def extract(self, text: str) -> str | None:
        span = last_answer_span(text)
        found = canonical_number(span) if span else None
        return found if found is not None else last_number(text)
