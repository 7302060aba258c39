"""Supervised fine-tuning of agents on chat trajectories, with ProST's progressive sub-task curriculum.

Algorithm (ProST, Bijoy et al. 2025): every trajectory is a sequence of sub-tasks (each message carries the
index of its sub-task, `subtask`). In epoch e the trainer keeps only the sub-tasks chosen for that epoch:
  none      every sub-task, every epoch (standard fine-tuning)
  prost     the first k(e) = start + step * e sub-tasks (each trajectory is cut after them)
  shuffled  k(e) sub-tasks in a fixed random order per task (the ablation)
A trajectory is cut after the last assistant message of a chosen sub-task, and the loss covers only the
chosen sub-tasks' assistant messages of the role being trained. Short trajectories are complete early.

Modes: `single` (one adapter, "agent", on single-agent trajectories), `joint` (one adapter, "team", on every
role's trajectories) and `roles` (one adapter per role, each trained on its own turns).
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import hashlib
import json
import random
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import torch
from rich.console import Console

from ..agents import ROLE_PROMPTS
from ..config import ConfigError, at_least
from ..console import RunConsole
from ..costs import FlopModel, peak_memory
from ..evaluate import release_folder, write_json
from ..models import load_model
from ..records import DataError
from ..tasks import TASKS, TaskConfig, load_task
from .common import (
    LoraSettings,
    OptimSettings,
    RunLog,
    accelerator,
    autocast,
    end_step,
    make_optimizer,
    make_trainable,
    resume,
    run_folder,
    save_checkpoint,
    save_eval_config,
    save_trained,
    step_bar,
    train_flops,
    trainable_parameters,
)
from .data import Example, collate, encode_chat, gold_records, load_records, plan_epoch
from .losses import IGNORE, next_labelled, sft_loss, token_loss, token_losses
from .run import RunProcess


@dataclass
class Curriculum:
    schedule: Literal["none", "prost", "shuffled"] = "none"
    start: int = 1  # sub-tasks in the first epoch
    step: int = 1  # sub-tasks added per epoch (1: the linear schedule)

    def validate(self) -> None:
        if self.start < 1 or self.step < 1:
            raise ValueError("curriculum.start and curriculum.step must be at least 1")


@dataclass
class SFTConfig:
    method: Literal["sft"] = "sft"
    model: str = "smollm2-135m"
    data: str = (
        "apps:train:200"  # a JSONL of {"messages": [...]}, a hub dataset name, or apps:<split>:<tasks>
    )
    eval_data: str | None = None  # same forms; its loss is logged every eval_every steps and at the end
    # instead of data: the gold solutions of a task's problems (e.g. a gym setting; `limit` says how many), so a
    # model learns the task's answer format before RL; mode single; eval.yaml then scores it on the test split
    task: TaskConfig | None = None
    mode: Literal["single", "joint", "roles"] = "roles"
    roles: list[str] | None = None  # roles to train (default: every role in the data)
    finetune: Literal["lora", "full"] = "lora"
    lora: LoraSettings = field(default_factory=LoraSettings)
    optim: OptimSettings = field(default_factory=OptimSettings)
    curriculum: Curriculum = field(default_factory=Curriculum)
    epochs: int = 5
    # epochs of one adapter where it differs from `epochs` (mode roles): e.g. a planner, whose few short turns
    # take a tenth of the executor's steps, trained until its loss flattens without overtraining the executor
    role_epochs: dict[str, int] = field(default_factory=dict)
    batch_tokens: int = (
        16384  # padded tokens per micro-batch (sequences of similar length are batched together)
    )
    grad_accum: int = 1  # micro-batches per optimiser step
    max_length: int = 4096  # longer sequences are cut
    eval_every: int = 0  # steps; 0: only at the end
    save_every: int = 50  # steps between checkpoints
    compile: bool = False  # torch.compile the model and the loss (2.0x a step on an H100: BENCHMARKS.md)
    packing: bool = False  # several examples per row of max_length, no padding (attention stays per example)
    # mode roles: every role's adapter on one base, each step one forward/backward over all roles' rows (each row
    # through its own adapter; the same steps as training the roles in turn; benchmarks/mixed_train.py: 1.45x)
    mixed_roles: bool = False
    seed: int = 0
    device: str = "auto"
    output: str | None = None  # default runs/<time>-sft-<mode>

    def validate(self) -> None:
        self.optim.validate()
        at_least(self, 1, "max_length")
        at_least(self, 0, "eval_every", "save_every")
        if self.epochs < 1 or self.batch_tokens < 1 or self.grad_accum < 1:
            raise ValueError("epochs, batch_tokens and grad_accum must be at least 1")
        if self.task and self.mode != "single":
            raise ValueError(f"task (gold solutions) trains one agent: mode single, not {self.mode}")
        if self.task and self.task.name not in TASKS:
            raise ValueError(
                f"task {self.task.name!r} has no gold solutions: for apps, use data: apps:<split>:<n>"
            )
        if self.mixed_roles and (self.mode != "roles" or self.finetune != "lora" or self.packing):
            raise ValueError("mixed_roles trains LoRA adapters of mode: roles, without packing")
        if self.role_epochs and (self.mode != "roles" or self.mixed_roles):
            raise ValueError("role_epochs gives the adapters of mode: roles their own epochs, trained in turn "
                             "(not mixed_roles, whose roles take one step together)")  # fmt: skip
        if any(e < 1 for e in self.role_epochs.values()):
            raise ValueError(f"role_epochs must be at least 1 each, not {self.role_epochs}")


METHOD = {"none": "sft", "prost": "prost", "shuffled": "prost-shuffled"}  # how reports name each schedule


# ---- the curriculum


def chosen_subtasks(cur: Curriculum, n_subtasks: int, epoch: int, task_key: str, seed: int) -> set[int]:
    """The sub-task indices trained in `epoch` for a task of `n_subtasks` sub-tasks."""
    if cur.schedule == "none":
        return set(range(n_subtasks))
    k = min(n_subtasks, cur.start + cur.step * epoch)
    order = list(range(n_subtasks))
    if cur.schedule == "shuffled":  # one fixed order per task, the same for all its records (roles)
        random.Random(int(hashlib.sha256(f"{seed}:{task_key}".encode()).hexdigest()[:12], 16)).shuffle(order)
    return set(order[:k])


def cut_example(rec: dict, chosen: set[int], roles: set[str] | None) -> tuple[int, frozenset[int]] | None:
    """(messages kept, messages trained) for one record; None when it has nothing to train this epoch."""
    trained = [
        i
        for i, m in enumerate(rec["messages"])
        if m["role"] == "assistant"
        and (m.get("subtask") or 0) in chosen
        and (roles is None or m.get("agent", rec.get("role", "agent")) in roles)
    ]
    return (trained[-1] + 1, frozenset(trained)) if trained else None


def task_sizes(records: list[dict]) -> dict[str, int]:
    """Sub-tasks per task: 1 + the largest `subtask` index over all its records (roles share a task)."""
    sizes: dict[str, int] = {}
    for i, r in enumerate(records):
        key = str(r.get("task_id", i))
        top = max((m.get("subtask") or 0 for m in r["messages"]), default=0)
        sizes[key] = max(sizes.get(key, 1), top + 1)
    return sizes


def epoch_examples(
    cur: Curriculum,
    seed: int,
    records: list[dict],
    segments: list,
    epoch: int,
    roles: set[str] | None,
    max_length: int,
) -> list[Example]:
    """What epoch `epoch` trains of each record (records with nothing chosen are left out)."""
    sizes = task_sizes(records)
    out = []
    for i, r in enumerate(records):
        key = str(r.get("task_id", i))
        cut = cut_example(r, chosen_subtasks(cur, sizes[key], epoch, key, seed), roles)
        if cut is not None:
            length = sum(len(ids) for ids, msg, _ in segments[i] if msg < cut[0])
            out.append(Example(i, cut[0], cut[1], min(length, max_length)))
    return out


# ---- training one adapter


def labelled_logits(net, head, inputs: dict, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The logits [N, V] at the N positions whose next token is labelled, row by row, and those tokens [N].

    The output layer `head` runs on those positions alone (a pre-hook keeps only their hidden states): its cost
    and memory grow with the vocabulary (49k words for SmolLM2, 262k for Gemma 3), and most positions of a chat
    example are its prompt, which no loss reads. `net` is the model as trained (DDP-wrapped or not)."""
    where = next_labelled(labels)
    hook = head.register_forward_pre_hook(lambda _, args: (args[0][where], *args[1:]))
    try:
        logits = net(**inputs, use_cache=False).logits
    finally:
        hook.remove()
    n = int(where.sum())
    if logits.shape[:-1] != (n,):
        raise RuntimeError(
            f"the model reshaped its output layer's logits ({tuple(logits.shape)}, wanted ({n}, V))"
        )
    return logits, labels[:, 1:][where[:, :-1]]


