"""Generated tokens/s of teamtune's fast decoding against transformers' static-cache compiled `generate`.

Figures, each against a baseline measured in the same run:
  1. raw decode at one batch size: `FastDecoder` vs `generate(cache_implementation="static")` (compiled);
  2. a `leader` team rollout (3 peers + leader, GSM8K prompts) through `Engine`'s fast path vs the same baseline;
  3. a 3-role team of LoRA adapters on one base, rows of all three mixed in one batch, vs the bare model
     (tokens/s and peak memory);
  4. the team of 2 with the top-p rejection draw (`TEAMTUNE_NUCLEUS=reject`) vs 2 (off the fast path: skipped);
  5. the team of 2 with the decode step compiled, keeping the top-p sort, vs 2 (skipped with --no-compile);
  6. the team of 5 with the rejection draw compiled with the step (what `TEAMTUNE_COMPILE_DECODE=1` runs) vs 5;
  7. the team of 6 with shared prompts (`TEAMTUNE_SHARE_PROMPTS=1`: the 3 peers of a problem hold its prompt
     once) vs 6;
  8. (`--parts cache`) the raw decode step with the attention kernel on prompts of mixed lengths, and with shared
     prompts (and with both) on groups of 8 samples, each vs the same decoder without them.
Random weights never stop early, so every row generates the full budget on both sides.

    python benchmarks/fast_generate.py --model random:smollm2-135m --source .gpu/data/gsm8k
    python benchmarks/fast_generate.py --model tiny-random --batch 8 --new-tokens 16 --problems 4 --no-compile
    python benchmarks/fast_generate.py --parts mixed      # figure 3 alone (no baseline compile, no GSM8K)
    python benchmarks/fast_generate.py --parts cache      # figure 8 alone
"""

from __future__ import annotations

import argparse
import gc
import os
import time

import torch
from peft import LoraConfig, get_peft_model

from teamtune.agents import AgentConfig, ModelPool
from teamtune.fastgen import FastDecoder, attention_kernel, lora_kernel
from teamtune.models import load_model
from teamtune.rollout import SamplingConfig
from teamtune.tasks import TaskConfig, load_task
from teamtune.team import Team, TeamConfig

from common import device_name, record, save_records, sync

SAMPLING = dict(do_sample=True, temperature=0.7, top_p=0.95)


def timed(fn, dev) -> float:
    sync(dev)
    t0 = time.perf_counter()
    fn()
    sync(dev)
    return time.perf_counter() - t0


def hf_static(model, ids, new: int, compile_: bool) -> float:
    """Seconds for transformers' static-cache `generate` (compiled unless told not to), after warm-up."""
    kw = dict(
        input_ids=ids,
        attention_mask=torch.ones_like(ids),
        max_new_tokens=new,
        min_new_tokens=new,
        pad_token_id=2,
        cache_implementation="static",
        top_k=0,
        **SAMPLING,
    )
    if not compile_:
        model.generation_config.compile_config = None
        kw["disable_compile"] = True
    for _ in range(2):  # compilation and CUDA-graph recording happen here
        model.generate(**kw)
    return timed(lambda: model.generate(**kw), ids.device)


def team_rollout(team: Team, task, dev) -> float:
    """Generated tokens/s of one team run over the task's problems, after a warm-up run (capture, compilation)."""
    team.run(task, task.problems)
    t0 = time.perf_counter()
    episodes = team.run(task, task.problems)
    sync(dev)
    return sum(e.cost.generated_tokens for e in episodes) / (time.perf_counter() - t0)


def fast(model, prompts, adapters, new: int, dec: FastDecoder) -> float:
    kw = dict(max_new_tokens=new, pad=2, eos=[10**9], seed=0, **SAMPLING)  # no end token: full length
    dec.generate(model, prompts, adapters, **kw)  # capture
    return timed(lambda: dec.generate(model, prompts, adapters, **kw), model.device)


def measured(model, prompts, adapters, new: int) -> tuple[float, int]:
    """Tokens/s of the fast path and the peak memory (weights, cache and all) while it ran (CUDA only)."""
    dev = model.device
    if dev.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    with torch.inference_mode():
        rate = len(prompts) * new / fast(model, prompts, adapters, new, FastDecoder())
    return rate, torch.cuda.max_memory_allocated() if dev.type == "cuda" else 0


