import json
import math
import statistics

import pytest

from teamtune.analysis.compare import compare
from teamtune.analysis.pareto import RunError
from teamtune.analysis.stats import (
    T80,
    T975,
    detectable,
    power_cell,
    seed_detectable,
    seed_power,
    seeds_needed,
    sign_test,
)
from teamtune.cli import main
from teamtune.records import outcomes
from teamtune.tasks import TaskConfig, load_task


def test_sign_test_exact_values():
    assert sign_test([False] * 5, [True] * 5) == {
        "pairs": 5,
        "gained": 5,
        "lost": 0,
        "p": pytest.approx(2 / 32),
        "detectable": None,  # 5 of 5 one way gives p = 0.0625: no split of 5 is significant
    }
    # 3 gained, 1 lost: 2 * P(X <= 1 | n=4) = 2 * 5/16
    t = sign_test([True, False, False, False, True], [False, True, True, True, True])
    assert (t["gained"], t["lost"], t["p"]) == (3, 1, pytest.approx(10 / 16))
    assert sign_test([True], [True])["p"] == 1.0
    with pytest.raises(ValueError):
        sign_test([True], [True, False])


def test_detectable_difference_by_hand_and_against_the_normal_approximation():
    # 6 differing pairs: only 6 / 0 is significant (p = 2 / 64), so power q^6 + (1 - q)^6 = 0.8 at q = 0.8^(1/6)
    q = 0.8 ** (1 / 6)
    assert detectable(6, 10) == pytest.approx((2 * q - 1) * 6 / 10, rel=1e-6)
    assert detectable(6, 10, step=0.5) == pytest.approx((2 * q - 1) * 3 / 10, rel=1e-6)
    assert detectable(5, 10) is None and detectable(0, 10) is None
    # many pairs: (z 0.975 + z 0.8) * sqrt(share differing / pairs), within 4% (exact: a little larger)
    assert detectable(400, 1000) == pytest.approx(2.8016 * (0.4 / 1000) ** 0.5, rel=0.04)
    assert detectable(3000, 3000) == pytest.approx(2.8016 / 3000**0.5, rel=0.02)  # big counts: no overflow
    # a significant split of the pairs seen is found more often than not: power above one half
    assert detectable(62, 150, power=0.5) < detectable(62, 150)
    with pytest.raises(ValueError):
        detectable(10, 10, power=1.0)
    # in a table: points, "none" when no split is significant, "—" for a test recorded before power was
    assert [power_cell(t) for t in ({"detectable": 0.0481}, {"detectable": None}, {"p": 0.5})] == [
        "4.8",
        "none",
        "—",
    ]


def test_t_quantiles_match_the_t_distribution():
    def cdf(t, df, steps=4000):  # Simpson's rule over the t density from 0 to t
        c = math.exp(math.lgamma((df + 1) / 2) - math.lgamma(df / 2)) / math.sqrt(df * math.pi)
        f = lambda x: c * (1 + x * x / df) ** (-(df + 1) / 2)  # noqa: E731
        h = t / steps
        inner = sum((4 if i % 2 else 2) * f(i * h) for i in range(1, steps))
        return 0.5 + h / 3 * (f(0) + inner + f(t))

    for df in (1, 2, 3, 5, 10, 17, 30):
        assert cdf(T975[df], df) == pytest.approx(0.975, abs=2e-4)
        assert cdf(T80[df], df) == pytest.approx(0.8, abs=2e-4)


def test_seed_power_by_hand():
    # sd 0.06 over 3 seeds: (4.303 + 1.061) * 0.06 / sqrt 3 = 0.1858
    assert seed_detectable(0.06, 3) == pytest.approx(0.1858, abs=1e-4)
    assert seed_detectable(0.06, 1) is None
    # 7 seeds: (2.447 + 0.906) * 0.06 / sqrt 7 = 0.0760 <= 0.083; 6: (2.571 + 0.920) * 0.06 / sqrt 6 = 0.0855
    assert seeds_needed(0.06, -0.083) == 7 and seeds_needed(0.06, 0.0) is None
    assert seeds_needed(0.06, 0.001) is None  # more than 100 seeds
    p = seed_power([-0.036, -0.062, -0.150])
    assert p["detectable"] == pytest.approx(seed_detectable(statistics.stdev([-0.036, -0.062, -0.150]), 3))
    assert p["seeds_for_observed"] == seeds_needed(statistics.stdev([-0.036, -0.062, -0.150]), -0.0827)
    assert seed_power([0.1]) is None and "seeds_for_observed" not in seed_power([0.1, 0.2])