def backward_step(
    net, head, micro: list, segments: list, cfg: SFTConfig, pad_id: int, device, n_lab: int,
    loss_fn=None, rank: int = 0, world: int = 1,
) -> float:  # fmt: skip
    """Forward and backward of one optimiser step's micro-batches (this rank's share of each); returns the summed
    loss. `loss_fn` None: the output layer on the labelled positions alone; else loss_fn(logits, labels, n) over
    every position's logits."""
    loss_sum = 0.0
    for mb in micro:
        # every rank runs one backward per micro-batch (DDP needs as many); an empty share counts 0
        part = mb[rank::world] or mb[:1]
        share = float(world) if mb[rank::world] else 0.0  # DDP averages over ranks: x world sums
        inputs, labels = collate(part, segments, pad_id, cfg.max_length, device, cfg.packing)
        with autocast(device):
            if loss_fn is None:
                loss = token_loss(*labelled_logits(net, head, inputs, labels), float(max(n_lab, 1)))
            else:
                loss = loss_fn(net(**inputs, use_cache=False).logits, labels, float(max(n_lab, 1)))
        (loss * share).backward()
        loss_sum += float(loss.detach()) * (share > 0)
    return loss_sum


@torch.no_grad()
def eval_loss(model, examples: list[Example], segments, cfg: SFTConfig, pad_id: int, device) -> float:
    model.eval()
    head = model.get_output_embeddings()
    total, n = 0.0, 0
    for (batch,) in plan_epoch(examples, cfg.batch_tokens, 1, random.Random(0), cfg.packing):
        inputs, labels = collate(batch, segments, pad_id, cfg.max_length, device, cfg.packing)
        with autocast(device):
            logits, targets = labelled_logits(model, head, inputs, labels)
        total += float(token_loss(logits, targets, 1.0))
        n += len(targets)
    model.train()
    return total / max(n, 1)


