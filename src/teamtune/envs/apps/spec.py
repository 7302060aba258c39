"""Task specs: an instruction, its sub-tasks with the gold API calls that solve each, and helpers for templates."""

from __future__ import annotations

import math
import sqlite3
from dataclasses import dataclass, field

from .api import PAGE


@dataclass
class SubTask:
    description: str  # what a planner would ask for, in words
    kind: str  # "lookup" (read what later steps need), "act" (change state) or "answer"
    app: str
    calls: list[str]  # gold API calls, one per line
    expect: list[str] = field(default_factory=list)  # lookup: text the observations must show (ids, values)


@dataclass
class Spec:
    instruction: str
    subtasks: list[SubTask]
    answer: str | None = None  # tasks that ask a question are answered with supervisor.complete(answer=...)


def rows(db: sqlite3.Connection, sql: str, args: tuple = ()) -> list[dict]:
    cur = db.execute(sql, args)
    cols = [c[0] for c in cur.description]
    return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]


def fmt(**kwargs) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in kwargs.items())


def paged(name: str, n_items: int, **kwargs) -> list[str]:
    """The calls that read every page of a list of `n_items` items."""
    return (
        [
            f"{name}({fmt(**kwargs, page=p) if p else fmt(**kwargs)})"
            for p in range(max(1, math.ceil(n_items / PAGE)))
        ]
        if n_items > PAGE
        else [f"{name}({fmt(**kwargs)})"]
    )


def seen(*ids: int) -> list[str]:
    """Lookup expectations: each of these rows must appear in an observation."""
    return [f'"id": {i},' for i in ids]


def lookup(description: str, app: str, calls: list[str], *ids: int) -> SubTask:
    """A look-up sub-task: reading `calls` must show each of the rows `ids`."""
    return SubTask(description, "lookup", app, calls, seen(*ids))


def act(description: str, app: str, call: str) -> SubTask:
    return SubTask(description, "act", app, [call])


def find_contact(c: dict) -> SubTask:
    return SubTask(
        f"Find {c['first_name']} {c['last_name']} in contacts and get their id.",
        "lookup",
        "contacts",
        [f"contacts.search({fmt(query=c['last_name'])})"],
        seen(c["id"]),
    )


def full_name(c: dict) -> str:
    return f"{c['first_name']} {c['last_name']}"


def answer(value) -> SubTask:
    return SubTask(
        f"Give the answer: {value}.", "answer", "supervisor", [f"supervisor.complete({fmt(answer=value)})"]
    )


def money(x: float) -> str:
    return f"{x:.2f}".rstrip("0").rstrip(".")
