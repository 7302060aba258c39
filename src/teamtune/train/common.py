"""What every training recipe shares: LoRA or full fine-tuning, the optimiser, atomic checkpoints with exact
resume, the step log (log.jsonl + TensorBoard), saving the result the Hugging Face way, and training FLOPs."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from accelerate import Accelerator, DistributedDataParallelKwargs
from peft import LoraConfig, PeftModel, get_peft_model
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
from torch.nn.attention import SDPBackend, sdpa_kernel
from transformers import get_scheduler

from ..analysis.report import RENAMED
from ..config import ConfigError, at_least, from_dict, save_config
from ..console import RunProgress
from ..costs import FlopModel
from ..evaluate import EvalConfig, claim_folder
from ..fastgen.model import compile_dynamic
from ..models import LoadedModel, save_model


@dataclass
class LoraSettings:
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: list[str] | str = "all-linear"

    def validate(self) -> None:
        at_least(self, 1, "r", "alpha")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


@dataclass
class OptimSettings:
    lr: float = 2e-4
    weight_decay: float = 0.0
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    warmup_steps: int = 10
    max_grad_norm: float = 1.0
    # let the training forward use cuDNN's attention kernel on CUDA (off: it sets itself up for every new batch
    # shape; see `autocast`); TEAMTUNE_CUDNN_ATTENTION=0/1 overrides it, and the value used is in config.yaml
    cudnn_attention: bool = False

    def validate(self) -> None:
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        raw = os.environ.get("TEAMTUNE_CUDNN_ATTENTION", "")
        if raw and raw not in ("0", "1"):
            raise ValueError(f"TEAMTUNE_CUDNN_ATTENTION={raw!r}: use 0 or 1")
        if raw:
            self.cudnn_attention = raw == "1"


def make_trainable(
    loaded: LoadedModel, finetune: str, lora: LoraSettings, adapter: str = "default", init: Path | None = None
) -> torch.nn.Module:
    """Wrap the model with a LoRA adapter named `adapter` (fresh, or the peft folder `init`), or make every
    weight trainable (full)."""
    if finetune == "full":
        loaded.model.requires_grad_(True)
        return loaded.model
    if init is not None:
        loaded.model = PeftModel.from_pretrained(
            loaded.model, str(init), adapter_name=adapter, is_trainable=True
        )
        return loaded.model
    cfg = LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=lora.target_modules,
        task_type="CAUSAL_LM",
    )
    loaded.model = get_peft_model(loaded.model, cfg, adapter_name=adapter)
    return loaded.model


def compile_layers(model: torch.nn.Module) -> None:
    """Regional compilation: each decoder layer of `model` (Llama-family layout, under a peft wrapper or not)
    through torch.compile with dynamic shapes. The layers share one compiled code (compiled once, not once per
    layer), which fuses the layer's elementwise work (RMSNorm, rotary, LoRA scaling, residual sums) in the
    forward and the backward."""
    base = model.get_base_model() if isinstance(model, PeftModel) else model
    layers = getattr(getattr(base, "model", base), "layers", None)
    if not isinstance(layers, torch.nn.ModuleList):
        raise ValueError(f"compile: no decoder layers (model.layers) in {type(base).__name__}")
    # a team's agents (other adapters, other weights needing gradients) each add a compiled variant
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
    for layer in layers:
        compile_dynamic(layer)


def trainable_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def make_optimizer(
    model: torch.nn.Module, optim: OptimSettings, total_steps: int, params: list | None = None
):
    """AdamW over `params` (default: the trainable weights) with the schedule of `optim`; also sets the run's
    training attention (`optim.cudnn_attention`, read by `autocast`): one run per process."""
    _KERNELS["cudnn_attention"] = optim.cudnn_attention
    params = params if params is not None else [p for p in model.parameters() if p.requires_grad]
    fused = all(p.is_cuda for p in params)
    opt = torch.optim.AdamW(params, lr=optim.lr, weight_decay=optim.weight_decay, fused=fused)
    name = "constant_with_warmup" if optim.schedule == "constant" else optim.schedule
    sched = get_scheduler(
        name, opt, num_warmup_steps=min(optim.warmup_steps, total_steps), num_training_steps=total_steps
    )
    return opt, sched


def save_eval_config(path: Path, data: dict) -> EvalConfig:
    """An eval config a recipe leaves for `teamtune eval --config <run>/<name>.yaml`: built as an EvalConfig
    (so a wrong key or layout fails here, at training time) and saved whole."""
    cfg = from_dict(EvalConfig, data, str(path))
    try:
        cfg.validate()
    except ValueError as e:
        raise ConfigError(f"{path}: {e}") from None
    save_config(cfg, path)
    return cfg


def release_cached_memory(device) -> None:
    """Return the allocator's cached blocks to the GPU between steps, so that runs sharing one GPU see each
    other's free memory (a step's peak stays reserved otherwise)."""
    if torch.device(device).type == "cuda":
        torch.cuda.empty_cache()


_KERNELS = {"cudnn_attention": False}  # the training forward's kernels, set from the run's OptimSettings


def autocast(device: torch.device):
    """For a training forward on CUDA: bf16 autocast (weights stay fp32) and attention without cuDNN's kernel;
    nothing elsewhere. Training batches change shape from step to step, and cuDNN's attention sets itself up
    for each new shape: without it an SFT pass over new shapes ran 2.4-2.7x faster on an H200, and 7-8% slower
    once every shape had been seen (BENCHMARKS.md). `optim.cudnn_attention: true` keeps cuDNN's kernel."""
    if device.type != "cuda":
        return contextlib.nullcontext()
    stack = contextlib.ExitStack()
    stack.enter_context(torch.autocast("cuda", dtype=torch.bfloat16))
    if not _KERNELS["cudnn_attention"]:
        stack.enter_context(
            sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH])
        )
    return stack


