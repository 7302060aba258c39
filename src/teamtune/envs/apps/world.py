"""Tasks of the apps world, the environment an agent acts in, and AppWorld-style evaluation of the final state."""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import asdict, dataclass, field

from . import templates as single
from . import templates_cross as cross
from .actions import COMPLETE, BadCall, Call, execute, parse_actions, parse_call
from .db import Diff, diff, generate, snapshot, today
from .spec import Spec, SubTask

TEMPLATES = {
    f.__name__: f
    for f in (
        single.add_contact,
        single.update_city,
        single.delete_contact,
        single.count_relation,
        single.create_event,
        single.cancel_day,
        single.move_event,
        single.write_note,
        single.pin_tag,
        single.balance_question,
        single.pay_pending,
        single.decline_small,
        single.buy_product,
        single.buy_two,
        single.cheapest_in_category,
        single.like_artist,
        single.genre_playlist,
        single.count_liked,
        single.read_from_contact,
        cross.text_contact,
        cross.pay_and_thank,
        cross.schedule_with,
        cross.request_from_family,
        cross.note_of_friends,
        cross.message_event_person,
        cross.pay_back_friends,
        cross.birthday_event,
        cross.gift_for,
        cross.forget_contact,
        cross.total_sent_to,
        cross.plan_party,
    )
}
# Never used for train/dev/test: `test_unseen` measures generalisation to new kinds of task.
UNSEEN = (
    "decline_small",
    "genre_playlist",
    "request_from_family",
    "message_event_person",
    "gift_for",
    "total_sent_to",
)
SPLIT_SEEDS = {"train": 0, "dev": 1_000_000, "test": 2_000_000, "test_unseen": 3_000_000}
STEP_LIMIT = 40  # API calls per episode


@dataclass
class AppTask:
    id: str
    split: str
    seed: int
    template: str
    instruction: str
    subtasks: list[SubTask]
    answer: str | None
    today: str

    def gold_calls(self) -> list[str]:
        return [c for s in self.subtasks for c in s.calls if not c.startswith(COMPLETE)] + [self.final_call()]

    def final_call(self) -> str:
        return next((c for s in self.subtasks for c in s.calls if c.startswith(COMPLETE)), f"{COMPLETE}()")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> AppTask:
        return cls(**{**d, "subtasks": [SubTask(**s) for s in d["subtasks"]]})


def templates_for(split: str) -> list[str]:
    if split not in SPLIT_SEEDS:
        raise ValueError(f"unknown apps split {split!r} (splits: {', '.join(SPLIT_SEEDS)})")
    return list(UNSEEN) if split == "test_unseen" else [t for t in TEMPLATES if t not in UNSEEN]


def make_task(split: str, index: int) -> AppTask:
    """Task `index` of `split`: templates in turn, each on its own seeded world."""
    names = templates_for(split)
    name = names[index % len(names)]
    for attempt in range(50):
        seed = (
            SPLIT_SEEDS[split] + index + 100_003 * attempt
        )  # disjoint across splits for any index < 100,003
        spec: Spec | None = TEMPLATES[name](generate(seed), random.Random(seed), today(seed))
        if spec is not None:
            return AppTask(
                f"{split}-{index}",
                split,
                seed,
                name,
                spec.instruction,
                spec.subtasks,
                spec.answer,
                today(seed).isoformat(),
            )
    raise RuntimeError(f"template {name} fits no world for {split} task {index}")


def make_tasks(split: str, n: int, start: int = 0) -> list[AppTask]:
    return [make_task(split, i) for i in range(start, start + n)]


@dataclass
class Step:
    call: str
    observation: str


