"""Reading dataset and run files with clear errors: every failure names the file and line."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any


class DataError(ValueError):
    """A dataset file, folder or record that cannot be read; the message names the file and line."""


def check_messages(messages, where: str) -> None:
    """A chat conversation: a list of {"role": system|user|assistant, "content": str}; else DataError at `where`."""
    if not isinstance(messages, list) or not messages:
        raise DataError(f"{where}: 'messages' must be a list of chat messages (and not empty)")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant"):
            raise DataError(f"{where}: message {i} needs a role of system, user or assistant, got {m!r:.80}")
        if not isinstance(m.get("content"), str):
            raise DataError(f"{where}: message {i} ({m['role']}) needs a string 'content'")


def read_jsonl(path: Path, required: Iterable[str], text: Iterable[str] = ()) -> list[tuple[str, dict]]:
    """(`file:line`, record) for each record of a JSONL file, each checked for the `required` keys."""
    if not path.is_file():
        raise DataError(f"dataset file not found: {path}")
    records = []
    with path.open(encoding="utf-8", errors="surrogateescape") as f:
        for n, line in enumerate(f, 1):
            if any("\udc80" <= ch <= "\udcff" for ch in line):  # a byte that is not UTF-8
                raise DataError(f"{path}:{n}: not UTF-8 text")
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{n}: not valid JSON ({e.msg})") from None
            check_record(rec, required, f"{path}:{n}", text)
            records.append((f"{path}:{n}", rec))
    return records


def check_record(rec: Any, required: Iterable[str], where: str, text: Iterable[str] = ()) -> None:
    """A JSON object with the `required` keys, the `text` ones strings; else DataError at `where`."""
    if not isinstance(rec, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(rec).__name__}")
    missing = [k for k in required if k not in rec]
    if missing:
        raise DataError(f"{where}: record lacks key {missing[0]!r} (has {', '.join(sorted(rec))})")
    for k in text:
        if not isinstance(rec[k], str):
            raise DataError(f"{where}: {k!r} must be a string, got {rec[k]!r:.40}")


def outcomes(episodes: list[dict], task=None) -> dict:
    """Each problem's right/wrong (and, in the apps world, each sub-task's under "subtask_success"; with the run's
    `task`, how many peers were right on each problem under "peers_right") from episode records: what the paired
    tests of `teamtune compare` and `teamtune subtasks` read, small enough to keep (outcomes.json) where the
    episodes are not."""
    out = {"correct": {e["problem_id"]: bool(e["correct"]) for e in episodes}}
    subs = {
        e["problem_id"]: e["info"]["subtask_success"]
        for e in episodes
        if "subtask_success" in e.get("info", {})
    }
    if subs:
        out["subtask_success"] = subs
    if task is not None and any(t["agent"] == "peer" for e in episodes for t in e["turns"]):
        problems = {p.id: p for p in task.problems}
        peers = {e["problem_id"]: peers_right(e, task, problems[e["problem_id"]]) for e in episodes}
        out["peers_right"] = {k: v for k, v in peers.items() if v is not None}
    return out


def peers_right(episode: dict, task, problem) -> int | None:
    """How many first-round peer turns of `episode` the task grades right; None when it has no peers."""
    turns = [t for t in episode["turns"] if t["agent"] == "peer" and t.get("round", 1) == 1]
    return sum(task.solves(t["text"], problem) for t in turns) if turns else None
