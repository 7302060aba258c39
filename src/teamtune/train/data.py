"""Chat-format training data: where trajectories come from, how a conversation becomes tokens with
per-message boundaries (so a loss can be taken on chosen assistant messages only), and length-grouped
micro-batches of those tokens."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import torch

from ..tasks.base import DataError, check_messages
from .losses import IGNORE


def load_records(spec: str, layout: str = "planner-executor") -> list[dict]:
    """Trajectories as dicts with `messages` (and optional `role`, `task_id`, per-message `subtask`).

    `spec`: a JSONL file; `apps:<split>:<tasks>` (the apps world's gold trajectories for `layout`); or a
    Hugging Face dataset name with a `messages` column, optionally `name:split` (default split train).
    """
    if spec.startswith("apps:"):
        from ..envs.apps.roles import gold_trajectories
        from ..envs.apps.world import make_tasks, templates_for

        parts = spec.split(":")
        if len(parts) != 3 or not parts[2].isdigit():
            raise DataError(
                f"{spec!r}: write apps data as apps:<split>:<number of tasks>, e.g. apps:train:200"
            )
        try:
            templates_for(parts[1])
        except ValueError as e:
            raise DataError(str(e)) from None
        return gold_trajectories(make_tasks(parts[1], int(parts[2])), layout)
    if Path(spec).is_file():
        from ..envs.apps.roles import read_trajectories

        return read_trajectories(spec)
    if spec.endswith(".jsonl") or "/" not in spec:
        raise DataError(f"training data {spec!r} not found (a JSONL file, apps:<split>:<n> or a hub dataset)")
    import datasets

    name, _, split = spec.partition(":")
    try:
        ds = datasets.load_dataset(name, split=split or "train")
    except Exception as e:  # noqa: BLE001 - the hub raises many kinds; the user needs the name and the cause
        raise DataError(f"could not load dataset {name!r}: {e}") from None
    if "messages" not in ds.column_names:
        raise DataError(f"dataset {name!r} has no 'messages' column (columns: {', '.join(ds.column_names)})")
    records = [dict(r) for r in ds]
    for i, r in enumerate(records):
        check_messages(r["messages"], f"{name} row {i}")
    return records


def _render(tok, messages: list[dict], generation_prompt: bool = False) -> str:
    if not messages:
        return ""
    return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)


def encode_chat(tok, messages: list[dict]) -> list[tuple[list[int], int, bool]]:
    """The rendered conversation as (token ids, message index, is assistant content) segments.

    Each assistant message gives two segments: its header (`<|im_start|>assistant\\n`, no loss) and its
    content with the end-of-turn marker (what the model must learn to write). Concatenated, the segments are
    the chat template's rendering of the whole conversation.
    """
    clean = [{"role": m["role"], "content": m["content"]} for m in messages]
    segments: list[tuple[list[int], int, bool]] = []
    done = ""

    def add(text: str, upto: str, index: int, content: bool) -> str:
        if not upto.startswith(text):
            raise DataError(
                "the chat template does not render conversations incrementally (a prefix of the conversation "
                "renders differently inside the whole), so turns cannot be masked"
            )
        piece = upto[len(text) :]
        if piece:
            segments.append((tok(piece, add_special_tokens=False)["input_ids"], index, content))
        return upto

    for i, m in enumerate(clean):
        if m["role"] == "assistant" and i > 0:
            done = add(done, _render(tok, clean[:i], generation_prompt=True), i, False)
            done = add(done, _render(tok, clean[: i + 1]), i, True)
        else:
            done = add(done, _render(tok, clean[: i + 1]), i, False)
    return segments


@dataclass(frozen=True)
class Example:
    record: int  # index into the encoded records
    cut: int  # keep messages [0, cut)
    trained: frozenset[int]  # indices of the messages whose tokens the loss counts
    length: int


def plan_epoch(examples: list[Example], batch_tokens: int, grad_accum: int, rng: random.Random) -> list:
    """Steps of micro-batches: shuffled, grouped by length (little padding), each under batch_tokens."""
    order = list(range(len(examples)))
    rng.shuffle(order)
    batches: list[list[int]] = []
    for start in range(0, len(order), 256):  # sort within random chunks: similar lengths, still shuffled
        chunk = sorted(order[start : start + 256], key=lambda i: examples[i].length)
        cur: list[int] = []
        for i in chunk:
            longest = max([examples[j].length for j in cur] + [examples[i].length])
            if cur and longest * (len(cur) + 1) > batch_tokens:
                batches.append(cur)
                cur = []
            cur.append(i)
        if cur:
            batches.append(cur)
    rng.shuffle(batches)
    return [
        [[examples[i] for i in b] for b in batches[s : s + grad_accum]]
        for s in range(0, len(batches), grad_accum)
    ]


def collate(examples: list[Example], segments: list, pad_id: int, max_length: int, device) -> tuple:
    """Right-padded input_ids, attention_mask and labels (IGNORE except on trained messages' content)."""
    rows = []
    for ex in examples:
        ids: list[int] = []
        labels: list[int] = []
        for seg, msg, content in segments[ex.record]:
            if msg >= ex.cut:
                break
            ids += seg
            labels += seg if content and msg in ex.trained else [IGNORE] * len(seg)
        rows.append((ids[:max_length], labels[:max_length]))
    width = max(len(i) for i, _ in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    label_t = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for b, (ids, labels) in enumerate(rows):
        input_ids[b, : len(ids)] = torch.tensor(ids)
        label_t[b, : len(ids)] = torch.tensor(labels)
        mask[b, : len(ids)] = 1
    return input_ids.to(device), mask.to(device), label_t.to(device)
