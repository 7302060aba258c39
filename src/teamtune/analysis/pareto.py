"""`teamtune pareto`: the effectiveness-efficiency frontier of any set of eval runs, as a plot and a table."""

from __future__ import annotations

import html
import json
import math
import statistics
from dataclasses import dataclass
from pathlib import Path

from .stats import ci95

# efficiency axis -> (metrics.json key, label); lower is better on every axis
AXES = {
    "flops": ("flops_per_problem", "inference FLOPs per problem"),
    "tokens": ("tokens_per_problem", "tokens per problem"),
    "seconds": ("seconds_per_problem", "seconds per problem"),
    "memory": ("peak_memory_bytes", "peak memory (bytes)"),
    "parameters": ("parameters", "parameters held"),
    "cost": ("usd_per_problem", "USD per problem"),
}
REQUIRED = ("task", "split", "accuracy", "n", "layout", "model")


class RunError(ValueError):
    """A run folder that cannot be read; the message names the folder and what is missing."""


def load_run(folder: str | Path, axis: str) -> dict:
    folder = Path(folder)
    path = folder / "metrics.json"
    if not folder.is_dir():
        raise RunError(f"{folder}: not a run folder")
    if not path.is_file():
        raise RunError(f"{folder}: no metrics.json (is the run finished? `teamtune eval` writes it last)")
    m = read_json(path)
    key = AXES[axis][0]
    missing = [k for k in (*REQUIRED, key) if k not in m]
    if missing:
        hint = " (set price_per_million_tokens when running eval)" if missing[0] == "usd_per_problem" else ""
        raise RunError(f"{path}: lacks {missing[0]!r}{hint}")
    for k in ("accuracy", "n", key):
        if isinstance(m[k], bool) or not isinstance(m[k], int | float) or not math.isfinite(m[k]):
            raise RunError(f"{path}: {k!r} must be a number, got {m[k]!r}")
    return m | {"folder": str(folder)}


def read_json(path: Path) -> dict:
    """A JSON object file a run wrote; a RunError naming the file if it is damaged."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise RunError(f"{path}: not UTF-8 text (byte {e.start})") from None
    except json.JSONDecodeError as e:
        raise RunError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(data, dict):
        raise RunError(f"{path}: not a JSON object but {type(data).__name__}")
    return data


@dataclass
class Point:
    label: str
    x: float
    accuracy: float
    ci: float  # half-width of the 95% interval across seeds; 0 for one seed
    seeds: int
    task: str


def run_label(r: dict) -> str:
    """How plots name a run: its label, or layout and model, with the training method when not in it."""
    label = r.get("label") or f"{r['layout']} ({r['model']})"
    return f"{label}, {r['method']}" if r.get("method") and r["method"] not in label else label


def by_label(runs: list[dict]) -> dict[str, list[dict]]:
    """Runs grouped by label: the seeds of one configuration. Runs of one label but of different models (one
    recipe at two model sizes) are told apart by their model's name: "planner-executor sft (gemma3)"."""
    groups: dict[str, list[dict]] = {}
    for r in runs:
        groups.setdefault(run_label(r), []).append(r)
    split: dict[str, list[dict]] = {}
    for label, rs in groups.items():
        several = len({model_name(r) for r in rs}) > 1
        for r in rs:
            split.setdefault(f"{label} ({model_name(r)})" if several else label, []).append(r)
    return split


def model_name(r: dict) -> str:
    """A run's model as plots name it: the last part of its path or hub name."""
    return Path(str(r.get("model") or "?").rstrip("/")).name


def group_runs(runs: list[dict], axis: str) -> list[Point]:
    """One point per label (model, layout, method): the mean over its seeds, with a 95% interval."""
    key = AXES[axis][0]
    groups = by_label(runs)
    points = []
    for label, rs in groups.items():
        accs = [r["accuracy"] for r in rs]
        ci = ci95(accs)
        tasks = sorted({f"{r['task']}/{r['split']}" for r in rs})
        points.append(
            Point(
                label,
                statistics.fmean(r[key] for r in rs),
                statistics.fmean(accs),
                ci,
                len(rs),
                ", ".join(tasks),
            )
        )
    return points


