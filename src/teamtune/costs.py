"""Cost counters that every model call records and every episode and run adds up."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields


@dataclass
class Cost:
    calls: int = 0
    prompt_tokens: int = 0
    generated_tokens: int = 0
    seconds: float = 0.0  # wall time; a batched call's time is shared equally by its sequences
    flops: float = 0.0  # estimate: 2 x parameters x (prompt + generated tokens)

    def __add__(self, other: Cost) -> Cost:
        return Cost(**{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)})

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.generated_tokens

    def to_dict(self) -> dict:
        return asdict(self)


def total(costs) -> Cost:
    out = Cost()
    for c in costs:
        out = out + c
    return out