def train_plan(cfg: SFTConfig, records: list[dict], segments: list, roles: set[str] | None) -> list[tuple]:
    """(epoch, micro-batches) per optimiser step over every epoch, in the order of a fixed seed."""
    rng = random.Random(cfg.seed)
    plan = [
        (e, step)
        for e in range(cfg.epochs)
        for step in plan_epoch(
            epoch_examples(cfg.curriculum, cfg.seed, records, segments, e, roles, cfg.max_length),
            cfg.batch_tokens,
            cfg.grad_accum,
            rng,
            cfg.packing,
        )
    ]
    if not plan:
        raise DataError(f"{cfg.data}: no assistant turns of role(s) {sorted(roles or [])} to train on")
    return plan


def labelled(micro: list, segments: list) -> int:
    """Trained tokens of one step's micro-batches: the normalizer of its loss."""
    return sum(
        sum(len(s) for s, m, c in segments[ex.record] if c and m in ex.trained) for mb in micro for ex in mb
    )


def train_adapter(
    cfg: SFTConfig,
    name: str,
    records: list[dict],
    eval_records: list[dict],
    roles: set[str] | None,
    folder: Path,
    console: Console,
    stop_after: int | None = None,
) -> dict:
    """Train one adapter (or the full model) on `records`; resume from folder/checkpoints; save to folder.

    Under `torchrun` / `accelerate launch` every process takes its share of each micro-batch and DDP (gloo on
    CPU, NCCL on GPU) adds up the gradients, so all ranks take the same steps; rank 0 logs and saves.
    """
    run = RunProcess.open(cfg, name, console, folder=folder)
    acc, world, rank = run.acc, run.world, run.rank
    loaded = load_model(cfg.model, device=run.device, dtype="float32", seed=cfg.seed)
    model = make_trainable(loaded, cfg.finetune, cfg.lora)
    model.train()
    net = acc.prepare_model(model) if world > 1 else model
    head = model.get_output_embeddings()
    loss_fn = None  # the output layer on the labelled positions alone (`labelled_logits`)
    # compile: for dynamic shapes (length-grouped batches), once; its loss reads every position's logits
    if cfg.compile:
        net, loss_fn = torch.compile(net, dynamic=True), torch.compile(sft_loss, dynamic=True)
    device, tok = loaded.device, loaded.tokenizer
    pad_id = tok.pad_token_id  # load_model always sets one
    segments = [encode_chat(tok, r["messages"]) for r in records]
    eval_segments = [encode_chat(tok, r["messages"]) for r in eval_records]
    plan = train_plan(cfg, records, segments, roles)
    eval_set = epoch_examples(Curriculum("none"), 0, eval_records, eval_segments, 0, roles, cfg.max_length)
    opt, sched = make_optimizer(model, cfg.optim, len(plan))
    counters = {"train_tokens": 0, "trained_tokens": 0, "sequences": 0, "seconds": 0.0, "train_flops": 0.0}
    start, counters = resume(folder, model, opt, sched, counters, console, "step")
    adapter = trainable_parameters(model) if cfg.finetune == "lora" else 0
    fm = FlopModel.from_model(model, adapter)
    log = run.log(start)
    with step_bar(run.console, f"train {name}", len(plan), start, ["loss", "tok/s"]) as advance:
        for step in range(start, len(plan)):
            epoch, micro = plan[step]
            t0 = time.perf_counter()
            n_lab = labelled(micro, segments)
            loss_sum = backward_step(
                net, head, micro, segments, cfg, pad_id, device, n_lab, loss_fn, rank, world
            )
            if world > 1:
                loss_sum = float(acc.reduce(torch.tensor(loss_sum, device=device), "sum"))
            lens = [ex.length for mb in micro for ex in mb]
            tokens = sum(lens)
            grad_norm = torch.nn.utils.clip_grad_norm_(
                [p for p in model.parameters() if p.requires_grad], cfg.optim.max_grad_norm
            )
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            if device.type == "cuda":
                torch.cuda.synchronize()
            dt = time.perf_counter() - t0
            counters["train_tokens"] += tokens
            counters["trained_tokens"] += n_lab
            counters["sequences"] += len(lens)
            counters["seconds"] += dt
            counters["train_flops"] += train_flops(fm, lens, adapter)
            row = {
                "step": step + 1,
                "epoch": epoch,
                "loss": loss_sum,
                "lr": sched.get_last_lr()[0],
                "grad_norm": float(grad_norm),
                "tokens": tokens,
                "tokens_per_second": tokens / dt,
            }
            due = step + 1 == len(plan) or (cfg.eval_every and (step + 1) % cfg.eval_every == 0)
            if eval_set and due:
                row["eval_loss"] = eval_loss(model, eval_set, eval_segments, cfg, pad_id, device)
            advance(**{"loss": loss_sum, "tok/s": tokens / dt})
            state = (model, opt, sched, counters)
            run.step_done(row, log, step + 1, len(plan), cfg.save_every, state, stop_after, start)
    stats = {
        "adapter": name,
        "records": len(records),
        "steps": len(plan),
        "epochs": cfg.epochs,
        "trainable_parameters": trainable_parameters(model),
        "base_parameters": loaded.num_parameters,
        **counters,
    }
    if eval_set:
        stats["eval_loss"] = row["eval_loss"]
    return stats if run.close(model, log, lambda: save_trained(loaded, folder), stats, release=False) else {}


