"""Every `teamtune` command in README.md's code blocks runs, in order, at test size: the same verb, flags, configs
and files, with a tiny random model and a problem or two (the sizes appended below; later overrides win)."""

import glob
import re
import shlex
import sys
import time
from pathlib import Path

import pytest

from teamtune.cli import main

ROOT = Path(__file__).resolve().parents[1]
TINY_EVAL = ["--model", "tiny-random", "task.limit=1"]
TINY_TRAIN = {  # appended to `teamtune train --config <name>` (the same again on --resume, so the configs match)
    "prost_apps": ["model=tiny-random", "data=apps:train:2", "eval_data=null", "epochs=1", "max_length=1024"],
    "mlpo_gsm8k": ["model=tiny-random", "steps=1", "problems_per_step=2", "peers=1", "eval_task=null",
                   "peer_sampling.max_new_tokens=4", "policy.max_new_tokens=4", "policy.group_size=2"],
    "teamtr_gsm8k": ["model=tiny-random", "stages=1", "problems_per_stage=2", "eval_task=null",
                     "policy.max_new_tokens=4", "policy.group_size=2"],
}  # fmt: skip
SKIP = {
    "demo": "tests/test_fresh_install.py runs the demo from the built wheel",
    "HuggingFaceTB/": "reads a model and data from the hub",
    "export smollm2-135m": "saves the real 135M model (tests/test_models.py saves and reloads models)",
}


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    lines = [
        line.split("  #")[0].strip()
        for block in re.findall(r"```bash\n(.*?)```", text, re.S)
        for line in block.splitlines()
    ]
    return [line for line in lines if line.startswith("teamtune ")]


def test_readme_has_the_commands_this_test_sizes():
    cmds = readme_commands()
    assert len(cmds) >= 15
    trained = {
        m.group(1) for c in cmds if (m := re.search(r"train (?:--resume )?--config configs/(\w+)\.yaml", c))
    }
    assert trained == set(TINY_TRAIN)


def test_every_readme_command_runs(tmp_path, monkeypatch, data_dir, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TEAMTUNE_DATA", str(data_dir))
    (tmp_path / "results").symlink_to(ROOT / "results")
    ran = 0
    for cmd in readme_commands():
        if any(key in cmd for key in SKIP):
            continue
        args = [
            x for a in shlex.split(cmd)[1:] for x in (sorted(glob.glob(a)) if "*" in a else [a])
        ]  # as a shell
        if args[0] == "pareto":
            args[args.index("--out") + 1] = str(tmp_path / "pareto" / str(ran))
        elif args[0] == "eval":
            args += TINY_EVAL
        elif args[0] == "train":
            name = re.search(r"configs/(\w+)\.yaml", cmd).group(1)
            args += TINY_TRAIN[name] + ["device=cpu", "batch_size=16"] * (name != "prost_apps")
        t0 = time.perf_counter()
        if args == ["--help"]:
            with pytest.raises(SystemExit) as e:
                main(args)
            assert e.value.code == 0
        else:
            code = main(args)
            out = capsys.readouterr().out
            assert code == 0, f"{cmd}\n{out[-2000:]}"
        sys.__stderr__.write(f"{time.perf_counter() - t0:6.1f} s  {cmd}\n")  # for -s: what each command costs
        ran += 1
    assert ran >= 14
    assert (tmp_path / "runs/mlpo/eval-leader-trained/metrics.json").is_file()
    assert (tmp_path / "runs/prost/eval-test_unseen/metrics.json").is_file() or any(
        tmp_path.glob("runs/prost/eval-*")
    )
    assert (tmp_path / "train_pe.jsonl").is_file()
