"""experiments/ingest.py: run folders from a GPU machine into results/, without weights, episodes or checkpoints."""

import subprocess
import sys
import tarfile
from pathlib import Path

SCRIPT = Path(__file__).parents[1] / "experiments" / "ingest.py"


def _runs(root: Path) -> Path:
    """A runs folder as `remote.sh` leaves it: one run with the files a training and an evaluation write."""
    run = root / "roles-none-s1"
    keep = [
        "config.yaml",
        "eval.yaml",
        "train_metrics.json",
        "planner/log.jsonl",
        "planner/train_metrics.json",
    ]
    keep += ["planner/adapter_config.json", "eval-dev/metrics.json", "eval-dev/outcomes.json"]
    drop = [
        "planner/adapter_model.safetensors",
        "planner/tokenizer.json",
        "planner/checkpoints/step-1/state.pt",
    ]
    drop += [
        "planner/checkpoints/step-1/counters.json",
        "planner/tb/events.out",
        "eval-dev/episodes.jsonl",
        ".lock",
    ]
    for f in keep + drop:
        (run / f).parent.mkdir(parents=True, exist_ok=True)
        (run / f).write_text(f)
    (root / "other-s0").mkdir()
    (root / "roles-none-s1.log").write_text("train 1/3\rtrain 2/3\rtrain 3/3\n\n\nwrote it\n")
    (root / "bg.log").write_text("start\n")
    return root


def _files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


def test_ingest_keeps_results_and_drops_weights(tmp_path):
    src = _runs(tmp_path / "runs")
    dest = tmp_path / "results"
    (dest / "roles-none-s1").mkdir(parents=True)
    (dest / "roles-none-s1" / "stale.json").write_text("{}")  # a run is replaced whole
    done = subprocess.run(
        [sys.executable, SCRIPT, src, dest, "roles-*", "--job", "job-s1"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert _files(dest / "roles-none-s1") == {
        "config.yaml",
        "eval.yaml",
        "train_metrics.json",
        "planner/log.jsonl",
        "planner/train_metrics.json",
        "planner/adapter_config.json",
        "eval-dev/metrics.json",
        "eval-dev/outcomes.json",
    }
    assert not (dest / "other-s0").exists()
    assert (dest / "logs" / "roles-none-s1.log").read_text() == "train 1/3\ntrain 2/3\ntrain 3/3\nwrote it\n"
    assert (dest / "logs" / "job-s1.log").read_text() == "start\n"


def test_ingest_reads_the_packed_archive_and_refuses_no_match(tmp_path):
    src = _runs(tmp_path / "runs")
    archive = tmp_path / "runs.tgz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(src, arcname=".")
    done = subprocess.run([sys.executable, SCRIPT, archive, tmp_path / "r"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "r" / "roles-none-s1" / "eval-dev" / "metrics.json").is_file()
    assert not list((tmp_path / "r").rglob("*.safetensors"))
    missing = subprocess.run(
        [sys.executable, SCRIPT, src, tmp_path / "x", "gemma3-*"], capture_output=True, text=True
    )
    assert missing.returncode != 0 and "no run folder" in missing.stderr
    (tmp_path / "bad.tgz").write_text("not an archive")
    for src, says in (
        (tmp_path / "bad.tgz", "not a readable runs archive"),
        (tmp_path / "nope", "no such runs"),
    ):
        bad = subprocess.run([sys.executable, SCRIPT, src, tmp_path / "y"], capture_output=True, text=True)
        assert bad.returncode != 0 and says in bad.stderr and "Traceback" not in bad.stderr
