"""`hsrl run`, the main job, end to end with tiny budgets."""

from __future__ import annotations

import json

import pytest

from hsrl.cli import main


@pytest.mark.slow
def test_main_job_runs_every_step_and_prints_the_table(tmp_path, capsys):
    out = tmp_path / "main"
    args = [
        "run", "--out", str(out), "--iterations", "20", "--episodes", "30",
        "--simulator-epochs", "1", "--option", "num_users=60", "--no-progress",
    ]  # fmt: skip
    assert main(args) == 0
    printed = capsys.readouterr().out
    for name in ("| hsrl |", "| hac |", "| supervised |", "| random |", "| greedy |", "| oracle |"):
        assert name in printed
    assert "ground truth" in printed and "Transfer ratio of the learned simulator" in printed
    for folder in ("data", "simulator", "sid", "runs/hsrl_seed0"):
        assert (out / folder).is_dir()
    summary = json.loads((out / "results.json").read_text())
    policies = {
        (r["agent"], r["evaluation"]["simulator"] == "ground_truth") for r in summary["results"]
    }
    assert policies == {
        (p, t)
        for p in ("hsrl", "hac", "supervised", "random", "greedy", "oracle")
        for t in (False, True)
    }
    assert all(r["metrics"]["depth"]["n"] == 30 for r in summary["results"])
    # The transfer test ranks by the learned simulator while acting on the true users.
    assert summary["transfer"]["evaluation"]["ranker"].endswith("simulator")
    assert summary["transfer"]["evaluation"]["simulator"] == "ground_truth"
    assert summary["transfer_ratio"] > 0
    # Pictures from the default install, beside results.md.
    for png in ("learning_curves.png", "comparison.png", "reliability.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert str(out / png) in summary["plots"]
    assert 0.5 <= summary["fidelity"]["auc"] <= 1 and "rank_correlation" in summary["fidelity"]
    # The main job's world logs a share of pages with a randomised layout, so its simulator
    # has a position term.
    sim_config = json.loads((out / "simulator" / "config.json").read_text())
    assert sim_config["model"]["position"] == "slot"
    # A second call reuses every finished step (nothing is trained again).
    before = (out / "runs/hsrl_seed0/checkpoints/last.pt").stat().st_mtime_ns
    assert main(args) == 0
    assert (out / "runs/hsrl_seed0/checkpoints/last.pt").stat().st_mtime_ns == before


def test_main_job_rejects_unknown_agents_and_bad_budgets(tmp_path, capsys):
    assert main(["run", "--out", str(tmp_path / "x"), "--agents", "nope"]) == 1
    assert "unknown agent" in capsys.readouterr().err
    assert main(["run", "--out", str(tmp_path / "x"), "--iterations", "0"]) == 1
    assert "--iterations" in capsys.readouterr().err
