"""Seconds per whole RL step (rollout, log-probs, update) of teamtune's MLPO leader and TeamTR agent update,
against TRL's `GRPOTrainer` on the same model, prompts, group size and token budget, in the same run.

Workload (the defaults): SmolLM2-135M's shape (random weights: same speed), 64 prompts x 8 samples, up to 256
new tokens, LoRA r 16 on all linear layers, one optimiser step per rollout batch and no reference model (TRL's
defaults: `num_iterations=1`, `beta=0`). The prompts are the GSM8K questions teamtune ships, as chat messages.

- `mlpo`: the leader's step as `teamtune.train.mlpo` runs it: `Engine.generate` through the leader's adapter,
  rewards, `make_batch`, `update` (one clipped step in micro-batches; the old policy's log-probs come from
  its own first forward).
- `mlpo_eager`: the same step with nothing compiled (`decode.compile_step: false`, `policy.compile: false`).
- `mlpo_before`: the same step as teamtune ran it before two earlier speed-ups: decoding in the training
  model's float32 and a separate pass for the old policy's log-probs (also nothing compiled).
- `teamtr`: one agent's update as `teamtune.train.teamtr` runs it: the same, plus the trust region's KL check
  after the step (`max_kl`).
- `mlpo`, `teamtr` run as the recipes do with `policy.compile: true` and `decode.compile_step: true`: the decode
  step's pieces and the training forward's layers through torch.compile (regional: compiled once for every
  layer). The warm-up step's time, compilation included, is recorded as `first_step_seconds`.
- `mlpo_shared`, `teamtr_shared`: `mlpo`, `teamtr` with `decode.share_prompts: true` (a group's 8 samples hold,
  fill and read their prompt's keys and values once); `..._kernel`: with `decode.attention_kernel: true` (each
  row's valid keys alone); `..._shared_kernel`: both; each recorded also against `mlpo`, `teamtr` of the run.
  `--leader` gives every prompt the shape of an MLPO leader's (the question and three peer answers, here gold
  solutions of other problems), where the prompt is most of what each decode step reads.
- `trl` / `trl_no_gc`: `GRPOTrainer` with its default HF generation, as shipped (gradient checkpointing on) and
  with it off; seconds per optimiser step (`on_step_begin` to `on_step_end`, generation included).

The reward is a fixed function of the text (its length's parity), so groups have an advantage. Each variant
runs `--warmup` steps (compilation, CUDA graphs, allocator) before `--steps` timed ones.

    python benchmarks/rl_step.py                      # on a GPU; TRL and datasets must import
    python benchmarks/rl_step.py --model tiny-random --prompts 2 --group 2 --new-tokens 8 --steps 1 --warmup 1 \
        --variants mlpo teamtr --out /tmp/rl_step.json    # a smoke run on CPU
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import asdict

import torch

from teamtune.models import load_model
from teamtune.rollout import DecodeConfig, Engine, Request, SamplingConfig
from teamtune.tasks import TaskConfig, load_task
from teamtune.team import leader_prompt
from teamtune.train.common import LoraSettings, OptimSettings, make_optimizer, make_trainable
from teamtune.train.losses import group_advantages
from teamtune.train.policy import PolicySettings, compile_policy, logprobs, make_batch, update

from common import device_name, record, save_records, sync

LORA = LoraSettings(r=16, alpha=32, dropout=0.0)
# the variants that read less of the KV cache (suffixes of mlpo / teamtr), recorded against the plain step
FASTER = {
    "shared": "shared prompts",
    "kernel": "the attention kernel",
    "shared_kernel": "shared prompts and the attention kernel",
}


def questions(n: int, leader: bool = False) -> list[str]:
    """`n` GSM8K questions as prompts; `leader`: each with three peer answers after it, as MLPO's leader reads."""
    task = load_task(TaskConfig(name="gsm8k", source="sample"))
    ps = task.problems
    if not leader:
        return [task.prompt(ps[i % len(ps)]) for i in range(n)]
    peers = lambda i: [task.solution(ps[(i + j) % len(ps)]) for j in (1, 2, 3)]  # noqa: E731
    return [leader_prompt(task.prompt(ps[i % len(ps)]), peers(i)) for i in range(n)]


def reward(texts: list[str]) -> list[float]:
    return [float(len(t) % 2) for t in texts]


