"""MATH competition problems, in the original format (answer in \\boxed{} of `solution`) or MATH-500's."""

from __future__ import annotations

from math_verify import parse, verify

from .base import Problem, Task, last_answer_span, last_boxed


class MATH(Task):
    name = "math"
    fields = ("problem", "solution")
    text_fields = fields
    hub = ("HuggingFaceH4/MATH-500", None)
    instruction = "Think step by step, then put the final answer in \\boxed{}."
    max_new_tokens = 640  # competition solutions run long: at 256, 58% of SmolLM2-135M's answers were cut

    @classmethod
    def problem(cls, rec: dict, index: int) -> Problem:
        gold = rec.get("answer") or last_boxed(rec["solution"])
        if not gold:
            raise ValueError("no 'answer' field and no \\boxed{} answer in 'solution'")
        pid = rec.get("unique_id") or rec.get("idx", index)
        meta = {k: rec[k] for k in ("level", "type", "subject", "solution") if k in rec}
        return Problem(id=f"math-{pid}", question=rec["problem"], answer=gold, meta=meta)

    def solution(self, problem: Problem) -> str:
        return problem.meta.get("solution") or f"The answer is \\boxed{{{problem.answer}}}."

    def extract(self, text: str) -> str | None:
        ans = last_boxed(text) or last_answer_span(text)
        return ans.strip().rstrip(".").strip("$ ") if ans else None

    def is_correct(self, predicted: str | None, problem: Problem) -> bool:
        if predicted is None:
            return False
        if predicted == problem.answer:
            return True
        gold = parse(f"\\boxed{{{problem.answer}}}")
        pred = parse(f"\\boxed{{{predicted}}}")
        return bool(gold and pred and verify(gold, pred))
