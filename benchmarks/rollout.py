"""Generated tokens/s of a `leader` team (3 peers + leader) against a naive per-agent `model.generate` loop.

Both sides use the same model, prompts, sampling and token budget in the same run. The naive loop calls
`model.generate` once per agent and problem; it may be timed on the first `--naive-problems` problems only,
since it is slow and its rate does not depend on how many problems it runs.

    python benchmarks/rollout.py --model tiny-random --problems 64 --max-new-tokens 64
    python benchmarks/rollout.py --model random:smollm2-135m --problems 64 --max-new-tokens 128 --naive-problems 8
"""

from __future__ import annotations

import argparse
import time

import torch

from teamtune.agents import AgentConfig, ModelPool
from teamtune.rollout import SamplingConfig
from teamtune.tasks import TaskConfig, load_task
from teamtune.team import Team, TeamConfig, leader_prompt

from common import device_name, record, save_records, sync


def naive_loop(team: Team, task, problems, s: SamplingConfig) -> tuple[int, float]:
    """Generated tokens and seconds of one `model.generate` call per agent and problem."""
    *peers, leader = team.agents
    peers = peers * team.cfg.peers if len(peers) == 1 else peers
    engine = leader.engine
    model, tok, dev = engine.model, engine.tokenizer, engine.loaded.device

    def one(agent, user: str) -> tuple[str, int]:
        ids = tok(
            engine.render(agent.request(user).messages), return_tensors="pt", add_special_tokens=False
        ).to(dev)
        out = model.generate(
            **ids,
            max_new_tokens=s.max_new_tokens,
            do_sample=s.do_sample,
            temperature=s.temperature,
            top_p=s.top_p,
            top_k=0,
            pad_token_id=tok.pad_token_id,
        )
        new = out[0, ids["input_ids"].shape[1] :].tolist()
        n = next((i + 1 for i, t in enumerate(new) if t == tok.eos_token_id), len(new))
        return tok.decode(new[:n], skip_special_tokens=True), n

    tokens = 0
    sync(dev)
    t0 = time.perf_counter()
    for p in problems:
        answers = []
        for peer in peers:
            text, n = one(peer, task.prompt(p))
            answers.append(text)
            tokens += n
        tokens += one(leader, leader_prompt(task.prompt(p), answers))[1]
    sync(dev)
    return tokens, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="tiny-random")
    ap.add_argument("--problems", type=int, default=64)
    ap.add_argument(
        "--naive-problems", type=int, default=None, help="time the naive loop on this many (default all)"
    )
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument(
        "--source", default=None, help="GSM8K folder or file (default: the local shared datasets)"
    )
    ap.add_argument("--device", default="auto")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--out", default="benchmarks/results/rollout.json")
    args = ap.parse_args()

    task = load_task(TaskConfig(name="gsm8k", split="test", source=args.source, limit=args.problems))
    s = SamplingConfig(max_new_tokens=args.max_new_tokens, temperature=0.7, top_p=0.95)
    pool = ModelPool(args.device, args.dtype, batch_size=args.batch_size, seed=0)
    team = Team(
        TeamConfig(
            layout="leader",
            model=args.model,
            peers=3,
            agents=[AgentConfig("peer", sampling=s), AgentConfig("leader", sampling=s)],
        ),
        pool,
    )
    dev = team.agents[0].engine.loaded.device

    team.run(task, task.problems[:2])  # warm-up: kernels, allocator, caches
    naive_loop(team, task, task.problems[:1], s)

    sync(dev)
    t0 = time.perf_counter()
    episodes = team.run(task)
    sync(dev)
    team_s = time.perf_counter() - t0
    team_tokens = sum(e.cost.generated_tokens for e in episodes)
    n_naive = args.naive_problems or args.problems
    naive_tokens, naive_s = naive_loop(team, task, task.problems[:n_naive], s)

    value, base = team_tokens / team_s, naive_tokens / naive_s
    rec = record(
        "leader_team_rollout",
        device_name(dev),
        value,
        "generated tokens/s",
        "naive loop: model.generate once per agent and problem",
        base,
        model=args.model,
        problems=args.problems,
        naive_problems=n_naive,
        peers=3,
        max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size,
        dtype=str(team.agents[0].engine.model.dtype),
        team_seconds=team_s,
        team_generated_tokens=team_tokens,
        naive_seconds=naive_s,
        naive_generated_tokens=naive_tokens,
    )
    save_records(args.out, [rec])
    print(f"device: {rec['device']}")
    print(
        f"team (batched, 3 peers + leader, {args.problems} problems): {value:,.0f} generated tokens/s "
        f"({team_tokens} tokens in {team_s:.1f} s)"
    )
    print(
        f"naive loop ({n_naive} problems): {base:,.0f} generated tokens/s ({naive_tokens} tokens in {naive_s:.1f} s)"
    )
    print(f"ratio: {value / base:.1f}x  -> {args.out}")


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()
