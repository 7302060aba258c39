import json

import pytest
import torch
import yaml
from safetensors.torch import load_file

from teamtune.cli import main
from teamtune.config import ConfigError, load_config
from teamtune.evaluate import EvalConfig, run_eval
from teamtune.records import DataError
from teamtune.train.common import Interrupted
from teamtune.train.data import encode_chat, load_records
from teamtune.train.losses import IGNORE, sft_loss
from teamtune.train.sft import (
    Curriculum,
    SFTConfig,
    chosen_subtasks,
    collate,
    epoch_examples,
    train,
)


def _m(role, content, subtask=None):
    return {"role": role, "content": content, "subtask": subtask}


def toy_records():
    """Task t: 3 sub-tasks (planner + executors of sub-tasks 0 and 1); task s: one sub-task."""
    planner = {
        "task_id": "t",
        "role": "planner",
        "messages": [
            _m("system", "plan"),
            _m("user", "task t"),
            _m("assistant", "NEXT: a", 0),
            _m("user", "Executor: REPORT: a done", 0),
            _m("assistant", "NEXT: b", 1),
            _m("user", "Executor: REPORT: b done", 1),
            _m("assistant", "DONE: 7", 2),
        ],
    }
    executors = [
        {
            "task_id": "t",
            "role": "executor",
            "messages": [
                _m("system", "exec"),
                _m("user", f"Sub-task: {x}", k),
                _m("assistant", f"app.do_{x}()", k),
                _m("user", "ok", k),
                _m("assistant", f"REPORT: {x} done", k),
            ],
        }
        for k, x in enumerate("ab")
    ]
    short = {
        "task_id": "s",
        "role": "planner",
        "messages": [_m("system", "plan"), _m("user", "task s"), _m("assistant", "DONE", 0)],
    }
    return [planner, *executors, short]


def _cuts(schedule, epoch, roles=None, start=1, step=1, seed=0):
    recs = toy_records()
    segs = [[([0], i, False) for i in range(len(r["messages"]))] for r in recs]  # lengths do not matter here
    exs = epoch_examples(Curriculum(schedule, start, step), seed, recs, segs, epoch, roles, 10_000)
    return {(ex.record, ex.cut, tuple(sorted(ex.trained))) for ex in exs}


def test_prost_builds_the_expected_prefixes_per_epoch():
    # epoch 0: first sub-task only; the short task is already complete
    assert _cuts("prost", 0) == {(0, 3, (2,)), (1, 5, (2, 4)), (3, 3, (2,))}
    assert _cuts("prost", 1) == {(0, 5, (2, 4)), (1, 5, (2, 4)), (2, 5, (2, 4)), (3, 3, (2,))}
    full = {(0, 7, (2, 4, 6)), (1, 5, (2, 4)), (2, 5, (2, 4)), (3, 3, (2,))}
    assert _cuts("prost", 2) == full and _cuts("prost", 9) == full
    assert _cuts("none", 0) == full  # standard fine-tuning: everything from the first epoch
    assert _cuts("prost", 0, step=2, start=2) == _cuts("prost", 1)  # a configurable start and step
    assert _cuts("prost", 1, roles={"planner"}) == {(0, 5, (2, 4)), (3, 3, (2,))}


def test_shuffled_schedule_adds_subtasks_in_a_fixed_random_order():
    orders = set()
    for seed in range(8):
        sets = [chosen_subtasks(Curriculum("shuffled"), 3, e, "t", seed) for e in range(4)]
        assert [len(s) for s in sets] == [1, 2, 3, 3] and sets[0] < sets[1] < sets[2]
        orders.add(tuple(min(s - prev) for s, prev in zip(sets[:3], [set(), *sets[:2]], strict=True)))
        # every record of the task follows the same order: the planner trains what its executors train
        cuts = _cuts("shuffled", 0, seed=seed)
        (k,) = sets[0]
        planner = next(c for c in cuts if c[0] == 0)
        assert planner[2] == ((2, 4, 6)[k],)
        assert {c[0] for c in cuts if c[0] in (1, 2)} == ({k + 1} if k < 2 else set())
    assert len(orders) > 1  # not always first-to-last