def _run(root, name, task_cfg, problems, correct, peers=None, label=None, seed=0):
    """An eval run folder: metrics, config and episodes whose peers say the gold answer or a wrong one."""
    d = root / name
    d.mkdir()
    eps = []
    for i, p in enumerate(problems):
        turns = []
        for j in range(3 if peers is not None else 0):
            text = f"The answer is {p.answer if j < peers[i] else p.answer + '1'}."
            turns.append({"agent": "peer", "round": 1, "text": text})
        turns.append({"agent": "leader", "round": 1, "text": ""})
        eps.append({"problem_id": p.id, "gold": p.answer, "turns": turns, "correct": correct[i]})
    (d / "episodes.jsonl").write_text("".join(json.dumps(e) + "\n" for e in eps))
    (d / "config.yaml").write_text(json.dumps({"task": task_cfg}))
    metrics = {"task": "gsm8k", "split": "test", "n": len(problems), "layout": "leader", "model": "m"}
    metrics |= {
        "accuracy": sum(correct) / len(correct),
        "tokens_per_problem": 1,
        "seed": seed,
        "label": label or name,
    }
    (d / "metrics.json").write_text(json.dumps(metrics))
    return str(d)


def test_compare_pairs_bins_and_constant(tmp_path, data_dir):
    cfg = {"name": "gsm8k", "source": str(data_dir / "gsm8k"), "split": "test", "limit": 4}
    problems = load_task(TaskConfig(**cfg)).problems
    peers = [0, 1, 3, 3]
    a = _run(tmp_path, "a", cfg, problems, [False, False, True, True], peers)
    b = _run(tmp_path, "b", cfg, problems, [True, True, True, False], peers)
    alone = _run(tmp_path, "alone", cfg, problems, [True, False, False, False])  # binned by a's peers
    md = compare([a, b, alone], tmp_path / "out")
    result = json.loads((tmp_path / "out" / "compare.json").read_text())
    rows = {r["label"]: r for r in result["runs"]}
    assert result["reference"] == "a" and result["problems"] == 4
    assert rows["b"]["vs_reference"] | {"p": 0} == {
        "pairs": 4,
        "gained": 2,
        "lost": 1,
        "p": 0,
        "detectable": None,
        "difference": 0.25,
        "seed_difference": 0.25,
        "seed_ci95": None,  # one seed each: no interval over seeds
        "seed_power": None,
        "paired_seeds": 1,
        "same_seeds": True,
    }
    bins = {int(k): (v["n"], v["accuracy"]) for k, v in rows["a"]["by_peers_right"].items()}
    assert bins == {0: (1, 0.0), 1: (1, 0.0), 3: (2, 1.0)}
    assert {int(k): v["accuracy"] for k, v in rows["alone"]["by_peers_right"].items()} == {
        0: 1.0,
        1: 0.0,
        3: 0.0,
    }
    # few peers right (at most 1): problems 0 and 1, where a is wrong and b right; alone is right on 0 only
    few = rows["b"]["few_peers_right"]
    assert (few["pairs"], few["gained"], few["lost"], few["accuracy"], few["reference_accuracy"]) == (
        2,
        2,
        0,
        1,
        0,
    )
    assert rows["alone"]["few_peers_right"]["accuracy"] == 0.5
    assert "| 100.0% vs 0.0% (2 problems); 2 / 0, p = 0.5; 80% power at none |" in md.read_text()
    with_none = json.loads((compare([a, b], tmp_path / "few0", few=0).parent / "compare.json").read_text())
    assert with_none["runs"][1]["few_peers_right"]["pairs"] == 1  # problem 0 alone
    constant = [r for label, r in rows.items() if label.startswith("constant")]
    assert len(constant) == 1 and constant[0]["accuracy"] >= 0.25  # the most common gold answer of 4
    assert (tmp_path / "out" / "compare.png").stat().st_size > 0 and "Sign test" in md.read_text()
    with pytest.raises(RunError, match="reference 'nope'"):
        compare([a, b], tmp_path / "out2", reference="nope")
    assert main(["compare", a, b, "--reference", "b", "--out", str(tmp_path / "cli")]) == 0
    assert main(["compare", a, b, "--few", "-1", "--out", str(tmp_path / "cli")]) == 2


