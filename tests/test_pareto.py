import json

import pytest

from teamtune.analysis.pareto import RunError, frontier, group_runs, pareto
from teamtune.cli import main


def test_frontier_hand_made():
    assert frontier([(1, 0.5)]) == [0]  # a single point
    pts = [
        (1, 0.2),
        (2, 0.5),
        (3, 0.4),
        (4, 0.9),
        (5, 0.9),
    ]  # (3, .4) dominated by (2, .5); (5, .9) by (4, .9)
    assert frontier(pts) == [0, 1, 3]
    assert frontier([(2, 0.5), (2, 0.5), (3, 0.1)]) == [0, 1]  # duplicates are both kept, neither dominates
    assert frontier([(1, 0.5), (1, 0.4)]) == [0]  # a tie on cost goes to the better one
    assert frontier([(1, 0.9), (2, 0.1), (3, 0.2), (4, 0.3)]) == [0]  # all dominated but one


def run(tmp_path, name, **m):
    d = tmp_path / name
    d.mkdir()
    base = {
        "task": "gsm8k",
        "split": "test",
        "n": 10,
        "layout": "single",
        "model": "m",
        "accuracy": 0.5,
        "flops_per_problem": 1e9,
        "tokens_per_problem": 100,
    }
    (d / "metrics.json").write_text(json.dumps(base | m))
    return str(d)


def test_seeds_give_an_interval(tmp_path):
    runs = [
        {
            "task": "t",
            "split": "s",
            "label": "a",
            "method": "sft",
            "accuracy": acc,
            "flops_per_problem": 2.0,
            "layout": "single",
            "model": "m",
        }
        for acc in (0.4, 0.5, 0.6)
    ]
    (p,) = group_runs(runs, "flops")
    assert p.seeds == 3 and p.accuracy == pytest.approx(0.5) and p.label == "a, sft"
    assert p.ci == pytest.approx(4.303 * 0.1 / 3**0.5)  # t(2) x sd / sqrt(n)


def test_one_label_at_two_model_sizes_gives_two_points():
    """A recipe's label run on two models is two configurations, named by model; one model keeps the label."""
    run = {"task": "t", "split": "s", "label": "team sft", "flops_per_problem": 1.0, "layout": "single"}
    runs = [
        run | {"model": "/root/m/smollm2", "accuracy": 0.4},
        run | {"model": "/root/m/smollm2", "accuracy": 0.6},
    ]
    runs += [run | {"model": "/root/m/gemma3/", "accuracy": 0.9, "flops_per_problem": 2.0}]
    points = {p.label: p for p in group_runs(runs, "flops")}
    assert set(points) == {"team sft (smollm2)", "team sft (gemma3)"}
    assert points["team sft (smollm2)"].seeds == 2 and points["team sft (gemma3)"].accuracy == 0.9
    assert [p.label for p in group_runs(runs[:2], "flops")] == ["team sft"]


