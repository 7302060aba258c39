"""SIGKILL a training run at a chosen point, `--resume` it, and it ends with the weights of a run never killed.

Each recipe runs in its own process (tests/killed_run.py) on tiny-random; the kill is a real SIGKILL of that
process: mid-step, inside a checkpoint's torch.save (half a file on disk), before a checkpoint's rename, while the
final adapter is written, and before train_metrics.json."""

import hashlib
import os
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from safetensors.torch import load_file

SCRIPT = Path(__file__).with_name("killed_run.py")

# (point, its n-th occurrence) per recipe: each lands after a first checkpoint and before the end
POINTS = {
    "sft": [("step", 7), ("save", 5), ("rename", 3), ("final", 1), ("metrics", 1)],
    "mlpo": [("step", 3), ("save", 4), ("rename", 2), ("final", 1), ("metrics", 1)],
    "teamtr": [("step", 3), ("save", 3), ("rename", 2), ("final", 2), ("metrics", 1)],
}
# in CI: two points per recipe, every kind of point at least once; the rest with -m slow
FAST = {("sft", "save"), ("sft", "final"), ("mlpo", "step"), ("mlpo", "metrics"), ("teamtr", "rename")}


def _run(recipe: str, point: str, nth: int, out: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, str(SCRIPT), recipe, point, str(nth), str(out)]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


def _digest(out: Path) -> str:
    """sha256 over every saved adapter's tensors, by file and name."""
    h = hashlib.sha256()
    files = sorted(out.rglob("adapter_model.safetensors"))
    assert files, f"no adapter under {out}"
    for f in files:
        for name, t in sorted(load_file(f).items()):
            h.update(f"{f.relative_to(out)}:{name}".encode() + t.float().numpy().tobytes())
    return h.hexdigest()


def _killed_then_resumed(recipe: str, point: str, nth: int, out: Path) -> tuple[str, str]:
    killed = _run(recipe, point, nth, out)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert not (out / "train_metrics.json").is_file()
    resumed = _run(recipe, "none", 0, out)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    return resumed.stdout, _digest(out)


def _points(fast: bool):
    return [
        pytest.param(
            recipe, marks=[] if fast else pytest.mark.slow, id=f"{recipe}-{'ci' if fast else 'rest'}"
        )
        for recipe in POINTS
        if any(((recipe, p) in FAST) == fast for p, _ in POINTS[recipe])
    ]


def _check(recipe: str, fast: bool, tmp_path: Path) -> None:
    points = [(p, n) for p, n in POINTS[recipe] if ((recipe, p) in FAST) == fast]
    with ThreadPoolExecutor(2) as pool:  # two single-threaded processes at a time
        whole = pool.submit(_run, recipe, "none", 0, tmp_path / "whole")
        chains = [pool.submit(_killed_then_resumed, recipe, p, n, tmp_path / f"{p}-{n}") for p, n in points]
        assert whole.result().returncode == 0, whole.result().stderr[-3000:]
        expected = _digest(tmp_path / "whole")
        for (p, n), chain in zip(points, chains, strict=True):
            stdout, digest = chain.result()
            assert "resuming from" in stdout, (p, stdout[-2000:])
            assert ".tmp" not in stdout.split("resuming from", 1)[1].split("\n", 1)[0]  # a whole one
            assert digest == expected, f"{recipe} killed at {p} #{n}: resumed to other weights"
            leftovers = [f for f in (tmp_path / f"{p}-{n}").rglob("*") if f.name.endswith(".tmp")]
            assert not leftovers, leftovers


@pytest.mark.parametrize("recipe", _points(fast=True))
def test_killed_runs_resume_to_the_same_weights(recipe, tmp_path):
    _check(recipe, True, tmp_path)


@pytest.mark.parametrize("recipe", _points(fast=False))
def test_killed_runs_resume_to_the_same_weights_at_every_point(recipe, tmp_path):
    _check(recipe, False, tmp_path)
