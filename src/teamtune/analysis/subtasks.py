"""`teamtune subtasks RUN...`: sub-task error rates of apps runs by position and kind, as a table and a PNG.

Runs with the same label (the seeds of one configuration) are averaged; the table shows the range of seeds.
Each label is also set against a reference label (the first, or `reference`): the difference in completion and
in sub-task error, seed by seed over the seeds both have, with its 95% t interval; and, where the runs kept their
episodes.jsonl or outcomes.json, exact sign tests over the same tasks and the same sub-tasks (each one's outcome
averaged over the paired seeds), which decide a comparison of one seed; where some seed has no pair, the same
tests with each task's outcome averaged over every run of each label.
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

from .compare import read_outcomes
from .pareto import RunError, by_label, check_same_task, load_run
from .stats import SEED_POWER_NOTE, ci95, power_cell, power_note, seed_power, seed_power_note, sign_test


def _apps_run(folder: str) -> dict:
    m = load_run(folder, "tokens")
    if "apps" not in m:
        raise RunError(f"{folder}: not an apps run (its metrics.json has no 'apps' section)")
    kept = read_outcomes(Path(folder))  # task and sub-task outcomes, for the paired tests
    m["outcomes"] = None
    if kept is not None:
        subs = kept.get("subtask_success", {})
        m["outcomes"] = {
            "tasks": kept["correct"],
            "subtasks": {f"{pid}#{i + 1}": bool(ok) for pid, oks in subs.items() for i, ok in enumerate(oks)},
            # right sub-tasks per task: sub-tasks of one task are not independent, so their test pairs tasks
            "subtasks_by_task": {pid: sum(map(bool, oks)) for pid, oks in subs.items()},
        }
    return m


def summarise(runs: list[dict]) -> list[dict]:
    """Per label: seeds, completion and error rates (mean and each seed), by position and by kind."""
    rows = []
    for label, rs in by_label(runs).items():
        apps = [r["apps"] for r in rs]
        positions = sorted({int(k) for a in apps for k in a["subtask_error_by_position"]})
        kinds = sorted({k for a in apps for k in a["subtask_error_by_kind"]})
        rows.append(
            {
                "label": label,
                "seeds": len(rs),
                "seed_ids": [r.get("seed") for r in rs],
                "outcomes": [r["outcomes"] for r in rs],
                "completion": [a["task_goal_completion"] for a in apps],
                "error": [a["subtask_error_rate"] for a in apps],
                "by_position": {
                    p: statistics.fmean(
                        a["subtask_error_by_position"][str(p)]
                        for a in apps
                        if str(p) in a["subtask_error_by_position"]
                    )
                    for p in positions
                },
                "by_kind": {
                    k: statistics.fmean(
                        a["subtask_error_by_kind"][k] for a in apps if k in a["subtask_error_by_kind"]
                    )
                    for k in kinds
                },
            }
        )
    return rows


def _task_test(ref: list, other: list, kind: str) -> dict | None:
    """Sign test over the tasks or sub-tasks both sides have, each one's outcome averaged over its side's runs
    (the seeds of a pair, or every seed of each label), and the mean change in success over them with its normal
    95% half-width; None unless every run kept its outcomes."""
    if not ref or not other or any(o is None for o in ref + other):
        return None
    keys = sorted(set().union(*(o[kind] for o in ref)) & set().union(*(o[kind] for o in other)))

    def mean(runs, key):
        return statistics.fmean(o[kind][key] for o in runs if key in o[kind])

    ref_means, other_means = [mean(ref, k) for k in keys], [mean(other, k) for k in keys]
    diffs = [o - r for r, o in zip(ref_means, other_means, strict=True)]
    half = 1.96 * statistics.stdev(diffs) / math.sqrt(len(diffs)) if len(diffs) > 1 else 0.0
    return sign_test(ref_means, other_means) | {"difference": statistics.fmean(diffs), "ci95": half}


def _tests(ref: list, other: list) -> dict:
    """The sign tests of `other`'s runs against `ref`'s: over tasks, over sub-tasks, and over tasks by their
    count of right sub-tasks (a task's sub-tasks are not independent of each other)."""
    kinds = {"tasks_test": "tasks", "subtasks_test": "subtasks", "by_task_test": "subtasks_by_task"}
    return {name: _task_test(ref, other, kind) for name, kind in kinds.items()}


def versus(rows: list[dict], reference: str) -> list[dict]:
    """Each other label against the reference, paired by seed: mean difference in completion and in sub-task
    error with 95% t intervals over the paired seeds, and sign tests over tasks and sub-tasks (gained: right
    in this run and wrong in the reference)."""
    ref = next((r for r in rows if r["label"] == reference), None)
    if ref is None:
        raise RunError(
            f"reference {reference!r} is not a run label here ({', '.join(r['label'] for r in rows)})"
        )
    out = []
    for r in rows:
        if r is ref:
            continue
        pairs = [(i, ref["seed_ids"].index(s)) for i, s in enumerate(r["seed_ids"]) if s in ref["seed_ids"]]
        d = {}
        for metric in ("completion", "error"):
            diffs = [r[metric][i] - ref[metric][j] for i, j in pairs]
            d[metric] = (statistics.fmean(diffs), ci95(diffs)) if diffs else None
            d[f"{metric}_seed_power"] = seed_power(diffs)
        d |= _tests([ref["outcomes"][j] for _, j in pairs], [r["outcomes"][i] for i, _ in pairs])
        d["all_seeds"] = None
        if sorted(r["seed_ids"]) != sorted(ref["seed_ids"]):  # some seed unpaired: also every run of each
            d["all_seeds"] = {
                "seeds": [r["seeds"], ref["seeds"]],
                "completion": statistics.fmean(r["completion"]) - statistics.fmean(ref["completion"]),
                "error": statistics.fmean(r["error"]) - statistics.fmean(ref["error"]),
            } | _tests(ref["outcomes"], r["outcomes"])
        out.append({"label": r["label"], "reference": reference, "paired_seeds": len(pairs)} | d)
    return out


def versus_table(diffs: list[dict]) -> str:
    def cell(d, metric):
        v = d[metric]
        if v is None:
            return "no seed in common"
        out = f"{v[0] * 100:+.1f}" + (f" ± {v[1] * 100:.1f}" if d["paired_seeds"] > 1 else "") + " points"
        note = seed_power_note(d.get(f"{metric}_seed_power"), v[0])
        return out + (f" ({note})" if note else "")

    def test(t, sign=1, scale=100, digits=1):  # a share in points; by_task: counts per task (scale 1)
        if t is None:
            return ""
        diff = f"{sign * t['difference'] * scale:+.{digits}f} ± {t['ci95'] * scale:.{digits}f}"
        return f"{t['gained']} / {t['lost']}, p = {t['p']:.2g}; {diff}; 80% power at {power_cell(t, scale, digits)}"

    def by_task(t):
        return test(t, -1, 1, 2)

    lines = [
        "| run | against | paired seeds | completion difference | tasks gained / lost; completion difference "
        "| sub-task error difference | sub-tasks gained / lost; error difference "
        "| tasks with fewer / more sub-task errors; errors per task |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for d in diffs:
        cells = [d["label"], d["reference"], str(d["paired_seeds"]), cell(d, "completion")]
        cells += [test(d["tasks_test"]), cell(d, "error"), test(d["subtasks_test"], -1)]
        cells += [by_task(d["by_task_test"])]
        lines.append("| " + " | ".join(cells) + " |")
        a = d["all_seeds"]
        if a:
            cells = [d["label"], d["reference"], "every seed, {} / {}".format(*a["seeds"])]
            cells += [f"{a['completion'] * 100:+.1f} points (means)", test(a["tasks_test"])]
            cells += [f"{a['error'] * 100:+.1f} points (means)", test(a["subtasks_test"], -1)]
            cells += [by_task(a["by_task_test"])]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _spread(values: list[float]) -> str:
    mean = statistics.fmean(values)
    if len(values) == 1:
        return f"{mean:.1%}"
    return f"{mean:.1%} ({min(values):.1%}–{max(values):.1%})"


def table(rows: list[dict]) -> str:
    positions = sorted({p for r in rows for p in r["by_position"]})
    kinds = sorted({k for r in rows for k in r["by_kind"]})
    head = [
        "run",
        "seeds",
        "task goal completion",
        "sub-task error",
        *[f"pos {p}" for p in positions],
        *kinds,
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["label"], str(r["seeds"]), _spread(r["completion"]), _spread(r["error"])]
        cells += [f"{r['by_position'][p]:.0%}" if p in r["by_position"] else "" for p in positions]
        cells += [f"{r['by_kind'][k]:.0%}" if k in r["by_kind"] else "" for k in kinds]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(rows: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4), gridspec_kw={"width_ratios": [3, 2]})
    for r in rows:
        ps = sorted(r["by_position"])
        left.plot(ps, [r["by_position"][p] for p in ps], marker="o", label=r["label"])
    left.set_xlabel("sub-task position in the task")
    left.set_ylabel("sub-task error rate")
    left.set_ylim(-0.02, 1.02)
    left.grid(alpha=0.3)
    left.legend(fontsize=8)
    kinds = sorted({k for r in rows for k in r["by_kind"]})
    width = 0.8 / max(len(rows), 1)
    for i, r in enumerate(rows):
        right.bar(
            [j + i * width for j in range(len(kinds))],
            [r["by_kind"].get(k, 0.0) for k in kinds],
            width,
            label=r["label"],
        )
    right.set_xticks([j + width * (len(rows) - 1) / 2 for j in range(len(kinds))], kinds)
    right.set_ylabel("sub-task error rate")
    right.set_ylim(0, 1.02)
    right.set_title("by kind")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def subtasks(folders: list[str], out: str | Path = "subtasks", reference: str | None = None) -> Path:
    """Write subtasks.md, subtasks.json and subtasks.png for these apps runs into `out`; return the Markdown's
    path. `reference`: the label the others are set against (default: the first)."""
    if not folders:
        raise RunError("name at least one run folder")
    runs = [_apps_run(f) for f in folders]
    check_same_task(runs, allow_mixed=False)
    rows = summarise(runs)
    diffs = versus(rows, reference or rows[0]["label"])
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    title = f"sub-task errors: {runs[0]['task']} / {runs[0]['split']}"
    plot(rows, out / "subtasks.png", title)
    md = f"# {title}\n\n{table(rows)}\n\nMean over seeds; ranges are the lowest and highest seed.\n\n"
    if diffs:
        md += (
            f"{versus_table(diffs)}\n\nDifferences seed by seed: mean ± the half-width of its 95% t interval (none "
            "for one seed). Gained / lost: tasks (sub-tasks) right in the run and wrong in the reference, and the "
            "reverse, each one's outcome averaged over the paired seeds; p: exact two-sided sign test; then the "
            "difference over those tasks (sub-tasks), ± its normal 95% half-width. The last column pairs tasks by "
            "their count of failed sub-tasks (a task's sub-tasks are not independent of each other): tasks with "
            "fewer and with more errors in the run, the sign test, and the change in errors per task. Where some "
            'seed has no pair, a row "every seed" averages each task\'s outcome over all runs of each label '
            f"instead. 80% power at: {power_note('points; errors per task in the last column')} "
            f"{SEED_POWER_NOTE}"
            "\n\n"
        )
    md += "![](subtasks.png)\n"
    (out / "subtasks.md").write_text(md)
    (out / "subtasks.json").write_text(json.dumps({"rows": rows, "versus": diffs}, indent=1))
    return out / "subtasks.md"