def test_loss_mask_covers_only_the_trained_roles_tokens(tiny):
    tok = tiny.tokenizer
    rec = toy_records()[0]
    segs = encode_chat(tok, rec["messages"])
    clean = [{"role": m["role"], "content": m["content"]} for m in rec["messages"]]
    whole = tok.apply_chat_template(clean, tokenize=False)
    assert tok.decode([t for s, _, _ in segs for t in s]) == whole
    # ProST epoch 1: the first two planner turns, cut after the second
    (ex,) = [e for e in epoch_examples(Curriculum("prost"), 0, [rec], [segs], 1, {"planner"}, 10_000)]
    inputs, labels = collate([ex], [segs], 0, 10_000, "cpu")
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    assert tok.decode(ids[0][mask[0].bool()]) == tok.apply_chat_template(clean[:5], tokenize=False)
    trained = tok.decode(labels[0][labels[0] != IGNORE])
    assert trained == "NEXT: a<|im_end|>\nNEXT: b<|im_end|>\n"
    # another role's turns in the same conversation are not trained
    for m in rec["messages"]:
        m["agent"] = "critic" if m["content"] == "NEXT: b" else "planner"
    (ex,) = epoch_examples(Curriculum("none"), 0, [rec], [segs], 0, {"planner"}, 10_000)
    _, labels = collate([ex], [segs], 0, 10_000, "cpu")
    assert tok.decode(labels[0][labels[0] != IGNORE]) == "NEXT: a<|im_end|>\nDONE: 7<|im_end|>\n"


def _cfg(tmp_path, data, out, **kw):
    base = dict(
        model="tiny-random",
        data=data,
        mode="single",
        epochs=2,
        batch_tokens=200,
        save_every=2,
        device="cpu",
        output=str(tmp_path / out),
        lora={"dropout": 0.1},  # dropout draws random numbers: resume must restore them too
        optim={"lr": 1e-3, "warmup_steps": 2},
    )
    base.update(kw)
    return load_config(SFTConfig, None, [f"{k}={json.dumps(v)}" for k, v in base.items()])


def test_resume_after_a_kill_gives_the_same_weights(tmp_path, chat_data):
    data = chat_data()
    whole = train(_cfg(tmp_path, data, "whole"))
    cfg = _cfg(tmp_path, data, "killed")
    with pytest.raises(Interrupted):
        train(cfg, stop_after=3)  # step 3 is lost: the last checkpoint is step 2
    assert sorted(p.name for p in (tmp_path / "killed/agent/checkpoints").iterdir()) == ["step-0000002"]
    resumed = train(cfg)
    a = load_file(whole / "agent/adapter_model.safetensors")
    b = load_file(resumed / "agent/adapter_model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    rows = [json.loads(x) for x in (resumed / "agent/log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, len(rows) + 1))  # no step logged twice
    whole_rows = [json.loads(x) for x in (whole / "agent/log.jsonl").read_text().splitlines()]
    assert [r["loss"] for r in rows] == [r["loss"] for r in whole_rows]
    assert (resumed / "agent/tb").is_dir()
    m = json.loads((resumed / "train_metrics.json").read_text())
    assert m["total"]["train_tokens"] > 0 and m["total"]["train_flops"] > 0
    assert main(["report", str(resumed)]) == 0  # the training report: curves per adapter and the cost
    text = (resumed / "report.md").read_text()
    assert (
        "curriculum none" in text
        and f"| agent | {m['adapters'][0]['steps']} |" in text
        and "![curves](curves.png) (loss" in text
    )


