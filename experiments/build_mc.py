"""Write multiple choice in the `cais/mmlu` record format from a task whose answers are numbers (no MMLU copy is
kept here; `teamtune.tasks.mmlu.numeric_choices` says how the wrong choices are made). The output folder is a
local source for `task.name=mmlu task.source=OUT_DIR task.split=<split>`.

    python experiments/build_mc.py OUT_DIR [--task gsm8k] [--splits train test] [--choices 4] [--seed 0]
        [--warm N] [task overrides, e.g. source=../shared/datasets/gsm8k, or gym={chain_sum: {...}} with --task gym]

--warm N moves the first N questions of the train split to a split of their own, `warm` (warm.jsonl), so that an
SFT warm start (configs/sft_mc_warm.yaml) and RL on `train` never see the same question.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from teamtune.config import ConfigError, load_config
from teamtune.records import DataError
from teamtune.tasks import TaskConfig, load_task
from teamtune.tasks.mmlu import numeric_choices


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--task", default="gsm8k")
    ap.add_argument("--splits", nargs="+", default=["train", "test"])
    ap.add_argument("--choices", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--warm", type=int, default=0, help="train questions moved to warm.jsonl")
    ap.add_argument("overrides", nargs="*", help="task settings, e.g. source=DIR limit=2000")
    args = ap.parse_intermixed_args()
    if args.warm < 0:
        ap.error("--warm counts train questions: give 0 or more")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for i, split in enumerate(args.splits):
        try:
            cfg = load_config(TaskConfig, None, [f"name={args.task}", f"split={split}", *args.overrides])
            task = load_task(cfg)
            records = numeric_choices(task.problems, f"{args.task}_numeric", args.choices, args.seed + i)
        except (ConfigError, DataError, ValueError) as e:
            raise SystemExit(f"error: {args.task} {split}: {e}") from None
        parts = {split: records}
        if split == "train" and args.warm:
            if args.warm >= len(records):
                raise SystemExit(
                    f"error: --warm {args.warm} leaves no train questions (there are {len(records)})"
                )
            parts = {"warm": records[: args.warm], "train": records[args.warm :]}
        for name, recs in parts.items():
            with (out / f"{name}.jsonl").open("w") as f:
                f.writelines(json.dumps(r) + "\n" for r in recs)
            print(f"{out / f'{name}.jsonl'}: {len(recs)} of {len(task.problems)} {split} problems")


if __name__ == "__main__":
    main()
