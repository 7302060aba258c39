"""The decode loop: a static KV cache per shape, prefill, one decode step captured as a CUDA graph (optionally
compiled first), and the shapes a decoder holds between calls."""

from __future__ import annotations

import collections
import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from peft import PeftModel

from . import attention_kernel
from .model import EAGER, Ops, _base, _Weights, compile_dynamic, compute_dtype, forward
from .sampling import NUCLEI, draw_by_rejection, sample, seeded

PREFILL_TOKENS = 32768  # prompt tokens per prefill chunk (bounds the attention mask and activations)
CHECK_EVERY = 8  # decode steps between host checks for finished rows and stop strings


def _decode_logits(w: _Weights, st: _State, ops: Ops, kernel: bool = False) -> torch.Tensor:
    """The model's part of a decode step: store the current tokens' keys and values at `st.cur`, return the
    next-token logits (batch, vocab). Each key/value head's `g` query heads attend as `g` queries of one head
    (no copies of the cache), by two matmuls and a float32 softmax (`scaled_dot_product_attention` with a mask
    was no faster, BENCHMARKS.md); `kernel`: by `attention_kernel` instead, which reads each row's valid keys
    alone."""
    b = st.tokens.shape[0]
    g = w.heads // w.kv_heads
    if st.group > 1:
        attend = _shared_attend(w, st, ops, kernel)
    else:
        if not kernel:
            valid = (st.arange[None, :] >= st.start[:, None]) & (st.arange[None, :] <= st.cur)
            biases = {"full_attention": _bias(valid)}
            if w.window is not None:  # sliding layers: the keys within `window` positions of the query
                biases["sliding_attention"] = _bias(valid & (st.cur - st.arange[None, :] < w.window))

        def attend(i, q, k, v):
            st.k[i].index_copy_(2, st.cur.view(1), k)
            st.v[i].index_copy_(2, st.cur.view(1), v)
            q = q.view(b, w.kv_heads, g, w.head_dim)
            if kernel:
                window = w.window if w.layer_types[i] == "sliding_attention" else None
                a = attention_kernel.decode_attention(q, st.k[i], st.v[i], st.start, st.cur, w.scale, window)
            else:
                a = ops.attend(q, st.k[i], st.v[i], biases[w.layer_types[i]], w.scale)
            return a.view(b, w.heads, 1, w.head_dim)

    pos = (st.cur - st.start)[:, None]
    h = forward(w, st.tokens[:, None], pos, w.masks(st.rows), attend, ops)[:, 0]
    return F.linear(h, w.lm_head)


def _shared_attend(w: _Weights, st: _State, ops: Ops, kernel: bool) -> Callable:
    """The decode step's attention where each group of `st.group` rows shares its prompt (`_State`), as two parts
    merged into one softmax (`Ops.merge`): the group's prompt, read once by its G x g queries together, and each
    row's own generated tokens, by `attention_kernel` (the valid ones alone) when `kernel`, else a masked matmul."""
    b, G, P = st.tokens.shape[0], st.group, st.prompt
    n, g, h, d = b // G, w.heads // w.kv_heads, w.kv_heads, w.head_dim
    j = st.cur - P  # the current token's place in the rows' own cache
    on_prompt = st.arange[None, :P] >= st.gstart[:, None]  # (n, P)
    on_new = st.arange[: st.k[0].shape[2]] <= j  # (N,)
    biases = {"full_attention": (on_prompt, on_new)}
    if w.window is not None:  # sliding layers: the keys within `window` positions of the query
        near = st.cur - st.arange < w.window
        biases["sliding_attention"] = (on_prompt & near[None, :P], on_new & near[P:])
    biases = {k: (_bias(p), _bias(q[None])) for k, (p, q) in biases.items()}

    def attend(i, q, k, v):
        st.k[i].index_copy_(2, j.view(1), k)
        st.v[i].index_copy_(2, j.view(1), v)
        on_p, on_n = biases[w.layer_types[i]]
        rows = q.view(b, h, g, d)
        grouped = rows.view(n, G, h, g, d).transpose(1, 2).reshape(n, h, G * g, d)
        o1, lse1 = ops.attend_part(
            grouped, st.pk[i], st.pv[i], on_p, w.scale
        )  # (n, h, G * g, d), (n, h, G * g)
        o1 = o1.view(n, h, G, g, d).transpose(1, 2).reshape(b, h, g, d)
        lse1 = lse1.view(n, h, G, g).transpose(1, 2).reshape(b, h, g)
        if kernel:
            window = w.window if w.layer_types[i] == "sliding_attention" else None
            o2, lse2 = attention_kernel.decode_attention(
                rows, st.k[i], st.v[i], st.new_start, j, w.scale, window, with_lse=True
            )
        else:
            o2, lse2 = ops.attend_part(rows, st.k[i], st.v[i], on_n, w.scale)
        return ops.merge(o1, lse1, o2, lse2).view(b, w.heads, 1, d)

    return attend


