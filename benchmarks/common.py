"""Shared by the benchmark scripts: device names and the results file format."""

from __future__ import annotations

import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import torch


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__})"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def record(
    name: str, device: str, value: float, unit: str, baseline: str, baseline_value: float, **extra
) -> dict:
    return {
        "name": name,
        "device": device,
        "date": time.strftime("%Y-%m-%d"),
        "command": "python " + shlex.join(sys.argv),
        "value": value,
        "unit": unit,
        "baseline": baseline,
        "baseline_value": baseline_value,
        "ratio": value / baseline_value if baseline_value else None,
        **extra,
    }


def save_records(path: str | Path, records: list[dict]) -> None:
    """Add `records` to the JSON list at `path`, replacing older records of the same name and device."""
    path = Path(path)
    old = json.loads(path.read_text()) if path.is_file() else []
    keys = {(r["name"], r["device"]) for r in records}
    merged = [r for r in old if (r["name"], r["device"]) not in keys] + records
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(merged, indent=2) + "\n")