class AppsEnv:
    """One task's world. `act(text)` runs every API call line in `text` and returns the observations."""

    def __init__(self, task: AppTask, step_limit: int = STEP_LIMIT):
        self.task = task
        self.db = generate(task.seed)
        self.initial = snapshot(self.db)
        self.steps: list[Step] = []
        self.step_limit = step_limit
        self.done = False
        self.answer: str | None = None

    def act(self, text: str) -> list[Step]:
        out = []
        for action in parse_actions(text):
            if self.done:
                break
            if len(self.steps) >= self.step_limit:
                self.done = True
                out.append(Step(str(action), f"Error: step limit of {self.step_limit} API calls reached"))
                break
            out.append(self._run(action))
            self.steps.append(out[-1])
        return out

    def _run(self, action: Call | BadCall) -> Step:
        if isinstance(action, BadCall):
            return Step(action.line, f"Error: {action.error}")
        if action.name == COMPLETE:
            self.done = True
            value = action.kwargs.get("answer", action.args[0] if action.args else None)
            self.answer = None if value is None else str(value)
            return Step(str(action), "Task marked complete.")
        return Step(str(action), execute(self.db, action))


@dataclass
class Outcome:
    success: bool
    subtask_success: list[bool]
    first_failed: int | None  # index of the first failed sub-task, None when all passed
    collateral: list[str] = field(default_factory=list)  # changes nobody asked for
    answer_ok: bool = True


def gold_run(task: AppTask) -> tuple[list[set], dict]:
    """The rows each sub-task's gold calls touch, and the final state after all of them."""
    db = generate(task.seed)
    touched, before = [], snapshot(db)
    for sub in task.subtasks:
        for line in sub.calls:
            call = parse_call(line)
            if isinstance(call, Call) and call.name != COMPLETE:
                obs = execute(db, call)
                if obs.startswith("Error"):
                    raise RuntimeError(f"gold call {line} of {task.id} failed: {obs}")
        after = snapshot(db)
        touched.append(set(diff(before, after)))
        before = after
    return touched, before


def _rows(d: Diff, initial) -> Counter:
    """A diff as a multiset: new rows by content (ids may differ), changed/deleted rows by id."""
    out: Counter = Counter()
    for (t, rid), r in d.items():
        if rid in initial.get(t, {}):
            out[(t, rid, json.dumps(r))] += 1
        elif r is not None:  # a row made and removed again (a cart line at checkout) leaves no trace
            out[(t, "new", json.dumps(r[1:]))] += 1
    return out


def same_answer(got: str | None, want: str) -> bool:
    if got is None:
        return False
    try:
        return abs(float(got.replace("$", "").replace(",", "")) - float(want)) < 1e-6
    except ValueError:
        return got.strip().lower() == want.strip().lower()


def evaluate(env: AppsEnv) -> Outcome:
    """Success: exactly the expected changes (no collateral damage) and the right answer. Per sub-task checks."""
    task, initial, final = env.task, env.initial, snapshot(env.db)
    touched, gold = gold_run(task)
    got, want = _rows(diff(initial, final), initial), _rows(diff(initial, gold), initial)
    observations = "\n".join(s.observation for s in env.steps)
    subs, unclaimed = [], Counter({k: n for k, n in got.items() if k[1] == "new"})
    for sub, keys in zip(task.subtasks, touched, strict=True):
        if sub.kind == "lookup":  # the right API was read and what the task needs was seen
            apis = {c.split("(")[0] for c in sub.calls}
            subs.append(
                any(s.call.split("(")[0] in apis for s in env.steps)
                and all(x in observations for x in sub.expect)
            )
        elif sub.kind == "answer":
            subs.append(task.answer is not None and same_answer(env.answer, task.answer))
        else:  # each row the sub-task touches ends as in the gold final state (new rows matched by content)
            need = _rows({k: gold[k[0]].get(k[1]) for k in keys}, initial)
            if (
                not need
            ):  # its rows are gone by the end (a cart line at checkout): the call itself must have run
                subs.append(
                    any(
                        s.call in {str(parse_call(c)) for c in sub.calls}
                        and not s.observation.startswith("Error")
                        for s in env.steps
                    )
                )
                continue
            new_rows = Counter({k: n for k, n in need.items() if k[1] == "new"})
            # a new row counts for one sub-task only: two identical texts need two messages
            subs.append(not (need - got) and not (new_rows - unclaimed))
            unclaimed -= new_rows
    collateral = sorted(f"{t} {rid}: {row}" for (t, rid, row) in (got - want))
    answer_ok = task.answer is None or same_answer(env.answer, task.answer)
    first = next((i for i, ok in enumerate(subs) if not ok), None)
    return Outcome(got == want and answer_ok, subs, first, collateral, answer_ok)