def ours(args, variant: str) -> dict:
    loaded = load_model(args.model, dtype="float32", seed=0)
    model = make_trainable(loaded, "lora", LORA)
    dev = loaded.device
    before = variant == "mlpo_before"
    compiled = variant.split("_")[0] in ("mlpo", "teamtr") and variant not in ("mlpo_eager", "mlpo_before")
    shared, kernel = "_shared" in variant, variant.endswith("_kernel")
    decode = (
        DecodeConfig(dtype="float32")
        if before
        else DecodeConfig(compile_step=compiled, share_prompts=shared, attention_kernel=kernel)
    )
    engine = Engine(loaded, batch_size=args.prompts * args.group, seed=0, decode=decode)
    s = PolicySettings(
        group_size=args.group, ppo_epochs=1, kl_coef=0.0, micro_batch=args.micro_batch, compile=compiled
    )
    compile_policy(model, s, dev)
    sampling = SamplingConfig(args.new_tokens, temperature=1.0, top_p=1.0)
    params = [p for p in model.parameters() if p.requires_grad]
    opt, sched = make_optimizer(model, OptimSettings(lr=1e-6, schedule="constant", warmup_steps=0), 10**6)
    pad = loaded.tokenizer.pad_token_id
    qs = questions(args.prompts * (args.warmup + args.steps), args.leader)
    phases = {"rollout": [], "logprobs": [], "update": [], "step": []}
    tokens, first = [], 0.0
    for k in range(args.warmup + args.steps):
        profiling = args.profile and k == args.warmup  # the first timed step, when asked
        if profiling:
            prof = torch.profiler.profile(record_shapes=False)
            prof.__enter__()
        prompts = qs[k * args.prompts : (k + 1) * args.prompts]
        reqs = [
            Request([{"role": "user", "content": q}], "default") for q in prompts for _ in range(args.group)
        ]
        sync(dev)
        t0 = time.perf_counter()
        model.eval()
        done = engine.generate(reqs, sampling, "rollout")
        rewards = torch.tensor(reward([c.text for c in done])).view(args.prompts, args.group)
        adv = group_advantages(rewards, True).flatten().tolist()
        batch = make_batch([c.prompt_ids for c in done], [c.tokens for c in done], adv, pad)
        sync(dev)
        t1 = time.perf_counter()
        if before:
            batch.old_logp = logprobs(model, batch, s.micro_batch, dev)
        sync(dev)
        t2 = time.perf_counter()
        update(model, params, opt, sched, batch, s, dev, max_kl=1e9 if variant.startswith("teamtr") else None)
        sync(dev)
        t3 = time.perf_counter()
        if profiling:
            prof.__exit__(None, None, None)
            sort = "cuda_time_total" if dev.type == "cuda" else "cpu_time_total"
            with open(f"{args.profile}.{variant}.txt", "w") as f:
                f.write(prof.key_averages().table(sort_by=sort, row_limit=50))
        if k == 0:
            first = t3 - t0
        if k >= args.warmup:
            for key, v in zip(phases, (t1 - t0, t2 - t1, t3 - t2, t3 - t0), strict=True):
                phases[key].append(v)
            tokens.append(sum(len(c.tokens) for c in done))
    return {
        "seconds_per_step": sum(phases["step"]) / len(phases["step"]),
        "phases": {k: sum(v) / len(v) for k, v in phases.items()},
        "generated_tokens_per_step": sum(tokens) / len(tokens),
        "first_step_seconds": first,
        "compiled": compiled,
        "fast_path": engine.uses_fast_path(),
        "decode": asdict(engine.decode),
        "micro_batch": args.micro_batch,
        "device": device_name(dev),
    }


