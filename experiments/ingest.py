"""Copy run folders that came back from a GPU machine into results/, without what the repository does not keep.

    python experiments/ingest.py SRC DEST [RUN_GLOB ...] [--job NAME]

SRC is a runs folder or the `runs.tgz` of `experiments/remote.sh pack` (with or without its episodes); DEST a
results folder, e.g. results/prost_apps_long. Each run folder at SRC's top level that matches a glob (default:
all) is copied whole into DEST/<run>, replacing what was there, less weights (*.safetensors, *.bin, *.pt),
episodes.jsonl, checkpoints/, TensorBoard's tb/, tokenizer files, peft's model cards (README.md) and lock files:
what stays are configs, metrics, per-problem outcomes, training logs and comparisons. The top-level logs of the
matched runs (<run>.log) go to DEST/logs/, progress-bar redraws split into lines and blank lines dropped; --job NAME
adds the background run's bg.log as DEST/logs/NAME.log.
"""

from __future__ import annotations

import argparse
import fnmatch
import shutil
import tarfile
import tempfile
from pathlib import Path

DROP_FILES = ("*.safetensors", "*.bin", "*.pt", "episodes.jsonl", ".lock", "README.md")  # README: peft's card
DROP_FILES += ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "special_tokens_map.json")
DROP_DIRS = ("checkpoints", "tb")


def kept(path: Path) -> bool:
    """Whether a file of a run folder (relative path) belongs in results/."""
    if any(part in DROP_DIRS for part in path.parts[:-1]):
        return False
    return not any(fnmatch.fnmatch(path.name, pat) for pat in DROP_FILES)


def clean_log(text: str) -> str:
    """A log as lines: progress-bar redraws (carriage returns) split, blank lines dropped."""
    lines = (line.rstrip() for line in text.replace("\r", "\n").split("\n"))
    return "".join(line + "\n" for line in lines if line.strip())


def ingest(src: Path, dest: Path, globs: list[str], job: str | None = None) -> list[str]:
    """Copy the matching runs of `src` (a folder) into `dest`; returns their names."""
    runs = sorted(
        p.name for p in src.iterdir() if p.is_dir() and any(fnmatch.fnmatch(p.name, g) for g in globs)
    )
    if not runs:
        raise SystemExit(f"error: no run folder in {src} matches {' '.join(globs)}")
    for name in runs:
        out = dest / name
        if out.exists():
            shutil.rmtree(out)
        for f in sorted((src / name).rglob("*")):
            rel = f.relative_to(src / name)
            if f.is_file() and kept(rel):
                (out / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(f, out / rel)
    logs = {f"{n}.log": src / f"{n}.log" for n in runs} | ({f"{job}.log": src / "bg.log"} if job else {})
    for name, log in logs.items():
        if log.is_file():
            (dest / "logs").mkdir(parents=True, exist_ok=True)
            (dest / "logs" / name).write_text(clean_log(log.read_text(errors="replace")))
    return runs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src", type=Path)
    ap.add_argument("dest", type=Path)
    ap.add_argument("runs", nargs="*", default=["*"], help="globs of run folder names (default: all)")
    ap.add_argument("--job", help="keep the background run's bg.log as logs/JOB.log")
    args = ap.parse_args()
    if args.src.is_file():
        with tempfile.TemporaryDirectory() as tmp:
            try:
                with tarfile.open(args.src) as tar:
                    tar.extractall(tmp, filter="data")
            except tarfile.TarError as e:
                raise SystemExit(f"error: {args.src} is not a readable runs archive ({e})") from None
            names = ingest(Path(tmp), args.dest, args.runs, args.job)
    elif args.src.is_dir():
        names = ingest(args.src, args.dest, args.runs, args.job)
    else:
        raise SystemExit(f"error: {args.src}: no such runs folder or archive")
    print(f"{len(names)} runs into {args.dest}: {', '.join(names)}")


if __name__ == "__main__":
    main()
