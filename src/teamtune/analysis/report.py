"""`teamtune report RUN`: a run's curves as PNG and a one-page summary (config, data, results, cost).

Training recipes log one JSON object per step to `log.jsonl` in the run folder, with `step` and any of
CURVES; eval runs have no log and get the summary alone.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from ..tasks.base import read_jsonl
from .pareto import load_run

CURVES = {
    "loss": "loss",
    "reward": "reward",
    "kl": "KL",
    "accuracy": "accuracy",
    "tokens_per_second": "tokens/s",
}


def plot_curves(rows: list[dict], path: Path) -> list[str]:
    """One panel per logged curve; returns the curves drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [k for k in CURVES if any(k in r for r in rows)]
    if not names:
        return []
    fig, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 3.2), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        pts = [(r["step"], r[name]) for r in rows if name in r]
        ax.plot([s for s, _ in pts], [v for _, v in pts], marker="." if len(pts) < 50 else None)
        ax.set_title(CURVES[name])
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return names


def report(folder: str | Path) -> Path:
    """Write curves.png (when the run has a log) and report.md into the run folder; return the report's path."""
    folder = Path(folder)
    m = load_run(folder, "tokens")
    config = (
        yaml.safe_load((folder / "config.yaml").read_text()) if (folder / "config.yaml").is_file() else {}
    )
    log = folder / "log.jsonl"
    curves = (
        plot_curves([r for _, r in read_jsonl(log, ("step",))], folder / "curves.png")
        if log.is_file()
        else []
    )
    t = m.get("total", {})
    lines = [
        f"# {m.get('label') or m['layout']}: {m['task']} / {m['split']}",
        "",
        f"- model: {m['model']}; layout: {m['layout']}; method: {m.get('method', 'untrained')}; seed: {m.get('seed')}",
        f"- data: {m['n']} problems of {m['task']} ({m['split']})",
        f"- accuracy: {m['accuracy']:.1%} ({round(m['accuracy'] * m['n'])}/{m['n']}); "
        f"answered: {m.get('answered', float('nan')):.0%}",
        f"- per problem: {m['tokens_per_problem']:.0f} tokens, {m.get('flops_per_problem', 0) / 1e9:.1f} GFLOPs, "
        f"{m.get('seconds_per_problem', 0):.2f} s"
        + (f", ${m['usd_per_problem']:.6f}" if "usd_per_problem" in m else ""),
        f"- in total: {t.get('calls', 0)} model calls, {t.get('generated_tokens', 0)} generated tokens, "
        f"{m.get('wall_seconds', 0):.1f} s; peak memory {m.get('peak_memory_bytes', 0) / 2**30:.2f} GiB; "
        f"parameters held {m.get('parameters', 0):,}",
    ]
    if "apps" in m:
        a = m["apps"]
        lines.append(
            f"- apps: task goal completion {a['task_goal_completion']:.1%}, sub-task errors "
            f"{a['subtask_error_rate']:.1%}, {a['steps_per_task']:.1f} API calls per task"
        )
    if m.get("per_agent"):
        lines += [
            "",
            "| agent | calls | prompt tokens | generated tokens | GFLOPs |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {k} | {c['calls']} | {c['prompt_tokens']} | {c['generated_tokens']} | {c['flops'] / 1e9:.1f} |"
            for k, c in m["per_agent"].items()
        ]
    if curves:
        lines += ["", f"![curves](curves.png) ({', '.join(CURVES[c] for c in curves)})"]
    lines += ["", "## Config", "", "```yaml", yaml.safe_dump(config, sort_keys=False).rstrip(), "```", ""]
    path = folder / "report.md"
    path.write_text("\n".join(lines))
    return path