def test_seeds_pair_problems_not_problem_copies(tmp_path, data_dir):
    """Over seeds the test pairs each problem's accuracy once: 4 problems give 4 pairs, not 4 x seeds."""
    cfg = {"name": "gsm8k", "source": str(data_dir / "gsm8k"), "split": "test", "limit": 4}
    problems = load_task(TaskConfig(**cfg)).problems
    peers = [0, 1, 3, 3]
    a = _run(tmp_path, "a", cfg, problems, [False, False, True, True], peers)
    b0 = _run(tmp_path, "b0", cfg, problems, [True, True, True, False], peers, label="b", seed=0)
    b1 = _run(tmp_path, "b1", cfg, problems, [False, True, True, False], peers, label="b", seed=1)
    compare([a, b0, b1], tmp_path / "out")
    rows = {r["label"]: r for r in json.loads((tmp_path / "out" / "compare.json").read_text())["runs"]}
    t = rows["b"]["vs_reference"]
    assert (t["pairs"], t["gained"], t["lost"]) == (4, 2, 1)  # per problem: 0.5 > 0, 1 > 0, 1 = 1, 0 < 1
    assert rows["b"]["seeds"] == [0, 1] and rows["b"]["ci95"] is not None


def test_damaged_runs_name_the_file_and_line(tmp_path, data_dir, capsys):
    cfg = {"name": "gsm8k", "source": str(data_dir / "gsm8k"), "split": "test", "limit": 2}
    problems = load_task(TaskConfig(**cfg)).problems
    a = _run(tmp_path, "a", cfg, problems, [True, False], [1, 0])
    b = _run(tmp_path, "b", cfg, problems, [False, False], [1, 0])
    (tmp_path / "b" / "episodes.jsonl").write_text(
        '{"problem_id": "x", "correct": true, "turns": []}\n{"probl'
    )
    with pytest.raises(RunError, match=r"b/episodes.jsonl:2: not valid JSON"):
        compare([a, b], tmp_path / "out")
    (tmp_path / "b" / "episodes.jsonl").write_text('{"problem_id": "x", "turns": []}\n')
    with pytest.raises(RunError, match=r"b/episodes.jsonl:1: an episode without 'correct'"):
        compare([a, b], tmp_path / "out")
    (tmp_path / "a" / "config.yaml").unlink()
    assert main(["compare", a, b, "--out", str(tmp_path / "cli")]) == 2
    assert "no config.yaml" in capsys.readouterr().out


def test_difference_interval_pairs_seeds(tmp_path, data_dir):
    """The difference's interval is over seed-by-seed differences: seeds 0 and 1 differ by +0.25 and +0.75."""
    cfg = {"name": "gsm8k", "source": str(data_dir / "gsm8k"), "split": "test", "limit": 4}
    problems = load_task(TaskConfig(**cfg)).problems
    r0 = _run(tmp_path, "r0", cfg, problems, [False, False, False, True], label="ref", seed=0)
    r1 = _run(tmp_path, "r1", cfg, problems, [False, False, False, False], label="ref", seed=1)
    b0 = _run(tmp_path, "b0", cfg, problems, [True, False, False, True], label="b", seed=0)
    b1 = _run(tmp_path, "b1", cfg, problems, [True, True, True, False], label="b", seed=1)
    lone = _run(tmp_path, "c2", cfg, problems, [True, True, True, True], label="c", seed=2)  # no ref seed 2
    part = _run(tmp_path, "d0", cfg, problems, [True, True, False, True], label="d", seed=0)  # seed 0 only
    md = compare([r0, r1, b0, b1, lone, part], tmp_path / "out")
    rows = {r["label"]: r for r in json.loads((tmp_path / "out" / "compare.json").read_text())["runs"]}
    t = rows["b"]["vs_reference"]
    assert t["difference"] == pytest.approx(0.5) and t["paired_seeds"] == 2
    assert t["seed_ci95"] == pytest.approx(
        12.706 * 0.25, rel=1e-3
    )  # t(1) * sd / sqrt(2), sd = 0.25 * sqrt(2)
    assert rows["c"]["vs_reference"]["seed_ci95"] is None and rows["c"]["vs_reference"]["paired_seeds"] == 0
    assert t["same_seeds"] and "| +50.0 ± 317.6 |" in md.read_text()
    # power over seeds: (12.706 + 1.376) * 0.3536 / sqrt 2 = 3.521; no projection of the seeds needed from two
    assert "over seeds, 80% power at 352.1 |" in md.read_text()
    # d: seed 0 only; +62.5 against both reference seeds, +50.0 against seed 0, the one both have
    d = rows["d"]["vs_reference"]
    assert not d["same_seeds"] and d["seed_difference"] == pytest.approx(0.5) and d["seed_ci95"] is None
    assert "| +62.5 (seeds both have: +50.0) |" in md.read_text()