def _concat(parts: list[tuple[dict, torch.Tensor]], pad_id: int) -> tuple[dict, torch.Tensor]:
    """Right-pad collated batches to one width and stack them (a causal model's real positions are unchanged)."""
    width = max(labels.shape[1] for _, labels in parts)

    def pad(t, value):
        return torch.nn.functional.pad(t, (0, width - t.shape[1]), value=value)

    ids = torch.cat([pad(i["input_ids"], pad_id) for i, _ in parts])
    mask = torch.cat([pad(i["attention_mask"], 0) for i, _ in parts])
    return {"input_ids": ids, "attention_mask": mask}, torch.cat([pad(lab, IGNORE) for _, lab in parts])


def train_roles_mixed(
    cfg: SFTConfig, data: dict[str, tuple], out: Path, console: Console, stop_after: int | None = None
) -> list[dict]:
    """`mixed_roles`: every role's adapter (`data`: role -> (records, eval records)) on one base. Each role keeps
    its own plan, optimiser and schedule, and each step runs the rows of every role still training in one
    forward/backward (`adapter_rows`). Checkpoints hold all roles in `out`; each role's folder gets its adapter,
    log and metrics as `train_adapter` writes them."""
    from .mixed import adapter_params, adapter_rows, train_all_adapters

    run = RunProcess.open(cfg, "mixed", console, folder=out)
    if run.world > 1:
        raise ConfigError(
            "mixed_roles trains in one process; launch it without torchrun, or set mixed_roles: false"
        )
    loaded = load_model(cfg.model, device=run.device, dtype="float32", seed=cfg.seed)
    names, rng = list(data), torch.get_rng_state()
    for i, name in enumerate(names):  # each adapter starts as `train_adapter` starts it: from the same draws
        torch.set_rng_state(rng)
        if i == 0:
            model = make_trainable(loaded, "lora", cfg.lora, adapter=name)
        else:
            model.add_adapter(name, copy.deepcopy(model.peft_config[names[0]]))
    params = {n: adapter_params(model, n) for n in names}
    train_all_adapters(model)
    model.train()
    device, tok, head = loaded.device, loaded.tokenizer, model.get_output_embeddings()
    segs = {n: [encode_chat(tok, r["messages"]) for r in data[n][0]] for n in names}
    eval_segs = {n: [encode_chat(tok, r["messages"]) for r in data[n][1]] for n in names}
    plans = {n: train_plan(cfg, data[n][0], segs[n], {n}) for n in names}
    evals = {
        n: epoch_examples(Curriculum("none"), 0, data[n][1], eval_segs[n], 0, {n}, cfg.max_length)
        for n in names
    }
    optims = {n: make_optimizer(model, cfg.optim, len(plans[n]), params[n]) for n in names}
    opts, scheds = {n: o for n, (o, _) in optims.items()}, {n: s for n, (_, s) in optims.items()}
    zero = {"train_tokens": 0, "trained_tokens": 0, "sequences": 0, "seconds": 0.0, "train_flops": 0.0}
    start, counters = resume(out, model, opts, scheds, {n: dict(zero) for n in names}, console, "step")
    train_all_adapters(model)
    adapter = {n: sum(p.numel() for p in params[n]) for n in names}
    fm = {n: FlopModel.from_model(model, adapter[n]) for n in names}
    logs = {n: RunLog(out / n, start) for n in names}
    total = max(len(p) for p in plans.values())
    last = {}
    with step_bar(console, "train roles", total, start, ["loss", "tok/s"]) as advance:
        for step in range(start, total):
            live = [n for n in names if step < len(plans[n])]
            t0 = time.perf_counter()
            n_lab = {n: labelled(plans[n][step][1], segs[n]) for n in live}
            # each role's loss is its tokens' summed cross-entropy over its own step's labelled tokens
            scale = torch.tensor([1.0 / max(n_lab[n], 1) for n in live], device=device)
            loss_sum = torch.zeros(len(live), device=device)  # per role, read once after the step
            for j in range(max(len(plans[n][step][1]) for n in live)):
                parts = [(n, plans[n][step][1][j]) for n in live if j < len(plans[n][step][1])]
                cols = [collate(mb, segs[n], tok.pad_token_id, cfg.max_length, device) for n, mb in parts]
                inputs, labels = _concat(cols, tok.pad_token_id)
                rows = [n for (n, mb) in parts for _ in mb]
                with adapter_rows(model, rows), autocast(device):
                    logits, targets = labelled_logits(model, head, inputs, labels)
                who = torch.cat([torch.full((len(mb),), live.index(n), device=device) for n, mb in parts])
                role = who[:, None].expand_as(labels)[next_labelled(labels)]  # in labelled_logits' order
                per_token = token_losses(logits, targets) * scale[role]
                loss_sum.index_add_(0, role, per_token.detach())
                per_token.sum().backward()
            loss_sum = dict(zip(live, loss_sum.tolist(), strict=True))
            norms = {n: torch.nn.utils.clip_grad_norm_(params[n], cfg.optim.max_grad_norm) for n in live}
            for n in live:
                opts[n].step()
                scheds[n].step()
                opts[n].zero_grad(set_to_none=True)
            if device.type == "cuda":
                torch.cuda.synchronize()
            dt = time.perf_counter() - t0
            lens = {n: [ex.length for mb in plans[n][step][1] for ex in mb] for n in live}
            all_tokens = sum(sum(v) for v in lens.values())
            for n in live:
                tokens, c = sum(lens[n]), counters[n]
                c["train_tokens"] += tokens
                c["trained_tokens"] += n_lab[n]
                c["sequences"] += len(lens[n])
                c["seconds"] += dt * tokens / max(all_tokens, 1)  # the shared step, by tokens
                c["train_flops"] += train_flops(fm[n], lens[n], adapter[n])
                row = {"step": step + 1, "epoch": plans[n][step][0], "loss": loss_sum[n]}
                row |= {"lr": scheds[n].get_last_lr()[0], "grad_norm": float(norms[n]), "tokens": tokens}
                row["tokens_per_second"] = all_tokens / dt
                due = step + 1 == len(plans[n]) or (cfg.eval_every and (step + 1) % cfg.eval_every == 0)
                if evals[n] and due:
                    model.base_model.set_adapter(n)
                    row["eval_loss"] = eval_loss(model, evals[n], eval_segs[n], cfg, tok.pad_token_id, device)
                    train_all_adapters(model)
                logs[n].write(row)
                last[n] = row
            advance(**{"loss": sum(loss_sum.values()), "tok/s": all_tokens / dt})
            save = functools.partial(save_checkpoint, out, step + 1, model, opts, scheds, counters)
            end_step(step + 1, total, cfg.save_every, save, stop_after, start, logs.values())
    stats = []
    for n in names:
        logs[n].close()
        save_adapter(model, n, out / n, tok)
        st = {"adapter": n, "records": len(data[n][0]), "steps": len(plans[n]), "epochs": cfg.epochs}
        st |= {"trainable_parameters": adapter[n], "base_parameters": loaded.num_parameters, **counters[n]}
        st["peak_memory_bytes"] = peak_memory()  # all roles at once
        if n in last and "eval_loss" in last[n]:
            st["eval_loss"] = last[n]["eval_loss"]
        write_json(out / n / "train_metrics.json", st)
        stats.append(st)
    return stats


