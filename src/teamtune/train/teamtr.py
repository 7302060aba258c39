"""TeamTR: sequential trust-region fine-tuning of a shared-context team (the `pipeline` layout).

Algorithm (one stage; `mode: teamtr`):
  for each agent i in order:
    1. sample fresh team rollouts with the current agents (G chains per problem; every agent sees the work of
       the agents before it);
    2. reward each chain by the verifier on its final answer; advantages normalised within each problem's G;
    3. update agent i's adapter with the clipped objective on its own turns, measuring the KL to its
       pre-update policy on these rollouts; a step that leaves the trust region delta is undone and ends
       the update;
  then the next agent, on rollouts sampled after this update.
Baselines (`mode`): `stale` (rollouts sampled once per stage and re-used for every agent), `simultaneous`
(every agent updated from one rollout batch) and `single` (one agent, the same number of updates). With one
adapter per agent, `stale` and `simultaneous` run the same updates (an agent's loss on fixed rollouts does not
depend on the other adapters); both names are kept for the paper's two baselines.
Every agent has its own LoRA adapter on one shared base. Plug-and-play: `init_adapters` starts agents from
trained adapters, `agent_models` has another model (name or folder, frozen) play a role, and `train_agents`
names the agents to update (re-run one agent's stage after a swap).
"""

from __future__ import annotations

import functools
import random
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Literal

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from rich.console import Console

from ..agents import ROLE_PROMPTS, Agent, ModelPool, Turn, run_calls
from ..config import at_least
from ..models import load_model
from ..rollout import DecodeConfig, Engine, SamplingConfig
from ..tasks import Problem, Task, TaskConfig, load_task
from ..team import pipeline_prompt
from .common import (
    Interrupted,
    LoraSettings,
    OptimSettings,
    make_optimizer,
    over_ranks,
    release_cached_memory,
    resume,
    save_checkpoint,
    save_eval_config,
    step_bar,
)
from .losses import group_advantages
from .mixed import adapter_params
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
from .warm import WarmStart, warm_adapters, warm_folder, warm_start

CHAINS = {
    1: ["solver"],
    2: ["solver", "refiner"],
    3: ["solver", "critic", "refiner"],
    4: ["solver", "critic", "refiner", "verifier"],
}


@dataclass
class TeamTRConfig:
    method: Literal["teamtr"] = "teamtr"
    model: str = "smollm2-135m"
    agents: int = 3  # 2: solver -> refiner; 3: solver -> critic -> refiner; 4: ... -> verifier
    mode: Literal["teamtr", "stale", "simultaneous", "single"] = "teamtr"
    task: TaskConfig = field(default_factory=lambda: TaskConfig(name="gsm8k", split="train"))
    eval_task: TaskConfig | None = None  # greedy team accuracy and regressions (see judge_every)
    judge_every: Literal["update", "stage"] = "update"  # when to judge: after every agent update, or stage
    policy: PolicySettings = field(default_factory=lambda: PolicySettings(group_size=4))
    delta: float = 0.05  # per-agent trust region: mean token KL(pre-update || updated) on the fresh rollouts
    stages: int = 10
    problems_per_stage: int = 16
    init_adapters: dict[str, str] = field(default_factory=dict)  # role -> peft folder to start from
    agent_models: dict[str, str] = field(default_factory=dict)  # role -> another model playing it, frozen
    train_agents: list[str] | None = None  # roles to update (default all with an adapter)
    lora: LoraSettings = field(default_factory=lambda: LoraSettings(dropout=0.0))
    optim: OptimSettings = field(
        default_factory=lambda: OptimSettings(lr=2e-5, schedule="constant", warmup_steps=0)
    )
    decode: DecodeConfig = field(default_factory=DecodeConfig)  # fast path, compiled step, top-p draw
    batch_size: int = 64
    seed: int = 0
    device: str = "auto"
    output: str | None = None
    # SFT on the training task's gold solutions first; every trained role's adapter starts from it
    # (roles in init_adapters keep theirs)
    warm_start: WarmStart | None = None

    def validate(self) -> None:
        self.optim.validate()
        self.decode.validate()
        at_least(self, 1, "stages", "problems_per_stage", "batch_size")
        if self.agents not in (2, 3, 4):
            raise ValueError(
                f"agents must be 2, 3 or 4 (mode single trains one agent with their budget), not {self.agents}"
            )
        if self.delta <= 0:
            raise ValueError("delta (the trust region) must be positive")
        roles = roles_of(self)
        for what, names in (
            ("init_adapters", self.init_adapters),
            ("agent_models", self.agent_models),
            ("train_agents", self.train_agents or []),
        ):
            unknown = sorted(set(names) - set(roles))
            if unknown:
                raise ValueError(f"{what} names roles {unknown} that this team lacks (roles: {roles})")
        swapped = set(self.agent_models)
        if swapped & (set(self.init_adapters) | set(self.train_agents or [])):
            raise ValueError(
                f"a role in agent_models ({sorted(swapped)}) is played frozen by that model: "
                "it cannot also take an adapter (init_adapters) or be trained (train_agents)"
            )
        if swapped >= set(roles):
            raise ValueError("agent_models replaces every role: no agent is left to train")