# ---- checkpoints: checkpoints/step-N, written to a temporary folder and renamed, so a kill leaves none half-made


def _rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():  # this process's GPU only: a rank leaves the others' GPUs alone
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available():
        if isinstance(cuda, list):  # older checkpoints held every GPU's state
            cuda = cuda[torch.cuda.current_device()] if torch.cuda.current_device() < len(cuda) else None
        if cuda is not None:
            torch.cuda.set_rng_state(cuda)


def _weights(model) -> dict[str, torch.nn.Parameter]:
    """What a checkpoint keeps: every LoRA adapter's weights (all roles), or the trainable weights."""
    return {n: p for n, p in model.named_parameters() if p.requires_grad or "lora_" in n}


def _states(x) -> dict:
    """state_dict of an optimiser or schedule, or of each in a dict of them (one per agent)."""
    return {k: v.state_dict() for k, v in x.items()} if isinstance(x, dict) else x.state_dict()


def _load_states(x, state) -> None:
    if isinstance(x, dict):
        for k, v in x.items():
            v.load_state_dict(state[k])
    else:
        x.load_state_dict(state)


def end_step(
    done: int, total: int, save_every: int, save, stop_after: int | None, start: int, logs=()
) -> None:
    """The end of a recipe's step `done` (1-based) of `total`: `save()` every `save_every` steps but the last
    (None: not this process's to save), then the stop that `stop_after` asks (how tests kill a run): the logs
    closed and Interrupted raised."""
    if save is not None and save_every and done % save_every == 0 and done < total:
        save()
    if stop_after is not None and done - start >= stop_after:
        for log in logs:
            if log is not None:
                log.close()
        raise Interrupted(f"stopped after step {done}")


def save_checkpoint(folder: Path, step: int, model, opt, sched, counters: dict, keep: int = 2) -> Path:
    """Weights, optimiser(s), schedule(s), RNG and counters after `step`; keeps the newest `keep`."""
    root = folder / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{step:07d}"
    tmp = root / f".step-{step:07d}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    torch.save({n: p.detach().cpu() for n, p in _weights(model).items()}, tmp / "trainable.pt")
    torch.save(
        {"optimizer": _states(opt), "scheduler": _states(sched), "rng": _rng_state()}, tmp / "state.pt"
    )
    (tmp / "counters.json").write_text(json.dumps({"step": step, **counters}))
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    for old in sorted(root.glob("step-*"))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(folder: Path) -> Path | None:
    done = _checkpoints(folder)
    return done[-1] if done else None


def _checkpoints(folder: Path) -> list[Path]:
    """Finished checkpoints under `folder`, oldest first (a half-written one is a `.step-*.tmp` folder)."""
    return sorted(p for p in (folder / "checkpoints").glob("step-*") if (p / "counters.json").is_file())


def _clear_leftovers(folder: Path) -> None:
    """Remove what a killed writer left: a `.step-*.tmp` checkpoint folder, `.<name>.<pid>.tmp` files."""
    root = folder / "checkpoints"
    if root.is_dir():
        for tmp in root.glob(".step-*.tmp"):
            shutil.rmtree(tmp, ignore_errors=True)
    for tmp in folder.glob(".*.tmp"):
        if tmp.is_file():
            tmp.unlink(missing_ok=True)