def _bias(valid: torch.Tensor) -> torch.Tensor:
    """(b, 1, 1, T) float32 attention bias: 0 where `valid` (b, T), -inf elsewhere."""
    zero = torch.zeros(valid.shape, dtype=torch.float32, device=valid.device)
    return zero.masked_fill(~valid, float("-inf"))[:, None, None, :]


def window_mask(t: int, window: int | None, device) -> torch.Tensor | None:
    """(t, t) bool mask of causal attention within `window` positions, or None where plain causal attention is
    the same (no window, or a prompt no longer than it)."""
    if window is None or t <= window:
        return None
    ar = torch.arange(t, device=device)
    dist = ar[:, None] - ar[None, :]
    return (dist >= 0) & (dist < window)


@dataclass(frozen=True)
class _Key:
    adapters: tuple
    batch: int
    prompt: int
    new: int
    sampling: tuple
    ends: tuple  # pad, then the end tokens
    group: int = 1  # rows per shared prompt (1: every row holds its own prompt's cache)


HELD_SHARE = 0.25  # of the GPU's memory that the KV caches of held shapes may take, beyond the newest
HELD_FREE = 0.5  # and a new shape no more than this share of the memory free now (others' use counted)


def cache_bytes(w: _Weights, key: _Key) -> int:
    """Bytes of the KV cache of one decode shape."""
    per = torch.empty((), dtype=w.dtype).element_size()
    positions = key.batch // key.group * key.prompt + key.batch * key.new
    return 2 * len(w.layers) * w.kv_heads * positions * w.head_dim * per


def held_budget(device: torch.device, held: float = 0.0) -> float:
    """How many bytes of KV cache a decoder may hold over its shapes, `held` of them held now: a share of the
    GPU's memory, and no more than `held` plus a share of what is free (free on the device, which processes
    sharing the GPU take from, and this process's cached spare), so that side by side runs leave each other
    room. The newest shape is built whatever its size; no bound on the CPU."""
    if device.type != "cuda":
        return float("inf")
    free, total = torch.cuda.mem_get_info(device)
    free += torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    return min(HELD_SHARE * total, held + HELD_FREE * free)


class _State:
    """The fixed buffers of one decode shape: KV cache, current tokens, finished rows, output tokens."""

    def __init__(
        self, w: _Weights, batch: int, prompt: int, new: int, pad: int, eos: list[int], group: int = 1
    ):
        dev, length = w.embed.device, prompt + new
        shape = (batch, w.kv_heads, length, w.head_dim)
        self.group, self.prompt = group, prompt
        if group > 1:  # each group's prompt once (pk, pv), each row's generated tokens apart (k, v)
            n = batch // group
            self.pk = [
                torch.zeros(n, w.kv_heads, prompt, w.head_dim, dtype=w.dtype, device=dev) for _ in w.layers
            ]
            self.pv = [torch.zeros_like(t) for t in self.pk]
            shape = (batch, w.kv_heads, new, w.head_dim)
            self.gstart = torch.zeros(n, dtype=torch.long, device=dev)  # first real prompt position per group
            self.new_start = torch.zeros(batch, dtype=torch.long, device=dev)  # each row's own cache: from 0
        self.k = [torch.zeros(shape, dtype=w.dtype, device=dev) for _ in w.layers]
        self.v = [torch.zeros(shape, dtype=w.dtype, device=dev) for _ in w.layers]
        self.tokens = torch.full((batch,), pad, dtype=torch.long, device=dev)
        self.start = torch.zeros(batch, dtype=torch.long, device=dev)  # first real prompt position per row
        self.rows = torch.zeros(batch, dtype=torch.long, device=dev)  # adapter index per row
        self.done = torch.zeros(batch, dtype=torch.bool, device=dev)
        self.out = torch.full((batch, new), pad, dtype=torch.long, device=dev)
        self.cur = torch.zeros((), dtype=torch.long, device=dev)  # cache position of `tokens`
        self.arange = torch.arange(length, device=dev)
        self.eos = torch.tensor(eos, device=dev)
        self.pad = pad