def save_adapter(model, name: str, folder: Path, tokenizer) -> None:
    """One adapter of a multi-adapter model as a plain peft folder (peft would nest a named one in folder/name)."""
    import shutil
    import tempfile

    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        model.save_pretrained(tmp, selected_adapters=[name])
        inner = Path(tmp) / name if (Path(tmp) / name).is_dir() else Path(tmp)
        for f in inner.iterdir():
            if f.is_file():
                shutil.move(str(f), folder / f.name)
    tokenizer.save_pretrained(str(folder))


# ---- the recipe


def adapters_of(cfg: SFTConfig, records: list[dict]) -> dict[str, set[str] | None]:
    """Adapter name -> the roles it is trained on (None: every assistant turn)."""
    present = sorted({r.get("role", "agent") for r in records})
    wanted = cfg.roles or present
    missing = sorted(set(wanted) - set(present))
    if missing:
        raise DataError(f"{cfg.data}: no trajectories of role(s) {missing} (roles present: {present})")
    if cfg.mode == "roles":
        return {role: {role} for role in wanted}
    return {"agent" if cfg.mode == "single" else "team": set(wanted) if cfg.roles else None}


def train(
    cfg: SFTConfig, console: Console | None = None, stop_after: int | None = None, eval_config: bool = True
) -> Path:
    """Run the SFT/ProST recipe: one folder per adapter, train_metrics.json and (`eval_config`) an apps
    eval.yaml ready for eval."""
    console = console or RunConsole()
    main = accelerator(cfg.device).is_main_process
    # the data first: a bad file, record or role fails before the run's folder exists
    layout = "single" if cfg.mode == "single" else "planner-executor"
    if cfg.task:
        task = load_task(cfg.task)
        records = gold_records(task, ROLE_PROMPTS["solver"], len(task.problems), cfg.seed)
    else:
        records = load_records(cfg.data, layout)
    eval_records = load_records(cfg.eval_data, layout) if cfg.eval_data else []
    adapters = adapters_of(cfg, records)
    unknown = sorted(set(cfg.role_epochs) - set(adapters))
    if unknown:
        raise DataError(
            f"role_epochs names {unknown}, which this run does not train (adapters: {sorted(adapters)})"
        )
    out = run_folder(cfg.output, f"sft-{cfg.mode}", cfg if main else None)
    if not main:
        console = Console(quiet=True)
    stats = []
    if cfg.mixed_roles and not all((out / n / "train_metrics.json").is_file() for n in adapters):
        data = {
            n: (
                [r for r in records if r.get("role", "agent") in roles],
                [r for r in eval_records if r.get("role", "agent") in roles],
            )
            for n, roles in adapters.items()
        }
        console.print(
            f"[bold]{', '.join(data)}[/]: trained together, {cfg.epochs} epochs, curriculum {cfg.curriculum.schedule}"
        )
        adapters, stats = {}, train_roles_mixed(cfg, data, out, console, stop_after)
    for name, roles in adapters.items():
        folder = out / name
        if (folder / "train_metrics.json").is_file():  # finished before a kill: keep it
            stats.append(json.loads((folder / "train_metrics.json").read_text()))
            continue
        use = [r for r in records if roles is None or r.get("role", "agent") in roles]
        held = [r for r in eval_records if roles is None or r.get("role", "agent") in roles]
        own = replace(cfg, epochs=cfg.role_epochs.get(name, cfg.epochs))
        console.print(
            f"[bold]{name}[/]: {len(use)} trajectories, {own.epochs} epochs, curriculum {cfg.curriculum.schedule}"
        )
        stats.append(train_adapter(own, name, use, held, roles, folder, console, stop_after))
    if not main:
        return out
    total = {
        k: sum(s[k] for s in stats)
        for k in ("train_tokens", "trained_tokens", "sequences", "seconds", "train_flops")
    }
    total["peak_memory_bytes"] = max(s.get("peak_memory_bytes", 0) for s in stats)  # adapters train in turn
    write_json(out / "train_metrics.json", {"adapters": stats, "total": total})
    if eval_config:
        write_eval_config(cfg, out, [s["adapter"] for s in stats])
    release_folder(out)
    return out