def test_a_checkpoint_with_the_old_counter_names_resumes_into_the_shared_ones(tmp_path, chat_data):
    data = chat_data()
    whole = json.loads((train(_cfg(tmp_path, data, "whole")) / "agent/train_metrics.json").read_text())
    cfg = _cfg(tmp_path, data, "killed")
    with pytest.raises(Interrupted):
        train(cfg, stop_after=3)
    counters = tmp_path / "killed/agent/checkpoints/step-0000002/counters.json"
    saved = json.loads(counters.read_text())
    saved["tokens"], saved["flops"] = saved.pop("train_tokens"), saved.pop("train_flops")  # as written before
    counters.write_text(json.dumps(saved))
    resumed = json.loads((train(cfg) / "agent/train_metrics.json").read_text())
    assert "tokens" not in resumed and "flops" not in resumed
    assert (resumed["train_tokens"], resumed["train_flops"]) == (whole["train_tokens"], whole["train_flops"])


def test_roles_mode_trains_one_adapter_per_role_and_eval_loads_them(tmp_path):
    out = train(
        _cfg(
            tmp_path,
            "apps:train:2",
            "roles",
            mode="roles",
            epochs=1,
            batch_tokens=4096,
            curriculum={"schedule": "prost"},
        )
    )
    for role in ("planner", "executor"):
        assert (out / role / "adapter_config.json").is_file()
        assert (out / role / "adapter_model.safetensors").is_file()
    stats = json.loads((out / "train_metrics.json").read_text())
    assert [a["adapter"] for a in stats["adapters"]] == ["executor", "planner"]
    assert (
        stats["total"]["peak_memory_bytes"] == max(a["peak_memory_bytes"] for a in stats["adapters"]) > 2**20
    )
    cfg = load_config(
        EvalConfig, out / "eval.yaml", ["task.limit=1", "team.device=cpu", f"output={tmp_path / 'ev'}"]
    )
    assert cfg.method == "prost" and [a.adapter for a in cfg.team.agents] == [
        str(out / "planner"),
        str(out / "executor"),
    ]
    for a in cfg.team.agents:
        a.sampling.max_new_tokens = 8
    _, metrics = run_eval(cfg)
    assert metrics["method"] == "prost" and metrics["agents"]["planner"]["adapter_parameters"] > 0


def test_role_epochs_train_one_role_longer(tmp_path):
    out = train(
        _cfg(
            tmp_path,
            "apps:train:2",
            "roles",
            mode="roles",
            epochs=1,
            batch_tokens=4096,
            role_epochs={"planner": 3},
        )
    )
    stats = {a["adapter"]: a for a in json.loads((out / "train_metrics.json").read_text())["adapters"]}
    assert stats["planner"]["epochs"] == 3 and stats["executor"]["epochs"] == 1
    assert stats["planner"]["sequences"] == 3 * stats["planner"]["records"]
    assert stats["executor"]["sequences"] == stats["executor"]["records"]
    rows = [json.loads(line) for line in (out / "planner" / "log.jsonl").read_text().splitlines()]
    assert sorted({r["epoch"] for r in rows}) == [0, 1, 2]
    with pytest.raises(ConfigError, match="role_epochs gives the adapters of mode: roles"):
        load_config(SFTConfig, None, ["mode=single", 'role_epochs={"planner": 2}'])
    with pytest.raises(ConfigError, match="at least 1 each"):
        load_config(SFTConfig, None, ['role_epochs={"planner": 0}'])
    with pytest.raises(DataError, match=r"role_epochs names \['critic'\]"):
        train(_cfg(tmp_path, "apps:train:2", "bad", mode="roles", epochs=1, role_epochs={"critic": 2}))
    assert not (tmp_path / "bad").exists()  # refused before the run's folder: the fixed config can use it


