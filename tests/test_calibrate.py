import json

import pytest

from teamtune.analysis.calibrate import CalibrateConfig, calibrate, group_stats, markdown, zone_of
from teamtune.rollout import SamplingConfig
from teamtune.tasks import Problem, TaskConfig, best_constant


def test_group_stats_counts_mixed_groups():
    s = group_stats([[True, False], [True, True], [False, False], [False, True]])
    assert s == {"pass@1": 0.5, "mixed": 0.5, "all_right": 0.25, "all_wrong": 0.25}


def test_best_constant_is_the_most_frequent_gold():
    problems = [Problem(str(i), "q", a) for i, a in enumerate(["(A)", "(B)", "(B)", "(C)"])]
    assert best_constant(problems) == ("(B)", 0.5)
    with pytest.raises(ValueError, match="at least one"):
        best_constant([])


@pytest.mark.parametrize(
    "pass1, constant, zone",
    [
        (0.3, 0.5, "at chance"),
        (0.3, 0.3, "at chance"),
        (0.3, 0.2, "learnable"),
        (0.05, 0.0, ""),
        (0.9, 0.2, ""),
    ],
)
def test_zone_needs_pass_at_1_above_the_constant_answer(pass1, constant, zone):
    assert zone_of({"pass@1": pass1, "constant": constant}, [0.15, 0.7]) == zone


def test_calibrate_writes_the_constant_answer_per_setting(tmp_path, data_dir):
    """End to end on tiny-random: the constant column is the split's most frequent BBH label, and a setting
    whose pass@1 does not beat it is never called learnable."""
    bbh = TaskConfig(name="bbh", subset="boolean_expressions", split="train", source=str(data_dir / "bbh"))
    cfg = CalibrateConfig(
        model="tiny-random",
        settings=[bbh],
        k=2,
        problems=6,
        sampling=SamplingConfig(4, temperature=1.0, top_p=1.0),
        zone=[0.0, 1.0],
        device="cpu",
        output=str(tmp_path / "cal"),
    )
    out = calibrate(cfg)
    (row,) = json.loads((out / "calibrate.json").read_text())["rows"]
    from teamtune.tasks import load_task

    golds = [p.answer for p in load_task(TaskConfig(**{**bbh.__dict__, "limit": 6})).problems]
    top = row["constant_answer"]
    assert golds.count(top) == max(map(golds.count, golds)) and row["constant"] == golds.count(top) / 6
    assert row["learnable"] == (row["pass@1"] > row["constant"])
    assert f"{row['constant']:.1%} {top}" in (out / "calibrate.md").read_text()
    assert (out / "calibrate.png").stat().st_size > 0


def test_markdown_reads_files_without_the_constant():
    old = {"setting": "s", "n": 4, "k": 2, "pass@1": 0.3, "mixed": 0.5, "all_right": 0, "all_wrong": 0.5}
    old |= {"answered": 1.0, "truncated": 0.0, "generated_tokens": 10, "learnable": True}
    text = markdown({"model": "m", "zone": [0.15, 0.7], "k": 2, "rows": [old]})
    assert "| s | 4 | 30.0% | — |" in text and "| learnable |" in text
