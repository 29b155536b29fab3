"""The report's numbers against hand-computed values: seeds, intervals, grouping, curves."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import pytest
from fake_runs import evaluation, learning_log, run_config, write_run

from hsrl.report import (
    build_rows,
    discover_runs,
    group_runs,
    learning_curve,
    markdown_table,
    pool_summaries,
    read_run,
    rows_csv,
    smooth,
)


def _runs(paths):
    runs = []
    for path in discover_runs(paths)[0]:
        run, _ = read_run(path)
        assert run is not None
        runs.append(run)
    return runs


def test_mean_std_and_t_interval_over_seeds_by_hand(tmp_path: Path):
    # Per-seed means 10, 12, 14 of total reward: mean 12, sample std 2,
    # half-width t(0.975, 2) * 2 / sqrt(3) = 4.302653 * 1.154701 = 4.968278.
    for seed, mean in enumerate((10.0, 12.0, 14.0)):
        write_run(
            tmp_path / f"hsrl_seed{seed}",
            run_config("hsrl", seed),
            evaluations={"e": evaluation(mean, std=3.0, n=50)},
        )
    (row,) = build_rows(group_runs(_runs([tmp_path])))
    stats = row.stats["total_reward"]
    assert row.seeds == 3 and row.ci_over == "seeds"
    assert stats["mean"] == pytest.approx(12.0)
    assert stats["std"] == pytest.approx(2.0)
    assert stats["ci95_low"] == pytest.approx(12.0 - 4.968278, abs=1e-5)
    assert stats["ci95_high"] == pytest.approx(12.0 + 4.968278, abs=1e-5)
    # The std over seeds is of the seed means, not of the episodes (std 3 per run).
    assert "12.00 ± 2.00 [7.03, 16.97]" in markdown_table([row])


def test_five_seeds_use_t_with_four_degrees_of_freedom(tmp_path: Path):
    means = [1.0, 2.0, 3.0, 4.0, 5.0]  # mean 3, std sqrt(2.5); t(0.975, 4) = 2.776445
    for seed, mean in enumerate(means):
        write_run(
            tmp_path / f"r{seed}", run_config("hac", seed), evaluations={"e": evaluation(mean)}
        )
    (row,) = build_rows(group_runs(_runs([tmp_path])))
    half = 2.776445 * math.sqrt(2.5) / math.sqrt(5)
    assert row.stats["total_reward"]["ci95_high"] == pytest.approx(3.0 + half, abs=1e-5)
    # depth is scaled by 1.1 in the fake evaluations: every metric is aggregated on its own.
    assert row.stats["depth"]["mean"] == pytest.approx(3.3)


def test_one_seed_shows_the_runs_episode_interval_and_says_so(tmp_path: Path):
    write_run(tmp_path / "only", run_config("ddpg", 0), evaluations={"e": evaluation(5.0, n=400)})
    (row,) = build_rows(group_runs(_runs([tmp_path])))
    stats = row.stats["total_reward"]
    assert row.ci_over == "episodes" and stats["n"] == 1 and math.isnan(stats["std"])
    half = 1.96 * 1.0 / 20  # the fake evaluation's own episode interval
    assert stats["ci95_low"] == pytest.approx(5.0 - half)
    table = markdown_table([row])
    assert "5.00 [4.90, 5.10]†" in table and "one seed (n = 1)" in table
    record = next(csv.DictReader(io.StringIO(rows_csv([row]))))
    assert record["ci_over"] == "episodes" and record["total_reward_std"] == ""


def test_pooling_two_evaluations_of_one_run_is_exact():
    # Episodes [1, 2, 3] and [4, 5]: all five have mean 3 and sample std sqrt(2.5).
    a = {"mean": 2.0, "std": 1.0, "n": 3}
    b = {"mean": 4.5, "std": math.sqrt(0.5), "n": 2}
    pooled = pool_summaries([a, b])
    assert pooled["n"] == 5
    assert pooled["mean"] == pytest.approx(3.0)
    assert pooled["std"] == pytest.approx(math.sqrt(2.5))


def test_groups_split_by_settings_and_labels_name_the_difference(tmp_path: Path):
    for seed in (0, 1):
        write_run(tmp_path / f"a{seed}", run_config("hsrl", seed), evaluations={"e": evaluation(4)})
        config = run_config("hsrl", seed)
        config["agent_config"] = {"entropy_coef": 0.01}
        write_run(tmp_path / f"b{seed}", config, evaluations={"e": evaluation(6)})
        # The default written out explicitly is the same experiment as the default left out.
        config = run_config("hsrl", seed + 2)
        config["agent_config"] = {"entropy_coef": 0.1}
        config["device"] = "cuda"  # not part of the experiment
        write_run(tmp_path / f"c{seed}", config, evaluations={"e": evaluation(4)})
        write_run(tmp_path / f"d{seed}", run_config("ddpg", seed), evaluations={"e": evaluation(3)})
    groups = group_runs(_runs([tmp_path]))
    labels = sorted(g.label for g in groups)
    assert labels == ["ddpg", "hsrl (entropy_coef=0.01)", "hsrl (entropy_coef=0.1)"]
    sizes = {g.label: len(g.runs) for g in groups}
    assert sizes == {"ddpg": 2, "hsrl (entropy_coef=0.01)": 2, "hsrl (entropy_coef=0.1)": 4}


def test_evaluation_settings_become_separate_table_sections(tmp_path: Path):
    write_run(
        tmp_path / "r",
        run_config("hsrl", 0),
        evaluations={
            "sim": evaluation(4.0),
            "truth": evaluation(3.0, simulator="ground_truth"),
            "val": evaluation(5.0, split="val"),
            "other": evaluation(2.0, simulator="/elsewhere/test_sim"),
            "rand": evaluation(1.0, policy="random"),
        },
    )
    rows = build_rows(group_runs(_runs([tmp_path])))
    seen = {(r.label, r.setting.title): r.stats["total_reward"]["mean"] for r in rows}
    assert seen == {
        ("hsrl", "learned simulator, test split"): 4.0,
        ("random (reference)", "learned simulator, test split"): 1.0,
        ("hsrl", "learned simulator, val split"): 5.0,
        ("hsrl", "ground truth, test split"): 3.0,
        ("hsrl", "simulator test_sim, test split"): 2.0,
    }
    table = markdown_table(rows)
    assert table.index("## learned simulator, test split") < table.index("## ground truth")


def test_learning_curve_mean_and_std_over_seeds_per_iteration():
    from hsrl.report import Run

    def run(values, every=10):
        log = [
            {"iteration": every * (i + 1), "episode/total_reward": v} for i, v in enumerate(values)
        ]
        return Run(Path("x"), {}, log=log)

    curve = learning_curve([run([1.0, 2.0, 3.0]), run([3.0, 4.0, 5.0])], "episode/total_reward")
    assert curve.iterations == [10, 20, 30]
    assert curve.mean == [2.0, 3.0, 4.0]
    assert curve.std == pytest.approx([math.sqrt(2)] * 3)
    assert curve.low == [1.0, 2.0, 3.0] and curve.high == [3.0, 4.0, 5.0]
    # A seed trained for fewer iterations only counts where it was trained (no extrapolation).
    short = learning_curve([run([1.0, 2.0, 3.0]), run([5.0])], "episode/total_reward")
    assert short.count == [2, 1, 1] and short.mean == [3.0, 2.0, 3.0]


def test_smoothing_is_a_trailing_moving_average():
    assert smooth([1.0, 2.0, 3.0, 4.0], 2) == [1.0, 1.5, 2.5, 3.5]
    assert smooth([1.0, 5.0], 1) == [1.0, 5.0]


def test_resumed_log_keeps_the_latest_record_of_a_repeated_iteration(tmp_path: Path):
    log = learning_log(8.0, seed=0, iterations=300)
    replay = dict(log[1], **{"episode/total_reward": 99.0})  # iteration 200 logged again
    write_run(tmp_path / "r", run_config("hsrl", 0), log=[*log, replay])
    run, _ = read_run(tmp_path / "r")
    assert [r["iteration"] for r in run.log] == [100, 200, 300]
    assert run.log[1]["episode/total_reward"] == 99.0


def test_reference_policies_are_rows_of_their_own_per_environment(tmp_path: Path):
    for temper in (10.0, 20.0):
        write_run(
            tmp_path / f"r{temper:g}",
            run_config("hsrl", 0, temper=temper),
            evaluations={"a": evaluation(5.0), "r": evaluation(temper / 10, policy="greedy")},
        )
    rows = build_rows(group_runs(_runs([tmp_path])))
    references = {r.label: r.stats["total_reward"]["mean"] for r in rows if r.policy != "agent"}
    assert references == {
        "greedy (reference, temper=10)": 1.0,
        "greedy (reference, temper=20)": 2.0,
    }
    assert all(r.iterations == [] for r in rows if r.policy != "agent")


def test_training_diagnostics_table_and_plot(tmp_path: Path):
    from hsrl.report import build_report, diagnostic_keys, diagnostics_table

    for seed, ev in ((0, 0.4), (1, 0.6)):
        log = learning_log(5.0, seed)
        for record in log:
            record.update({"policy/item_entropy": 4.0 + seed, "critic/explained_variance": ev,
                           "policy/entropy_l2": 1.0, "policy/entropy_l1": 2.0})  # fmt: skip
        write_run(tmp_path / f"hsrl{seed}", run_config("hsrl", seed), log)
    write_run(tmp_path / "ddpg0", run_config("ddpg", 0), learning_log(4.0, 0))
    groups = group_runs(_runs([tmp_path]))
    assert diagnostic_keys(groups) == [
        "policy/item_entropy", "policy/entropy_l1", "policy/entropy_l2",
        "critic/explained_variance",
    ]  # fmt: skip
    table = diagnostics_table(groups)
    row = next(line for line in table.splitlines() if "explained_variance" in line)
    assert "0.500" in row and row.rstrip().endswith("- |")  # ddpg logs none of them
    report = build_report([tmp_path], tmp_path / "out", plots=True)
    names = {f.name for f in report.files}
    assert "diagnostics.md" in names
    pytest.importorskip("matplotlib")
    assert "diagnostics.png" in names and (tmp_path / "out" / "diagnostics.png").stat().st_size
