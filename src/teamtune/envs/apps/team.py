"""Run `single` and `planner-executor` teams in the apps world, all tasks in lockstep so each turn is one batch."""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import asdict, dataclass, field, replace

from ...agents import Agent, AgentConfig, Episode, ModelPool, Turn, run_calls
from ...records import DataError
from ...team import TeamConfig
from ..base import Env
from .roles import (
    PLANNER_SYSTEM,
    executor_opening,
    executor_system,
    observations_message,
    report,
    single_system,
    task_message,
)
from .world import AppsEnv, AppTask, evaluate, make_tasks, templates_for

LAYOUTS = {"single": ["agent"], "planner-executor": ["planner", "executor"]}
MAX_TURNS = 12  # single agent: replies per task
MAX_SUBTASKS = 10  # planner: sub-tasks issued per task
EXECUTOR_TURNS = 4  # executor: replies per sub-task before its report is forced


class AppsTaskSet(Env):
    """The apps tasks of one split: the Env that `teamtune eval` runs `single` and `planner-executor` teams on."""

    name = "apps"
    title = "the apps world"
    layouts = tuple(LAYOUTS)

    def __init__(self, problems: list[AppTask], split: str):
        self.problems, self.split = problems, split

    @classmethod
    def from_config(cls, cfg) -> AppsTaskSet:
        """The first `cfg.limit` (default 100) tasks of split `cfg.split`."""
        try:
            templates_for(cfg.split)
        except ValueError as e:
            raise DataError(str(e)) from None
        return cls(make_tasks(cfg.split, cfg.limit or 100), cfg.split)

    def team(self, cfg: TeamConfig, pool: ModelPool | None = None) -> AppsTeam:
        return AppsTeam(cfg, pool)

    def metrics(self, episodes: list[Episode]) -> dict:
        return {"apps": apps_metrics(episodes)}


@dataclass
class _State:
    task: AppTask
    env: AppsEnv
    episode: Episode
    conv: list[dict] = field(default_factory=list)  # the single agent's or the planner's conversation
    executor: list[dict] | None = None  # the current sub-task's executor conversation
    finished: bool = False


