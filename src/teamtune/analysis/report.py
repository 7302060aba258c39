"""`teamtune report RUN`: a run's curves as PNG and a one-page summary (config, data, results, cost).

Training recipes log one JSON object per step to `log.jsonl` (in the run folder, or one per adapter in its
sub-folders), with `step` and any of CURVES, and write train_metrics.json; eval runs write metrics.json.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from ..config import ConfigError, read_yaml
from ..records import read_jsonl
from .pareto import RunError, load_run, read_json

# the counters every recipe shares: rollout_tokens / rollout_flops (generated), train_tokens / train_flops (trained
# on), seconds; the names that runs and checkpoints made before this schema used for them
RENAMED = {"generated_tokens": "rollout_tokens", "tokens": "train_tokens", "flops": "train_flops"}

CURVES = {
    "loss": "loss",
    "eval_loss": "eval loss",
    "reward": "reward",
    "kl": "KL",
    "accuracy": "accuracy",
    "eval_accuracy": "held-out accuracy",
    "tokens_per_second": "tokens/s",
}


def plot_curves(series: dict[str, list[dict]], path: Path) -> list[str]:
    """One panel per logged curve, one line per series (adapter); returns the curves drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [k for k in CURVES if any(k in r for rows in series.values() for r in rows)]
    if not names:
        return []
    fig, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 3.2), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        for label, rows in series.items():
            pts = [(r["step"], r[name]) for r in rows if name in r]
            ax.plot(
                [s for s, _ in pts], [v for _, v in pts], marker="." if len(pts) < 50 else None, label=label
            )
        if len(series) > 1:
            ax.legend(fontsize=8)
        ax.set_title(CURVES[name])
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return names


def _logs(folder: Path) -> dict[str, list[dict]]:
    """The run's step logs: its own log.jsonl, or one per adapter sub-folder (named by the folder)."""
    paths = [folder / "log.jsonl"] if (folder / "log.jsonl").is_file() else sorted(folder.glob("*/log.jsonl"))
    return {p.parent.name: [r for _, r in read_jsonl(p, ("step",))] for p in paths}


def _config(folder: Path) -> dict:
    path = folder / "config.yaml"
    if not path.is_file():
        return {}
    try:
        data = read_yaml(path)
    except ConfigError as e:
        raise RunError(str(e)) from None
    if not isinstance(data, dict):
        raise RunError(f"{path}: not a run's config (the top level is {type(data).__name__}, not a mapping)")
    return data


def training_summary(folder: Path, curves: list[str]) -> list[str]:
    """The lines of a training run's report, from train_metrics.json (per adapter for SFT)."""
    tm = read_json(folder / "train_metrics.json")
    cfg = _config(folder)
    schedule = cfg.get("curriculum", {}).get("schedule")
    task = cfg.get("task", {}).get("name") if isinstance(cfg.get("task"), dict) else None
    lines = [
        f"# training run {folder.name}: {cfg.get('method', '?')}"
        + (f", curriculum {schedule}" if schedule else ""),
        "",
        f"- model: {cfg.get('model', '?')}; data: {cfg.get('data') or task or '?'}; seed: {cfg.get('seed')}",
    ]
    total = tm.get("total", tm)
    lines += [
        f"- {k.replace('_', ' ')}: {v:.3g}" if isinstance(v, float) else f"- {k.replace('_', ' ')}: {v:,}"
        for k, v in total.items()
        if isinstance(v, int | float) and k != "engine_calls"
    ]
    if "adapters" in tm:
        lines += [
            "",
            "| adapter | steps | trainable parameters | tokens | FLOPs | seconds | final eval loss |",
            "|---|---|---|---|---|---|---|",
        ]
        for a in tm["adapters"]:
            a = {RENAMED.get(k, k): v for k, v in a.items()}  # runs made before the shared counter names
            lines.append(
                f"| {a['adapter']} | {a['steps']} | {a['trainable_parameters']:,} | {a['train_tokens']:,} | "
                f"{a['train_flops']:.3g} | {a['seconds']:.0f} | {a.get('eval_loss', float('nan')):.4f} |"
            )
    if curves:
        lines += ["", f"![curves](curves.png) ({', '.join(CURVES[c] for c in curves)})"]
    return lines


def report(folder: str | Path) -> Path:
    """Write curves.png (when the run has a log) and report.md into the run folder; return the report's path."""
    folder = Path(folder)
    config = _config(folder)
    logs = _logs(folder)
    curves = plot_curves(logs, folder / "curves.png") if logs else []
    if (folder / "train_metrics.json").is_file() and not (folder / "metrics.json").is_file():
        lines = training_summary(folder, curves)
        lines += ["", "## Config", "", "```yaml", yaml.safe_dump(config, sort_keys=False).rstrip(), "```", ""]
        path = folder / "report.md"
        path.write_text("\n".join(lines))
        return path
    m = load_run(folder, "tokens")
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


def seed_bands(runs: dict[str, dict], over_seeds: bool) -> dict[str, tuple[list, list, list, list, int]]:
    """Per line: x values, mean, lowest and highest y, and the number of runs, from {run name: {x: y}}.
    With `over_seeds`, runs named alike but for a `-s<seed>` at the end (or before a role: `run-s0/planner`)
    share a line; otherwise each run is one."""
    groups: dict[str, list[dict]] = {}
    for name, points in runs.items():
        groups.setdefault(re.sub(r"-s\d+(?=$|/)", "", name) if over_seeds else name, []).append(points)
    out = {}
    for name, members in groups.items():
        xs = sorted(set().union(*members))
        vals = [[m[v] for m in members if v in m] for v in xs]
        out[name] = (
            xs,
            [sum(v) / len(v) for v in vals],
            [min(v) for v in vals],
            [max(v) for v in vals],
            len(members),
        )
    return out


def compare_curves(folders: list[str], y: str, x: str, path: str | Path, over_seeds: bool = False) -> Path:
    """One line per training run of `y` against `x` (e.g. accuracy per stage), from each run's step log.

    Where several log rows share an x (TeamTR logs every agent update of a stage), the last one is drawn.
    `over_seeds`: runs whose folder names differ only in a final `-s<seed>` make one line, their mean, with a band
    from their lowest to their highest value.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    runs = {}
    names = [Path(f).name for f in folders]
    for f in folders:
        logs = _logs(Path(f))
        if not logs:
            raise RunError(f"{f}: no log.jsonl there (or in its sub-folders): not a training run folder")
        rows = [r for rs in logs.values() for r in rs if y in r and x in r]
        if not rows:
            raise RunError(f"{f}: its log.jsonl has no rows with both {y!r} and {x!r}")
        # a name two folders share (one role of several runs: run-s0/planner) is told apart by its run's folder
        name = Path(f).name if names.count(Path(f).name) == 1 else f"{Path(f).parent.name}/{Path(f).name}"
        if name in runs:
            raise RunError(f"{f}: another folder of the same name and run ({name}) is drawn already")
        runs[name] = {r[x]: r[y] for r in rows}
    fig, ax = plt.subplots(figsize=(6.4, 4))
    for name, (xs, mean, lo, hi, n) in seed_bands(runs, over_seeds).items():
        (line,) = ax.plot(xs, mean, marker="o", label=f"{name} ({n} seeds)" if over_seeds else name)
        if n > 1:
            ax.fill_between(xs, lo, hi, color=line.get_color(), alpha=0.15)
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