def test_compare_has_no_constant_row_for_the_apps_world(tmp_path):
    """apps tasks are graded by the world's state: most have no gold answer, so no constant answer is a floor."""
    cfg = {"name": "apps", "split": "dev", "limit": 6}
    problems = load_task(TaskConfig(**cfg)).problems
    assert any(p.answer is None for p in problems)
    a = _run(tmp_path, "a", cfg, problems, [True, False, True, False, False, True], label="sft")
    b = _run(tmp_path, "b", cfg, problems, [True, True, True, False, True, True], label="prost")
    got = json.loads((compare([a, b], tmp_path / "out").parent / "compare.json").read_text())
    assert [r["label"] for r in got["runs"]] == ["sft", "prost"]
    assert (got["runs"][1]["vs_reference"]["gained"], got["runs"][1]["vs_reference"]["lost"]) == (2, 0)


def test_compare_reads_outcomes_json_where_the_episodes_are_not_kept(tmp_path, data_dir):
    cfg = {"name": "gsm8k", "source": str(data_dir / "gsm8k"), "split": "test", "limit": 4}
    problems = load_task(TaskConfig(**cfg)).problems
    a = _run(tmp_path, "a", cfg, problems, [False, False, True, True], [0, 1, 3, 3])
    b = _run(tmp_path, "b", cfg, problems, [True, True, True, False])
    (tmp_path / "b" / "episodes.jsonl").unlink()
    with pytest.raises(RunError, match="no episodes.jsonl or outcomes.json"):
        compare([a, b], tmp_path / "out")
    correct = {p.id: c for p, c in zip(problems, [True, True, True, False], strict=True)}
    (tmp_path / "b" / "outcomes.json").write_text(json.dumps({"correct": correct}))
    rows = {
        r["label"]: r
        for r in json.loads((compare([a, b], tmp_path / "out").parent / "compare.json").read_text())["runs"]
    }
    assert (rows["b"]["vs_reference"]["gained"], rows["b"]["vs_reference"]["lost"]) == (2, 1)
    assert {int(k): v["n"] for k, v in rows["b"]["by_peers_right"].items()} == {0: 1, 1: 1, 3: 2}  # a's peers
    (tmp_path / "b" / "outcomes.json").write_text(json.dumps({"correct": {problems[0].id: "yes"}}))
    with pytest.raises(RunError, match="'correct' must map each problem id to true or false"):
        compare([a, b], tmp_path / "out")
    # the peers' counts kept in outcomes.json (what teamtune eval writes) bin the runs without any episodes
    task = load_task(TaskConfig(**cfg))
    kept = outcomes([json.loads(line) for line in (tmp_path / "a" / "episodes.jsonl").open()], task)
    assert kept["peers_right"] == {p.id: n for p, n in zip(problems, [0, 1, 3, 3], strict=True)}
    (tmp_path / "a" / "outcomes.json").write_text(json.dumps(kept))
    (tmp_path / "a" / "episodes.jsonl").unlink()
    (tmp_path / "b" / "outcomes.json").write_text(json.dumps({"correct": correct}))
    got = json.loads((compare([a, b], tmp_path / "kept").parent / "compare.json").read_text())["runs"]
    assert {int(k): v["n"] for k, v in got[1]["by_peers_right"].items()} == {0: 1, 1: 1, 3: 2}
    assert got[1]["few_peers_right"]["gained"] == 2
    (tmp_path / "a" / "outcomes.json").write_text(json.dumps(kept | {"peers_right": {problems[0].id: -1}}))
    with pytest.raises(RunError, match="'peers_right' must map each problem id to a count of peers"):
        compare([a, b], tmp_path / "out")