def resume(folder: Path, model, opt, sched, counters: dict, console: Console, unit: str) -> tuple[int, dict]:
    """Restore the newest checkpoint under `folder` that reads whole, if any; returns (`unit`s done, counters).

    A damaged checkpoint (truncated weights, missing or garbage state, corrupt counters) is named in one
    line and the next older one is tried; a ConfigError when checkpoints exist and none loads.
    """
    _clear_leftovers(folder)
    found = _checkpoints(folder)
    damaged = []
    for ckpt in reversed(found):
        try:
            saved = read_checkpoint(ckpt)
        except ConfigError as e:
            console.print(f"skipping damaged checkpoint: {e}")
            damaged.append(ckpt.name)
            continue
        restored = apply_checkpoint(ckpt, saved, model, opt, sched)
        done = restored.pop("step")
        console.print(f"resuming from {ckpt} ({done} {unit}s done)")
        # a counter newer than the checkpoint starts from its initial value; older names are read as the new
        restored = {RENAMED.get(k, k) if RENAMED.get(k) in counters else k: v for k, v in restored.items()}
        return done, {**counters, **restored}
    if damaged:
        raise ConfigError(
            f"{folder / 'checkpoints'}: no checkpoint loads ({', '.join(damaged)} damaged); "
            "remove the folder to start over"
        )
    return 0, counters


def run_folder(output: str | None, default: str, cfg=None) -> Path:
    """The run's folder (`output`, or runs/<time>-<default>), created; with `cfg` (the main process), claimed
    for this process (`claim_folder`) and its config.yaml written."""
    out = Path(output or f"runs/{time.strftime('%Y%m%d-%H%M%S')}-{default}")
    out.mkdir(parents=True, exist_ok=True)
    if cfg is not None:
        claim_folder(out)
        save_config(cfg, out / "config.yaml")
    return out


def read_checkpoint(path: Path) -> dict:
    """Everything a checkpoint holds, read into memory and checked; ConfigError naming what is damaged."""

    def load(name: str, **kw):
        try:
            return torch.load(path / name, map_location="cpu", **kw)
        except FileNotFoundError:
            raise ConfigError(f"{path}: {name} is missing") from None
        except Exception as e:  # a truncated or garbage file fails in pickle, zipfile or torch's reader
            why = str(e).split(". ")[0][:120]  # torch's reader appends a paragraph of advice
            raise ConfigError(f"{path}: {name} does not read ({type(e).__name__}: {why})") from None

    weights = load("trainable.pt")
    state = load("state.pt", weights_only=False)
    if not isinstance(weights, dict) or not all(isinstance(v, torch.Tensor) for v in weights.values()):
        raise ConfigError(f"{path}: trainable.pt does not hold a mapping of tensors")
    if not isinstance(state, dict) or not {"optimizer", "scheduler", "rng"} <= set(state):
        raise ConfigError(f"{path}: state.pt does not hold optimizer, scheduler and rng states")
    try:
        counters = json.loads((path / "counters.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"{path}: counters.json does not read ({e})") from None
    if not isinstance(counters, dict) or not isinstance(counters.get("step"), int):
        raise ConfigError(f"{path}: counters.json holds no step count")
    return {"weights": weights, "state": state, "counters": counters}


def apply_checkpoint(path: Path, saved: dict, model, opt, sched) -> dict:
    """Put what `read_checkpoint` read into live objects; returns the counters."""
    weights, state = saved["weights"], saved["state"]
    live = _weights(model)
    if set(weights) != set(live):
        raise ConfigError(
            f"{path}: its weights do not match this run's trainable parameters (changed config?)"
        )
    with torch.no_grad():
        for n, p in live.items():
            p.copy_(weights[n])
    _load_states(opt, state["optimizer"])
    _load_states(sched, state["scheduler"])
    _set_rng_state(state["rng"])
    return dict(saved["counters"])


def load_checkpoint(path: Path, model, opt, sched) -> dict:
    """Restore what `save_checkpoint` wrote into live objects; returns the counters."""
    return apply_checkpoint(path, read_checkpoint(path), model, opt, sched)


# ---- the step log


def _log_rows(path: Path) -> list[dict]:
    """The rows of a log.jsonl; its last line, when a kill cut it mid-write (no newline), is dropped."""
    text = path.read_text(encoding="utf-8", errors="replace")
    lines = text.splitlines()
    if lines and not text.endswith("\n"):
        lines.pop()
    rows = []
    for i, line in enumerate(lines, 1):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            raise ConfigError(f"{path}:{i}: not a JSON row; the run's step log is damaged") from None
    return rows


class RunLog:
    """One JSON object per logged step in log.jsonl (what `teamtune report` draws) and TensorBoard scalars."""

    def __init__(self, folder: Path, resume_step: int = 0):
        self.path = folder / "log.jsonl"
        if self.path.is_file():  # drop what a killed run logged after its last checkpoint
            keep = [r for r in _log_rows(self.path) if r.get("step", 0) <= resume_step]
            self.path.write_text("".join(json.dumps(r) + "\n" for r in keep))
        self.tb = None
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(folder / "tb"), purge_step=resume_step + 1 if resume_step else None)
        except ImportError:  # tensorboard is a dependency, but a bare GPU image may lack it
            pass

    def write(self, row: dict) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")
        if self.tb is not None:
            for k, v in row.items():
                if k != "step" and isinstance(v, int | float):
                    self.tb.add_scalar(k, v, row["step"])

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def save_trained(loaded: LoadedModel, folder: Path) -> Path:
    """A LoRA run saves its adapter (peft's adapter_config.json + safetensors); a full run the whole model."""
    folder.mkdir(parents=True, exist_ok=True)
    if isinstance(loaded.model, PeftModel):
        loaded.model.save_pretrained(str(folder))
        loaded.tokenizer.save_pretrained(str(folder))
        return folder
    return save_model(loaded, folder)


def train_flops(fm: FlopModel, seq_lens: list[int], adapter_params: int = 0) -> float:
    """Forward + backward FLOPs of training on sequences of these lengths (`fm` counts any adapter's forward).

    Full fine-tuning (adapter_params=0): 3 x forward, about 6 x N x tokens. LoRA: 2 x forward, since the
    frozen base needs gradients for its inputs but none for its weights, plus 2 x adapter x tokens for the
    adapter's weight gradients.
    """
    forward = sum(fm.prefill(n) for n in seq_lens)
    if not adapter_params:
        return 3.0 * forward
    return 2.0 * forward + 2.0 * adapter_params * sum(seq_lens)


class Interrupted(RuntimeError):
    """Raised by a recipe's `train(..., stop_after=n)`: stands in for a kill in tests of --resume."""


@contextlib.contextmanager
def step_bar(console: Console, desc: str, total: int, done: int, fields: list[str]):
    """A progress bar over optimiser steps showing the latest value of `fields`; yields update(**values)."""
    text = " · ".join(f"{f} {{task.fields[{f}]:.4g}}" for f in fields)
    with RunProgress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(text),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    ) as progress:
        bar = progress.add_task(desc, total=total, completed=done, **dict.fromkeys(fields, 0.0))
        yield lambda **values: progress.update(bar, advance=1, **values)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def accelerator(device: str, find_unused_parameters: bool = False) -> Accelerator:
    """accelerate's view of this process: one process, or a rank of a torchrun / accelerate launch group.

    `find_unused_parameters`: for DDP over a model whose forward passes use only some of its trainable weights
    (one agent's adapter of several)."""
    cpu = device == "cpu" or (device == "auto" and not torch.cuda.is_available())
    kwargs = [DistributedDataParallelKwargs(find_unused_parameters=True)] if find_unused_parameters else []
    return Accelerator(cpu=cpu, kwargs_handlers=kwargs)


