import os
from pathlib import Path

import pytest

from teamtune.models import load_model

DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The shared real datasets beside the checkout (CI has them there)."""
    path = Path(os.environ.get("TEAMTUNE_DATA", DATA))
    if not path.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"shared datasets not found at {path}")
        pytest.skip(f"shared datasets not found at {path}")
    return path


@pytest.fixture(scope="session")
def tiny():
    return load_model("tiny-random", device="cpu", dtype="float32", seed=0)
