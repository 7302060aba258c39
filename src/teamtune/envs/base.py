"""The Env noun: what `teamtune eval` and the recipes run a team on."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from ..agents import Episode, ModelPool
    from ..team import TeamConfig


class Env:
    """One split of problems a team is run on, the layouts that run over it, and what it adds to a run's
    metrics. A reasoning task (`teamtune.tasks.Task`) is an Env of one step: a prompt in, an answer out. The
    apps world (`teamtune.envs.apps`) is one of many: agents act on its apps until the task is done.

    `team(cfg, pool)` builds the team of `cfg` for this Env: an object with `agents` and `run(env) ->
    episodes`."""

    name: ClassVar[str] = "env"
    title: ClassVar[str] = ""  # how messages name it; default "task <name>"
    layouts: ClassVar[tuple[str, ...]] = ()
    problems: list[Any]
    split: str

    @classmethod
    def called(cls) -> str:
        return cls.title or f"task {cls.name}"

    def team(self, cfg: TeamConfig, pool: ModelPool | None = None):
        raise NotImplementedError

    def metrics(self, episodes: list[Episode]) -> dict:
        """Metrics of this Env beyond accuracy and costs, merged into metrics.json (none by default)."""
        return {}

    def __len__(self) -> int:
        return len(self.problems)
