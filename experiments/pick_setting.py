"""Write CONFIG with its task set to the learnable setting of a calibration nearest a target pass@1.

    python experiments/pick_setting.py CALIBRATE_JSON CONFIG OUT_YAML [--target 0.4] [--any]

A setting is learnable when `teamtune calibrate` says so (pass@1 in the zone and above the best constant answer).
The task keeps CONFIG's split and limit; exits 1 when no setting is learnable (--any: take the nearest of all, for
smoke tests on random weights).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

from teamtune.config import read_yaml, resolve_config


def pick(rows: list[dict], target: float, any_row: bool = False) -> dict | None:
    learnable = [r for r in rows if r["learnable"] or any_row]
    return min(learnable, key=lambda r: abs(r["pass@1"] - target)) if learnable else None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("calibration")
    ap.add_argument("config")
    ap.add_argument("out")
    ap.add_argument("--target", type=float, default=0.4)
    ap.add_argument("--any", action="store_true", help="also settings that are not learnable")
    args = ap.parse_args()
    rows = json.loads(Path(args.calibration).read_text())["rows"]
    row = pick(rows, args.target, args.any)
    if row is None:
        print("no learnable setting in " + args.calibration, file=sys.stderr)
        return 1
    cfg = read_yaml(resolve_config(args.config))
    keep = {k: cfg["task"][k] for k in ("split", "limit") if k in cfg["task"]}
    cfg["task"] = {k: v for k, v in row["task"].items() if v is not None} | keep
    Path(args.out).write_text(yaml.safe_dump(cfg, sort_keys=False))
    print(f"picked {row['setting']}: pass@1 {row['pass@1']:.1%}, mixed {row['mixed']:.0%}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