APPS_NEW_TOKENS = {"agent": 128, "planner": 64, "executor": 128}  # an apps evaluation's budget per turn


def apps_agents(layout: str, weights=None) -> list[dict]:
    """The agents of an apps evaluation of `layout` (single or planner-executor): greedy, each role with its
    new-token budget; `weights(role)` gives a trained role's adapter or model entry (none: untrained)."""
    roles = ["agent"] if layout == "single" else ["planner", "executor"]
    sampling = lambda r: {"max_new_tokens": APPS_NEW_TOKENS[r], "do_sample": False}  # noqa: E731
    return [{"name": r, "sampling": sampling(r), **(weights(r) if weights else {})} for r in roles]


def write_eval_config(cfg: SFTConfig, out: Path, adapters: list[str]) -> None:
    """eval.yaml: the trained team in the apps world (the agent alone on the task's test split, for a `task`
    run), for `teamtune eval --config <run>/eval.yaml`."""
    method = METHOD[cfg.curriculum.schedule]
    greedy = lambda n: {"max_new_tokens": n, "do_sample": False}  # noqa: E731
    trained = lambda where: {"adapter": where} if cfg.finetune == "lora" else {"model": where}  # noqa: E731
    if cfg.task:
        agent = {"name": "solver", "sampling": greedy(256), **trained(str(out / adapters[0]))}
        team = {
            "layout": "single",
            "model": cfg.model,
            "agents": [agent],
            "seed": cfg.seed,
            "batch_size": 128,
        }
        test = dataclasses.asdict(cfg.task) | {"split": "test", "limit": 200}
        ev = {
            "task": test,
            "team": team,
            "method": "sft",
            "label": "single sft",
            "output": str(out / "eval-test"),
        }
        save_eval_config(out / "eval.yaml", ev)
        return
    layout = "single" if cfg.mode == "single" else "planner-executor"
    agents = apps_agents(
        layout, lambda role: trained(str(out / (role if cfg.mode == "roles" else adapters[0])))
    )
    team = {"layout": layout, "model": cfg.model, "agents": agents, "seed": cfg.seed, "batch_size": 128}
    label = " ".join([layout, *(["joint"] if cfg.mode == "joint" else []), method])
    eval_cfg = {
        "task": {"name": "apps", "split": "dev", "limit": 100},
        "team": team,
        "method": method,
        "label": label,
        "output": str(out / "eval-dev"),
    }
    save_eval_config(out / "eval.yaml", eval_cfg)
