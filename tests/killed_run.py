"""Run one SFT, MLPO or TeamTR recipe on tiny-random, and SIGKILL this process at a chosen point.

    python tests/killed_run.py RECIPE POINT N OUTPUT   (POINT none: run to the end)

POINT says where the kill lands, at its N-th occurrence:
  step      just after an optimiser step (mid-run, between checkpoints)
  save      inside a checkpoint's torch.save: half the file written
  rename    a checkpoint complete in its temporary folder, not yet renamed
  final     the final adapter's safetensors half written
  metrics   the adapter saved, train_metrics.json not yet written
The run resumes (same command, same folder) when OUTPUT already holds it. Used by tests/test_kill.py.
"""

import io
import json
import os
import signal
import sys
from pathlib import Path

import torch
from peft import PeftModel

from teamtune import evaluate
from teamtune.config import load_config
from teamtune.tasks.base import Problem, Task
from teamtune.train import mlpo, run, sft, teamtr

recipe, point, nth, output = sys.argv[1], sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])
seen = 0


def due() -> bool:
    global seen
    seen += 1
    return seen == nth


def die() -> None:
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def half_write(path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])
        f.flush()
        os.fsync(f.fileno())
    die()


if point == "step":
    from torch.optim.optimizer import register_optimizer_step_post_hook

    register_optimizer_step_post_hook(lambda *a: due() and die())
elif point == "save":
    real_save = torch.save

    def save(obj, f, *a, **k):
        if not due():
            return real_save(obj, f, *a, **k)
        buf = io.BytesIO()
        real_save(obj, buf, *a, **k)
        half_write(f, buf.getvalue())

    torch.save = save
elif point == "rename":
    real_replace = os.replace

    def replace(src, dst):
        if Path(src).name.startswith(".step-") and due():
            die()
        return real_replace(src, dst)

    os.replace = replace
elif point == "final":
    real_save_pretrained = PeftModel.save_pretrained

    def save_pretrained(self, folder, *a, **k):
        real_save_pretrained(self, folder, *a, **k)
        if due():
            weights = sorted(Path(folder).rglob("adapter_model.safetensors"))[-1]
            half_write(weights, weights.read_bytes())

    PeftModel.save_pretrained = save_pretrained
elif point == "metrics":
    real_write_json = evaluate.write_json

    def write_json(path, data):
        if Path(path).name == "train_metrics.json" and due():
            die()
        return real_write_json(path, data)

    for module in (sft, mlpo, teamtr, run):  # the recipes and their shared close
        module.write_json = write_json
elif point != "none":
    raise SystemExit(f"unknown kill point {point!r}")


class Even(Task):  # a reward a random model can earn: an answer of even length
    name = "even"

    def extract(self, text):
        return text.strip() or None

    def is_correct(self, predicted, problem):
        return predicted is not None and len(predicted) % 2 == 0


TINY = ["model=tiny-random", "device=cpu", f"output={output}"]
POLICY = "policy={group_size: 4, max_new_tokens: 6, ppo_epochs: %d, micro_batch: 4, temperature: 1.0}"
OPTIM = "optim={lr: 1.0e-2, schedule: constant, warmup_steps: 0}"
task = Even([Problem(f"p{i}", f"Write a word ({i}).", "") for i in range(8)], "train")
if recipe == "sft":
    data = output.parent / "chat.jsonl"
    if not data.is_file():
        rows = [
            {
                "messages": [
                    {"role": "user", "content": f"{i} + {i}?"},
                    {"role": "assistant", "content": str(2 * i)},
                ]
            }
            for i in range(12)
        ]
        data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = load_config(
        sft.SFTConfig,
        None,
        [*TINY, f"data={data}", "mode=single", "epochs=2", "batch_tokens=64", "save_every=2", OPTIM],
    )
    sft.train(cfg, eval_config=False)
elif recipe == "mlpo":
    overrides = [
        "peers=2",
        "steps=4",
        "problems_per_step=2",
        "save_every=1",
        "peer_sampling={max_new_tokens: 4}",
    ]
    mlpo.train(load_config(mlpo.MLPOConfig, None, [*TINY, *overrides, POLICY % 2, OPTIM]), task=task)
else:
    overrides = ["agents=2", "stages=3", "problems_per_stage=2", "delta=100.0"]
    teamtr.train(load_config(teamtr.TeamTRConfig, None, [*TINY, *overrides, POLICY % 1, OPTIM]), task=task)