def test_compiled_step_trains_the_same_weights(tmp_path, chat_data):
    data = chat_data(4)
    kw = dict(epochs=1, lora={"dropout": 0.0})
    from torch._dynamo.utils import counters

    plain = train(_cfg(tmp_path, data, "plain", **kw))
    counters.clear()
    fast = train(_cfg(tmp_path, data, "compiled", compile=True, **kw))
    assert counters["stats"]["unique_graphs"] > 0  # the step did go through torch.compile
    a = load_file(plain / "agent/adapter_model.safetensors")
    b = load_file(fast / "agent/adapter_model.safetensors")
    assert a.keys() == b.keys() and any(a[k].abs().sum() > 0 for k in a)
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-4, rtol=1e-3)


def test_packed_rows_give_the_padded_rows_loss(tiny):
    """Packing several examples per row (position ids restart, no mask) changes no token's loss."""
    recs = load_records(_chat_data_records())
    segs = [encode_chat(tiny.tokenizer, r["messages"]) for r in recs]
    exs = epoch_examples(Curriculum("none"), 0, recs, segs, 0, None, 10_000)
    width = 2 * max(e.length for e in exs)
    padded, labels = collate(exs, segs, 0, width, "cpu")
    packed, plabels = collate(exs, segs, 0, width, "cpu", packed=True)
    assert "attention_mask" not in packed and packed["input_ids"].shape[1] <= width
    assert len(packed["input_ids"]) < len(exs) and int((plabels != IGNORE).sum()) == int(
        (labels != IGNORE).sum()
    )
    model = tiny.model.eval()
    with torch.no_grad():
        a = sft_loss(model(**padded, use_cache=False).logits, labels, 1.0)
        b = sft_loss(model(**packed, use_cache=False).logits, plabels, 1.0)
    torch.testing.assert_close(a, b, atol=1e-3, rtol=1e-5)
    with torch.no_grad():  # the same rows attending across examples (a mask of ones) would not pass
        leak = {**packed, "attention_mask": torch.ones_like(packed["input_ids"])}
        assert abs(float(sft_loss(model(**leak, use_cache=False).logits, plabels, 1.0)) - float(a)) > 1e-2


def test_widths_round_up_to_a_multiple_without_changing_the_loss(tiny):
    """pad_to_multiple_of widens rows (never past max_length) with padding that no token attends to or learns."""
    recs = load_records(_chat_data_records())
    segs = [encode_chat(tiny.tokenizer, r["messages"]) for r in recs]
    exs = epoch_examples(Curriculum("none"), 0, recs, segs, 0, None, 10_000)
    longest = max(e.length for e in exs)
    plain, labels = collate(exs, segs, 0, 10_000, "cpu")
    wide, wlabels = collate(exs, segs, 0, 10_000, "cpu", pad_to_multiple_of=64)
    assert plain["input_ids"].shape[1] == longest and wide["input_ids"].shape[1] == -(-longest // 64) * 64
    capped, _ = collate(exs, segs, 0, longest + 1, "cpu", pad_to_multiple_of=64)
    assert capped["input_ids"].shape[1] == longest + 1
    model = tiny.model.eval()
    with torch.no_grad():
        a = sft_loss(model(**plain, use_cache=False).logits, labels, 1.0)
        b = sft_loss(model(**wide, use_cache=False).logits, wlabels, 1.0)
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-5)


def test_packed_training_takes_the_padded_step(tmp_path, chat_data):
    data = chat_data(6)
    kw = dict(epochs=1, batch_tokens=10_000, lora={"dropout": 0.0})  # one micro-batch; packed: one row
    a = load_file(train(_cfg(tmp_path, data, "padded", **kw)) / "agent/adapter_model.safetensors")
    b = load_file(
        train(_cfg(tmp_path, data, "packed", packing=True, **kw)) / "agent/adapter_model.safetensors"
    )
    assert any(a[k].abs().sum() > 0 for k in a)
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-5, rtol=1e-4)


