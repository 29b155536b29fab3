"""`hsrl report` end to end: files written, plots rendered, partial runs reported clearly."""

from __future__ import annotations

import builtins
import csv
import json
from pathlib import Path

import pytest
from fake_runs import evaluation, learning_log, run_config, write_run

from hsrl.cli import main

PNG_HEADER = b"\x89PNG\r\n\x1a\n"


def _sweep_like(root: Path) -> Path:
    """Two agents x 3 seeds with logs and evaluations on the simulator and the ground truth."""
    for agent, final in (("hsrl", 9.0), ("ddpg", 6.0)):
        for seed in range(3):
            write_run(
                root / f"{agent}__seed{seed}",
                run_config(agent, seed),
                log=learning_log(final, seed, iterations=1000),
                evaluations={
                    "agent_sim_test_seed0": evaluation(final + seed * 0.1, agent=agent),
                    "agent_truth_test_seed0": evaluation(
                        final - 1, simulator="ground_truth", agent=agent
                    ),
                },
            )
    return root


def test_report_writes_tables_and_plots(tmp_path: Path, capsys):
    runs = _sweep_like(tmp_path / "sweep")
    out = tmp_path / "report"
    assert main(["report", str(runs), "--out", str(out)]) == 0
    printed = capsys.readouterr()
    assert "report of 6 run(s) in 2 group(s)" in printed.out
    assert printed.err == ""  # nothing skipped, nothing to warn about
    for name in ("learning_curves.png", "final_metrics.png"):
        data = (out / name).read_bytes()
        assert data.startswith(PNG_HEADER)
        assert len(data) > 20_000  # a real figure, not an empty canvas
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert {(r["group"], r["evaluation"]) for r in rows} == {
        ("hsrl", "learned simulator"),
        ("hsrl", "ground truth"),
        ("ddpg", "learned simulator"),
        ("ddpg", "ground truth"),
    }
    hsrl_sim = next(
        r for r in rows if r["group"] == "hsrl" and r["evaluation"] == "learned simulator"
    )
    assert hsrl_sim["seeds"] == "3" and float(hsrl_sim["total_reward_mean"]) == pytest.approx(9.1)
    assert len(list(csv.DictReader((out / "runs.csv").open()))) == 12
    report = json.loads((out / "report.json").read_text())
    assert {g["label"] for g in report["groups"]} == {"hsrl", "ddpg"}
    assert "| hsrl | 3 | 3000 | 100 |" in (out / "results.md").read_text()


def test_report_json_flag_prints_one_object(tmp_path: Path, capsys):
    runs = _sweep_like(tmp_path / "sweep")
    assert main(["report", str(runs), "--out", str(tmp_path / "r"), "--no-plots", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert len(data["rows"]) == 4 and data["skipped"] == []
    assert not (tmp_path / "r" / "final_metrics.png").exists()


def test_partial_runs_are_skipped_with_reasons_and_the_rest_reported(tmp_path: Path, capsys):
    root = _sweep_like(tmp_path / "sweep")
    # No config: cannot be grouped.
    write_run(root / "no_config", None, log=learning_log(5.0, 0), evaluations={"e": evaluation(1)})
    # A config and nothing else (killed before the first log line).
    write_run(root / "fresh", run_config("hac", 0))
    # An empty log and no evaluations.
    write_run(root / "empty_log", run_config("hac", 1), log=[])
    # A damaged config.
    write_run(root / "bad_config", None, log=[])
    (root / "bad_config" / "config.json").write_text("{not json")
    # A truncated log (still used: the cut last line is dropped) and no evaluations.
    cut = write_run(root / "cut_log", run_config("hac", 2), log=learning_log(5.0, 2))
    with (cut / "log.jsonl").open("a") as handle:
        handle.write('{"iteration": 31')
    # A damaged evaluation file beside a good one.
    (root / "hsrl__seed0" / "eval" / "broken.json").write_text("[1, 2")
    out = tmp_path / "report"
    assert main(["report", str(root), "--out", str(out), "--no-plots"]) == 0
    err = capsys.readouterr().err
    assert "skipped 4 run(s)" in err
    assert "no_config: no config.json" in err
    assert "fresh: no training log (log.jsonl); nothing to report" in err
    assert "empty_log: training log (log.jsonl) is empty; nothing to report" in err
    assert "bad_config: config.json is not readable JSON" in err
    assert "cut_log: last line of the training log (log.jsonl) is cut short" in err
    assert "cut_log: no evaluation results" in err
    assert "broken.json: not readable JSON" in err
    assert "Traceback" not in err
    # The truncated run still has its learning curve in the report data.
    report = json.loads((out / "report.json").read_text())
    assert any(g["label"] == "hac" for g in report["groups"])


def test_nothing_usable_is_an_error_listing_why(tmp_path: Path, capsys):
    write_run(tmp_path / "a", run_config("hsrl", 0))
    write_run(tmp_path / "b", None, evaluations={"e": evaluation(1.0)})
    code = main(["report", str(tmp_path), str(tmp_path / "missing"), "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 1
    assert "nothing to report" in err
    assert "missing: does not exist" in err and "b: no config.json" in err
    assert "Traceback" not in err


def test_a_folder_without_runs_is_named(tmp_path: Path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty"), "--out", str(tmp_path / "r")]) == 1
    assert "no run folders (with a config.json) found here" in capsys.readouterr().err


def test_missing_matplotlib_names_the_extra(tmp_path: Path, capsys, monkeypatch):
    runs = _sweep_like(tmp_path / "sweep")
    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    assert main(["report", str(runs), "--out", str(tmp_path / "r")]) == 1
    err = capsys.readouterr().err
    assert "pip install 'hsrl[plots]'" in err and "--no-plots" in err
    assert not (tmp_path / "r").exists()  # failed before writing anything
    assert main(["report", str(runs), "--out", str(tmp_path / "r"), "--no-plots"]) == 0