def frontier(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the non-dominated points: no other point is at most as costly (x) and at least as good (y),
    and strictly better in one. Equal points are all kept."""
    keep = []
    for i, (xi, yi) in enumerate(points):
        if not any(
            xj <= xi and yj >= yi and (xj < xi or yj > yi) for j, (xj, yj) in enumerate(points) if j != i
        ):
            keep.append(i)
    return keep


def check_same_task(runs: list[dict], allow_mixed: bool) -> None:
    tasks = sorted({(r["task"], r["split"]) for r in runs})
    if len(tasks) > 1 and not allow_mixed:
        where = "; ".join(
            f"{t}/{s}: {', '.join(r['folder'] for r in runs if (r['task'], r['split']) == (t, s))}"
            for t, s in tasks
        )
        raise RunError(
            f"runs are on different tasks or splits ({where}); compare like with like, or pass "
            "--allow-mixed to put them on one plot"
        )


def pareto(
    folders: list[str], axis: str = "flops", out: str | Path = "pareto", allow_mixed: bool = False
) -> dict:
    """Read the runs, draw the frontier and write pareto.png, pareto.md and pareto.html into `out`."""
    if axis not in AXES:
        raise RunError(f"unknown axis {axis!r} (axes: {', '.join(AXES)})")
    if not folders:
        raise RunError("name at least one run folder")
    runs = [load_run(f, axis) for f in folders]
    check_same_task(runs, allow_mixed)
    points = group_runs(runs, axis)
    front = set(frontier([(p.x, p.accuracy) for p in points]))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    plot(points, front, axis, out / "pareto.png")
    rows = table_rows(points, front)
    (out / "pareto.md").write_text(markdown(rows, axis))
    (out / "pareto.html").write_text(html_page(rows, axis))
    return {"points": [p.__dict__ | {"frontier": i in front} for i, p in enumerate(points)], "out": str(out)}


def table_rows(points: list[Point], front: set[int]) -> list[list[str]]:
    order = sorted(range(len(points)), key=lambda i: points[i].x)
    return [
        [
            points[i].label,
            f"{points[i].accuracy:.1%}" + (f" ± {points[i].ci:.1%}" if points[i].seeds > 1 else ""),
            f"{points[i].x:.4g}",
            str(points[i].seeds),
            "yes" if i in front else "",
            points[i].task,
        ]
        for i in order
    ]


HEADER = ["run", "accuracy (95% CI over seeds)", "{axis}", "seeds", "on frontier", "task"]


def markdown(rows: list[list[str]], axis: str) -> str:
    head = [h.format(axis=AXES[axis][1]) for h in HEADER]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return f"# Effectiveness against {AXES[axis][1]}\n\n![pareto](pareto.png)\n\n" + "\n".join(lines) + "\n"


def html_page(rows: list[list[str]], axis: str) -> str:
    head = "".join(f"<th>{html.escape(h.format(axis=AXES[axis][1]))}</th>" for h in HEADER)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>teamtune pareto</title><style>"
        "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 10px;text-align:left}</style></head><body>"
        f"<h1>Effectiveness against {html.escape(AXES[axis][1])}</h1><img src='pareto.png' width='720'>"
        f"<table><tr>{head}</tr>{body}</table></body></html>\n"
    )


def plot(points: list[Point], front: set[int], axis: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import PercentFormatter

    fig, ax = plt.subplots(figsize=(8, 5.5))
    placed: list[tuple[float, float]] = []
    span_x = (max(p.x for p in points) - min(p.x for p in points)) or 1.0
    for i, p in enumerate(points):
        color = "tab:red" if i in front else "tab:blue"
        ax.errorbar(p.x, p.accuracy, yerr=p.ci or None, fmt="o", color=color, capsize=4)
        # points close to an earlier labelled one get their label lower down, so labels do not overlap
        near = sum(abs(p.x - x) < 0.25 * span_x and abs(p.accuracy - y) < 0.03 for x, y in placed)
        placed.append((p.x, p.accuracy))
        ax.annotate(
            p.label, (p.x, p.accuracy), textcoords="offset points", xytext=(6, 6 - 14 * near), fontsize=9
        )
    fr = sorted((points[i].x, points[i].accuracy) for i in front)
    if len(fr) > 1:
        ax.step(
            [x for x, _ in fr],
            [y for _, y in fr],
            where="post",
            color="tab:red",
            alpha=0.6,
            label="Pareto frontier",
        )
        ax.legend(loc="best")
    if (
        axis != "cost"
        and min(p.x for p in points) > 0
        and max(p.x for p in points) / min(p.x for p in points) > 20
    ):
        ax.set_xscale("log")
    ax.set_xlabel(AXES[axis][1] + " (lower is better)")
    ax.set_ylabel("accuracy / task goal completion")
    top = max(p.accuracy + p.ci for p in points)
    ax.set_ylim(-0.02, min(1.02, max(0.1, top) * 1.15))
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_title(f"teamtune: {', '.join(sorted({p.task for p in points}))}")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
