import pytest

from teamtune.config import ConfigError, load_config
from teamtune.evaluate import EvalConfig


def write(tmp_path, text):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


def test_yaml_and_overrides(tmp_path):
    p = write(
        tmp_path, "task: {name: bbh, split: train, subset: navigate}\nteam: {layout: vote, samples: 4}\n"
    )
    cfg = load_config(
        EvalConfig,
        p,
        ["team.samples=7", "task.limit=3", "team.agents=[{name: a, sampling: {temperature: 1}}]"],
    )
    assert cfg.task.name == "bbh" and cfg.task.limit == 3
    assert cfg.team.samples == 7
    assert cfg.team.agents[0].name == "a" and cfg.team.agents[0].sampling.temperature == 1.0


def test_default_agents_follow_layout():
    cfg = load_config(EvalConfig, None, ["team.layout=pipeline"])
    assert [a.name for a in cfg.team.agents] == ["solver", "critic", "refiner"]


@pytest.mark.parametrize(
    "text,needle",
    [
        ("task: {nmae: gsm8k}\n", "unknown key 'nmae'"),
        ("team: {samples: many}\n", "team.samples: expected int"),
        ("team: {layout: swarm}\n", "team.layout: 'swarm' is not one of"),
        ("task: {name: trivia}\n", "unknown task 'trivia'"),
        ("team: {agents: [{name: a, sampling: {max_new_tokens: 0}}]}\n", "max_new_tokens must be at least 1"),
        ("team: {layout: single, agents: [{name: a}, {name: b}]}\n", "takes exactly 1 agent"),
        ("team: {layout: leader, agents: [{name: a}, {name: a}]}\n", "agent names must be unique"),
        ("- a\n- b\n", "top level must be a mapping"),
        ("task: [unclosed\n", "not valid YAML"),
    ],
)
def test_bad_config_names_the_problem(tmp_path, text, needle):
    p = write(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        load_config(EvalConfig, p)
    assert needle in str(e.value)
    assert str(p) in str(e.value) or "YAML" in str(e.value) or "mapping" in str(e.value)


def test_missing_file_and_bad_override(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(EvalConfig, tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="key=value"):
        load_config(EvalConfig, None, ["team.samples"])


def test_float_fields_take_yaml_exponents_without_a_dot(tmp_path):
    # PyYAML reads `lr: 1e-5` as the string '1e-5'; a float field takes it as the number
    from teamtune.train.common import OptimSettings

    path = tmp_path / "o.yaml"
    path.write_text("lr: 1e-5\n")
    assert load_config(OptimSettings, path).lr == 1e-5
    path.write_text("lr: fast\n")
    with pytest.raises(ConfigError, match="expected float"):
        load_config(OptimSettings, path)


def test_decode_settings_and_their_overrides_are_in_the_runs_config(tmp_path, monkeypatch):
    """The fast path's settings are config keys; a TEAMTUNE_* override is written down as the value used."""
    import yaml

    from teamtune.cli import main
    from teamtune.train.mlpo import MLPOConfig

    argv = ["eval", "--model", "tiny-random", "--limit", "1", "--source", "sample"]
    assert main([*argv, "team.decode.nucleus=sort", "--output", str(tmp_path / "a")]) == 0
    monkeypatch.setenv("TEAMTUNE_NUCLEUS", "reject")
    monkeypatch.setenv("TEAMTUNE_FAST", "0")
    monkeypatch.setenv("TEAMTUNE_DECODE_DTYPE", "float32")
    assert main([*argv, "--output", str(tmp_path / "b")]) == 0
    decode = {k: yaml.safe_load((tmp_path / k / "config.yaml").read_text())["team"]["decode"] for k in "ab"}
    off = {"share_prompts": False, "attention_kernel": False}
    assert decode["a"] == {"fast": None, "compile_step": False, "nucleus": "sort", "dtype": None} | off
    assert (
        decode["b"] == {"fast": False, "compile_step": False, "nucleus": "reject", "dtype": "float32"} | off
    )
    monkeypatch.setenv("TEAMTUNE_COMPILE_DECODE", "1")
    monkeypatch.setenv("TEAMTUNE_SHARE_PROMPTS", "1")
    assert load_config(MLPOConfig, None, []).decode.compile_step is True
    assert (
        load_config(MLPOConfig, None, ["decode.share_prompts=false"]).decode.share_prompts is True
    )  # it wins
    monkeypatch.delenv("TEAMTUNE_SHARE_PROMPTS")
    monkeypatch.setenv("TEAMTUNE_FAST", "yes")
    with pytest.raises(ConfigError, match="TEAMTUNE_FAST='yes': use 0 or 1"):
        load_config(MLPOConfig, None, [])
    monkeypatch.delenv("TEAMTUNE_FAST")
    monkeypatch.delenv("TEAMTUNE_NUCLEUS")  # an override would win over the config's value
    monkeypatch.delenv("TEAMTUNE_DECODE_DTYPE")
    with pytest.raises(
        ConfigError, match="decode dtype must be one of bfloat16, float16, float32, not 'int8'"
    ):
        load_config(MLPOConfig, None, ["decode.dtype=int8", "method=mlpo"])
    with pytest.raises(ConfigError, match="nucleus must be one of sort, reject, not 'heap'"):
        load_config(MLPOConfig, None, ["decode.nucleus=heap", "method=mlpo"])


def test_training_attention_is_a_config_key_and_the_variable_is_recorded(monkeypatch):
    import torch

    from teamtune.config import to_dict
    from teamtune.train import common
    from teamtune.train.mlpo import MLPOConfig

    monkeypatch.delenv("TEAMTUNE_CUDNN_ATTENTION", raising=False)
    assert load_config(MLPOConfig, overrides=["optim.cudnn_attention=true"]).optim.cudnn_attention is True
    monkeypatch.setenv("TEAMTUNE_CUDNN_ATTENTION", "1")
    cfg = load_config(MLPOConfig)
    assert to_dict(cfg)["optim"]["cudnn_attention"] is True  # what config.yaml will hold
    monkeypatch.setenv("TEAMTUNE_CUDNN_ATTENTION", "yes")
    with pytest.raises(ConfigError, match="TEAMTUNE_CUDNN_ATTENTION='yes': use 0 or 1"):
        load_config(MLPOConfig)
    lin = torch.nn.Linear(2, 2)
    common.make_optimizer(lin, common.OptimSettings(cudnn_attention=True), 10)
    assert common._KERNELS["cudnn_attention"] is True
    common.make_optimizer(lin, common.OptimSettings(), 10)
    assert common._KERNELS["cudnn_attention"] is False


def test_every_shipped_training_config_loads_with_its_recipe():
    from teamtune.config import PACKAGED, read_yaml
    from teamtune.train import recipes

    names = []
    for path in sorted(PACKAGED.glob("*.yaml")):
        method = read_yaml(path).get("method")
        if method is None:  # eval and calibrate configs
            continue
        cfg = load_config(recipes()[method][0], path.stem, [])
        assert cfg.output is None
        names.append(path.stem)
    assert "teamtr_gym_pipeline" in names and len(names) >= 10
    pipe = load_config(recipes()["teamtr"][0], "teamtr_gym_pipeline", [])
    assert pipe.warm_start.layout == "pipeline" and pipe.task.limit >= pipe.warm_start.problems