def trl(args, gradient_checkpointing: bool) -> dict:
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    loaded = load_model(args.model, dtype="float32", seed=0)
    dev = loaded.device
    times: list[float] = []

    class Clock(TrainerCallback):
        def on_step_begin(self, *a, **k):
            sync(dev)
            self.t0 = time.perf_counter()

        def on_step_end(self, *a, **k):
            sync(dev)
            times.append(time.perf_counter() - self.t0)

    def rewards(completions, **kw):
        return reward([c[-1]["content"] if isinstance(c, list) else c for c in completions])

    steps = args.warmup + args.steps
    qs = questions(args.prompts * steps, args.leader)
    data = Dataset.from_list([{"prompt": [{"role": "user", "content": q}]} for q in qs])
    with tempfile.TemporaryDirectory() as out:
        cfg = GRPOConfig(
            output_dir=out,
            per_device_train_batch_size=args.micro_batch,
            gradient_accumulation_steps=args.prompts * args.group // args.micro_batch,
            num_generations=args.group,
            max_completion_length=args.new_tokens,
            temperature=1.0,
            top_p=1.0,
            learning_rate=1e-6,
            max_steps=steps,
            gradient_checkpointing=gradient_checkpointing,
            bf16=dev.type == "cuda",
            logging_steps=1,
            report_to="none",
            save_strategy="no",
            shuffle_dataset=False,
            seed=0,
        )
        peft = LoraConfig(r=LORA.r, lora_alpha=LORA.alpha, lora_dropout=0.0, target_modules="all-linear")
        trainer = GRPOTrainer(
            model=loaded.model,
            reward_funcs=rewards,
            args=cfg,
            train_dataset=data,
            processing_class=loaded.tokenizer,
            peft_config=peft,
            callbacks=[Clock()],
        )
        trainer.train()
        lengths = [
            r["completions/mean_length"] for r in trainer.state.log_history if "completions/mean_length" in r
        ]
    timed = times[args.warmup :]
    return {
        "seconds_per_step": sum(timed) / len(timed),
        "generated_tokens_per_step": sum(lengths[args.warmup :])
        / max(len(lengths[args.warmup :]), 1)
        * args.prompts
        * args.group,
        "gradient_checkpointing": gradient_checkpointing,
        "device": device_name(dev),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="random:smollm2-135m")
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--group", type=int, default=8, help="samples per prompt")
    ap.add_argument("--new-tokens", type=int, default=256)
    ap.add_argument("--micro-batch", type=int, default=64, help="sequences per forward/backward")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--variants", nargs="+", default=["mlpo", "teamtr", "mlpo_eager", "trl"])
    ap.add_argument("--leader", action="store_true", help="MLPO leader prompts: each question with 3 answers")
    ap.add_argument("--out", default="benchmarks/results/rl_step.json")
    ap.add_argument("--name", default="rl_step", help="record names: NAME_<variant>")
    ap.add_argument(
        "--profile", help="write a torch profile of teamtune's first timed step to PROFILE.<variant>.txt"
    )
    args = ap.parse_args()
    res: dict[str, dict] = {}
    for v in args.variants:
        try:
            res[v] = trl(args, v == "trl") if v.startswith("trl") else ours(args, v)
        except Exception as e:  # a baseline that cannot run here is reported, never replaced by a number
            res[v] = {"error": f"{type(e).__name__}: {e}"[:500]}
        print(v, res[v], flush=True)
    base_name = next((b for b in ("trl", "trl_no_gc") if "seconds_per_step" in res.get(b, {})), None)
    records = []
    for v in (
        "mlpo",
        "teamtr",
        "mlpo_eager",
        "mlpo_before",
        *(f"{m}_{x}" for m in ("mlpo", "teamtr") for x in FASTER),
    ):
        if "seconds_per_step" not in res.get(v, {}):
            continue
        base = res[base_name]["seconds_per_step"] if base_name else 0.0
        records.append(
            record(
                f"{args.name}_{v}",
                res[v]["device"],
                1.0 / res[v]["seconds_per_step"],
                f"{v} RL steps/s ({args.prompts} prompts x {args.group} samples, {args.new_tokens} new tokens)",
                f"TRL GRPOTrainer ({base_name})" if base_name else "TRL GRPOTrainer (did not run)",
                1.0 / base if base else 0.0,
                variants=res,
                workload=vars(args),
            )
        )
    for v in ("mlpo", "teamtr"):  # reading less of the cache, against the same step reading all of it
        for x, what in FASTER.items():
            mine, plain = res.get(f"{v}_{x}", {}), res.get(v, {})
            if "seconds_per_step" in mine and "seconds_per_step" in plain:
                records.append(
                    record(
                        f"{args.name}_{v}_{x}_vs_plain",
                        mine["device"],
                        1.0 / mine["seconds_per_step"],
                        f"{v} RL steps/s with {what} ({args.prompts} x {args.group}, {args.new_tokens} new)",
                        f"{v}, a prompt cache per row read whole",
                        1.0 / plain["seconds_per_step"],
                        variants={v: plain, f"{v}_{x}": mine},
                        workload=vars(args),
                    )
                )
    save_records(args.out, records)
    for r in records:
        print(f"{r['name']}: {1 / r['value']:.2f} s/step; ratio to {r['baseline']}: {r['ratio']}")


if __name__ == "__main__":
    main()
