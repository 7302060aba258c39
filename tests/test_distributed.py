import json
import os
import subprocess
import sys

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