def test_pareto_writes_plot_and_reports(tmp_path):
    a = run(tmp_path, "a", label="single", accuracy=0.3, flops_per_problem=1e9)
    b = run(tmp_path, "b", label="vote x5", accuracy=0.45, flops_per_problem=5e9)
    c = run(tmp_path, "c", label="leader 3+1", accuracy=0.4, flops_per_problem=8e9)
    out = tmp_path / "out"
    res = pareto([a, b, c], "flops", out)
    assert [p["frontier"] for p in res["points"]] == [True, True, False]
    png = (out / "pareto.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    md, page = (out / "pareto.md").read_text(), (out / "pareto.html").read_text()
    assert "| vote x5 | 45.0% | 5e+09 | 1 | yes |" in md and "<td>leader 3+1</td>" in page


def test_bad_runs_name_the_folder(tmp_path):
    good = run(tmp_path, "good")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(RunError, match=rf"{empty}: no metrics.json"):
        pareto([good, str(empty)], out=tmp_path / "o")
    partial = run(tmp_path, "partial")
    data = json.loads((tmp_path / "partial" / "metrics.json").read_text())
    del data["accuracy"]
    (tmp_path / "partial" / "metrics.json").write_text(json.dumps(data))
    with pytest.raises(RunError, match="partial/metrics.json: lacks 'accuracy'"):
        pareto([partial], out=tmp_path / "o")
    with pytest.raises(RunError, match="usd_per_problem.*price_per_million_tokens"):
        pareto([good], "cost", tmp_path / "o")
    other = run(tmp_path, "other", task="math")
    with pytest.raises(RunError, match="different tasks or splits"):
        pareto([good, other], out=tmp_path / "o")
    assert pareto([good, other], out=tmp_path / "o", allow_mixed=True)["points"]


def test_cli_pareto_errors_are_one_line(tmp_path, capsys):
    assert main(["pareto", str(tmp_path / "nothing"), "--out", str(tmp_path / "o")]) == 2
    assert "not a run folder" in capsys.readouterr().out


def test_eval_runs_feed_pareto(tmp_path, data_dir):
    folders = []
    for layout in ("single", "vote"):
        out = tmp_path / layout
        assert (
            main(
                [
                    "eval",
                    "--source",
                    str(data_dir / "gsm8k"),
                    "--limit",
                    "2",
                    "--layout",
                    layout,
                    "--model",
                    "tiny-random",
                    "--output",
                    str(out),
                    "team.samples=2",
                    "team.agents=[{name: solver, sampling: {max_new_tokens: 3}}]",
                    "price_per_million_tokens={tiny-random: 1.0}",
                ]
            )
            == 0
        )
        folders.append(str(out))
    m = json.loads((tmp_path / "vote" / "metrics.json").read_text())
    assert m["peak_memory_bytes"] > 0 and m["agents"]["solver"]["adapter_parameters"] == 0
    assert m["usd_per_problem"] == pytest.approx(m["tokens_per_problem"] / 1e6)
    bad = tmp_path / "bad"
    assert (
        main(
            [
                "eval",
                "--source",
                str(data_dir / "gsm8k"),
                "--limit",
                "1",
                "--model",
                "tiny-random",
                "--output",
                str(bad),
                "price_per_million_tokens={other-model: 1.0}",
            ]
        )
        == 2
    )
    assert not (bad / "episodes.jsonl").exists()  # refused before running, not after
    for axis in ("flops", "tokens", "seconds", "memory", "parameters", "cost"):
        assert main(["pareto", *folders, "--x", axis, "--out", str(tmp_path / axis)]) == 0


def test_report_draws_curves_and_summary(tmp_path):
    folder = tmp_path / run(
        tmp_path,
        "r",
        label="leader 3+1",
        per_agent={"peer": {"calls": 3, "prompt_tokens": 30, "generated_tokens": 12, "flops": 2e9}},
    )
    (folder / "log.jsonl").write_text(
        "".join(json.dumps({"step": s, "loss": 2 / (s + 1), "reward": s / 10}) + "\n" for s in range(20))
    )
    assert main(["report", str(folder)]) == 0
    text = (folder / "report.md").read_text()
    assert "# leader 3+1: gsm8k / test" in text and "| peer | 3 | 30 | 12 | 2.0 |" in text
    assert "![curves](curves.png) (loss, reward)" in text
    assert (folder / "curves.png").read_bytes()[:4] == b"\x89PNG"
    (folder / "log.jsonl").write_text('{"loss": 1}\n')
    assert main(["report", str(folder)]) == 2  # a log line without its step is named, not plotted


def test_seed_bands_average_runs_that_differ_only_in_seed():
    from teamtune.analysis.report import seed_bands

    runs = {
        "tt-3-teamtr-s0": {1: 0.1, 2: 0.3},
        "tt-3-teamtr-s1": {1: 0.3, 2: 0.5},
        "tt-3-stale-s0": {1: 0.2},
        "tt-3-stale-s10": {1: 0.4, 2: 0.6},
    }
    bands = seed_bands(runs, over_seeds=True)
    assert set(bands) == {"tt-3-teamtr", "tt-3-stale"}
    xs, mean, lo, hi, n = bands["tt-3-teamtr"]
    assert xs == [1, 2] and n == 2 and lo == [0.1, 0.3] and hi == [0.3, 0.5]
    assert mean == pytest.approx([0.2, 0.4])
    assert bands["tt-3-stale"][1] == pytest.approx(
        [0.3, 0.6]
    )  # a stage one run lacks: the mean of the others
    assert set(seed_bands(runs, over_seeds=False)) == set(runs)
    roles = {
        "sft-none-s0/planner": {1: 1.0},
        "sft-none-s1/planner": {1: 3.0},
        "sft-none-s0/executor": {1: 5.0},
    }
    bands = seed_bands(roles, over_seeds=True)
    assert set(bands) == {"sft-none/planner", "sft-none/executor"} and bands["sft-none/planner"][1] == [2.0]


def test_curves_of_one_role_over_several_runs_keep_each_run(tmp_path):
    from teamtune.analysis.report import compare_curves

    folders = []
    for seed, loss in ((0, 1.0), (1, 3.0)):
        role = tmp_path / f"sft-none-s{seed}" / "planner"
        role.mkdir(parents=True)
        (role / "log.jsonl").write_text(
            "".join(json.dumps({"step": k, "loss": loss / k}) + "\n" for k in (1, 2))
        )
        folders.append(str(role))
    out = compare_curves(folders, "loss", "step", tmp_path / "loss.png", over_seeds=True)
    assert out.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(RunError, match="drawn already"):
        compare_curves([folders[0], folders[0], folders[1]], "loss", "step", tmp_path / "x.png")


def test_sft_report_reads_the_counter_names_of_older_runs(tmp_path):
    from teamtune.analysis.report import training_summary

    old = {
        "adapter": "planner",
        "steps": 3,
        "trainable_parameters": 10,
        "tokens": 1234,
        "flops": 5e9,
        "seconds": 2.0,
    }
    (tmp_path / "train_metrics.json").write_text(json.dumps({"adapters": [old], "total": {"tokens": 1234}}))
    (tmp_path / "config.yaml").write_text("method: sft\n")
    assert "| planner | 3 | 10 | 1,234 | 5e+09 | 2 | nan |" in training_summary(tmp_path, [])
