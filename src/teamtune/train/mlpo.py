"""MLPO: train a leader that reads the answers of untrained peers and writes the final answer.

Algorithm (one step):
  1. draw `problems_per_step` training problems;
  2. the k frozen peers answer each (sampled; `rounds` > 1: they revise after seeing each other);
  3. the leader prompt holds the problem and the peers' answers (`with_team: false`: the problem alone);
  4. the leader samples G completions per prompt; each is rewarded by the task's verifier (+ an optional
     format reward for a readable answer);
  5. advantages: rewards normalised within each group of G (no value network, no per-agent feedback);
  6. `ppo_epochs` clipped policy-gradient steps, with an optional k3 KL penalty to the reference model
     (LoRA: the same base with the adapter switched off, so no second copy).
Only the leader's weights change; peers run on the base weights (or their own models) and stay frozen.
"""

from __future__ import annotations

import functools
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import torch
from rich.console import Console

from ..agents import ROLE_PROMPTS, Agent, AgentConfig, ModelPool, run_calls
from ..config import at_least
from ..costs import FlopModel
from ..models import load_model
from ..rollout import DecodeConfig, Engine, SamplingConfig
from ..tasks import Task, TaskConfig, load_task
from ..team import leader_prompt, peer_answers
from .common import (
    LoraSettings,
    OptimSettings,
    make_optimizer,
    make_trainable,
    over_ranks,
    release_cached_memory,
    resume,
    save_eval_config,
    save_trained,
    step_bar,
    trainable_parameters,
)
from .losses import group_advantages
from .policy import (
    GROUP_COUNTS,
    PolicySettings,
    compile_policy,
    fill_groups,
    informative,
    logprobs,
    make_batch,
    micro_rows,
    update,
    update_flops,
)
from .run import RunProcess, count_rollout
from .warm import WarmStart, warm_folder, warm_start


@dataclass
class MLPOConfig:
    method: Literal["mlpo"] = "mlpo"
    model: str = "smollm2-135m"  # the leader's base model; peers use it too unless peer_models is set
    peer_models: list[str] = field(
        default_factory=list
    )  # one model per peer (different models); default: k x model
    peers: int = 3  # k, when peer_models is empty
    rounds: int = 1  # peer rounds; from round 2 each peer revises after reading the others
    with_team: bool = True  # false: train the leader on the problem alone (the single-agent GRPO baseline)
    task: TaskConfig = field(default_factory=lambda: TaskConfig(name="gsm8k", split="train"))
    eval_task: TaskConfig | None = None  # greedy leader-with-team accuracy, every eval_every steps
    peer_sampling: SamplingConfig = field(default_factory=lambda: SamplingConfig(256, temperature=0.7))
    policy: PolicySettings = field(default_factory=PolicySettings)
    format_reward: float = 0.0  # added when the leader's answer can be read
    problems_per_step: int = 8
    steps: int = 100
    finetune: Literal["lora", "full"] = "lora"
    lora: LoraSettings = field(default_factory=lambda: LoraSettings(dropout=0.0))
    optim: OptimSettings = field(
        default_factory=lambda: OptimSettings(lr=1e-5, schedule="constant", warmup_steps=0)
    )
    decode: DecodeConfig = field(default_factory=DecodeConfig)  # fast path, compiled step, top-p draw
    batch_size: int = 64  # generation batch
    eval_every: int = 0
    save_every: int = 20
    seed: int = 0
    device: str = "auto"
    output: str | None = None
    # SFT on the training task's gold solutions first; the leader's adapter starts from it (LoRA only)
    warm_start: WarmStart | None = None

    def validate(self) -> None:
        self.optim.validate()
        self.decode.validate()
        at_least(self, 1, "steps", "problems_per_step", "peers", "rounds", "batch_size")
        at_least(self, 0, "eval_every", "save_every")
        if self.warm_start and self.finetune != "lora":
            raise ValueError("warm_start trains a LoRA adapter for the leader: it needs finetune: lora")
        if self.warm_start and self.warm_start.layout != "single":
            raise ValueError(
                "warm_start.layout: pipeline is TeamTR's; MLPO's leader warm-starts on layout: single"
            )


