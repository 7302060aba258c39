"""Chat-format training data: where trajectories come from, how a conversation becomes tokens with
per-message boundaries (so a loss can be taken on chosen assistant messages only), and length-grouped
micro-batches of those tokens."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ..agents import ROLE_PROMPTS, Turn
from ..costs import Cost
from ..records import DataError, check_messages
from ..team import pipeline_prompt
from .losses import IGNORE

if TYPE_CHECKING:
    from ..tasks import Task


def gold_records(task: Task, system_prompt: str, n: int, seed: int) -> list[dict]:
    """Chat records of `n` of the task's problems (drawn with `seed`) answered by their gold solutions."""
    problems = random.Random(seed).sample(task.problems, min(n, len(task.problems)))
    return [
        {
            "messages": [
                {"role": "system", "content": system_prompt},
                {"role": "user", "content": task.prompt(p)},
                {"role": "assistant", "content": task.solution(p)},
            ]
        }
        for p in problems
    ]


def pipeline_gold_records(task: Task, roles: list[str], n: int, seed: int, right: float) -> list[dict]:
    """Chat records of every role of a pipeline team (`roles` in order) on `n` of the task's problems: each role
    reads the problem and the earlier roles' turns in the team's prompt format and writes the gold solution. An
    earlier turn is the problem's gold solution with probability `right`, else another problem's, so that a role
    learns to answer in the task's format after reading the team's work, right or wrong."""
    rng = random.Random(seed)
    problems = rng.sample(task.problems, min(n, len(task.problems)))
    records = []
    for p in problems:
        gold, turns = task.solution(p), []
        for i, role in enumerate(roles):
            messages = [
                {"role": "system", "content": ROLE_PROMPTS[role]},
                {"role": "user", "content": pipeline_prompt(task.prompt(p), turns, role)},
                {"role": "assistant", "content": gold},
            ]
            records.append({"role": role, "messages": messages})
            text = gold if rng.random() < right else task.solution(rng.choice(task.problems))
            turns.append(Turn(role, i + 1, [], text, "stop", Cost()))
    return records


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


def plan_epoch(
    examples: list[Example], batch_tokens: int, grad_accum: int, rng: random.Random, packed: bool = False
) -> list:
    """Steps of micro-batches: shuffled, grouped by length, each under batch_tokens: padded tokens (longest x
    count), or with `packed` the sum of lengths (`collate` then packs them into rows without padding)."""
    order = list(range(len(examples)))
    rng.shuffle(order)
    batches: list[list[int]] = []
    for start in range(0, len(order), 256):  # sort within random chunks: similar lengths, still shuffled
        chunk = sorted(order[start : start + 256], key=lambda i: examples[i].length)
        cur: list[int] = []
        for i in chunk:
            lengths = [examples[j].length for j in cur] + [examples[i].length]
            cost = sum(lengths) if packed else max(lengths) * len(lengths)
            if cur and cost > batch_tokens:
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


def pack_rows(lengths: list[int], width: int) -> list[list[int]]:
    """Indices of `lengths` in rows of at most `width` tokens (first fit, longest first)."""
    rows: list[list[int]] = []
    room: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        r = next((r for r, left in enumerate(room) if left >= lengths[i]), None)
        if r is None:
            rows.append([])
            room.append(width)
            r = len(rows) - 1
        rows[r].append(i)
        room[r] -= lengths[i]
    return rows


def collate(
    examples: list[Example],
    segments: list,
    pad_id: int,
    max_length: int,
    device,
    packed: bool = False,
    pad_to_multiple_of: int = 1,
) -> tuple[dict, torch.Tensor]:
    """The model's inputs and the labels (IGNORE except on trained messages' content), right-padded.

    One example per row with an attention mask; or, `packed`, several examples per row of at most `max_length`
    tokens with position ids that restart at each example and no mask (transformers then keeps attention
    within each example, as for padding-free training). `pad_to_multiple_of` rounds the width up (to at most
    `max_length`) for fewer distinct shapes, which pays where kernels set up per shape (cuDNN's attention).
    """
    seqs = []
    for ex in examples:
        ids: list[int] = []
        labels: list[int] = []
        for seg, msg, content in segments[ex.record]:
            if msg >= ex.cut:
                break
            ids += seg
            labels += seg if content and msg in ex.trained else [IGNORE] * len(seg)
        seqs.append((ids[:max_length], labels[:max_length]))
    if packed:
        layout = pack_rows([len(i) for i, _ in seqs], max_length)
        rows = [
            ([t for i in row for t in seqs[i][0]], [t for i in row for t in [IGNORE, *seqs[i][1][1:]]])
            for row in layout
        ]  # an example's first label is never trained, so no row learns across examples
    else:
        rows = seqs
    width = max(len(i) for i, _ in rows)
    width = max(width, min(-(-width // pad_to_multiple_of) * pad_to_multiple_of, max_length))
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    label_t = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for b, (ids, labels) in enumerate(rows):
        input_ids[b, : len(ids)] = torch.tensor(ids)
        label_t[b, : len(ids)] = torch.tensor(labels)
        mask[b, : len(ids)] = 1
    if packed:  # positions restart at each example; the padding after them runs on its own
        runs = [[len(seqs[i][0]) for i in row] + [width - len(rows[b][0])] for b, row in enumerate(layout)]
        positions = torch.stack([torch.cat([torch.arange(n) for n in r]) for r in runs])
        return {"input_ids": input_ids.to(device), "position_ids": positions.to(device)}, label_t.to(device)
    return {"input_ids": input_ids.to(device), "attention_mask": mask.to(device)}, label_t.to(device)