class AppsTeam:
    def __init__(self, cfg: TeamConfig, pool: ModelPool | None = None):
        if cfg.layout not in LAYOUTS:
            raise ValueError(f"the apps world runs the layouts {', '.join(LAYOUTS)}, not {cfg.layout!r}")
        names = [a.name for a in cfg.agents] if cfg.agents else LAYOUTS[cfg.layout]
        if len(names) != len(LAYOUTS[cfg.layout]):
            raise ValueError(f"layout {cfg.layout} takes {len(LAYOUTS[cfg.layout])} agent(s), got {names}")
        self.cfg = cfg
        self.pool = pool or ModelPool(cfg.device, cfg.dtype, cfg.batch_size, cfg.seed, decode=cfg.decode)
        prompts = [single_system()] if cfg.layout == "single" else [PLANNER_SYSTEM, executor_system()]
        confs = cfg.agents or [AgentConfig(n) for n in names]
        self.agents = [
            self.pool.agent(replace(a, system_prompt=a.system_prompt or p), cfg.model)
            for a, p in zip(confs, prompts, strict=True)
        ]

    def run(self, tasks: AppsTaskSet | list[AppTask]) -> list[Episode]:
        tasks = tasks.problems if isinstance(tasks, AppsTaskSet) else tasks
        states = [
            _State(
                t,
                AppsEnv(t),
                Episode(problem_id=t.id, question=t.instruction, gold=t.answer or ""),
                conv=[{"role": "user", "content": task_message(t)}],
            )
            for t in tasks
        ]
        if self.cfg.layout == "single":
            self._single(states)
        else:
            self._planner_executor(states)
        for s in states:
            out = evaluate(s.env)
            s.episode.answer, s.episode.correct, s.episode.reward = (
                s.env.answer,
                out.success,
                float(out.success),
            )
            s.episode.info = {
                "template": s.task.template,
                "steps": len(s.env.steps),
                "subtasks": len(s.task.subtasks),
                "subtask_kinds": [x.kind for x in s.task.subtasks],
                **asdict(out),
            }
        return [s.episode for s in states]

    def _turns(self, agent: Agent, items: list[tuple[_State, list[dict]]], round_: int) -> list[str]:
        done = run_calls([(agent, conv) for _, conv in items], f"{agent.name} turn {round_}")
        for (s, conv), c in zip(items, done, strict=True):
            s.episode.turns.append(
                Turn(agent.name, round_, agent.request(conv).messages, c.text, c.finish, c.cost)
            )
        return [c.text for c in done]

    def _single(self, states: list[_State]) -> None:
        agent = self.agents[0]
        for turn in range(1, MAX_TURNS + 1):
            live = [s for s in states if not s.env.done]
            if not live:
                return
            for s, text in zip(live, self._turns(agent, [(s, s.conv) for s in live], turn), strict=True):
                steps = s.env.act(text)
                s.conv += [
                    {"role": "assistant", "content": text},
                    {"role": "user", "content": observations_message(steps)},
                ]

    def _planner_executor(self, states: list[_State]) -> None:
        planner, executor = self.agents
        for step in range(1, MAX_SUBTASKS + 1):
            live = [s for s in states if not s.finished]
            if not live:
                return
            for s, text in zip(live, self._turns(planner, [(s, s.conv) for s in live], step), strict=True):
                s.conv.append({"role": "assistant", "content": text})
                done = re.search(r"^\s*DONE\s*:?\s*(.*)$", text, flags=re.MULTILINE)
                if done and not re.search(r"NEXT\s*:", text):
                    answer = done.group(1).strip()
                    s.env.act(
                        f"supervisor.complete(answer={answer!r})" if answer else "supervisor.complete()"
                    )
                    s.finished = True
                    continue
                sub = re.search(r"NEXT\s*:\s*(.+)", text)
                s.executor = [
                    {
                        "role": "user",
                        "content": executor_opening(s.task, (sub.group(1) if sub else text).strip()),
                    }
                ]
            self._execute(executor, [s for s in live if not s.finished], step)
            for s in states:
                s.finished = s.finished or s.env.done

    def _execute(self, executor: Agent, states: list[_State], step: int) -> None:
        """Executor turns until each sub-task is reported; its observations go back to the planner."""
        found: dict[int, list] = defaultdict(list)
        for _ in range(EXECUTOR_TURNS):
            live = [s for s in states if s.executor is not None and not s.env.done]
            if not live:
                break
            for s, text in zip(
                live, self._turns(executor, [(s, s.executor) for s in live], step), strict=True
            ):
                steps = s.env.act(text)
                found[id(s)] += steps
                if "REPORT:" in text or not steps:
                    self._report(
                        s, text.split("REPORT:", 1)[-1].strip() if "REPORT:" in text else report(found[id(s)])
                    )
                else:
                    s.executor += [
                        {"role": "assistant", "content": text},
                        {"role": "user", "content": observations_message(steps)},
                    ]
        for s in states:
            if s.executor is not None:  # out of turns: the planner gets what the calls returned
                self._report(s, report(found[id(s)]))

    @staticmethod
    def _report(s: _State, text: str) -> None:
        s.conv.append({"role": "user", "content": f"Executor: REPORT: {text}"})
        s.executor = None


def apps_metrics(episodes: list[Episode]) -> dict:
    """Task goal completion, sub-task error rates by position and kind, steps per task."""
    by_pos: dict[int, list[bool]] = defaultdict(list)
    by_kind: dict[str, list[bool]] = defaultdict(list)
    for e in episodes:
        for k, (ok, kind) in enumerate(zip(e.info["subtask_success"], e.info["subtask_kinds"], strict=True)):
            by_pos[k + 1].append(ok)
            by_kind[kind].append(ok)
    rate = lambda oks: 1 - sum(oks) / len(oks)  # noqa: E731
    n = len(episodes)
    return {
        "task_goal_completion": sum(e.correct for e in episodes) / n,
        "subtask_error_rate": rate([ok for e in episodes for ok in e.info["subtask_success"]]),
        "subtask_error_by_position": {k: rate(v) for k, v in sorted(by_pos.items())},
        "subtask_error_by_kind": {k: rate(v) for k, v in sorted(by_kind.items())},
        "steps_per_task": sum(e.info["steps"] for e in episodes) / n,
        "subtasks_per_task": sum(e.info["subtasks"] for e in episodes) / n,
        "collateral_rate": sum(bool(e.info["collateral"]) for e in episodes) / n,
    }
