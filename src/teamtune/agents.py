"""Agents (roles on a shared base model), the pool that loads each base once, and episodes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from peft import PeftModel
from rich.progress import Progress

from .costs import Cost, total
from .models import LoadedModel, ModelLoadError, load_model
from .rollout import Completion, DecodeConfig, Engine, Request, SamplingConfig

ROLE_PROMPTS = {
    "solver": "You are a careful problem solver.",
    "peer": "You are a careful problem solver.",
    "leader": (
        "You lead a team of problem solvers. Read the team's answers, check their reasoning, "
        "and write the correct final solution yourself."
    ),
    "critic": "You review a solution written by a teammate: check each step and point out any mistake.",
    "refiner": "You write the final solution, using the teammates' work above and fixing any mistake they found.",
    "verifier": "You check the team's final solution once more and state the final answer, correcting it if wrong.",
}
DEFAULT_PROMPT = "You are a helpful assistant working in a team."


@dataclass
class AgentConfig:
    name: str = "solver"
    model: str | None = None  # default: the team's model
    adapter: str | None = None  # a peft LoRA folder, loaded as this agent's adapter on the shared base
    system_prompt: str | None = None  # default: the built-in prompt of a role of this name
    sampling: SamplingConfig = field(default_factory=SamplingConfig)


@dataclass
class Agent:
    """A role: a name, a system prompt, a base model (engine) with an optional adapter, and sampling."""

    name: str
    system_prompt: str
    engine: Engine
    sampling: SamplingConfig
    adapter: str | None = None

    def request(self, conversation: str | list[dict]) -> Request:
        """The system prompt, then one user message or a whole conversation (chat messages)."""
        if isinstance(conversation, str):
            conversation = [{"role": "user", "content": conversation}]
        msgs = [{"role": m["role"], "content": m["content"]} for m in conversation]
        return Request(
            messages=[{"role": "system", "content": self.system_prompt}, *msgs], adapter=self.adapter
        )


class ModelPool:
    """Loads each base model once; agents on the same base share its weights and add LoRA adapters to it."""

    def __init__(
        self,
        device: str = "auto",
        dtype: str = "auto",
        batch_size: int = 64,
        seed: int | None = 0,
        progress: Progress | None = None,
        load_seed: int | None = None,
        decode: DecodeConfig | None = None,
    ):
        self.device = device
        self.dtype = dtype
        self.batch_size = batch_size
        self.seed = seed  # the engines' sampling seed
        self.load_seed = seed if load_seed is None else load_seed  # random-init weights (default: `seed`)
        self.progress = progress
        self.decode = decode
        self.engines: dict[str, Engine] = {}

    def engine(self, model: str) -> Engine:
        if model not in self.engines:
            loaded = load_model(model, device=self.device, dtype=self.dtype, seed=self.load_seed or 0)
            self.engines[model] = Engine(
                loaded, batch_size=self.batch_size, seed=self.seed, progress=self.progress, decode=self.decode
            )
        return self.engines[model]

    def add_adapter(self, model: str, name: str, path: str) -> None:
        """Attach the LoRA adapter at `path` to `model`'s shared base under `name`."""
        if not (Path(path) / "adapter_config.json").is_file():
            raise ModelLoadError(
                f"adapter {path!r} of agent {name!r} is not a peft adapter folder (no adapter_config.json)"
            )
        loaded: LoadedModel = self.engine(model).loaded
        if isinstance(loaded.model, PeftModel):
            if name not in loaded.model.peft_config:
                loaded.model.load_adapter(path, adapter_name=name)
        else:
            loaded.model = PeftModel.from_pretrained(loaded.model, path, adapter_name=name)
        loaded.model.eval()

    def agent(self, cfg: AgentConfig, default_model: str) -> Agent:
        model = cfg.model or default_model
        engine = self.engine(model)
        if cfg.adapter:
            self.add_adapter(model, cfg.name, cfg.adapter)
        prompt = cfg.system_prompt or ROLE_PROMPTS.get(cfg.name, DEFAULT_PROMPT)
        return Agent(
            name=cfg.name,
            system_prompt=prompt,
            engine=engine,
            sampling=cfg.sampling,
            adapter=cfg.name if cfg.adapter else None,
        )


def run_calls(
    calls: list[tuple[Agent, str | list[dict]]],
    desc: str,
    stop: Sequence[str] = (),
    budget: int | None = None,
) -> list[Completion]:
    """Run (agent, user message or conversation) calls, one batched generate per base model and sampling.

    `stop`: stop strings added to every agent's own (a task's, e.g. `Task.stop`); `budget`: the new tokens of
    agents whose sampling sets none (a task's, `Task.max_new_tokens`)."""
    groups: dict[tuple, list[int]] = {}
    for i, (agent, _) in enumerate(calls):
        groups.setdefault((id(agent.engine), agent.sampling.key()), []).append(i)
    out: list[Completion | None] = [None] * len(calls)
    for idx in groups.values():
        agent0 = calls[idx[0]][0]
        sampling = agent0.sampling
        if stop:
            sampling = replace(sampling, stop=[*sampling.stop, *(x for x in stop if x not in sampling.stop)])
        if sampling.max_new_tokens is None and budget is not None:  # the task's, for agents that set none
            sampling = replace(sampling, max_new_tokens=budget)
        done = agent0.engine.generate([calls[i][0].request(calls[i][1]) for i in idx], sampling, desc)
        for i, c in zip(idx, done, strict=True):
            out[i] = c
    return out  # type: ignore[return-value]


@dataclass
class Turn:
    agent: str
    round: int
    messages: list[dict]
    text: str
    finish: str
    cost: Cost


@dataclass
class Episode:
    problem_id: str
    question: str
    gold: str
    turns: list[Turn] = field(default_factory=list)
    answer: str | None = None
    correct: bool = False
    reward: float = 0.0
    info: dict = field(default_factory=dict)  # what an environment adds, e.g. sub-task outcomes

    @property
    def cost(self) -> Cost:
        return total(t.cost for t in self.turns)

    def cost_by_agent(self) -> dict[str, Cost]:
        out: dict[str, Cost] = {}
        for t in self.turns:
            out[t.agent] = out.get(t.agent, Cost()) + t.cost
        return out

    def to_dict(self) -> dict:
        d = asdict(self)
        d["cost"] = self.cost.to_dict()
        d["cost_by_agent"] = {k: v.to_dict() for k, v in self.cost_by_agent().items()}
        return d
