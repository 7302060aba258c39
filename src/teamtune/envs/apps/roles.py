"""What each role of an apps team reads and writes, and the gold (expert) trajectories in chat format.

Layouts: `single` (one ReAct-style agent calls the APIs itself) and `planner-executor` (the planner issues one
sub-task at a time in words, the executor solves it with API calls and reports back). Every message of a
gold trajectory carries `subtask`: the index of the sub-task it belongs to (None for the opening messages),
so training can cut a trajectory after its first k sub-tasks.
"""

from __future__ import annotations

import json
from pathlib import Path

from ...records import check_messages, read_jsonl
from .api import docs
from .world import AppsEnv, AppTask, Step

APPS_LINE = "Apps: contacts, calendar, messages, notes, payments, shopping, music."
SINGLE_SYSTEM = (
    "You operate a person's phone apps through their APIs to do the task they give you.\n"
    "Write API calls one per line, exactly in the form app.function(name=value). After each reply you see what "
    "the calls returned. Look things up before you act, change nothing that the task does not ask for, and "
    "finish with supervisor.complete() (with answer=... when the task asks a question).\n\nAPIs:\n{docs}"
)
PLANNER_SYSTEM = (
    "You plan a task on a person's phone apps. An executor does one sub-task at a time for you and reports "
    "what it found. Reply with exactly one line: 'NEXT: <the next sub-task, with any ids or values it needs>' "
    "or, when the task is done, 'DONE' (for a question: 'DONE: <answer>').\n" + APPS_LINE
)
EXECUTOR_SYSTEM = (
    "You do one sub-task on a person's phone apps by calling their APIs, one call per line in the form "
    "app.function(name=value). After each reply you see what the calls returned. When the sub-task is done, "
    "reply 'REPORT: <what you found or did, with ids and values>' and no calls.\n\nAPIs:\n{docs}"
)
REPORT_CHARS = 700  # observations the executor passes back are cut to this many characters


def task_message(task: AppTask) -> str:
    return f"Task: {task.instruction}\nToday is {task.today}."


def observations_message(steps: list[Step]) -> str:
    if not steps:
        return "No API call found. Write calls one per line, like contacts.search(query='Ava')."
    return "\n".join(f">>> {s.call}\n{s.observation}" for s in steps)


def report(steps: list[Step]) -> str:
    text = " | ".join(s.observation for s in steps)
    return text if len(text) <= REPORT_CHARS else text[:REPORT_CHARS] + " ..."


def single_system() -> str:
    return SINGLE_SYSTEM.format(docs=docs())


def executor_system() -> str:
    return EXECUTOR_SYSTEM.format(docs=docs())


def executor_opening(task: AppTask, subtask: str) -> str:
    return f"Sub-task: {subtask}\n(Part of the task: {task.instruction} Today is {task.today}.)"


def _msg(role: str, content: str, subtask: int | None) -> dict:
    return {"role": role, "content": content, "subtask": subtask}


def gold_single(task: AppTask) -> dict:
    """The expert ReAct trajectory: one assistant turn of calls per sub-task, then the real observations."""
    env = AppsEnv(task)
    msgs = [_msg("system", single_system(), None), _msg("user", task_message(task), None)]
    for k, sub in enumerate(task.subtasks):
        msgs.append(_msg("assistant", "\n".join(sub.calls), k))
        if not env.done:
            msgs.append(_msg("user", observations_message(env.act("\n".join(sub.calls))), k))
    if not env.done:
        msgs.append(_msg("assistant", task.final_call(), len(task.subtasks) - 1))
    return {
        "task_id": task.id,
        "template": task.template,
        "layout": "single",
        "role": "agent",
        "messages": msgs,
    }


def gold_planner_executor(task: AppTask) -> list[dict]:
    """The expert planner conversation and one executor conversation per sub-task."""
    env = AppsEnv(task)
    planner = [_msg("system", PLANNER_SYSTEM, None), _msg("user", task_message(task), None)]
    executors = []
    for k, sub in enumerate(task.subtasks):
        if sub.kind == "answer":
            continue  # the planner gives the answer itself when it ends the task
        planner.append(_msg("assistant", f"NEXT: {sub.description}", k))
        calls = "\n".join(sub.calls)
        steps = env.act(calls)
        done = f"REPORT: {report(steps)}"
        executors.append(
            {
                "task_id": task.id,
                "template": task.template,
                "layout": "planner-executor",
                "role": "executor",
                "messages": [
                    _msg("system", executor_system(), None),
                    _msg("user", executor_opening(task, sub.description), k),
                    _msg("assistant", calls, k),
                    _msg("user", observations_message(steps), k),
                    _msg("assistant", done, k),
                ],
            }
        )
        planner.append(_msg("user", f"Executor: {done}", k))
    planner.append(
        _msg("assistant", "DONE" if task.answer is None else f"DONE: {task.answer}", len(task.subtasks) - 1)
    )
    return [
        {
            "task_id": task.id,
            "template": task.template,
            "layout": "planner-executor",
            "role": "planner",
            "messages": planner,
        },
        *executors,
    ]


def gold_trajectories(tasks: list[AppTask], layout: str) -> list[dict]:
    if layout == "single":
        return [gold_single(t) for t in tasks]
    if layout == "planner-executor":
        return [r for t in tasks for r in gold_planner_executor(t)]
    raise ValueError(f"unknown apps layout {layout!r} (single, planner-executor)")


def write_trajectories(path: str | Path, records: list[dict]) -> None:
    with Path(path).open("w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")


def read_trajectories(path: str | Path) -> list[dict]:
    """Trajectories written by `write_trajectories`; a bad line raises DataError naming file and line."""
    records = read_jsonl(Path(path), ("messages",))
    for where, rec in records:
        check_messages(rec["messages"], where)
    return [rec for _, rec in records]
