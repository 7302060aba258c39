"""Move a file larger than one GPU call may carry (64 MiB) in parts, and put it back together, checked.

    python experiments/parts.py split FILE DIR [--mib 48]   # DIR/part00, part01, ... and DIR/manifest.json
    python experiments/parts.py join DIR OUT                # concatenates the parts, checks size and sha256

Carry one part per call (plus manifest.json with the last), copy each to a folder that outlives the call
(the machine keeps files between calls while it stays warm), then `join` there.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

CHUNK = 1 << 20


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(CHUNK):
            h.update(block)
    return h.hexdigest()


def split(src: Path, folder: Path, mib: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    parts = []
    with src.open("rb") as f:
        while block := f.read(mib * CHUNK):
            part = folder / f"part{len(parts):02d}"
            part.write_bytes(block)
            parts.append(part)
    manifest = {
        "name": src.name,
        "bytes": src.stat().st_size,
        "sha256": sha256(src),
        "parts": [p.name for p in parts],
    }
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return parts


def join(folder: Path, out: Path) -> Path:
    manifest = json.loads((folder / "manifest.json").read_text())
    missing = [p for p in manifest["parts"] if not (folder / p).is_file()]
    if missing:
        sys.exit(f"error: {folder} lacks {', '.join(missing)} of {manifest['name']}")
    with out.open("wb") as f:
        for p in manifest["parts"]:
            f.write((folder / p).read_bytes())
    if out.stat().st_size != manifest["bytes"] or sha256(out) != manifest["sha256"]:
        out.unlink()
        sys.exit(f"error: the parts in {folder} do not make {manifest['name']} (size or sha256 differ)")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="verb", required=True)
    s = sub.add_parser("split")
    s.add_argument("file", type=Path)
    s.add_argument("folder", type=Path)
    s.add_argument("--mib", type=int, default=48)
    j = sub.add_parser("join")
    j.add_argument("folder", type=Path)
    j.add_argument("out", type=Path)
    a = ap.parse_args()
    if a.verb == "split":
        print(f"{len(split(a.file, a.folder, a.mib))} parts in {a.folder}")
    else:
        print(f"joined {join(a.folder, a.out)} (sha256 checked)")


if __name__ == "__main__":
    main()
