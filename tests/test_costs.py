import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoConfig, AutoModelForCausalLM

from teamtune.costs import Cost, FlopModel, total
from teamtune.models import ASSETS


def test_smollm2_flops_by_hand():
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(ASSETS / "smollm2"))
    fm = FlopModel.from_model(model)
    # 134,515,008 parameters, output layer tied to the embedding; attention 4 x 30 layers x 9 heads x 64
    assert fm.linear == 2 * 134_515_008 and fm.attention == 69_120
    assert fm.prefill(100) == 26_903_001_600 + 69_120 * 5_050
    # 10 generated after 100: 9 forwards over 101..109 tokens
    assert fm.decode(100, 10) == 9 * 269_030_016 + 69_120 * 945
    assert fm.decode(100, 1) == 0 and fm.decode(100, 0) == 0


def test_untied_output_layer_and_adapters():
    cfg = AutoConfig.from_pretrained(ASSETS / "smollm2")
    cfg.tie_word_embeddings = False
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(cfg)
    n = sum(p.numel() for p in model.parameters())
    assert FlopModel.from_model(model).linear == 2 * (n - 49152 * 576)  # the input embedding is a lookup
    lora = get_peft_model(model, LoraConfig(r=8, target_modules=["q_proj", "v_proj"]))
    extra = sum(p.numel() for name, p in lora.named_parameters() if "lora_" in name)
    assert extra == 30 * (8 * (576 + 576) + 8 * (576 + 192))  # q: 576->576, v: 576->192 (3 kv heads)
    assert FlopModel.from_model(lora, extra).linear == 2 * (n - 49152 * 576 + extra)


def test_cost_sums():
    a = Cost(calls=1, prompt_tokens=3, generated_tokens=2, seconds=0.5, prefill_flops=10, decode_flops=5)
    s = total([a, a, Cost()])
    assert (s.calls, s.tokens, s.flops, s.seconds) == (2, 10, 30, 1.0)
    assert s.to_dict()["flops"] == 30