@dataclass
class Chain:
    problem: int
    turns: list[Turn] = field(default_factory=list)
    prompt_ids: list[list[int]] = field(default_factory=list)  # what each agent read
    tokens: list[list[int]] = field(default_factory=list)  # what each agent wrote


def roles_of(cfg: TeamTRConfig) -> list[str]:
    return CHAINS[1 if cfg.mode == "single" else cfg.agents]


def rollout(agents: list[Agent], task: Task, problems: list[Problem], g: int) -> list[Chain]:
    """`g` independent chains per problem through the pipeline, each agent one batched stage."""
    chains = [Chain(i) for i in range(len(problems)) for _ in range(g)]
    for agent in agents:
        prompts = [pipeline_prompt(task.prompt(problems[c.problem]), c.turns, agent.name) for c in chains]
        for c, done in zip(
            chains, run_calls([(agent, p) for p in prompts], agent.name, task.stop), strict=True
        ):
            c.turns.append(Turn(agent.name, len(c.turns) + 1, [], done.text, done.finish, done.cost))
            c.prompt_ids.append(done.prompt_ids)
            c.tokens.append(done.tokens)
    return chains


def build_team(cfg: TeamTRConfig, loaded, init_adapters: dict[str, str]) -> list[str]:
    """One LoRA adapter per role on the shared base (fresh, or from `init_adapters`), but `agent_models`' roles."""
    roles = roles_of(cfg)
    lcfg = LoraConfig(
        r=cfg.lora.r,
        lora_alpha=cfg.lora.alpha,
        lora_dropout=cfg.lora.dropout,
        target_modules=cfg.lora.target_modules,
        task_type="CAUSAL_LM",
    )
    for role in [r for r in roles if r not in cfg.agent_models]:
        path = init_adapters.get(role)
        if isinstance(loaded.model, PeftModel):
            if path:
                loaded.model.load_adapter(path, adapter_name=role, is_trainable=True)
            else:
                loaded.model.add_adapter(role, lcfg)
        elif path:
            loaded.model = PeftModel.from_pretrained(loaded.model, path, adapter_name=role, is_trainable=True)
        else:
            loaded.model = get_peft_model(loaded.model, lcfg, adapter_name=role)
    return roles


SUMMED = ("rollouts", "rollout_tokens", "rollout_flops", "train_flops", *GROUP_COUNTS)  # over ranks


