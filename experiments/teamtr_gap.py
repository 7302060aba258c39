"""The TeamTR claim's numbers: the gap teamtr - stale against the number of agents, from the runs of
experiments/teamtr_warm.sh (or teamtr.sh): per team size, each mode's test accuracy over seeds, the gap seed by seed
with its 95% t interval, the sign test of `teamtune compare` where it ran, regressions on the judge split, and how
often the trust region acted; over sizes, the least-squares slope of the per-seed gap on the number of agents with
its 95% interval (the paper: the gap grows with the team).

usage: python experiments/teamtr_gap.py RUNS_DIR [--name gymwarm] [--agents 2 3 4] [--out RUNS_DIR/gap]
writes gap.json, gap.md and gap.png into --out.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path

from teamtune.analysis.stats import T975, Z975, ci95, power_cell, power_note, sign_test

MODES = ("teamtr", "stale", "single")


def run_stats(folder: Path) -> dict | None:
    """One run: its test accuracy and what its training log says (None while it has no evaluation)."""
    metrics = folder / "eval-test" / "metrics.json"
    if not metrics.is_file():
        return None
    rows = [json.loads(line) for line in (folder / "log.jsonl").read_text().splitlines() if line.strip()]
    train = json.loads((folder / "train_metrics.json").read_text())
    judged = [r["accuracy"] for r in rows if "accuracy" in r]
    return {
        "accuracy": json.loads(metrics.read_text())["accuracy"],
        "updates": len(rows),
        "regressions": train.get("regressions", 0),
        "trust_region_stops": sum(bool(r.get("trust_region_stop")) for r in rows),
        "max_kl": max((r["kl"] for r in rows), default=0.0),
        "signal": statistics.fmean(r["signal"] for r in rows) if rows and "signal" in rows[0] else None,
        "judge_last": judged[-1] if judged else None,
        "seconds": train.get("seconds"),
    }


def slope(points: list[tuple[float, float]]) -> dict | None:
    """Least-squares slope of y on x with its 95% t interval (n - 2 degrees of freedom)."""
    n = len(points)
    xs = [x for x, _ in points]
    if n < 3 or len(set(xs)) < 2:
        return None
    mx, my = statistics.fmean(xs), statistics.fmean(y for _, y in points)
    sxx = sum((x - mx) ** 2 for x in xs)
    b = sum((x - mx) * (y - my) for x, y in points) / sxx
    resid = sum((y - my - b * (x - mx)) ** 2 for x, y in points)
    se = math.sqrt(resid / (n - 2) / sxx)
    return {"slope": b, "ci95": T975.get(n - 2, Z975) * se, "points": n}


def gather(runs: Path, name: str, agents: list[int]) -> dict:
    sizes = {}
    for n in agents:
        per = {m: {} for m in MODES}
        for m in MODES:
            for f in sorted(runs.glob(f"{name}-{n}-{m}-s*")):
                stats = run_stats(f) if f.is_dir() else None
                if stats:
                    per[m][int(f.name.rsplit("-s", 1)[1])] = stats
        gaps = [
            per["teamtr"][s]["accuracy"] - per["stale"][s]["accuracy"]
            for s in per["teamtr"]
            if s in per["stale"]
        ]
        cmp = runs / f"{name}-{n}-compare" / "compare.json"
        test = None
        if cmp.is_file():
            rows = {r["label"]: r for r in json.loads(cmp.read_text())["runs"]}
            test = next((r["vs_reference"] for lab, r in rows.items() if lab.endswith(", teamtr")), None)
        untrained = runs / f"{name}-{n}-untrained" / "metrics.json"
        warm = runs / f"{name}-{n}-warm-start" / "metrics.json"
        sizes[n] = {
            "modes": {
                m: {
                    "seeds": sorted(per[m]),
                    "accuracy": statistics.fmean(v["accuracy"] for v in per[m].values()) if per[m] else None,
                    "ci95": ci95([v["accuracy"] for v in per[m].values()]) if per[m] else None,
                    "runs": per[m],
                }
                for m in MODES
            },
            "untrained": json.loads(untrained.read_text())["accuracy"] if untrained.is_file() else None,
            # the team after its warm start, before RL (a config with warm_start, shared by the size's runs)
            "warm_start": json.loads(warm.read_text())["accuracy"] if warm.is_file() else None,
            "gap": {
                "per_seed": gaps,
                "mean": statistics.fmean(gaps) if gaps else None,
                "ci95": ci95(gaps) if len(gaps) > 1 else None,
            },
            "sign_test": test,
        }
    points = [(n, g) for n in agents for g in sizes[n]["gap"]["per_seed"]]
    return {"name": name, "sizes": sizes, "gap_slope": slope(points), "regressions": regression_gap(sizes)}


def regression_gap(sizes: dict) -> dict | None:
    """Regressions on the judge split, teamtr - stale, paired by team size and seed and pooled over sizes: the
    mean difference per run with its 95% t interval, and the sign test over the pairs (the paper: fewer)."""
    diffs = []
    for size in sizes.values():
        teamtr, stale = size["modes"]["teamtr"]["runs"], size["modes"]["stale"]["runs"]
        diffs += [float(teamtr[s]["regressions"] - stale[s]["regressions"]) for s in teamtr if s in stale]
    if not diffs:
        return None
    test = sign_test([0.0] * len(diffs), diffs)
    return {"per_pair": diffs, "mean": statistics.fmean(diffs), "ci95": ci95(diffs), "sign_test": test}


def pct(x: float | None, ci: float | None = None) -> str:
    if x is None:
        return "—"
    return f"{100 * x:.1f}%" + (f" ± {100 * ci:.1f}" if ci else "")


def markdown(result: dict) -> str:
    head = "| agents | untrained team | warm start, before RL | teamtr | stale | single | teamtr - stale (seeds) | sign test, problems gained / lost, p | regressions per run (teamtr / stale / single) | trust-region stops (teamtr / stale / single) | largest KL (teamtr) |"
    lines = [head, "|" + "---|" * head.count(" | ") + "---|"]
    for n, s in result["sizes"].items():
        m = s["modes"]
        g, t = s["gap"], s["sign_test"]
        gap = "—" if g["mean"] is None else f"{100 * g['mean']:+.1f}"
        if g["ci95"] is not None:
            gap += f" ± {100 * g['ci95']:.1f}"
        if g["mean"] is not None:
            gap += f" ({len(g['per_seed'])} seeds)"
        test = (
            "—" if not t else f"{t['gained']} / {t['lost']}, p = {t['p']:.2g}; 80% power at {power_cell(t)}"
        )

        def each(key: str, fmt, m=m) -> str:
            return " / ".join(
                fmt(statistics.fmean(r[key] for r in m[k]["runs"].values())) if m[k]["runs"] else "—"
                for k in MODES
            )

        kl = max((r["max_kl"] for r in m["teamtr"]["runs"].values()), default=None)
        cells = [str(n), pct(s["untrained"]), pct(s["warm_start"])]
        cells += [pct(m[k]["accuracy"], m[k]["ci95"]) for k in MODES]
        cells += [
            gap,
            test,
            each("regressions", lambda v: f"{v:.1f}"),
            each("trust_region_stops", lambda v: f"{v:.1f}"),
        ]
        cells.append("—" if kl is None else f"{kl:.4f}")
        lines.append("| " + " | ".join(cells) + " |")
    sl = result["gap_slope"]
    lines.append("")
    lines.append(
        "Slope of the per-seed gap on the number of agents: "
        + (
            "not enough runs"
            if not sl
            else f"{100 * sl['slope']:+.2f} ± {100 * sl['ci95']:.2f} points per agent ({sl['points']} runs)"
        )
        + ". ± is the 95% t interval over seeds; the sign test pairs problems (each problem's accuracy over seeds); "
        + f"80% power at: {power_note()}"
    )
    r = result.get("regressions")
    if r:
        t = r["sign_test"]
        lines.append("")
        lines.append(
            f"Regressions per run, teamtr - stale, paired by size and seed: {r['mean']:+.1f} ± {r['ci95']:.1f} "
            f"({len(r['per_pair'])} pairs; fewer in {t['lost']}, more in {t['gained']}, sign test p = {t['p']:.2g})."
        )
    return "\n".join(lines) + "\n"


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    ns = list(result["sizes"])
    for m in MODES:
        ys = [result["sizes"][n]["modes"][m]["accuracy"] for n in ns]
        es = [result["sizes"][n]["modes"][m]["ci95"] or 0 for n in ns]
        keep = [i for i, y in enumerate(ys) if y is not None]
        a.errorbar(
            [ns[i] for i in keep],
            [ys[i] for i in keep],
            [es[i] for i in keep],
            marker="o",
            capsize=3,
            label=m,
        )
    un = [(n, result["sizes"][n]["untrained"]) for n in ns if result["sizes"][n]["untrained"] is not None]
    if un:
        a.plot([n for n, _ in un], [y for _, y in un], "k--", marker="x", label="untrained team")
    ws = [(n, result["sizes"][n]["warm_start"]) for n in ns]
    ws = [(n, y) for n, y in ws if y is not None]
    if ws:
        a.plot([n for n, _ in ws], [y for _, y in ws], "k:", marker="+", label="warm start, before RL")
    a.set(xlabel="agents", ylabel="test accuracy", xticks=ns)
    a.legend(fontsize=8)
    a.grid(alpha=0.3)
    for n in ns:
        g = result["sizes"][n]["gap"]
        b.scatter([n] * len(g["per_seed"]), g["per_seed"], color="grey", s=12)
        if g["mean"] is not None:
            b.errorbar([n], [g["mean"]], [g["ci95"] or 0], marker="o", color="C0", capsize=4)
    b.axhline(0, color="k", lw=0.8)
    b.set(xlabel="agents", ylabel="teamtr - stale (accuracy)", xticks=ns)
    b.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", type=Path)
    ap.add_argument("--name", default="gymwarm")
    ap.add_argument("--agents", type=int, nargs="+", default=[2, 3, 4])
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    out = args.out or args.runs / f"{args.name}-gap"
    out.mkdir(parents=True, exist_ok=True)
    result = gather(args.runs, args.name, args.agents)
    (out / "gap.json").write_text(json.dumps(result, indent=1))
    (out / "gap.md").write_text(markdown(result))
    plot(result, out / "gap.png")
    print(markdown(result))


if __name__ == "__main__":
    main()