def decode_and_team(args, m, ids, prompts: list, name: str, recs: list) -> None:
    """Figures 1, 2 and 4-6 (2 and 4-6 with --parts team), added to `recs` and saved as each is measured."""
    dev, new = m.device, args.new_tokens
    with torch.inference_mode():
        base_s = hf_static(m.model, ids, new, not args.no_compile)
        base = args.batch * new / base_s
        baseline = f"transformers generate, static cache{'' if args.no_compile else ', compiled'}, batch {args.batch}"
        dec = FastDecoder()
        ours = args.batch * new / fast(m.model, prompts, [None] * args.batch, new, dec)
        print(
            f"decode batch {args.batch}: fast {ours:,.0f} tok/s, baseline {base:,.0f} tok/s, {ours / base:.2f}x"
        )
        recs.append(record("fast_decode", name, ours, "generated tokens/s", baseline, base, batch=args.batch))
    save_records(args.out, recs)

    if "team" not in args.parts:
        return
    # 2. leader team through the engine (GSM8K prompts, 3 peers + leader, each stage one batched call)
    task = load_task(TaskConfig(name="gsm8k", split="test", source=args.source, limit=args.problems))
    s = SamplingConfig(max_new_tokens=new, temperature=0.7, top_p=0.95)
    agents = [AgentConfig("peer", sampling=s), AgentConfig("leader", sampling=s)]

    def leader_team(**env) -> Team:
        """A team on its own pool, whose engines are built under these TEAMTUNE_* settings."""
        os.environ.update(env)
        pool = ModelPool("auto", "auto", batch_size=args.team_batch, seed=0)
        return Team(TeamConfig(layout="leader", model=args.model, peers=3, agents=agents), pool)

    plain_env = {"TEAMTUNE_NUCLEUS": "sort", "TEAMTUNE_COMPILE_DECODE": "0", "TEAMTUNE_SHARE_PROMPTS": "0"}
    team = leader_team(**plain_env)
    engine = team.agents[0].engine
    team_rate = team_rollout(team, task, dev)
    print(f"leader team: {team_rate:,.0f} tok/s ({team_rate / base:.2f}x)")
    recs.append(
        record(
            "team_rollout_leader_3peers",
            name,
            team_rate,
            "generated tokens/s",
            baseline,
            base,
            problems=len(task.problems),
            engine_batch=args.team_batch,
            fast_path=engine.uses_fast_path(),
        )
    )
    save_records(args.out, recs)
    if engine.uses_fast_path():
        # 4-6. the same team with the top-p rejection draw, with the decode step compiled, and with both; each on
        # its own pool, so that its engines are built that way. Label: (settings, the variant it is measured against)
        # 7. and with shared prompts (the 3 peers of a problem hold its prompt once) against the same without
        sort = "the same team, {} fast path with the top-p sort"
        variants = {"rejection_draw": ({"TEAMTUNE_NUCLEUS": "reject"}, "plain", sort.format("plain"))}
        if not args.no_compile:
            best = {"TEAMTUNE_COMPILE_DECODE": "1", "TEAMTUNE_NUCLEUS": "reject"}
            variants["compiled_decode"] = ({"TEAMTUNE_COMPILE_DECODE": "1"}, "plain", sort.format("plain"))
            variants["compiled_decode_rejection_draw"] = (best, "compiled_decode", sort.format("compiled"))
            variants["compiled_decode_rejection_draw_shared_prompts"] = (
                best | {"TEAMTUNE_SHARE_PROMPTS": "1"},
                "compiled_decode_rejection_draw",
                "the same team, compiled with the rejection draw, a prompt cache per row",
            )
        rates = {"plain": team_rate}
        for label, (env, against, vs) in variants.items():
            team = leader_team(**{**plain_env, **env})
            rates[label] = rate = team_rollout(team, task, dev)
            print(f"leader team, {label}: {rate:,.0f} tok/s ({rate / rates[against]:.2f}x {vs})")
            recs.append(
                record(
                    f"team_rollout_leader_3peers_{label}",
                    name,
                    rate,
                    "generated tokens/s",
                    vs,
                    rates[against],
                    vs_transformers_static_compiled=rate / base,
                    problems=len(task.problems),
                    engine_batch=args.team_batch,
                    nucleus=team.agents[0].engine._decoder.nucleus,
                    compiled=team.agents[0].engine._decoder.compile_step,
                )
            )
            save_records(args.out, recs)