def train(
    cfg: TeamTRConfig,
    console: Console | None = None,
    stop_after: int | None = None,
    task: Task | None = None,
    eval_task: Task | None = None,
) -> Path:
    """Run TeamTR (or a baseline `mode`); `task` and `eval_task` replace those the config would build.

    Under `torchrun` / `accelerate launch` each process rolls out its share of every stage's problems and DDP
    averages the updated agent's gradients; the trust region's KL is measured over all ranks' rollouts, so all
    take (or undo) the same step. Rank 0 judges, logs and saves.
    """
    run = RunProcess.open(  # DDP must allow unused weights: an update uses one agent's adapter of several
        cfg, f"teamtr-{cfg.mode}", console, ("problems_per_stage", cfg.problems_per_stage), True
    )
    acc, console, out, device_name = run.acc, run.console, run.out, run.device
    world, rank, main = run.world, run.rank, run.main
    task = task or load_task(cfg.task)
    eval_task = eval_task or (load_task(cfg.eval_task) if cfg.eval_task else None)
    eval_task = eval_task if main else None
    init = dict(cfg.init_adapters)
    trained = [r for r in roles_of(cfg) if r not in cfg.agent_models]  # roles with an adapter
    if cfg.warm_start:
        # layout single: the solver's gold answers to the problem alone, one adapter for every trained role
        warm = warm_start(run, cfg, task, trained, prompt_role="solver")
        init = {r: str(folder) for r, folder in warm.items()} | init
    loaded = load_model(cfg.model, device=device_name, dtype="float32", seed=cfg.seed)
    roles = build_team(cfg, loaded, init)
    model, device, tok = loaded.model, loaded.device, loaded.tokenizer
    compile_policy(model, cfg.policy, device)
    dp = None
    if world > 1:  # DDP takes the weights that need gradients now: every agent's adapter
        for n, p in model.named_parameters():
            p.requires_grad_("lora_" in n)
        dp = (acc, acc.prepare_model(model))
    engine = Engine(  # ranks sample apart
        loaded, batch_size=cfg.batch_size, seed=cfg.seed + 1_000 * rank, decode=cfg.decode
    )
    s = cfg.policy
    sampling = SamplingConfig(s.max_new_tokens, temperature=s.temperature, top_p=1.0)
    greedy = SamplingConfig(s.max_new_tokens, do_sample=False)
    # the agent_models' engines, frozen: the same weights on every rank, sampling apart as `engine` does
    pool = ModelPool(
        device_name, "auto", cfg.batch_size, cfg.seed + 1_000 * rank, load_seed=cfg.seed, decode=cfg.decode
    )

    def played(r: str, how: SamplingConfig) -> Agent:
        if r in cfg.agent_models:
            return Agent(r, ROLE_PROMPTS[r], pool.engine(cfg.agent_models[r]), how)
        return Agent(r, ROLE_PROMPTS[r], engine, how, r)

    agents = [played(r, sampling) for r in roles]
    judges = [played(r, greedy) for r in roles]
    train_roles = cfg.train_agents or trained
    updates = len(CHAINS[cfg.agents]) if cfg.mode == "single" else len(train_roles)  # same budget for single
    opts, scheds = {}, {}
    for r in train_roles:
        model.set_adapter(r)
        opts[r], scheds[r] = make_optimizer(model, cfg.optim, cfg.stages * updates * s.ppo_epochs)
    counters = {
        "rollouts": 0,
        "rollout_tokens": 0,
        "rollout_flops": 0.0,
        "train_flops": 0.0,
        "seconds": 0.0,
    }
    counters.update(engine_calls=0, regressions=0, **dict.fromkeys(GROUP_COUNTS, 0))
    start, counters = resume(out, model, opts, scheds, counters, console, "stage")
    engine.calls = counters["engine_calls"]
    step = start * updates  # log rows count agent updates, checkpoints count stages
    log = run.log(step)

    def judge() -> list[bool]:
        chains = rollout(judges, eval_task, eval_task.problems, 1)
        return [eval_task.solves(c.turns[-1].text, eval_task.problems[c.problem]) for c in chains]

    def draw(stage: int, problems: list[Problem], r: int):
        """The r-th draw of an update: G chains for each problem of the stage's share (r > 0: other problems)."""
        if r > 0:
            problems = random.Random(f"{cfg.seed}-{stage}-{r}").sample(
                task.problems, min(cfg.problems_per_stage, len(task.problems))
            )[rank::world]
        chains = rollout(agents, task, problems, s.group_size)
        counters["rollouts"] += len(chains)
        count_rollout(counters, [t.cost for c in chains for t in c.turns])
        rewards = torch.tensor([task.reward(c.turns[-1].text, problems[c.problem]) for c in chains])
        G = s.group_size
        groups = [(p, chains[i * G : (i + 1) * G]) for i, p in enumerate(problems)]
        return groups, rewards.view(len(problems), G)

    def sample(stage: int, problems: list[Problem]) -> tuple[list[Chain], torch.Tensor, torch.Tensor]:
        """One update's rollouts (with dynamic sampling, informative groups): chains, advantages, rewards [P, G]."""
        groups, rewards, draws = fill_groups(functools.partial(draw, stage, problems), len(problems), s)
        for key, n in draws.items():
            counters[key] += n
        chains = [replace(c, problem=i) for i, g in enumerate(groups) for c in g[1]]
        return chains, group_advantages(rewards, s.scale_advantages).flatten(), rewards

    def learn(role: str, chains: list[Chain], adv: torch.Tensor) -> dict:
        """Agent `role`'s clipped update on its own turns of the chains, inside the trust region `delta`."""
        i = roles.index(role)
        batch = make_batch(
            [c.prompt_ids[i] for c in chains], [c.tokens[i] for c in chains], adv.tolist(), tok.pad_token_id
        )
        model.set_adapter(role)
        if s.kl_coef > 0:
            batch.ref_logp = logprobs(model, batch, micro_rows(batch, s), device, reference=True)
        params = adapter_params(model, role)
        opt, sched = opts[role], scheds[role]
        st = update(
            model, params, opt, sched, batch, s, device, cfg.delta, dp, max_grad_norm=cfg.optim.max_grad_norm
        )
        forwards = 1 + (s.kl_coef > 0) + st["steps"] + st["stopped"]  # old, reference, trust checks
        fm = engine.flop_model(role)
        counters["train_flops"] += update_flops(fm, batch, s, sum(p.numel() for p in params), forwards)
        return st

    correct = judge() if eval_task else []
    with step_bar(console, f"teamtr ({cfg.mode})", cfg.stages * updates, step, ["accuracy", "kl"]) as advance:
        for stage in range(start, cfg.stages):
            problems = random.Random(cfg.seed * 1_000_003 + stage).sample(
                task.problems, min(cfg.problems_per_stage, len(task.problems))
            )[rank::world]  # this process's share (all of them in one process)
            model.eval()
            before = {key: counters[key] for key in SUMMED}  # what this rank adds until the next log row
            t_shared = time.perf_counter()
            shared = sample(stage, problems) if cfg.mode in ("stale", "simultaneous") else None
            shared_seconds = time.perf_counter() - t_shared  # counted with the stage's first update
            for k in range(updates):
                role = train_roles[0] if cfg.mode == "single" else train_roles[k]
                t0 = time.perf_counter() - (shared_seconds if k == 0 else 0.0)
                model.eval()
                # teamtr and single: fresh rollouts for every update
                chains, adv, rewards = shared or sample(stage, problems)
                t1 = time.perf_counter()
                st = learn(role, chains, adv)
                step += 1
                signal = float(informative(rewards).float().mean())  # the batch's groups with an advantage
                reward, signal = over_ranks(acc, [float(rewards.mean()), signal], counters, before, device)
                counts = {key: counters[key] - before[key] for key in GROUP_COUNTS}
                before = {key: counters[key] for key in SUMMED}
                row = {
                    "step": step,
                    "stage": stage + 1,
                    "agent": role,
                    "reward": reward,
                    "kl": st["kl_old"],
                    "kl_ref": st["kl_ref"],
                    "clip_frac": st["clip_frac"],
                    "grad_norm": st["grad_norm"],  # before clipping
                    "optimiser_steps": st["steps"],
                    "trust_region_stop": st["stopped"],
                    "signal": signal,
                    **counts,
                }
                t2 = time.perf_counter()
                if eval_task and (cfg.judge_every == "update" or k == updates - 1):
                    now = judge()
                    row["regressions"] = sum(a and not b for a, b in zip(correct, now, strict=True))
                    row["accuracy"] = sum(now) / len(now)
                    counters["regressions"] += row["regressions"]
                    correct = now
                dt = time.perf_counter() - t0
                counters["seconds"] += dt
                row.update(seconds=dt, rollout_seconds=t1 - t0, update_seconds=t2 - t1)
                if main:
                    log.write(row)
                release_cached_memory(device)
                advance(accuracy=row.get("accuracy", row["reward"]), kl=row["kl"])
            counters["engine_calls"] = engine.calls
            if main:
                save_checkpoint(out, stage + 1, model, opts, scheds, counters)
            if stop_after is not None and stage + 1 - start >= stop_after:
                if log:
                    log.close()
                raise Interrupted(f"stopped after stage {stage + 1}")

    def save() -> None:
        for r in trained:
            model.save_pretrained(str(out / "adapters"), selected_adapters=[r])

    run.close(
        model, log, save, {"stages": cfg.stages, **counters}, lambda: write_eval_config(cfg, out, roles)
    )
    return out


