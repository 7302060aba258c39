"""Batched generation: many chat prompts (and LoRA adapters of one base) per forward pass, with cost counts.

The engine knows nothing of teams or training methods: it turns requests into completions.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import torch
from peft import PeftModel
from rich.progress import Progress

from . import fastgen
from .config import ConfigError
from .costs import Cost, FlopModel
from .models import LoadedModel, adapter_parameters

DEFAULT_MAX_NEW_TOKENS = 256


@dataclass
class SamplingConfig:
    max_new_tokens: int | None = None  # None: the task's budget (`Task.max_new_tokens`), 256 without a task
    temperature: float = 0.7
    top_p: float = 0.95
    do_sample: bool = True  # false: greedy decoding
    stop: list[str] = field(default_factory=list)  # generation ends at the first of these (not kept)

    def validate(self) -> None:
        if self.max_new_tokens is not None and self.max_new_tokens < 1:
            raise ValueError("max_new_tokens must be at least 1")
        if self.do_sample and not (self.temperature > 0 and 0 < self.top_p <= 1):
            raise ValueError("sampling needs temperature > 0 and 0 < top_p <= 1")

    def key(self) -> tuple:
        return (self.max_new_tokens, self.temperature, self.top_p, self.do_sample, tuple(self.stop))


# environment variables that override a run's `decode:` settings (the values used are written to config.yaml)
DECODE_ENV = {
    "fast": "TEAMTUNE_FAST",
    "compile_step": "TEAMTUNE_COMPILE_DECODE",
    "nucleus": "TEAMTUNE_NUCLEUS",
    "dtype": "TEAMTUNE_DECODE_DTYPE",
    "share_prompts": "TEAMTUNE_SHARE_PROMPTS",
    "attention_kernel": "TEAMTUNE_ATTENTION_KERNEL",
}
DECODE_DTYPES = ("bfloat16", "float16", "float32")


@dataclass
class DecodeConfig:
    """How an engine decodes: settings that change its speed, and for `nucleus` which tokens a seed draws."""

    fast: bool | None = None  # fastgen (static cache, CUDA graphs); None: on CUDA when the model is supported
    compile_step: bool = False  # the fast decode step through torch.compile
    # the fast path's top-p draw: sort or reject; None: reject if compiled, else sort
    nucleus: str | None = None
    # what the fast path computes in: bfloat16, float16 or float32; None: bfloat16 for float32 weights on
    # CUDA (a training model: its forward runs under bf16 autocast), else the weights' own dtype
    dtype: str | None = None
    # the fast path: rows of one prompt and adapter (a group of samples) hold, fill and read its cache once;
    # rows not next to their group's others are moved beside them, so a seed may draw other samples for them
    share_prompts: bool = False
    # the fast path's decode attention by a Triton kernel that reads each row's valid keys alone (CUDA)
    attention_kernel: bool = False

    def validate(self) -> None:
        self.apply_env()
        for key, allowed, what in (
            ("nucleus", fastgen.NUCLEI, "nucleus"),
            ("dtype", DECODE_DTYPES, "decode dtype"),
        ):
            value = getattr(self, key)
            if value is not None and value not in allowed:
                var = DECODE_ENV[key]
                where = f"{var}={value!r}: " if os.environ.get(var) else ""
                raise ValueError(f"{where}{what} must be one of {', '.join(allowed)}, not {value!r}")

    def apply_env(self) -> DecodeConfig:
        """Take the TEAMTUNE_* overrides that are set (DECODE_ENV), so a run records what it used."""
        for key, var in DECODE_ENV.items():
            raw = os.environ.get(var, "")
            if not raw:
                continue
            if key in ("nucleus", "dtype"):
                setattr(self, key, raw)
            elif raw in ("0", "1"):
                setattr(self, key, raw == "1")
            else:
                raise ValueError(f"{var}={raw!r}: use 0 or 1")
        return self


@dataclass
class Request:
    messages: list[dict]  # chat messages, e.g. [{"role": "system", ...}, {"role": "user", ...}]
    adapter: str | None = None  # peft adapter name on the engine's model; None = the base weights


@dataclass
class Completion:
    text: str
    finish: str  # "stop" (a stop string), "eos" or "length"
    cost: Cost
    # for training: the generated token ids (with the end token) and the rendered prompt's ids, unpadded
    tokens: list[int] = field(default_factory=list)
    prompt_ids: list[int] = field(default_factory=list)


class Engine:
    """Generates for many requests on one base model, left-padded, sorted by length, `batch_size` at a time.

    `decode`: the fast path and its draw (DecodeConfig; the TEAMTUNE_* variables override it). `fast`, when
    given, overrides `decode.fast`: None = on CUDA when the model is supported, False = always transformers'
    `generate`, True = insist (an unsupported model is an error).
    """

    def __init__(
        self,
        loaded: LoadedModel,
        batch_size: int = 64,
        seed: int | None = 0,
        progress: Progress | None = None,
        fast: bool | None = None,
        decode: DecodeConfig | None = None,
    ):
        self.loaded = loaded
        self.decode = replace(decode or DecodeConfig())  # a copy: the overrides are applied to it
        self.decode.validate()
        d = self.decode
        self._decoder = fastgen.FastDecoder(
            d.compile_step,
            d.nucleus,
            d.dtype,
            share_prompts=d.share_prompts,
            attention_kernel=d.attention_kernel,
        )
        self.fast = fast if fast is not None else self.decode.fast
        self.batch_size = batch_size
        self.seed = seed
        self.progress = progress
        self.calls = 0  # generate batches so far; batch n samples with seed + n (resumed runs restore it)
        self._flop_models: dict[str | None, FlopModel] = {}

    @property
    def model(self):
        return self.loaded.model

    @property
    def tokenizer(self):
        return self.loaded.tokenizer

    def render(self, messages: list[dict]) -> str:
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    @torch.inference_mode()
    def generate(
        self, requests: Sequence[Request], sampling: SamplingConfig, desc: str = "generate"
    ) -> list[Completion]:
        """One completion per request, in request order."""
        if sampling.max_new_tokens is None:  # no task set the budget (eval resolves it to the task's)
            sampling = replace(sampling, max_new_tokens=DEFAULT_MAX_NEW_TOKENS)
        context = getattr(self.model.config, "max_position_embeddings", None)
        if context is not None and sampling.max_new_tokens >= context:
            raise ConfigError(
                f"max_new_tokens {sampling.max_new_tokens} is past the context of model {self.loaded.name!r} "
                f"({context} tokens, prompt included)"
            )
        texts = [self.render(r.messages) for r in requests]
        ids = self.tokenizer(texts, add_special_tokens=False)["input_ids"]
        order = sorted(range(len(requests)), key=lambda i: -len(ids[i]))  # similar lengths share a batch
        out: list[Completion | None] = [None] * len(requests)
        bar = self.progress.add_task(desc, total=len(requests)) if self.progress else None
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            for i, c in zip(
                idx,
                self._batch(
                    [texts[i] for i in idx],
                    [ids[i] for i in idx],
                    [requests[i].adapter for i in idx],
                    sampling,
                ),
                strict=True,
            ):
                out[i] = c
            if bar is not None:
                self.progress.advance(bar, len(idx))
        if bar is not None:
            self.progress.remove_task(bar)
        return out  # type: ignore[return-value]

    def uses_fast_path(self) -> bool:
        if self.fast is False:
            return False
        reason = fastgen.unsupported(self.model)
        if reason and self.fast:
            raise ValueError(f"fast decoding cannot run {self.loaded.name!r}: {reason}")
        return reason is None and (self.fast or self.loaded.device.type == "cuda")

    def _batch(
        self, texts: list[str], ids: list[list[int]], adapters: list[str | None], s: SamplingConfig
    ) -> list[Completion]:
        seed = None if self.seed is None else self.seed + self.calls
        self.calls += 1
        t0 = time.perf_counter()
        fast = self.uses_fast_path()
        new = self._fast_batch(ids, adapters, s, seed) if fast else self._hf_batch(texts, adapters, s, seed)
        if self.loaded.device.type == "cuda":
            torch.cuda.synchronize()
        seconds = (time.perf_counter() - t0) / len(texts)  # the batch's wall time, shared equally
        flop_models = [self.flop_model(a) for a in adapters]
        return [
            self._completion(out, p, seconds, fm, s) for out, p, fm in zip(new, ids, flop_models, strict=True)
        ]

    def _fast_batch(self, prompts: list[list[int]], adapters, s: SamplingConfig, seed) -> list[list[int]]:
        tok = self.tokenizer

        def stopped(ids: list[int]) -> bool:
            text = tok.decode(ids, skip_special_tokens=True)
            return any(x in text for x in s.stop)

        return self._decoder.generate(
            self.model,
            prompts,
            adapters,
            max_new_tokens=s.max_new_tokens,
            do_sample=s.do_sample,
            temperature=s.temperature,
            top_p=s.top_p,
            pad=tok.pad_token_id,
            eos=sorted({tok.eos_token_id, tok.pad_token_id}),
            seed=seed,
            stopped=stopped if s.stop else None,
        )

    def _hf_batch(self, texts, adapters, s: SamplingConfig, seed) -> list[list[int]]:
        tok, model = self.tokenizer, self.model
        enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.loaded.device)
        kwargs = dict(
            max_new_tokens=s.max_new_tokens,
            do_sample=s.do_sample,
            pad_token_id=tok.pad_token_id,
            eos_token_id=tok.eos_token_id,
        )
        if s.do_sample:
            kwargs.update(temperature=s.temperature, top_p=s.top_p, top_k=0)
        if s.stop:
            kwargs.update(stop_strings=list(s.stop), tokenizer=tok)
        context = contextlib.nullcontext()
        if isinstance(model, PeftModel):
            if len(set(adapters)) > 1:
                # Mixed rows: name each row's adapter (peft otherwise applies its active one to base rows).
                kwargs["adapter_names"] = [a or "__base__" for a in adapters]
            elif adapters[0] is None:
                context = model.disable_adapter()
            else:  # one adapter for the whole batch: peft's plain path, much faster than the mixed one
                model.set_adapter(adapters[0])
        with context, fastgen.seeded(seed, self.loaded.device):
            seqs = model.generate(**enc, **kwargs)
        return seqs[:, enc["input_ids"].shape[1] :].tolist()

    def flop_model(self, adapter: str | None) -> FlopModel:
        """FLOPs per token of the base model, plus the adapter's weights when one is used."""
        if adapter not in self._flop_models:
            extra = adapter_parameters(self.model, adapter)
            self._flop_models[adapter] = FlopModel.from_model(self.model, extra)
        return self._flop_models[adapter]

    def _completion(
        self, ids: list[int], prompt: list[int], seconds: float, fm: FlopModel, s: SamplingConfig
    ) -> Completion:
        tok = self.tokenizer
        ends = {tok.eos_token_id, tok.pad_token_id}
        end = next((j for j, t in enumerate(ids) if t in ends), None)
        text = tok.decode(ids[:end], skip_special_tokens=True)
        cut = min((text.find(x) for x in s.stop if x in text), default=-1)
        if cut >= 0:
            # Generation halts on a stop string and pads after it, so the pad is not a generated token.
            finish, n_gen, text = "stop", end if end is not None else len(ids), text[:cut]
        elif end is not None:
            finish, n_gen = "eos", end + 1
        else:
            finish, n_gen = "length", len(ids)
        cost = Cost(
            calls=1,
            prompt_tokens=len(prompt),
            generated_tokens=n_gen,
            seconds=seconds,
            prefill_flops=fm.prefill(len(prompt)),
            decode_flops=fm.decode(len(prompt), n_gen),
        )
        return Completion(text=text.strip(), finish=finish, cost=cost, tokens=ids[:n_gen], prompt_ids=prompt)