def mixed_adapters(args, m, prompts: list, name: str, recs: list) -> None:
    """Figure 3: three LoRA roles on one base, mixed in one batch, vs the bare model (same batch, same tokens)."""
    dev, new = m.device, args.new_tokens
    gc.collect()  # figure 2's teams first, so that peak memory is this decoder's alone
    if dev.type == "cuda":
        torch.cuda.empty_cache()
    bare_rate, bare_peak = measured(m.model, prompts, [None] * args.batch, new)
    cfg = LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", init_lora_weights=False)
    roles = ["planner", "executor", "verifier"]
    team_model = get_peft_model(m.model, cfg, adapter_name=roles[0])
    for r in roles[1:]:
        team_model.add_adapter(r, cfg)
    team_model.to(dev).eval()
    rows = [roles[i % 3] for i in range(args.batch)]
    mixed_rate, mixed_peak = measured(team_model, prompts, rows, new)
    print(
        f"3 LoRA roles mixed: {mixed_rate:,.0f} tok/s vs bare {bare_rate:,.0f} ({mixed_rate / bare_rate:.2f}x); "
        f"peak memory {mixed_peak / 2**20:,.0f} MiB vs {bare_peak / 2**20:,.0f} MiB"
    )
    if lora_kernel.available(dev):  # the same batch through the mask product and GEMM the kernel replaces
        os.environ["TEAMTUNE_LORA_KERNEL"] = "0"
        mask_rate, _ = measured(team_model, prompts, rows, new)
        del os.environ["TEAMTUNE_LORA_KERNEL"]
        print(
            f"  without the Triton kernel (mask product + GEMM): {mask_rate:,.0f} tok/s ({mask_rate / bare_rate:.2f}x)"
        )
        recs.append(
            record(
                "mixed_adapters_3roles_tokens_lora_kernel",
                name,
                mixed_rate,
                "generated tokens/s",
                "the same mixed batch, mask product + GEMM (TEAMTUNE_LORA_KERNEL=0)",
                mask_rate,
            )
        )
    recs.append(
        record(
            "mixed_adapters_3roles_tokens",
            name,
            mixed_rate,
            "generated tokens/s",
            f"bare model, same batch ({args.batch})",
            bare_rate,
        )
    )
    recs.append(
        record(
            "mixed_adapters_3roles_memory",
            name,
            mixed_peak / 2**20,
            "peak MiB while generating (base + 3 adapters r16 all-linear)",
            "bare model, same batch (peak MiB)",
            bare_peak / 2**20,
        )
    )
    save_records(args.out, recs)


def cache_reads(args, m, name: str, recs: list) -> None:
    """Figure 8: what reading less of the KV cache gives the raw decode step, each against the same decoder
    without it on the same prompts: the attention kernel (each row's valid keys alone) on prompts of mixed
    lengths, and shared prompts, alone and with the kernel, on groups of 8 samples of one prompt."""
    dev, new, n = m.device, args.new_tokens, args.batch
    gen = torch.Generator().manual_seed(1)
    lengths = torch.randint(args.prompt // 4, args.prompt + 1, (n,), generator=gen).tolist()
    mixed = [torch.randint(100, 40000, (t,), generator=gen).tolist() for t in lengths]
    grouped = [p for p in mixed[: n // 8] for _ in range(8)]
    with torch.inference_mode():
        for label, prompts, on in (
            ("attention_kernel", mixed, FastDecoder(attention_kernel=True)),
            ("shared_prompts", grouped, FastDecoder(share_prompts=True)),
            (
                "shared_prompts_attention_kernel",
                grouped,
                FastDecoder(share_prompts=True, attention_kernel=True),
            ),
        ):
            off = n * new / fast(m.model, prompts, [None] * n, new, FastDecoder())
            rate = n * new / fast(m.model, prompts, [None] * n, new, on)
            print(f"decode batch {n}, {label}: {rate:,.0f} tok/s against {off:,.0f} ({rate / off:.2f}x)")
            recs.append(
                record(
                    f"decode_{label}",
                    name,
                    rate,
                    "generated tokens/s",
                    f"the same decoder without it, same prompts (batch {n}, {args.prompt // 4}-{args.prompt} "
                    "prompt tokens" + (", 8 rows a prompt)" if prompts is grouped else ")"),
                    off,
                    kernel_ran="attention_kernel" not in label or attention_kernel.available(dev),
                )
            )
            save_records(args.out, recs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="random:smollm2-135m")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--team-batch", type=int, default=1024, help="engine batch size of the team rollout")
    ap.add_argument("--prompt", type=int, default=128)
    ap.add_argument("--new-tokens", type=int, default=256)
    ap.add_argument("--problems", type=int, default=256, help="GSM8K problems of the team rollout")
    ap.add_argument("--source", default=None, help="GSM8K folder (default: the local shared datasets)")
    ap.add_argument("--no-compile", action="store_true", help="baseline without torch.compile")
    ap.add_argument("--out", default="benchmarks/results/fast_generate.json")
    ap.add_argument(
        "--parts", nargs="+", choices=["decode", "team", "mixed", "cache"], default=["decode", "team", "mixed"],
        help="decode: figure 1; team: 2 and 4-7 (needs decode's baseline); mixed: 3; cache: 8",
    )  # fmt: skip
    args = ap.parse_args()
    if "team" in args.parts and "decode" not in args.parts:
        ap.error("--parts team compares against decode's baseline: add decode")

    m = load_model(args.model)
    dev, name = m.device, device_name(m.device)
    torch.manual_seed(0)
    ids = torch.randint(100, 40000, (args.batch, args.prompt), device=dev)
    prompts = ids.tolist()
    recs = []
    if "decode" in args.parts:
        decode_and_team(args, m, ids, prompts, name, recs)
    if "mixed" in args.parts:
        mixed_adapters(args, m, prompts, name, recs)
    if "cache" in args.parts:
        cache_reads(args, m, name, recs)
    print(f"wrote {args.out}")  # after each figure, so a run cut short keeps what it measured


if __name__ == "__main__":
    main()
