"""`teamtune calibrate`: where a model's tasks give group-relative RL a signal.

For each task setting, the model samples k answers to each of N problems. pass@1 is the mean of their
rewards' correctness; a problem is *mixed* when some of its k answers are right and some wrong: only those
give GRPO a non-zero advantage. Settings whose pass@1 lies in `zone` and above the best constant answer (always
giving the most frequent gold answer: about 1/options on multiple choice) are named the learnable zone; below that
floor GRPO's signal teaches the answer format and the label prior before anything of the task. The constant is a
floor under chance, not chance itself: where each question offers its own candidates, a uniform pick among them
scores more.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from rich.console import Console

from ..agents import AgentConfig, ModelPool, run_calls
from ..config import save_config, to_dict
from ..console import RunConsole
from ..rollout import DecodeConfig, SamplingConfig
from ..tasks import TaskConfig, best_constant, load_task


@dataclass
class CalibrateConfig:
    model: str = "smollm2-135m"
    settings: list[TaskConfig] = field(default_factory=list)  # the task settings to measure
    k: int = 8  # answers sampled per problem (the GRPO group size to plan for)
    problems: int = 64  # N per setting (task.limit when a setting sets none)
    # as MLPO and TeamTR sample for training (top_p 1): set the temperature your recipe uses
    sampling: SamplingConfig = field(default_factory=lambda: SamplingConfig(256, temperature=1.0, top_p=1.0))
    zone: list[float] = field(default_factory=lambda: [0.15, 0.7])  # pass@1 bounds of the learnable zone
    decode: DecodeConfig = field(default_factory=DecodeConfig)  # fast path, compiled step, top-p draw
    batch_size: int = 256
    seed: int = 0
    device: str = "auto"
    output: str | None = None  # default runs/calibrate-<time>

    def validate(self) -> None:
        self.decode.validate()
        if not self.settings:
            raise ValueError("settings is empty: list the task settings to measure (e.g. [{name: gsm8k}])")
        if self.k < 2:
            raise ValueError("k must be at least 2: a group of one is never mixed")
        if self.problems < 1:
            raise ValueError("problems must be at least 1")
        if len(self.zone) != 2 or not 0 <= self.zone[0] < self.zone[1] <= 1:
            raise ValueError(f"zone must be [low, high] with 0 <= low < high <= 1, got {self.zone}")


def setting_label(t: TaskConfig) -> str:
    """A short readable name of one task setting: task, subset, difficulty, shots, split."""
    parts = [t.name] + ([t.subset] if t.subset else [])
    for name, knobs in t.gym.items():
        parts.append(" ".join(f"{k}={v}" for k, v in knobs.items()) if knobs else name)
    if t.shots:
        parts.append(f"{t.shots}-shot")
    if t.instruction:
        parts.append(f"'{' '.join(t.instruction.split()[:3])} ...'")
    return " ".join([*parts, t.split])


def group_stats(correct: list[list[bool]]) -> dict:
    """pass@1, the share of mixed groups, and the shares of all-right and all-wrong groups."""
    n, k = len(correct), len(correct[0])
    right = [sum(g) for g in correct]
    return {
        "pass@1": sum(right) / (n * k),
        "mixed": sum(0 < r < k for r in right) / n,
        "all_right": sum(r == k for r in right) / n,
        "all_wrong": sum(r == 0 for r in right) / n,
    }


def calibrate(cfg: CalibrateConfig, console: Console | None = None) -> Path:
    """Measure every setting; write calibrate.json, calibrate.md and calibrate.png; return the folder."""
    from ..evaluate import progress_bar, write_json

    console = console or RunConsole()
    tasks = [(setting_label(t), load_task(_with_limit(t, cfg.problems))) for t in cfg.settings]  # fail early
    out = Path(cfg.output or f"runs/calibrate-{time.strftime('%Y%m%d-%H%M%S')}")
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "config.yaml")
    rows = []
    with progress_bar(console) as progress:
        pool = ModelPool(cfg.device, "auto", cfg.batch_size, cfg.seed, progress, decode=cfg.decode)
        agent = pool.agent(AgentConfig("solver", sampling=cfg.sampling), cfg.model)
        for label, task in tasks:
            t0 = time.perf_counter()
            calls = [(agent, task.prompt(p)) for p in task.problems for _ in range(cfg.k)]
            done = run_calls(calls, label, task.stop)
            flags = [task.solves(c.text, task.problems[j // cfg.k]) for j, c in enumerate(done)]
            groups = [flags[i : i + cfg.k] for i in range(0, len(flags), cfg.k)]
            row = {"setting": label, "n": len(task), "k": cfg.k, **group_stats(groups)}
            row["task"] = to_dict(next(t for t in cfg.settings if setting_label(t) == label))
            answers = [task.read_answer(c.text, task.problems[j // cfg.k]) for j, c in enumerate(done)]
            row["answered"] = sum(a is not None for a in answers) / len(done)
            row["truncated"] = sum(c.finish == "length" for c in done) / len(done)
            row["generated_tokens"] = sum(c.cost.generated_tokens for c in done) / len(done)
            row["seconds"] = time.perf_counter() - t0
            row["constant_answer"], row["constant"] = best_constant(task.problems)
            row["learnable"] = zone_of(row, cfg.zone) == "learnable"
            rows.append(row)
            console.print(
                f"{label}: pass@1 {row['pass@1']:.1%}, mixed groups {row['mixed']:.0%}"
                + (f" ({zone_of(row, cfg.zone)})" if zone_of(row, cfg.zone) else ""),
                highlight=False,
                soft_wrap=True,
            )
    result = {"model": cfg.model, "zone": cfg.zone, "k": cfg.k, "rows": rows}
    write_json(out / "calibrate.json", result)
    (out / "calibrate.md").write_text(markdown(result))
    plot(result, out / "calibrate.png")
    return out


def zone_of(row: dict, zone: list[float]) -> str:
    """ "learnable" (pass@1 in the zone and above the best constant answer), "at chance" (in the zone, not above
    the constant) or ""."""
    if not zone[0] <= row["pass@1"] <= zone[1]:
        return ""
    return "learnable" if row["pass@1"] > row.get("constant", 0.0) else "at chance"


def _with_limit(t: TaskConfig, n: int) -> TaskConfig:
    return t if t.limit is not None else replace(t, limit=n)


def markdown(result: dict) -> str:
    lo, hi = result["zone"]
    lines = [
        f"# Calibration: {result['model']}, k = {result['k']} samples per problem",
        "",
        f"Learnable zone: pass@1 between {lo:.0%} and {hi:.0%} and above the best constant answer (*constant*: "
        "always giving the most frequent gold answer; *at chance*: in the band but not above it). *mixed*: problems "
        "whose k answers are neither all right nor all wrong (the groups that give GRPO an advantage).",
        "",
        "| setting | problems | pass@1 | constant | mixed | all wrong | all right | answered | cut by budget | tokens "
        "| zone |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in result["rows"]:
        constant = (
            f"{r['constant']:.1%} {r['constant_answer']}" if "constant" in r else "—"
        )  # older files lack it
        lines.append(
            f"| {r['setting']} | {r['n']} | {r['pass@1']:.1%} | {constant} | {r['mixed']:.0%} "
            f"| {r['all_wrong']:.0%} | {r['all_right']:.0%} | {r['answered']:.0%} | {r['truncated']:.0%} "
            f"| {r['generated_tokens']:.0f} | {zone_of(r, [lo, hi])} |"
        )
    return "\n".join(lines) + "\n"


def plot(result: dict, path: Path) -> None:
    """pass@1 and mixed groups per setting as horizontal bars (labels are long), the learnable zone shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"][::-1]  # first setting on top
    fig, ax = plt.subplots(figsize=(10, 1.2 + 0.38 * len(rows)))
    ys = range(len(rows))
    ax.barh([y + 0.2 for y in ys], [r["pass@1"] for r in rows], 0.4, label="pass@1")
    ax.barh([y - 0.2 for y in ys], [r["mixed"] for r in rows], 0.4, label=f"mixed groups of {result['k']}")
    ax.axvspan(*result["zone"], color="green", alpha=0.08, label="learnable band (pass@1)")
    const = [(y + 0.2, r["constant"]) for y, r in zip(ys, rows, strict=True) if "constant" in r]
    if const:
        ax.scatter(
            [c for _, c in const],
            [y for y, _ in const],
            marker="|",
            s=120,
            color="black",
            zorder=3,
            label="best constant answer",
        )
    ax.set_yticks(list(ys), [r["setting"] for r in rows], fontsize=7)
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of samples (pass@1) or of problems (mixed)")
    ax.set_title(f"{Path(result['model']).name}: where GRPO gets a signal", fontsize=10)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
