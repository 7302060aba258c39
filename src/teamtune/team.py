"""Team layouts over reasoning tasks: single, vote, leader (MLPO) and pipeline (TeamTR).

Each layout runs all problems stage by stage, so every stage is one batched generation across problems
and agents.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from .agents import Agent, AgentConfig, Episode, ModelPool, Turn, run_calls
from .rollout import DecodeConfig

if TYPE_CHECKING:
    from .tasks import Problem, Task

Layout = Literal["single", "vote", "leader", "pipeline", "planner-executor"]
DEFAULT_AGENTS = {
    "single": ["solver"],
    "vote": ["solver"],
    "leader": ["peer", "leader"],
    "pipeline": ["solver", "critic", "refiner"],
    "planner-executor": ["planner", "executor"],  # the apps world's layout (teamtune.envs.apps)
}


@dataclass
class TeamConfig:
    layout: Layout = "single"
    model: str = "smollm2-135m"  # base model of agents that name none
    agents: list[AgentConfig] = field(default_factory=list)  # default: the layout's usual roles
    samples: int = 5  # vote: answers sampled per problem
    peers: int = 3  # leader: how many times a single peer agent is repeated
    rounds: int = 1  # leader: rounds of peer answers; from round 2 peers see the previous round
    batch_size: int = 64
    seed: int | None = 0
    device: str = "auto"
    dtype: str = "auto"
    decode: DecodeConfig = field(default_factory=DecodeConfig)  # fast path, compiled step, top-p draw

    def validate(self) -> None:
        self.decode.validate()  # built in code too, not only from YAML: take the overrides before it is saved
        if not self.agents:
            self.agents = [AgentConfig(name=n) for n in DEFAULT_AGENTS[self.layout]]
        names = [a.name for a in self.agents]
        if len(set(names)) != len(names):
            raise ValueError(f"agent names must be unique, got {names}")
        need = {
            "single": (1, 1),
            "vote": (1, 1),
            "leader": (2, None),
            "pipeline": (1, None),
            "planner-executor": (2, 2),
        }[self.layout]
        if len(names) < need[0] or (need[1] is not None and len(names) > need[1]):
            raise ValueError(
                f"layout {self.layout!r} takes {'exactly' if need[1] else 'at least'} {need[0]} "
                f"agent(s), got {len(names)}: {names}"
            )
        for key in ("samples", "peers", "rounds", "batch_size"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be at least 1")


class Team:
    """Agents and a layout; `run` turns problems into episodes."""

    def __init__(self, cfg: TeamConfig, pool: ModelPool | None = None):
        cfg.validate()
        if not hasattr(self, f"_{cfg.layout}"):
            raise ValueError(
                f"a Team of reasoning agents runs no {cfg.layout!r} layout (the Env's team() does)"
            )
        self.cfg = cfg
        self.pool = pool or ModelPool(cfg.device, cfg.dtype, cfg.batch_size, cfg.seed, decode=cfg.decode)
        self.agents = [self.pool.agent(a, cfg.model) for a in cfg.agents]

    def run(self, task: Task, problems: list[Problem] | None = None) -> list[Episode]:
        problems = task.problems if problems is None else problems
        episodes = [Episode(problem_id=p.id, question=p.question, gold=p.answer) for p in problems]
        getattr(self, f"_{self.cfg.layout}")(task, problems, episodes)
        for ep, p in zip(episodes, problems, strict=True):
            if ep.answer is None and ep.turns:
                ep.answer = task.read_answer(ep.turns[-1].text, p)
            ep.correct = task.is_correct(ep.answer, p)
            ep.reward = float(ep.correct)
        return episodes

    def _stage(
        self, task: Task, calls: list[tuple[Agent, str]], owners: list[Episode], round_: int, desc: str
    ) -> list[str]:
        """Run one stage (with the task's stop strings) and append each call's turn to its episode; returns
        the texts."""
        done = run_calls(calls, desc, task.stop, getattr(task, "max_new_tokens", None))
        for (agent, user), ep, c in zip(calls, owners, done, strict=True):
            msgs = agent.request(user).messages
            ep.turns.append(
                Turn(agent=agent.name, round=round_, messages=msgs, text=c.text, finish=c.finish, cost=c.cost)
            )
        return [c.text for c in done]

    def _single(self, task: Task, problems: list[Problem], episodes: list[Episode]) -> None:
        agent = self.agents[0]
        self._stage(task, [(agent, task.prompt(p)) for p in problems], episodes, 1, agent.name)

    def _vote(self, task: Task, problems: list[Problem], episodes: list[Episode]) -> None:
        agent, n = self.agents[0], self.cfg.samples
        calls = [(agent, task.prompt(p)) for p in problems for _ in range(n)]
        texts = self._stage(task, calls, [ep for ep in episodes for _ in range(n)], 1, f"{agent.name} x{n}")
        for i, ep in enumerate(episodes):
            ep.answer = majority([task.read_answer(t, problems[i]) for t in texts[i * n : (i + 1) * n]])

    def _leader(self, task: Task, problems: list[Problem], episodes: list[Episode]) -> None:
        *peers, leader = self.agents
        if len(peers) == 1:
            peers = peers * self.cfg.peers

        def stage(calls, owners, r, desc):
            return self._stage(task, calls, [episodes[i] for i in owners], r, desc)

        answers = peer_answers(peers, task, problems, self.cfg.rounds, stage)
        calls = [(leader, leader_prompt(task.prompt(p), answers[i])) for i, p in enumerate(problems)]
        self._stage(task, calls, episodes, self.cfg.rounds + 1, leader.name)

    def _pipeline(self, task: Task, problems: list[Problem], episodes: list[Episode]) -> None:
        for step, agent in enumerate(self.agents, 1):
            calls = [
                (agent, pipeline_prompt(task.prompt(p), ep.turns, agent.name))
                for p, ep in zip(problems, episodes, strict=True)
            ]
            self._stage(task, calls, episodes, step, agent.name)


def peer_answers(
    peers: list[Agent], task: Task, problems: list[Problem], rounds: int, stage
) -> list[list[str]]:
    """Each problem's peer answers after `rounds` rounds; from round 2 a peer sees the others' last answers.

    `stage(calls, owners, round, desc) -> texts` runs one batched stage (owners: the problem index of each call).
    """
    k = len(peers)
    answers: list[list[str]] = [[] for _ in problems]
    for r in range(1, rounds + 1):
        calls, owners = [], []
        for i, p in enumerate(problems):
            for j, peer in enumerate(peers):
                others = [a for jj, a in enumerate(answers[i]) if jj != j]
                calls.append((peer, task.prompt(p) if r == 1 else revise_prompt(task.prompt(p), others)))
                owners.append(i)
        texts = stage(calls, owners, r, f"peers round {r}")
        answers = [texts[i * k : (i + 1) * k] for i in range(len(problems))]
    return answers


def majority(answers: list[str | None]) -> str | None:
    """Most common non-empty answer; ties go to the one seen first."""
    counts = Counter(a for a in answers if a is not None)
    if not counts:
        return None
    best = max(counts.values())
    return next(a for a in answers if a is not None and counts[a] == best)


def leader_prompt(problem: str, answers: list[str]) -> str:
    body = "\n\n".join(f"### Agent {j}\n{a}" for j, a in enumerate(answers, 1))
    return (
        f"{problem}\n\nYour team's answers:\n\n{body}\n\n"
        "Evaluate these answers and write the correct solution, ending with the final answer as instructed."
    )


def revise_prompt(problem: str, others: list[str]) -> str:
    body = "\n\n".join(f"### Agent {j}\n{a}" for j, a in enumerate(others, 1))
    return (
        f"{problem}\n\nOther agents answered:\n\n{body}\n\n"
        "Use their reasoning where it helps and give your own answer, ending as instructed."
    )


def pipeline_prompt(problem: str, turns: list[Turn], role: str) -> str:
    if not turns:
        return problem
    body = "\n\n".join(f"### {t.agent}\n{t.text}" for t in turns)
    return f"{problem}\n\nThe team's work so far:\n\n{body}\n\nYou are the {role}. Do your part now."