def _chat_data_records(n=9):
    import tempfile
    from pathlib import Path

    path = Path(tempfile.mkdtemp()) / "chat.jsonl"
    with path.open("w") as f:
        for i in range(n):
            msgs = [
                {"role": "user", "content": "What is " + " plus ".join(str(j) for j in range(i + 2)) + "?"},
                {"role": "assistant", "content": str(sum(range(i + 2))) + " is the sum" * (i % 3)},
            ]
            f.write(json.dumps({"messages": msgs}) + "\n")
    return str(path)


def test_full_finetuning_saves_a_loadable_model(tmp_path, chat_data):
    from transformers import AutoModelForCausalLM

    data = chat_data(4)
    out = train(_cfg(tmp_path, data, "full", finetune="full", epochs=1, mode="joint"))
    model = AutoModelForCausalLM.from_pretrained(out / "team")
    assert sum(p.numel() for p in model.parameters()) > 0
    assert yaml.safe_load((out / "eval.yaml").read_text())["team"]["agents"][0]["model"] == str(out / "team")


def test_cli_train_refuses_to_overwrite_and_names_bad_data(tmp_path, capsys, chat_data):
    data = chat_data(2)
    cfg = tmp_path / "sft.yaml"
    cfg.write_text(f"method: sft\nmodel: tiny-random\ndata: {data}\nmode: single\nepochs: 1\ndevice: cpu\n")
    assert main(["train", "--config", str(cfg), f"output={tmp_path / 'r'}"]) == 0
    assert main(["train", "--config", str(cfg), f"output={tmp_path / 'r'}"]) == 2
    assert "--resume" in capsys.readouterr().out
    assert main(["train", "--config", str(cfg), "data=nope.jsonl", f"output={tmp_path / 'r2'}"]) == 2
    assert "nope.jsonl" in capsys.readouterr().out
    assert main(["train", "--config", str(cfg), "epochs=0", f"output={tmp_path / 'r3'}"]) == 2
    assert main(["train", "--config", str(cfg), "method=ppo"]) == 2
    assert "unknown method" in capsys.readouterr().out
    # resuming a run with another config would mix two runs: refused, naming what changed
    assert main(["train", "--resume", "--config", str(cfg), "epochs=2", f"output={tmp_path / 'r'}"]) == 2
    assert "epochs differ" in " ".join(capsys.readouterr().out.split())
    # same config on a finished run: left as it is (not trained again from its last checkpoint)
    before = (tmp_path / "r" / "train_metrics.json").read_text()
    assert main(["train", "--resume", "--config", str(cfg), f"output={tmp_path / 'r'}"]) == 0
    assert "already trained" in " ".join(capsys.readouterr().out.split())
    assert (tmp_path / "r" / "train_metrics.json").read_text() == before
    assert main(["train", "--config", str(tmp_path / "none.yaml")]) == 2
    assert "config file not found" in capsys.readouterr().out


def test_load_records_apps_spec_errors():
    from teamtune.tasks import DataError

    with pytest.raises(DataError, match="apps:<split>"):
        load_records("apps:train")
    with pytest.raises(DataError, match="unknown apps split"):
        load_records("apps:nosuch:3")
    assert {r["role"] for r in load_records("apps:train:2", "single")} == {"agent"}


def _damage(ckpt, how: str) -> None:
    if how == "truncated trainable.pt":
        w = ckpt / "trainable.pt"
        w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])
    elif how == "missing state.pt":
        (ckpt / "state.pt").unlink()
    elif how == "garbage state.pt":
        (ckpt / "state.pt").write_bytes(b"\x00garbage" * 50)
    elif how == "corrupt counters.json":
        (ckpt / "counters.json").write_text('{"step": 4, "tok')


