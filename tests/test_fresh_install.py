"""The built wheel on its own: installed in a virtualenv outside the checkout, with no shared/ folder in sight
and the hub switched off, `teamtune demo` and the packaged configs must work from what the wheel ships."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    """A virtualenv holding the wheel built from this checkout; its dependencies come from this Python's."""
    tmp = tmp_path_factory.mktemp("fresh")
    run = dict(check=True, capture_output=True, text=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", tmp, ROOT],
        **run,
    )
    (wheel,) = tmp.glob("teamtune-*.whl")
    env = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", env], **run)
    subprocess.run([env / "bin" / "python", "-m", "pip", "install", "-q", "--no-deps", wheel], **run)
    return env


def _run(venv: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TEAMTUNE", "PYTHONPATH"))}
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    return subprocess.run(
        [venv / "bin" / "python", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


def test_wheel_runs_the_demo_with_no_shared_folder(venv, tmp_path):
    assert not any((f / "shared").exists() for f in (tmp_path, *tmp_path.parents))
    where = _run(venv, tmp_path, "-c", "import teamtune; print(teamtune.__file__)")
    assert where.stdout.startswith(str(venv)), where  # the wheel's copy, not the checkout's
    out = tmp_path / "demo"
    r = _run(venv, tmp_path, "-m", "teamtune.cli", "demo", "--model", "tiny-random", "--limit", "2",
             "--max-new-tokens", "4", "--output", str(out))  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    assert "teamtune demo: tiny-random on 2 BBH boolean_expressions (3-shot) test problems" in r.stdout
    for layout in ("single", "vote", "leader"):
        metrics = json.loads((out / layout / "metrics.json").read_text())
        assert metrics["n"] == 2 and metrics["layout"] == layout


def test_wheel_ships_its_configs(venv, tmp_path):
    r = _run(venv, tmp_path, "-m", "teamtune.cli", "configs")
    assert r.returncode == 0 and "mlpo_gsm8k" in r.stdout and "prost_apps" in r.stdout, r.stdout + r.stderr
    out = tmp_path / "ev"
    r = _run(venv, tmp_path, "-m", "teamtune.cli", "eval", "--config", "configs/eval_gsm8k_leader.yaml",
             "--source", "sample", "--limit", "1", "--model", "tiny-random", "--output", str(out),
             "team.agents=[{name: peer, sampling: {max_new_tokens: 3}}, {name: leader, sampling: {max_new_tokens: 3}}]")  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    assert json.loads((out / "metrics.json").read_text())["layout"] == "leader"
    r = _run(venv, tmp_path, "-m", "teamtune.cli", "eval", "--limit", "1", "--model", "tiny-random")
    assert r.returncode == 2 and r.stdout.count("\n") == 1 and "task.source=sample" in r.stdout, r.stdout
