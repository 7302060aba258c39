"""Multiple choice in the `cais/mmlu` record format: question, subject, choices, answer (an index)."""

from __future__ import annotations

import re

from .base import Problem, Task, last_answer_span

LETTERS = "ABCDEFGHIJ"


class MMLU(Task):
    name = "mmlu"
    fields = ("question", "choices", "answer")
    text_fields = ("question",)
    hub = ("cais/mmlu", "all")
    instruction = (
        "Think step by step, then finish with a line of the form 'The answer is (X).' where X is a letter."
    )

    @classmethod
    def problem(cls, rec: dict, index: int) -> Problem:
        choices, ans = rec["choices"], rec["answer"]
        if not isinstance(choices, list) or not 2 <= len(choices) <= len(LETTERS):
            raise ValueError(f"'choices' must be a list of 2 to {len(LETTERS)} options")
        if isinstance(ans, str) and ans in LETTERS:
            ans = LETTERS.index(ans)
        if isinstance(ans, bool) or not isinstance(ans, int) or not 0 <= ans < len(choices):
            raise ValueError(f"'answer' must be an index into 'choices', got {ans!r}")
        options = "\n".join(f"({LETTERS[i]}) {c}" for i, c in enumerate(choices))
        subject = rec.get("subject", "")
        return Problem(
            id=f"mmlu-{subject}-{index}",
            question=f"{rec['question']}\n\n{options}",
            answer=LETTERS[ans],
            meta={"subject": subject, "n_choices": len(choices)},
        )

    def extract(self, text: str) -> str | None:
        return self._letter(text, LETTERS)

    def read_answer(self, text: str, problem: Problem) -> str | None:
        return self._letter(text, LETTERS[: problem.meta.get("n_choices", len(LETTERS))])

    @staticmethod
    def _letter(text: str, valid: str) -> str | None:
        """The letter of the last answer statement ("The answer is (B)."), else (no statement) the last "(X)" in
        the text; only `valid` letters count. A statement that holds no valid letter ("(N)" of four choices, a
        number, a cut-off "(") reads as no answer, never as a letter written earlier."""
        span = last_answer_span(text)
        if span is not None:  # the answer statement alone decides
            m = re.match(r"[\s*:]*\(?([A-Z])\)?(?![A-Za-z])", span) or re.search(
                r"\(([A-Z])\)|\b([A-Z])\b", span
            )
            letter = (m.group(1) or m.group(2)) if m else None
            return letter if letter is not None and letter in valid else None
        found = [x for x in re.findall(r"\(([A-Z])\)", text) if x in valid]
        return found[-1] if found else None