def _serves(k: _Key, want: _Key, cuda: bool) -> bool:
    """Whether the buffers of shape `k` can run a call of shape `want`: the same settings and room for its rows
    and prompts. On CUDA up to twice the rows and 256 more prompt positions (cheaper than a new capture, which
    costs about as much as 60-140 decode steps, BENCHMARKS.md); elsewhere only the same shape."""
    settings = lambda key: (key.adapters, key.new, key.sampling, key.ends, key.group)  # noqa: E731
    if settings(k) != settings(want):
        return False
    if not cuda:
        return k == want
    return want.batch <= k.batch <= 2 * want.batch and want.prompt <= k.prompt <= want.prompt + 256


def shared_prompts(prompts: list[list[int]], adapters: list) -> tuple[list[int], int]:
    """An order of the rows that puts the rows of one prompt and adapter next to each other (first seen first),
    and how many rows share a prompt cache in it: the greatest common divisor of each prompt's row count (1:
    none shared)."""
    rows: dict[tuple, list[int]] = {}
    for r, (p, a) in enumerate(zip(prompts, adapters, strict=True)):
        rows.setdefault((tuple(p), a), []).append(r)
    return [r for group in rows.values() for r in group], math.gcd(*map(len, rows.values()))


@functools.cache
def _compiled(fn):
    """`fn` through torch.compile with dynamic shapes, once per process for every decoder."""
    return compile_dynamic(fn, fullgraph=True)


