"""Real SmolLM2-135M from its GGUF (about a minute on 2 cores): marked slow, left out of CI."""

import pytest
import torch
from transformers import AutoModelForCausalLM

from teamtune.agents import AgentConfig, ModelPool
from teamtune.models import save_model
from teamtune.rollout import SamplingConfig
from teamtune.tasks import TaskConfig, load_task
from teamtune.team import Team, TeamConfig

pytestmark = pytest.mark.slow


def test_smollm2_team_and_export(tmp_path, data_dir):
    pool = ModelPool(device="cpu", dtype="float32", seed=0)
    loaded = pool.engine("smollm2-135m").loaded
    assert 134_000_000 < loaded.num_parameters < 135_000_000
    ids = loaded.tokenizer(
        "The capital of France is Paris. It is a large city in Europe.", return_tensors="pt"
    )
    with torch.no_grad():
        loss = loaded.model(**ids, labels=ids["input_ids"]).loss.item()
    assert loss < 4.0  # the real weights: a random model scores about ln(49152) = 10.8 nats per token
    greedy = SamplingConfig(max_new_tokens=48, do_sample=False)

    task = load_task(TaskConfig(name="gsm8k", source=str(data_dir / "gsm8k"), limit=2))
    cfg = TeamConfig(
        layout="leader",
        model="smollm2-135m",
        peers=2,
        agents=[AgentConfig("peer", sampling=greedy), AgentConfig("leader", sampling=greedy)],
    )
    eps = Team(cfg, pool).run(task)
    assert all(len(e.turns) == 3 and all(t.text for t in e.turns) for e in eps)

    save_model(loaded, tmp_path / "hf")  # transformers alone refuses this for a GGUF-loaded model
    again = AutoModelForCausalLM.from_pretrained(tmp_path / "hf")
    ids = loaded.tokenizer("Hello", return_tensors="pt")
    with torch.no_grad():
        assert torch.allclose(again(**ids).logits, loaded.model(**ids).logits, atol=1e-4)
