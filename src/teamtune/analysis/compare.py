"""`teamtune compare RUN...`: eval runs of the same problems side by side, paired problem by problem.

For each run label (the seeds of one configuration): accuracy (mean over seeds, with a 95% t interval when
there are several), the accuracy of the best constant answer, an exact sign test against the reference
label over the problems both answered (each problem's accuracy over the seeds; one seed: the exact McNemar
test) with its power (`stats`), accuracy binned by how many of the team's peers were right on the problem,
and the sign test again over the problems where at most `few` peers were right (the "few peers correct"
case). Peers are re-graded with the run's task (or read from its outcomes.json); a run without peer turns (a
single agent) is binned by the peers of a run of the same seed that has them.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from ..config import from_dict, read_yaml
from ..records import outcomes
from ..tasks import TaskConfig, best_constant, load_task
from .pareto import RunError, by_label, check_same_task, load_run, read_json
from .stats import SEED_POWER_NOTE, ci95, power_cell, power_note, seed_power, seed_power_note, sign_test


def read_episodes(folder: Path) -> list[dict]:
    path = folder / "episodes.jsonl"
    if not path.is_file():
        raise RunError(f"{folder}: no episodes.jsonl (compare needs each problem's answers)")
    eps = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            ep = json.loads(line)
        except json.JSONDecodeError as e:
            raise RunError(f"{path}:{n}: not valid JSON ({e.msg})") from None
        missing = [k for k in ("problem_id", "correct", "turns") if not isinstance(ep, dict) or k not in ep]
        if missing:
            raise RunError(f"{path}:{n}: an episode without {missing[0]!r}")
        eps.append(ep)
    return eps


def read_outcomes(folder: Path, episodes: list[dict] | None = None) -> dict | None:
    """Each problem's right/wrong, and each apps sub-task's under "subtask_success": from the run's episodes
    (`episodes`, read already, or its episodes.jsonl), else from the outcomes.json `teamtune eval` writes beside
    them (kept where the episodes are not); None when the run has neither."""
    if episodes is None and (folder / "episodes.jsonl").is_file():
        episodes = read_episodes(folder)
    if episodes is not None:
        return outcomes(episodes)
    path = folder / "outcomes.json"
    if not path.is_file():
        return None
    data = read_json(path)
    correct = data.get("correct")
    if not isinstance(correct, dict) or not all(isinstance(v, bool) for v in correct.values()):
        raise RunError(f"{path}: 'correct' must map each problem id to true or false")
    subs = data.get("subtask_success", {})
    if not isinstance(subs, dict) or not all(isinstance(v, list) for v in subs.values()):
        raise RunError(f"{path}: 'subtask_success' must map each problem id to a list")
    peers = data.get("peers_right", {})
    if not isinstance(peers, dict) or not all(type(v) is int and v >= 0 for v in peers.values()):
        raise RunError(f"{path}: 'peers_right' must map each problem id to a count of peers")
    return (
        {"correct": correct}
        | ({"subtask_success": subs} if subs else {})
        | ({"peers_right": peers} if peers else {})
    )


def _read(folders: list[str]) -> tuple[list[dict], object]:
    runs = [load_run(f, "tokens") for f in folders]
    check_same_task(runs, allow_mixed=False)
    path = Path(folders[0]) / "config.yaml"
    if not path.is_file():
        raise RunError(f"{folders[0]}: no config.yaml (compare re-grades the peers with the run's task)")
    cfg = read_yaml(path)
    if not isinstance(cfg, dict) or not isinstance(cfg.get("task"), dict):
        raise RunError(f"{path}: no task section")
    task = load_task(from_dict(TaskConfig, cfg["task"], f"{path}: task"))
    problems = {p.id: p for p in task.problems}
    for r in runs:
        folder = Path(r["folder"])
        eps = read_episodes(folder) if (folder / "episodes.jsonl").is_file() else None
        kept = read_outcomes(folder, eps)
        if kept is None:
            raise RunError(
                f"{folder}: no episodes.jsonl or outcomes.json (compare needs each problem's outcome)"
            )
        unknown = [pid for pid in kept["correct"] if pid not in problems]
        if unknown:
            raise RunError(f"{r['folder']}: problem {unknown[0]!r} is not in the task of {folders[0]}")
        # peers right: re-graded from the episodes, else as outcomes.json kept them; None: binned by another
        # run's of the same seed, or not at all
        r["correct"] = kept["correct"]
        r["peers"] = (outcomes(eps, task) if eps else kept).get("peers_right") or None
    return runs, problems


def compare(
    folders: list[str], out: str | Path = "compare", reference: str | None = None, few: int = 1
) -> Path:
    """Write compare.json, compare.md and compare.png for these eval runs into `out`; return the Markdown.
    `few`: the "few peers right" test keeps the problems (of a seed) where at most this many peers were right."""
    if few < 0:
        raise RunError(f"--few counts peers right: give 0 or more, not {few}")
    runs, problems = _read(folders)
    groups = by_label(runs)
    ref = reference or next(iter(groups))
    peers_of = {}  # seed -> problem -> peers right, from the first run of that seed that has peers
    for r in runs:
        if r["peers"] is not None:
            peers_of.setdefault(r.get("seed"), r["peers"])

    def peers(r: dict) -> dict | None:  # the run's peers, or those of a run of its seed
        return r["peers"] or peers_of.get(r.get("seed"))

    def per_problem(rs: list[dict], most: int | None = None) -> dict:
        """Each problem's accuracy over the label's seeds (`most`: only the seeds where at most `most` peers were
        right on it)."""
        seen: dict[str, list[bool]] = {}
        for r in rs:
            right = peers(r) or {}
            for pid, c in r["correct"].items():
                if most is None or right.get(pid, most + 1) <= most:
                    seen.setdefault(pid, []).append(c)
        return {pid: sum(v) / len(v) for pid, v in seen.items()}

    # the best constant answer, as one more run per seed: what a leader that learnt only the label prior scores;
    # none where a problem has no gold answer (the apps world grades the world's state)
    ids = set().union(*(r["correct"] for r in runs))
    if all(problems[i].answer is not None for i in ids):
        gold, _ = best_constant(problems[i] for i in ids)
        const = {"correct": {i: problems[i].answer == gold for i in ids}, "peers": None}
        groups[f"constant {gold!r}"] = [
            const | {"seed": s, "accuracy": statistics.fmean(const["correct"].values())}
            for s in sorted({r.get("seed") for r in runs}, key=str)
        ]
    if ref not in groups:
        raise RunError(f"reference {ref!r} is not a run label here ({', '.join(groups)})")
    ref_out, ref_few = per_problem(groups[ref]), per_problem(groups[ref], few)
    ref_acc = statistics.fmean(r["accuracy"] for r in groups[ref])
    ref_by_seed = {r.get("seed"): r["accuracy"] for r in groups[ref]}
    rows = []
    for label, rs in groups.items():
        accs = [r["accuracy"] for r in rs]
        acc, ci = statistics.fmean(accs), (ci95(accs) if len(accs) > 1 else None)
        mine = per_problem(rs)
        common = sorted(set(mine) & set(ref_out))
        test = sign_test([ref_out[k] for k in common], [mine[k] for k in common])
        # the difference seed by seed (seeds the reference also has): its 95% t interval over seeds
        diffs = [r["accuracy"] - ref_by_seed[r.get("seed")] for r in rs if r.get("seed") in ref_by_seed]
        test["seed_difference"] = statistics.fmean(diffs) if diffs else None
        test["seed_ci95"] = ci95(diffs) if len(diffs) > 1 else None
        test["seed_power"] = seed_power(diffs)
        test["paired_seeds"] = len(diffs)
        test["same_seeds"] = sorted(map(str, ref_by_seed)) == sorted(str(r.get("seed")) for r in rs)
        bins: dict[int, list[bool]] = {}
        for r in rs:
            right = peers(r) or {}
            for pid, c in r["correct"].items():
                if right.get(pid) is not None:
                    bins.setdefault(right[pid], []).append(c)
        # the robustness case: the problems where few peers were right, paired with the reference's
        mine_few = per_problem(rs, few)
        both = sorted(set(mine_few) & set(ref_few))
        few_test = None
        if both:
            few_test = sign_test([ref_few[k] for k in both], [mine_few[k] for k in both]) | {
                "accuracy": statistics.fmean(mine_few[k] for k in both),
                "reference_accuracy": statistics.fmean(ref_few[k] for k in both),
            }
        rows.append(
            {
                "label": label,
                "seeds": sorted((r.get("seed") for r in rs), key=str),
                "accuracy": acc,
                "ci95": ci,
                "vs_reference": test | {"difference": acc - ref_acc},
                "by_peers_right": {
                    k: {"n": len(v), "accuracy": sum(v) / len(v)} for k, v in sorted(bins.items())
                },
                "few_peers_right": few_test,
            }
        )
    result = {"reference": ref, "problems": len(ids), "few": few, "runs": rows}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "compare.json").write_text(json.dumps(result, indent=1), encoding="utf-8")
    plot(rows, out / "compare.png")
    md = out / "compare.md"
    md.write_text(markdown(result), encoding="utf-8")
    return md


def markdown(result: dict) -> str:
    ref = result["reference"]
    bins = sorted({int(k) for r in result["runs"] for k in r["by_peers_right"]})
    head = ["run", "seeds", "accuracy", f"vs {ref}", "problems gained / lost", "sign test p", "80% power at"]
    head += [f"{b} peers right" for b in bins]
    few = result.get("few", 1)
    if bins:
        head.append(f"at most {few} peers right: accuracy vs {ref}, gained / lost, p")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in result["runs"]:
        t, ci = r["vs_reference"], r["ci95"]
        acc = f"{100 * r['accuracy']:.1f}%" + (f" ± {100 * ci:.1f}" if ci is not None else "")
        diff = f"{100 * t['difference']:+.1f}"
        ci = "" if t.get("seed_ci95") is None else f" ± {100 * t['seed_ci95']:.1f}"
        if r["label"] != ref and t.get("same_seeds"):
            diff += ci
        elif r["label"] != ref and t.get("seed_difference") is not None:  # over the seeds both have
            diff += f" (seeds both have: {100 * t['seed_difference']:+.1f}{ci})"
        cells = [r["label"], ", ".join(map(str, r["seeds"])), acc, diff]
        seeds = seed_power_note(t.get("seed_power"), t.get("seed_difference") or 0.0)
        power = power_cell(t) + (
            f" over problems; over seeds, {seeds}" if seeds and r["label"] != ref else ""
        )
        cells += [f"{t['gained']} / {t['lost']}", f"{t['p']:.3g}", power]
        for b in bins:
            cell = r["by_peers_right"].get(b)
            cells.append(f"{100 * cell['accuracy']:.0f}% ({cell['n']})" if cell else "")
        if bins:
            f = r.get("few_peers_right")
            cells.append(
                ""
                if not f or r["label"] == ref
                else f"{100 * f['accuracy']:.1f}% vs {100 * f['reference_accuracy']:.1f}% ({f['pairs']} problems); "
                f"{f['gained']} / {f['lost']}, p = {f['p']:.3g}; 80% power at {power_cell(f)}"
            )
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(
        f"{result['problems']} problems; *constant*: the best constant answer (where every problem has one). "
        "Sign test: exact, two-sided, over "
        f"the problems shared with {ref}, each problem's accuracy over the seeds (one seed: McNemar's test); "
        f"gained / lost: problems where the run is above / below it; 80% power at: {power_note()} {SEED_POWER_NOTE} "
        "± is the 95% t interval over seeds (of the "
        f"accuracy, and of the difference seed by seed where {ref} has the same seeds). Bins: "
        "problems by how many peers were right (n in brackets; over seeds, problem x seed). "
        f"*At most {few} peers right*: the paper's robustness case, paired with {ref} over the problems where, for "
        "some seed, both had at most that many peers right (each problem's accuracy over those seeds), with the "
        "sign test."
    )
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    binned = [r for r in rows if r["by_peers_right"]]
    bins = sorted({int(k) for r in binned for k in r["by_peers_right"]})
    fig, ax = plt.subplots(figsize=(7, 4))
    width = 0.8 / max(len(binned), 1)
    for i, r in enumerate(binned):
        cells = {int(k): v for k, v in r["by_peers_right"].items()}
        ax.bar(
            [b + i * width for b in bins],
            [cells.get(b, {}).get("accuracy", 0) for b in bins],
            width,
            label=r["label"],
        )
    ax.set_xticks([b + width * (len(binned) - 1) / 2 for b in bins], [str(b) for b in bins])
    ax.set_xlabel("peers right on the problem")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