def _peer_agents(cfg: MLPOConfig, engine: Engine, pool: ModelPool) -> list[Agent]:
    """Frozen peers: the leader's base without adapter (no extra weights), or models of their own."""
    sampling = cfg.peer_sampling
    if not cfg.peer_models and cfg.finetune == "lora":
        return [Agent("peer", ROLE_PROMPTS["peer"], engine, sampling)] * cfg.peers
    # full fine-tuning changes the leader's own weights: peers of the same model then need a frozen copy
    models = cfg.peer_models or [cfg.model] * cfg.peers
    return [pool.agent(AgentConfig("peer", model=m, sampling=sampling), m) for m in models]


SUMMED = (
    "rollout_tokens",
    "rollout_flops",
    "train_tokens",
    "train_flops",
    "problems",
    *GROUP_COUNTS,
)  # over ranks


def train(
    cfg: MLPOConfig,
    console: Console | None = None,
    stop_after: int | None = None,
    task: Task | None = None,
    pool: ModelPool | None = None,
) -> Path:
    """Run MLPO; `task` and `pool` (for peers of their own models) replace those the config would build.

    Under `torchrun` / `accelerate launch` each process rolls out its share of every step's problems (peers and
    leader) and DDP (gloo on CPU, NCCL on GPU) averages the leader's gradients; rank 0 logs, evaluates and saves.
    """
    run = RunProcess.open(cfg, f"mlpo-{cfg.task.name}", console, ("problems_per_step", cfg.problems_per_step))
    acc, console, out, device_name = run.acc, run.console, run.out, run.device
    world, rank, main = run.world, run.rank, run.main
    task = task or load_task(cfg.task)
    eval_task = load_task(cfg.eval_task) if cfg.eval_task and main else None
    role = "leader" if cfg.with_team else "solver"
    warm = warm_start(run, cfg, task, [role])[role] if cfg.warm_start else None
    loaded = load_model(cfg.model, device=device_name, dtype="float32", seed=cfg.seed)
    device = loaded.device
    # peer_models: the same weights on every rank, sampling apart as the leader's engine does
    pool = pool or ModelPool(
        device_name, "auto", cfg.batch_size, cfg.seed + 1_000 * rank, load_seed=cfg.seed, decode=cfg.decode
    )
    model = make_trainable(loaded, cfg.finetune, cfg.lora, init=warm)
    params = [p for p in model.parameters() if p.requires_grad]
    compile_policy(model, cfg.policy, device)
    dp = (acc, acc.prepare_model(model)) if world > 1 else None
    engine = Engine(  # ranks sample apart
        loaded, batch_size=cfg.batch_size, seed=cfg.seed + 1_000 * rank, decode=cfg.decode
    )
    peers = _peer_agents(cfg, engine, pool)
    adapter = "default" if cfg.finetune == "lora" else None
    sampling = SamplingConfig(cfg.policy.max_new_tokens, temperature=cfg.policy.temperature, top_p=1.0)
    leader = Agent("leader", ROLE_PROMPTS[role], engine, sampling, adapter)
    ref_model = None
    if cfg.policy.kl_coef > 0 and cfg.finetune == "full":
        ref_model = load_model(cfg.model, device=cfg.device, dtype="auto").model.eval()
    opt, sched = make_optimizer(model, cfg.optim, cfg.steps * cfg.policy.ppo_epochs)
    counters = {
        "rollout_tokens": 0,
        "rollout_flops": 0.0,
        "train_tokens": 0,
        "train_flops": 0.0,
        "seconds": 0.0,
        "problems": 0,
    }
    counters.update(engine_calls=0, **dict.fromkeys(GROUP_COUNTS, 0))
    start, counters = resume(out, model, opt, sched, counters, console, "step")
    engine.calls = counters["engine_calls"]
    adapter_size = trainable_parameters(model) if cfg.finetune == "lora" else 0
    fm = FlopModel.from_model(model, adapter_size)
    log = run.log(start)
    tok = loaded.tokenizer

    def stage(calls, owners, r, desc):
        done = run_calls(calls, desc, task.stop)
        count_rollout(counters, [c.cost for c in done])
        return [c.text for c in done]

    def prompts_for(problems) -> list[str]:
        if not cfg.with_team:
            return [task.prompt(p) for p in problems]
        answers = peer_answers(peers, task, problems, cfg.rounds, stage)
        return [leader_prompt(task.prompt(p), a) for p, a in zip(problems, answers, strict=True)]

    G = cfg.policy.group_size

    def draw(step: int, drawn: list[bool], r: int):
        """The r-th draw of a step: this process's share of a batch of problems, G leader samples each."""
        seed = cfg.seed * 1_000_003 + step if r == 0 else f"{cfg.seed}-{step}-{r}"  # r > 0: other problems
        problems = random.Random(seed).sample(task.problems, min(cfg.problems_per_step, len(task.problems)))
        problems = problems[rank::world]  # this process's share (all of them in one process)
        done = run_calls([(leader, p) for p in prompts_for(problems) for _ in range(G)], "leader", task.stop)
        count_rollout(counters, [c.cost for c in done])
        scores = [task.reward(c.text, problems[j // G]) for j, c in enumerate(done)]
        readable = [task.read_answer(c.text, problems[j // G]) is not None for j, c in enumerate(done)]
        drawn.extend(task.solves(c.text, problems[j // G]) for j, c in enumerate(done))
        rewards = [x + cfg.format_reward * f for x, f in zip(scores, readable, strict=True)]
        groups = [(p, done[i * G : (i + 1) * G]) for i, p in enumerate(problems)]
        return groups, torch.tensor(rewards).view(len(problems), G)

    def learn(done, rewards: torch.Tensor) -> dict:
        """The clipped policy-gradient update on the kept groups' completions (KL to the reference when on)."""
        adv = group_advantages(rewards, cfg.policy.scale_advantages).flatten().tolist()
        batch = make_batch([c.prompt_ids for c in done], [c.tokens for c in done], adv, tok.pad_token_id)
        if cfg.policy.kl_coef > 0:
            ref, micro = ref_model or model, micro_rows(batch, cfg.policy)
            batch.ref_logp = logprobs(ref, batch, micro, device, reference=ref_model is None)
        st = update(
            model, params, opt, sched, batch, cfg.policy, device, dp=dp, max_grad_norm=cfg.optim.max_grad_norm
        )
        counters["train_tokens"] += int(batch.attention.sum()) * cfg.policy.ppo_epochs
        forwards = 1 + (cfg.policy.kl_coef > 0)
        counters["train_flops"] += update_flops(fm, batch, cfg.policy, adapter_size, forwards)
        return st

    def means(groups, rewards: torch.Tensor, drawn: list[bool], before: dict) -> dict:
        """The step's means over every rank: reward, accuracy of all that was drawn, readable answers, length,
        and the share of groups with an advantage (with dynamic sampling, all but a fallback's)."""
        done = [(c, p) for p, g in groups for c in g]
        values = [
            float(rewards.mean()),
            sum(drawn) / len(drawn),  # everything sampled, not only the groups kept
            sum(task.read_answer(c.text, p) is not None for c, p in done) / len(done),
            sum(len(c.tokens) for c, _ in done) / len(done),
            float(informative(rewards).float().mean()),
        ]
        names = ("reward", "accuracy", "readable", "completion_tokens", "signal")
        return dict(zip(names, over_ranks(acc, values, counters, before, device), strict=True))

    with step_bar(console, "mlpo", cfg.steps, start, ["reward", "accuracy", "kl", "clip"]) as advance:
        for step in range(start, cfg.steps):
            t0 = time.perf_counter()
            before = {k: counters[k] for k in SUMMED}
            model.eval()
            drawn: list[bool] = []  # whether each completion drawn this step is right, kept or dropped
            want = min(cfg.problems_per_step, len(task.problems)) // world
            groups, rewards, draws = fill_groups(functools.partial(draw, step, drawn), want, cfg.policy)
            t1 = time.perf_counter()
            st = learn([c for g in groups for c in g[1]], rewards)
            dt = time.perf_counter() - t0
            for key, n in {**draws, "problems": len(groups), "seconds": dt}.items():
                counters[key] += n
            counters["engine_calls"] = engine.calls
            row = {
                "step": step + 1,
                **means(groups, rewards, drawn, before),
                "kl": st["kl_ref"],
                "clip_frac": st["clip_frac"],
                "grad_norm": st["grad_norm"],  # before clipping
                "loss": st["loss"],
                **{k: counters[k] - before[k] for k in GROUP_COUNTS},
                "seconds": dt,
                "rollout_seconds": t1 - t0,  # peers and leader sampling; the rest is scoring and the update
            }
            if eval_task and cfg.eval_every and ((step + 1) % cfg.eval_every == 0 or step + 1 == cfg.steps):
                row["eval_accuracy"] = evaluate_leader(eval_task, prompts_for, leader, engine)
            release_cached_memory(device)
            advance(reward=row["reward"], accuracy=row["accuracy"], kl=row["kl"], clip=row["clip_frac"])
            state = (model, opt, sched, counters)
            run.step_done(row, log, step + 1, cfg.steps, cfg.save_every, state, stop_after, start)
    stats = {"steps": cfg.steps, "trainable_parameters": trainable_parameters(model), **counters}
    run.close(
        model, log, lambda: save_trained(loaded, out / "leader"), stats, lambda: write_eval_configs(cfg, out)
    )
    return out


def evaluate_leader(task, prompts_for, leader: Agent, engine: Engine) -> float:
    """Greedy accuracy of the leader (with the team when training with it) on held-out problems."""
    greedy = Agent(
        leader.name,
        leader.system_prompt,
        engine,
        SamplingConfig(leader.sampling.max_new_tokens, do_sample=False),
        leader.adapter,
    )
    prompts = prompts_for(task.problems)
    done = run_calls([(greedy, p) for p in prompts], "eval leader", task.stop)
    return sum(task.solves(c.text, p) for c, p in zip(done, task.problems, strict=True)) / len(task.problems)


def write_eval_configs(cfg: MLPOConfig, out: Path) -> None:
    """eval-<baseline>.yaml for the five baselines of the MLPO comparison (and the two of the warm start, when
    there is one), on the task's test split."""
    adapter = str(out / "leader")
    trained = {"adapter": adapter} if cfg.finetune == "lora" else {"model": adapter}
    greedy = {"max_new_tokens": cfg.policy.max_new_tokens, "do_sample": False}
    peer = {"name": "peer", "sampling": asdict(cfg.peer_sampling)}
    peers = [dict(peer, name=f"peer{j}", model=m) for j, m in enumerate(cfg.peer_models, 1)] or [peer]
    k = len(cfg.peer_models) or cfg.peers
    layouts = {
        "single": ("single", [{"name": "solver", "sampling": greedy}], "untrained"),
        "vote": ("vote", [peer], "untrained"),
        "leader-untrained": ("leader", [*peers, {"name": "leader", "sampling": greedy}], "untrained"),
        "leader-trained": ("leader", [*peers, {"name": "leader", "sampling": greedy, **trained}], "mlpo"),
        "leader-alone": ("single", [{"name": "solver", "sampling": greedy, **trained}], "mlpo"),
    }
    if cfg.warm_start:  # the warm start is a baseline of its own: SFT on gold solutions, no RL
        warm = {"adapter": str(warm_folder(cfg.warm_start, out) / "agent")}
        layouts["leader-warm-start"] = (
            "leader",
            [*peers, {"name": "leader", "sampling": greedy, **warm}],
            "sft",
        )
        layouts["warm-start-alone"] = ("single", [{"name": "solver", "sampling": greedy, **warm}], "sft")
    labels = {
        "single": "single",
        "vote": f"vote x{k} (peers)",
        "leader-untrained": f"leader {k}+1 untrained",
        "leader-trained": f"leader {k}+1 MLPO",
        "leader-alone": "MLPO leader alone",
        "leader-warm-start": f"leader {k}+1 SFT warm start",
        "warm-start-alone": "SFT warm start alone",
    }
    for name, (layout, agents, method) in layouts.items():
        team = {
            "layout": layout,
            "model": cfg.model,
            "agents": agents,
            "seed": cfg.seed,
            "peers": k,
            "samples": k,
            "rounds": cfg.rounds,
            "batch_size": cfg.batch_size,
            "decode": asdict(cfg.decode),
        }
        ev = {
            "task": {**asdict(cfg.task), "split": "test"},
            "team": team,
            "method": method,
            "label": labels[name],
            "output": str(out / f"eval-{name}"),
        }
        save_eval_config(out / f"eval-{name}.yaml", ev)
