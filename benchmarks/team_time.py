"""Where the time of a leader-team rollout goes: each part's seconds against the whole rollout, in one run.

A `leader` team (3 peers + leader, GSM8K prompts, 256 new tokens, top-p 0.95) runs twice through `Team.run`;
the second run is split into parts by timing these calls (a device sync at each part's start and end):
  - `Engine.generate` outside the decoder: rendering the chat template, tokenising, decoding the completions;
  - the decoder's new buffers and graph capture (`_State`, `_capture`), when a stage's shape is new;
  - the prefill (`FastDecoder._prefill`);
  - the decode loop: the rest of `FastDecoder.generate` (graph replays, the host's checks every few steps);
  - outside the engine: the team's own work (building prompts, reading answers).
Once with the plain fast path and once with the decode step compiled (`TEAMTUNE_COMPILE_DECODE=1`).
`--label` names the code measured (e.g. a commit), so that two versions can sit side by side in the results.

    python benchmarks/team_time.py --model random:smollm2-135m --source .gpu/data/gsm8k
"""

from __future__ import annotations

import argparse
import functools
import os
import time
from collections import defaultdict

from teamtune import fastgen
from teamtune.agents import AgentConfig, ModelPool
from teamtune.fastgen import decoder
from teamtune.rollout import Engine, SamplingConfig
from teamtune.tasks import TaskConfig, load_task
from teamtune.team import Team, TeamConfig

from common import device_name, record, save_records, sync

SECONDS: dict[str, float] = defaultdict(float)


def timing(name: str, owner, attr: str, dev) -> None:
    """Wrap owner.attr so that its calls add their wall time (device synced) to SECONDS[name]."""
    fn = getattr(owner, attr)

    @functools.wraps(fn)
    def timed(*args, **kwargs):
        sync(dev)
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            sync(dev)
            SECONDS[name] += time.perf_counter() - t0

    setattr(owner, attr, timed)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="random:smollm2-135m")
    ap.add_argument("--problems", type=int, default=256)
    ap.add_argument("--new-tokens", type=int, default=256)
    ap.add_argument("--team-batch", type=int, default=1024)
    ap.add_argument("--source", default=None, help="GSM8K folder (default: the local shared datasets)")
    ap.add_argument("--label", default="", help="names the code measured, added to every record")
    ap.add_argument("--no-compile", action="store_true", help="the plain fast path only")
    ap.add_argument("--out", default="benchmarks/results/team_time.json")
    args = ap.parse_args()

    task = load_task(TaskConfig(name="gsm8k", split="test", source=args.source, limit=args.problems))
    s = SamplingConfig(max_new_tokens=args.new_tokens, temperature=0.7, top_p=0.95)
    agents = [AgentConfig("peer", sampling=s), AgentConfig("leader", sampling=s)]
    pool = ModelPool("auto", "auto", batch_size=args.team_batch, seed=0)
    dev = pool.engine(args.model).loaded.device
    if not pool.engine(args.model).uses_fast_path():
        raise SystemExit("team_time.py times the fast path: it needs CUDA (or TEAMTUNE_FAST=1)")
    name = device_name(dev)
    for label, owner, attr in (
        ("engine", Engine, "generate"),
        ("decoder", fastgen.FastDecoder, "generate"),
        ("new buffers and capture", fastgen.FastDecoder, "_capture"),
        ("new buffers and capture", decoder._State, "__init__"),
        ("prefill", fastgen.FastDecoder, "_prefill"),
    ):
        timing(label, owner, attr, dev)

    recs = []
    variants = [("plain", "0")] + ([] if args.no_compile else [("compiled", "1")])
    for variant, compiled in variants:
        os.environ["TEAMTUNE_COMPILE_DECODE"] = compiled
        pool = ModelPool("auto", "auto", batch_size=args.team_batch, seed=0)  # engines built with the setting
        team = Team(TeamConfig(layout="leader", model=args.model, peers=3, agents=agents), pool)
        team.run(task, task.problems)  # warm-up: compilation, first captures
        SECONDS.clear()
        sync(dev)
        t0 = time.perf_counter()
        episodes = team.run(task, task.problems)
        sync(dev)
        wall = time.perf_counter() - t0
        tokens = sum(e.cost.generated_tokens for e in episodes)
        part = dict(SECONDS)
        parts = {
            "render, tokenise, decode text": part["engine"] - part["decoder"],
            "new buffers and capture": part.get("new buffers and capture", 0.0),
            "prefill": part["prefill"],
            "decode loop": part["decoder"] - part["prefill"] - part.get("new buffers and capture", 0.0),
            "team, outside the engine": wall - part["engine"],
        }
        print(f"{variant}{' ' + args.label if args.label else ''}: {tokens / wall:,.0f} tok/s, {wall:.3f} s")
        extra = dict(
            variant=variant,
            label=args.label,
            problems=len(task.problems),
            rollout_tokens_per_second=tokens / wall,
        )
        for k, sec in parts.items():
            print(f"  {sec:7.3f} s  {sec / wall:6.1%}  {k}")
            recs.append(
                record(
                    f"team rollout part, {k}, {variant}{', ' + args.label if args.label else ''}",
                    name,
                    sec,
                    "seconds per rollout",
                    "the whole rollout (wall seconds, same run)",
                    wall,
                    **extra,
                )
            )
        save_records(args.out, recs)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