def write_eval_config(cfg: TeamTRConfig, out: Path, roles: list[str]) -> None:
    """eval.yaml: the trained team (pipeline, or single) on the task's test split, greedy; eval-untrained.yaml:
    the same team before training (eval-warm-start.yaml too, with a warm start)."""
    greedy = {"max_new_tokens": cfg.policy.max_new_tokens, "do_sample": False}
    agents = [
        {"name": r, "model": cfg.agent_models[r], "sampling": greedy}
        if r in cfg.agent_models
        else {"name": r, "adapter": str(out / "adapters" / r), "sampling": greedy}
        for r in roles
    ]
    team = {
        "layout": "single" if len(roles) == 1 else "pipeline",
        "model": cfg.model,
        "agents": agents,
        "seed": cfg.seed,
        "decode": asdict(cfg.decode),
    }
    ev = {
        "task": {**asdict(cfg.task), "split": "test", "limit": None, "shuffle_seed": None},
        "team": team,
        "method": f"teamtr-{cfg.mode}" if cfg.mode != "teamtr" else "teamtr",
        "label": f"{len(roles)} agent(s), {cfg.mode}",
        "output": str(out / "eval-test"),
    }
    save_eval_config(out / "eval.yaml", ev)
    # the same team before training: every trained role on the bare base (or on its init_adapters)
    team["agents"] = [
        a if "model" in a else {**a, "adapter": cfg.init_adapters.get(a["name"])} for a in agents
    ]
    ev.update(
        method="untrained", label=f"{len(roles)} agent(s), untrained", output=str(out / "eval-untrained")
    )
    save_eval_config(out / "eval-untrained.yaml", ev)
    if (
        cfg.warm_start
    ):  # the warm start as a baseline of its own: every trained role on its SFT adapter, no RL
        warm = warm_adapters(cfg.warm_start, warm_folder(cfg.warm_start, out), roles)
        team["agents"] = [a if "model" in a else {**a, "adapter": str(warm[a["name"]])} for a in agents]
        ev.update(
            method="sft", label=f"{len(roles)} agent(s), SFT warm start", output=str(out / "eval-warm-start")
        )
        save_eval_config(out / "eval-warm-start.yaml", ev)