def over_ranks(
    acc: Accelerator | None, means: list[float], counters: dict, before: dict, device
) -> list[float]:
    """Combine what each rank measured on its equal share: `means` averaged, and the counters' increments
    since `before` summed over the ranks (in place). One process: the same values back."""
    if acc is None or acc.num_processes == 1:
        return means
    means = acc.reduce(torch.tensor(means, dtype=torch.float64, device=device), "mean").tolist()
    keys = sorted(before)
    inc = torch.tensor([counters[k] - before[k] for k in keys], dtype=torch.float64, device=device)
    for k, v in zip(keys, acc.reduce(inc, "sum").tolist(), strict=True):
        counters[k] = type(before[k])(before[k] + v)
    return means


def process_device(acc: Accelerator, device: str) -> str:
    """The device this process loads its model on: its own GPU in a launch group, else the configured one."""
    return str(acc.device) if acc.num_processes > 1 else device


def record_rank_weights(acc: Accelerator, folder: Path, model) -> None:
    """In a launch group, each rank writes the digest of the weights it ends with (all must be equal, so a run
    can be checked: weights-rank<N>.sha256), then waits for the others. One process: nothing."""
    if acc.num_processes > 1:
        (folder / f"weights-rank{acc.process_index}.sha256").write_text(weights_digest(model))
        acc.wait_for_everyone()


def end_launch_group() -> None:
    """Close this rank's torch.distributed process group, as accelerate's `end_training` does, so that no rank
    leaves while its communicator is still open. One process: nothing."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def weights_digest(model) -> str:
    h = hashlib.sha256()
    for n, p in sorted(model.named_parameters()):
        if p.requires_grad:
            h.update(n.encode() + p.detach().cpu().float().numpy().tobytes())
    return h.hexdigest()
