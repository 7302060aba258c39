import json
import os
from pathlib import Path

import pytest

# No test reaches the hub: set before transformers and datasets read it on import.
os.environ["HF_HUB_OFFLINE"] = "1"

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


@pytest.fixture
def chat_data(tmp_path):
    """Writes n chat records ("What is i plus i?" answered "2i") to tmp_path/chat.jsonl; returns its path."""

    def write(n: int = 24) -> str:
        path = tmp_path / "chat.jsonl"
        with path.open("w") as f:
            for i in range(n):
                msgs = [
                    {"role": "user", "content": f"What is {i} plus {i}?"},
                    {"role": "assistant", "content": str(2 * i)},
                ]
                f.write(json.dumps({"messages": msgs}) + "\n")
        return str(path)

    return write


@pytest.fixture(scope="session")
def tiny():
    return load_model("tiny-random", device="cpu", dtype="float32", seed=0)


def even_length_task(n: int = 4):
    from teamtune.tasks.base import Problem, Task

    class Even(Task):
        name = "even"

        def extract(self, text):
            return text.strip() or None

        def is_correct(self, predicted, problem):
            return predicted is not None and len(predicted) % 2 == 0

    return Even([Problem(f"p{i}", f"Write a word ({i}).", "") for i in range(n)], "train")


@pytest.fixture
def toy_task():
    """A toy verifier whose reward varies among a random model's samples: is the answer's length even?"""
    return even_length_task()
