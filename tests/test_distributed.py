import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from teamtune.config import load_config
from teamtune.train.sft import SFTConfig, train


def test_two_gloo_processes_end_with_identical_weights(tmp_path):
    """`torchrun --nproc_per_node 2 -m teamtune.cli train ...` on the CPU: DDP through accelerate (gloo)."""
    data = tmp_path / "chat.jsonl"
    with data.open("w") as f:
        for i in range(16):
            msgs = [{"role": "user", "content": f"{i} + {i}?"}, {"role": "assistant", "content": str(2 * i)}]
            f.write(json.dumps({"messages": msgs}) + "\n")
    overrides = [
        "model=tiny-random",
        f"data={data}",
        "mode=single",
        "epochs=2",
        "batch_tokens=160",
        "device=cpu",
        "lora={dropout: 0.0}",
        "optim={lr: 1.0e-3, warmup_steps: 0}",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_PORT": "29517"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        "29517",
        "-m",
        "teamtune.cli",
        "train",
        "--config",
        str(tmp_path / "c.yaml"),
        f"output={tmp_path / 'ddp'}",
        *overrides,
    ]
    (tmp_path / "c.yaml").write_text("method: sft\n")
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [(tmp_path / "ddp" / "agent" / f"weights-rank{r}.sha256").read_text() for r in (0, 1)]
    assert ranks[0] == ranks[1]
    # the same steps as one process that sees every micro-batch whole (up to float summation order)
    one = train(load_config(SFTConfig, None, [*overrides, f"output={tmp_path / 'one'}"]))
    a = load_file(tmp_path / "ddp" / "agent" / "adapter_model.safetensors")
    b = load_file(one / "agent" / "adapter_model.safetensors")
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)
    assert any(float(b[k].abs().sum()) > 0 for k in b if "lora_B" in k)
    rows = [json.loads(x) for x in (tmp_path / "ddp" / "agent" / "log.jsonl").read_text().splitlines()]
    assert len(rows) == json.loads((one / "agent" / "train_metrics.json").read_text())["steps"]


RECIPE_SCRIPT = """
import sys
from teamtune.config import load_config
from teamtune.tasks.base import Problem, Task
from teamtune.train import mlpo, teamtr


class Even(Task):  # a reward a random model can earn: an answer of even length
    name = "even"

    def extract(self, text):
        return text.strip() or None

    def is_correct(self, predicted, problem):
        return predicted is not None and len(predicted) % 2 == 0


task = Even([Problem(f"p{i}", f"Write a word ({i}).", "") for i in range(8)], "train")
recipe = mlpo if sys.argv[1] == "mlpo" else teamtr
recipe.train(load_config(recipe.MLPOConfig if recipe is mlpo else recipe.TeamTRConfig, None, sys.argv[2:]), task=task)
"""


def test_mlpo_two_gloo_processes_share_the_rollouts_and_end_with_identical_weights(tmp_path):
    """MLPO under torchrun on the CPU: each rank rolls out half the problems, DDP averages the leader's grads."""
    out = tmp_path / "ddp"
    overrides = [
        "model=tiny-random",
        "device=cpu",
        "peers=2",
        "steps=2",
        "problems_per_step=4",
        "save_every=0",
        f"output={out}",
        "peer_sampling={max_new_tokens: 4, temperature: 1.0}",
        "policy={group_size: 4, max_new_tokens: 6, micro_batch: 3, kl_coef: 0.1, temperature: 1.0}",
        "optim={lr: 1.0e-2, schedule: constant, warmup_steps: 0}",
    ]
    _torchrun_recipe(tmp_path, "mlpo", overrides, 29519)
    leader = load_file(out / "leader" / "adapter_model.safetensors")
    assert any(float(leader[k].abs().sum()) > 0 for k in leader if "lora_B" in k)
    metrics = json.loads((out / "train_metrics.json").read_text())
    assert metrics["problems"] == 2 * 4  # both ranks' shares counted: the whole of every step
    rows = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2] and all(0 <= r["reward"] <= 1 for r in rows)


def test_teamtr_two_gloo_processes_end_with_identical_agents(tmp_path):
    """TeamTR under torchrun: fresh rollouts shared out after every agent's update, one KL over all ranks."""
    out = tmp_path / "ddp"
    overrides = [
        "model=tiny-random",
        "device=cpu",
        "agents=2",
        "stages=1",
        "problems_per_stage=4",
        "delta=100.0",
        f"output={out}",
        "policy={group_size: 4, max_new_tokens: 6, micro_batch: 3, temperature: 1.0}",
        "optim={lr: 1.0e-2, schedule: constant, warmup_steps: 0}",
    ]
    _torchrun_recipe(tmp_path, "teamtr", overrides, 29521)
    for role in ("solver", "refiner"):
        w = load_file(out / "adapters" / role / "adapter_model.safetensors")
        assert any(float(w[k].abs().sum()) > 0 for k in w if "lora_B" in k)  # every agent was updated
    metrics = json.loads((out / "train_metrics.json").read_text())
    assert metrics["rollouts"] == 2 * 4 * 4  # two updates, each on fresh rollouts of all 4 problems x 4
    rows = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    assert [r["agent"] for r in rows] == ["solver", "refiner"]


def _torchrun_recipe(tmp_path, recipe: str, overrides: list[str], port: int) -> None:
    """Two gloo ranks of `recipe` on the toy task; both must end with the same trained weights."""
    script = tmp_path / "run_recipe.py"
    script.write_text(RECIPE_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port)]
    done = subprocess.run(
        [*cmd, str(script), recipe, *overrides], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = next(o.split("=", 1)[1] for o in overrides if o.startswith("output="))
    ranks = [(Path(out) / f"weights-rank{r}.sha256").read_text() for r in (0, 1)]
    assert ranks[0] == ranks[1]  # the ranks saw different problems and samples: only averaged grads agree
