"""Multiple choice in the `cais/mmlu` record format: question, subject, choices, answer (an index)."""

from __future__ import annotations

import random
import re
from fractions import Fraction

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

    def solution(self, problem: Problem) -> str:
        """The gold answer line as the instruction asks for it: "The answer is (B)."."""
        return f"The answer is ({problem.answer})."

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


def _spell(x: Fraction) -> str:
    return str(x.numerator) if x.denominator == 1 else f"{float(x):g}"


def numeric_choices(problems: list[Problem], subject: str, n_choices: int = 4, seed: int = 0) -> list[dict]:
    """Multiple choice in the `cais/mmlu` record format from problems whose gold answers are numbers (GSM8K,
    reasoning-gym's arithmetic): the gold answer among the answers of other problems next to it in size.

    The choices are n_choices neighbours in the sorted list of all the problems' distinct answers, the gold
    answer at a uniformly drawn rank among them, then shuffled: neither its rank, its distance to the others nor
    how the others derive from it (near misses such as gold + 1 or 10 x gold would make it their hub, which a
    model can pick without solving) tells it apart. A problem whose answer is not a number is left out."""
    if not 2 <= n_choices <= len(LETTERS):
        raise ValueError(f"n_choices must be 2 to {len(LETTERS)}, got {n_choices}")
    golds = {}
    for p in problems:
        try:
            golds[p.id] = Fraction(p.answer.replace(",", ""))
        except (ValueError, ZeroDivisionError):
            continue
    values = sorted(set(golds.values()))
    if len(values) < n_choices:
        raise ValueError(f"{len(values)} distinct numeric answers: too few for {n_choices} choices")
    at = {v: i for i, v in enumerate(values)}
    rng = random.Random(seed)
    records = []
    for p in problems:
        if p.id not in golds:
            continue
        gold = golds[p.id]
        first = min(max(at[gold] - rng.randrange(n_choices), 0), len(values) - n_choices)
        choices = [_spell(v) for v in values[first : first + n_choices]]
        rng.shuffle(choices)
        records.append(
            {
                "question": p.question,
                "subject": subject,
                "choices": choices,
                "answer": choices.index(_spell(gold)),
            }
        )
    return records