@pytest.mark.parametrize(
    "how", ["truncated trainable.pt", "missing state.pt", "garbage state.pt", "corrupt counters.json"]
)
def test_resume_falls_back_to_the_older_checkpoint_when_the_newest_is_damaged(
    tmp_path, chat_data, how, capsys
):
    data = chat_data()
    whole = train(_cfg(tmp_path, data, "whole"))
    cfg = _cfg(tmp_path, data, "killed")
    with pytest.raises(Interrupted):
        train(cfg, stop_after=5)
    root = tmp_path / "killed/agent/checkpoints"
    assert sorted(p.name for p in root.iterdir()) == ["step-0000002", "step-0000004"]
    _damage(root / "step-0000004", how)
    (root / ".step-0000006.tmp").mkdir()  # what a kill mid-write leaves
    (tmp_path / "killed/agent/.log.jsonl.999.tmp").write_text("half")
    capsys.readouterr()
    resumed = train(cfg)
    out = capsys.readouterr().out
    assert "skipping damaged checkpoint" in out and how.split()[-1] in out
    assert "step-0000002 (2 steps done)" in out
    assert not list(root.glob(".*.tmp")) and not list((tmp_path / "killed/agent").glob(".*.tmp"))
    a = load_file(whole / "agent/adapter_model.safetensors")
    b = load_file(resumed / "agent/adapter_model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_resume_with_every_checkpoint_damaged_is_one_clear_error(tmp_path, chat_data):
    cfg = _cfg(tmp_path, chat_data(), "killed")
    with pytest.raises(Interrupted):
        train(cfg, stop_after=5)
    root = tmp_path / "killed/agent/checkpoints"
    for ckpt in root.iterdir():
        _damage(ckpt, "garbage state.pt")
    with pytest.raises(ConfigError, match=r"no checkpoint loads \(step-0000004, step-0000002 damaged\)"):
        train(cfg)


def test_mixed_roles_take_the_steps_of_training_the_roles_in_turn(tmp_path):
    """`mixed_roles`: one forward/backward per step over both roles' rows gives each role's adapter, losses and
    counters as training the roles one after the other; a kill and resume gives them too."""
    kw = dict(
        mode="roles", epochs=2, batch_tokens=3000, lora={"dropout": 0.0}, curriculum={"schedule": "prost"}
    )
    kw |= dict(optim={"lr": 1e-2, "warmup_steps": 1}, save_every=1)
    turn = train(_cfg(tmp_path, "apps:train:3", "turn", **kw))
    mixed = train(_cfg(tmp_path, "apps:train:3", "mixed", mixed_roles=True, **kw))
    cfg = _cfg(tmp_path, "apps:train:3", "killed", mixed_roles=True, **kw)
    with pytest.raises(Interrupted):
        train(cfg, stop_after=1)
    resumed = train(cfg)
    for role in ("planner", "executor"):
        a = load_file(turn / role / "adapter_model.safetensors")
        rows_a = [json.loads(x) for x in (turn / role / "log.jsonl").read_text().splitlines()]
        ma = json.loads((turn / role / "train_metrics.json").read_text())
        for other in (mixed, resumed):
            b = load_file(other / role / "adapter_model.safetensors")
            # one batched backward sums in another order: after 8 Adam steps at lr 1e-2 the weights differ by up
            # to ~5e-5 (transformers 5.25, torch 2.13 on CPU) while the losses agree to 1e-7
            assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=2e-4) for k in a), role
            rows_b = [json.loads(x) for x in (other / role / "log.jsonl").read_text().splitlines()]
            assert [r["step"] for r in rows_b] == [r["step"] for r in rows_a] and len(rows_a) > 1
            assert [r["loss"] for r in rows_b] == pytest.approx([r["loss"] for r in rows_a], rel=1e-4)
            mb = json.loads((other / role / "train_metrics.json").read_text())
            for k in (
                "steps",
                "train_tokens",
                "trained_tokens",
                "sequences",
                "train_flops",
                "trainable_parameters",
            ):
                assert mb[k] == ma[k], (role, k)
        assert len({r["loss"] for r in rows_a}) > 1  # a real training: the loss moves
    with pytest.raises(ConfigError, match="mixed_roles trains LoRA adapters of mode: roles"):
        _cfg(tmp_path, "apps:train:3", "bad", mixed_roles=True, mode="joint")
