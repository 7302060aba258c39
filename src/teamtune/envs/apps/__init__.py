"""An AppWorld-style world: everyday apps with typed APIs over a seeded SQLite state, tasks split into sub-tasks."""

from . import apps_home, apps_money  # noqa: F401  (registers the app APIs)
from .api import API, docs
from .world import SPLIT_SEEDS, TEMPLATES, UNSEEN, AppsEnv, AppTask, Outcome, evaluate, make_task, make_tasks

__all__ = [
    "API",
    "SPLIT_SEEDS",
    "TEMPLATES",
    "UNSEEN",
    "AppTask",
    "AppsEnv",
    "Outcome",
    "docs",
    "evaluate",
    "make_task",
    "make_tasks",
]