class FastDecoder:
    """Generates for a batch of token-id prompts on one model; rows may use different LoRA adapters.

    `compile_step`: run the elementwise pieces of each layer through `torch.compile` (`Ops.compiled`: fused
    kernels, then on CUDA captured as a graph with the sampler), in the decode step and the prefill. They are
    compiled once per process with dynamic shapes, so new batch sizes, cache lengths and decoders only capture
    a new graph. `nucleus`: how top-p picks its tokens:
    - "sort" (the default without `compile_step`, in `sample`; eager, as inductor cannot compile its cumsum over
      the vocabulary in torch 2.11; it keeps the tokens of earlier runs' seeds);
    - "reject" (`draw_by_rejection`; the default with `compile_step`, compiled with the step: 1.33x faster steps
      than the sort on an H100, BENCHMARKS.md);
    The exponential noise is drawn eagerly. `dtype`: what the forward computes in (`compute_dtype`).
    `share_prompts`: rows of the same prompt and adapter (a group of samples) hold that prompt's keys and values
    once, prefilled once, and read them once a step for the whole group (`_shared_attend`).
    `attention_kernel`: the decode attention over each row's own cache (its prompt and answer, or with shared
    prompts its answer) by `attention_kernel`, which reads the valid keys alone, where it runs (CUDA with Triton).
    """

    def __init__(
        self,
        compile_step: bool = False,
        nucleus: str | None = None,
        dtype: str | None = None,
        shapes: int = 4,
        share_prompts: bool = False,
        attention_kernel: bool = False,
    ):
        nucleus = nucleus or ("reject" if compile_step else "sort")
        draws = dict(zip(NUCLEI, (None, draw_by_rejection), strict=True))
        if nucleus not in draws:
            raise ValueError(f"nucleus must be one of {', '.join(draws)}, not {nucleus!r}")
        self.compile_step, self.nucleus, self.dtype = compile_step, nucleus, dtype
        self.share_prompts, self.attention_kernel = share_prompts, attention_kernel
        self._ops = Ops.compiled() if compile_step else EAGER
        self._draw = draws[nucleus]  # None: the sort inside `sample`
        if compile_step and self._draw is not None:
            self._draw = _compiled(self._draw)
        # the buffers, step and graph of the last `shapes` shapes (a rollout alternates peers' and leader's),
        # with the model they read (held, so a new model of the same id is not mistaken for it)
        self.shapes = max(1, shapes)
        self._cached: collections.OrderedDict = collections.OrderedDict()

    @torch.inference_mode()
    def generate(
        self,
        model,
        prompts: list[list[int]],
        adapters: list[str | None],
        max_new_tokens: int,
        do_sample: bool,
        temperature: float,
        top_p: float,
        pad: int,
        eos: list[int],
        seed: int | None = None,
        stopped: Callable[[list[int]], bool] | None = None,
    ) -> list[list[int]]:
        """Generated ids per prompt, ending with the end token, or cut at the token for which `stopped`
        (a check of the decoded text) first holds; rows that end early are not padded."""
        names = sorted(model.peft_config) if isinstance(model, PeftModel) else []
        for a in adapters:
            if a is not None and a not in names:
                raise ValueError(f"unknown adapter {a!r}; the model has {names}")
        dev = _base(model).model.embed_tokens.weight.device
        cuda, n = dev.type == "cuda", len(prompts)
        order, group = shared_prompts(prompts, adapters) if self.share_prompts else (None, 1)
        if group > 1:  # the rows of each shared prompt next to each other (put back in order at the end)
            prompts, adapters = [prompts[i] for i in order], [adapters[i] for i in order]
        unit = group * -(-16 // group)  # rows are rounded on CUDA, so that graphs are reused
        want = _Key(
            tuple(names),
            -(-n // unit) * unit if cuda else n,
            -(-max(len(p) for p in prompts) // 64) * 64,
            max_new_tokens,
            (do_sample, temperature, top_p),
            (pad, *eos),
            group,
        )
        if any(m is not model for m, *_ in self._cached.values()):
            self._cached.clear()  # another model: free the old buffers and graphs first
        fits = [k for k in self._cached if _serves(k, want, cuda)]
        key = min(fits, key=lambda k: k.batch * k.prompt, default=want)
        if key in self._cached:
            self._cached.move_to_end(key)
        else:
            w = next((c[1] for c in self._cached.values()), None)
            if w is None or w.names != tuple(names):
                w = _Weights(model, names, compute_dtype(model, self.dtype))
            need = cache_bytes(w, key)
            while self._cached and (
                len(self._cached) >= self.shapes
                or need + (held := sum(cache_bytes(c[1], k) for k, c in self._cached.items()))
                > held_budget(dev, held)
            ):
                self._cached.popitem(last=False)  # the least recently used shape first
            st = _State(w, key.batch, key.prompt, max_new_tokens, pad, eos, key.group)
            step = self._step_fn(w, st, key)
            graph = self._capture(step, st, key) if cuda else None
            self._cached[key] = (model, w, st, step, graph)
        self._cached[key][1].refresh()
        rows = [0 if a is None else names.index(a) + 1 for a in adapters]
        with seeded(seed, dev):
            out = self._run(self._cached[key][1:], key, prompts, rows, stopped)
        if group == 1:
            return out
        back: list = [None] * n
        for at, r in enumerate(order):
            back[r] = out[at]
        return back

    def _run(self, held: tuple, key: _Key, prompts, rows: list[int], stopped) -> list[list[int]]:
        """Prefill and decode `prompts` (adapter index per row in `rows`) in the held buffers of `key`."""
        w, st, step, graph = held
        n, pad, max_new_tokens = len(prompts), st.pad, key.new
        spare = key.batch - n  # rows the shape has beyond this call's: a one-token prompt, done at once
        st.rows.copy_(torch.tensor(rows + [0] * spare))
        first = self._prefill(w, st, prompts + [[pad]] * spare, key)
        st.done[n:] = True
        st.out[:, 0] = torch.where(st.done, st.pad, first)
        st.done |= torch.isin(first, st.eos)
        st.tokens.copy_(first)
        st.cur.fill_(key.prompt)

        lengths = [None] * key.batch  # where a stop string cut a row
        steps = 1
        while steps < max_new_tokens:
            for _ in range(min(CHECK_EVERY, max_new_tokens - steps)):
                graph.replay() if graph is not None else step()
                steps += 1
            if stopped is not None:
                self._check_stops(st, steps, stopped, lengths)
            if bool(st.done.all()):
                break
        out = st.out[:n, :steps].tolist()
        return [row if cut is None else row[:cut] for row, cut in zip(out, lengths[:n], strict=True)]

    def _check_stops(self, st: _State, steps: int, stopped, lengths: list) -> None:
        rows = st.out[:, :steps].tolist()
        done = st.done.tolist()
        for r, row in enumerate(rows):
            if done[r] or lengths[r] is not None or not stopped(row):
                continue
            lengths[r] = next(n for n in range(1, steps + 1) if stopped(row[:n]))
            st.done[r] = True

    def _prefill(self, w: _Weights, st: _State, prompts: list[list[int]], key: _Key) -> torch.Tensor:
        """Fill the cache with the prompts; the first generated token of every row.

        The forward runs on right-padded rows, so that plain causal attention (flash kernels on CUDA, no mask) is
        right for every real token; each layer's keys and values are then stored left-padded, ending at the
        bucket's last position as the decode step expects. Pad positions hold junk that decoding never reads."""
        P, dev, G = key.prompt, st.tokens.device, st.group
        lengths = torch.tensor([len(p) for p in prompts])
        st.start.copy_(P - lengths)
        st.done.zero_()
        rows, kc, vc = st.rows, st.k, st.v
        if G > 1:  # a group's rows share one prompt: fill it once, in the group's prompt cache
            prompts, lengths, rows, kc, vc = prompts[::G], lengths[::G], rows[::G], st.pk, st.pv
            st.gstart.copy_(P - lengths)
        ids = torch.full((len(prompts), P), st.pad, dtype=torch.long)
        for r, p in enumerate(prompts):
            ids[r, : len(p)] = torch.tensor(p)
        ids, lengths = ids.to(dev), lengths.to(dev)
        chunk = max(1, PREFILL_TOKENS // P)
        ar = torch.arange(P, device=dev)
        g = w.heads // w.kv_heads
        windowed = window_mask(P, w.window, dev)
        first = []
        for a in range(0, len(prompts), chunk):
            sl = slice(a, a + chunk)
            n = lengths[sl]
            # cache position c of a row holds its right-padded position (c - start) mod P
            src = (ar[None, :] + n[:, None]) % P
            src = src[:, None, :, None].expand(-1, w.kv_heads, -1, w.head_dim)

            def attend(i, q, k, v, sl=sl, src=src):
                kc[i][sl, :, :P] = k.gather(2, src)
                vc[i][sl, :, :P] = v.gather(2, src)
                k, v = k.repeat_interleave(g, 1), v.repeat_interleave(g, 1)
                if windowed is not None and w.layer_types[i] == "sliding_attention":
                    return F.scaled_dot_product_attention(q, k, v, attn_mask=windowed, scale=w.scale)
                return F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=w.scale)

            pos = ar[None, :].expand(len(n), P)
            h = forward(w, ids[sl], pos, w.masks(rows[sl]), attend, self._ops)
            h = h[torch.arange(len(n), device=dev), n - 1]  # each row's last prompt token
            logits = F.linear(h, w.lm_head)
            if G > 1:  # each of a group's rows draws its own first token
                logits = logits.repeat_interleave(G, 0)
            first.append(sample(logits, *key.sampling, draw=self._draw))
        return torch.cat(first)

    def _step(self, w: _Weights, st: _State, key: _Key, kernel: bool = False) -> None:
        """One decode step on the fixed buffers (no host sync: it is what the CUDA graph captures)."""
        logits = _decode_logits(w, st, self._ops, kernel)
        nxt = sample(logits, *key.sampling, draw=self._draw)
        nxt = torch.where(st.done, st.pad, nxt)
        st.out.index_copy_(
            1, (st.cur - (key.prompt - 1)).view(1), nxt[:, None]
        )  # column j: the token that goes to cache P + j
        st.done |= torch.isin(nxt, st.eos)
        st.tokens.copy_(nxt)
        st.cur += 1

    def _step_fn(self, w: _Weights, st: _State, key: _Key) -> Callable[[], None]:
        """The decode step on these buffers as a callable without arguments (what `_capture` records), with the
        attention kernel where it is asked for and runs."""
        kernel = self.attention_kernel and attention_kernel.available(st.tokens.device)
        if kernel and w.head_dim & (w.head_dim - 1):
            raise ValueError(
                f"decode.attention_kernel needs a head size that is a power of two; this model's is {w.head_dim} "
                "(set decode.attention_kernel: false)"
            )
        return functools.partial(self._step, w, st, key, kernel)

    def _capture(self, step: Callable[[], None], st: _State, key: _Key) -> torch.cuda.CUDAGraph:
        st.cur.fill_(key.prompt)  # warm-up steps (and compilation) write where the first real step will again
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(3):
                step()
                st.cur.fill_(key.prompt)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            step()
        return graph
