"""Sweeps end to end on a tiny world: the local pool, resuming, failures, and Ray."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import tiny_sweep
from hsrl.cli import main
from hsrl.errors import ConfigError
from hsrl.sweep import expand, is_finished, parse_sweep, run_sweep


def _write(path: Path, sweep: dict) -> Path:
    path.write_text(json.dumps(sweep))
    return path


def _mtimes(folder: Path) -> dict[str, int]:
    return {
        str(p.relative_to(folder)): p.stat().st_mtime_ns
        for p in folder.rglob("*")
        if p.is_file() and "_sweep" not in p.parts
    }


@pytest.mark.slow
def test_local_pool_end_to_end_then_resume_skips_finished_trials(
    report_world, tmp_path: Path, capsys
):
    sweep_file = _write(tmp_path / "tiny.json", tiny_sweep(report_world))
    out = tmp_path / "out"
    assert (
        main(["sweep", str(sweep_file), "--out", str(out), "--backend", "local", "--workers", "2"])
        == 0
    )
    assert "2 finished" in capsys.readouterr().out
    listing = json.loads((out / "sweep.json").read_text())
    names = [t["name"] for t in listing["trials"]]
    assert names == ["hsrl__seed0", "ddpg__seed0"]
    for name in names:
        run = out / name
        assert (run / "checkpoints" / "last.pt").is_file()
        saved = json.loads((run / "config.json").read_text())
        assert saved == next(t["config"] for t in listing["trials"] if t["name"] == name)
        for evaluation in ("agent_sim_test_seed0", "agent_truth_test_seed0"):
            result = json.loads((run / "eval" / f"{evaluation}.json").read_text())
            assert result["iteration"] == 20 and result["evaluation"]["episodes"] == 20
    before = _mtimes(out)

    # Run again: nothing is launched, no file of a trial changes.
    assert main(["sweep", str(sweep_file), "--out", str(out), "--backend", "local"]) == 0
    assert "0 to run" in capsys.readouterr().out
    assert _mtimes(out) == before

    # One evaluation lost: only that evaluation runs again; training is not repeated.
    (out / "ddpg__seed0" / "eval" / "agent_truth_test_seed0.json").unlink()
    result = run_sweep(_spec(sweep_file), out, backend="local", workers=0, echo=lambda _: None)
    assert result.outcomes["hsrl__seed0"]["status"] == "skipped"
    assert result.outcomes["ddpg__seed0"]["steps"] == ["evaluate agent_truth_test_seed0"]
    after = _mtimes(out)
    assert after["ddpg__seed0/checkpoints/last.pt"] == before["ddpg__seed0/checkpoints/last.pt"]
    assert all(after[k] == v for k, v in before.items() if k.startswith("hsrl__seed0"))

    # The report reads the sweep's folder as it is.
    assert main(["report", str(out), "--out", str(tmp_path / "report"), "--no-plots"]) == 0
    table = (tmp_path / "report" / "results.md").read_text()
    assert "## learned simulator, test split" in table and "## ground truth, test split" in table
    assert "| hsrl | 1 | 20 | 20 |" in table and "| ddpg | 1 | 20 | 20 |" in table


def _spec(sweep_file: Path, **cli):
    from hsrl.sweep import load_sweep

    return load_sweep(sweep_file, cli=cli or None)


@pytest.mark.slow
def test_interrupted_training_resumes_from_its_checkpoint(report_world, tmp_path: Path):
    from hsrl.config import save_config
    from hsrl.train import Trainer, build_run, config_from_dict, load_checkpoint

    sweep = tiny_sweep(report_world, agents=["ddpg"])
    sweep["evaluation"] = {"episodes": 10, "simulator": True}
    spec = parse_sweep(sweep, "tiny")
    (trial,) = expand(spec)
    out = tmp_path / "out"
    # Train the trial's own config for 10 of its 20 iterations, as if it was killed there.
    run_dir = out / trial.name
    config = config_from_dict(trial.config)
    trainer = Trainer(build_run(config), run_dir)
    run_dir.mkdir(parents=True)
    save_config(config, run_dir / "config.json")
    trainer.run(10, progress=False)
    result = run_sweep(spec, out, backend="local", workers=0, echo=lambda _: None)
    assert result.outcomes[trial.name]["steps"] == [
        "resume from 10",
        "evaluate agent_sim_test_seed0",
    ]
    state = load_checkpoint(run_dir / "checkpoints" / "last.pt", __import__("torch").device("cpu"))
    assert state["iteration"] == 20 and is_finished(out, trial)


def test_a_changed_sweep_file_does_not_silently_mix_runs(report_world, tmp_path: Path):
    sweep = tiny_sweep(report_world, agents=["ddpg"])
    spec = parse_sweep(sweep, "tiny")
    (trial,) = expand(spec)
    run_dir = tmp_path / "out" / trial.name
    run_dir.mkdir(parents=True)
    changed = dict(trial.config, train=dict(trial.config["train"], batch_size=99))
    (run_dir / "config.json").write_text(json.dumps(changed))
    with pytest.raises(ConfigError, match="ddpg__seed0 hold runs of other settings"):
        run_sweep(spec, tmp_path / "out", backend="local", workers=0, echo=lambda _: None)


def test_a_failing_trial_is_reported_and_the_others_still_run(report_world, tmp_path: Path, capsys):
    # The SID folder exists (validation passes) but holds nothing: hsrl fails when it trains,
    # ddpg does not use SIDs and finishes.
    (tmp_path / "empty_sid").mkdir()
    sweep = tiny_sweep(report_world)
    sweep["base"]["sid"] = str(tmp_path / "empty_sid")
    sweep["base"]["iterations"] = 4
    sweep["evaluation"] = {"episodes": 5, "simulator": True}
    sweep_file = _write(tmp_path / "s.json", sweep)
    out = tmp_path / "out"
    argv = ["sweep", str(sweep_file), "--out", str(out), "--workers", "0", "--backend", "local"]
    assert main(argv) == 1
    captured = capsys.readouterr()
    assert "1 trial(s) failed: hsrl__seed0" in captured.err and "_sweep/logs" in captured.err
    assert "1 failed, 1 finished" in captured.out
    status = json.loads((out / "_sweep" / "status" / "hsrl__seed0.json").read_text())
    assert status["status"] == "failed" and "`hsrl train` exited with status 1" in status["error"]
    log = Path(status["log"]).read_text()
    assert "empty_sid" in log and "Traceback" not in log  # the CLI's one-line error
    assert (out / "ddpg__seed0" / "eval" / "agent_sim_test_seed0.json").is_file()


def test_a_missing_evaluation_simulator_is_named_before_anything_runs(
    report_world, tmp_path: Path, capsys
):
    sweep = tiny_sweep(report_world)
    sweep["evaluation"] = {"episodes": 5, "simulators": {"testsim": "no_such_folder"}}
    sweep_file = _write(tmp_path / "s.json", sweep)
    code = main(["sweep", str(sweep_file), "--out", str(tmp_path / "o"), "--backend", "local"])
    assert code == 1
    assert "evaluation.simulators.testsim: folder not found" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_ray_backend_runs_trials(report_world, tmp_path: Path):
    pytest.importorskip("ray.tune")
    sweep = tiny_sweep(report_world)
    sweep["evaluation"] = {"episodes": 10, "simulator": True}
    spec = parse_sweep(sweep, "tiny")
    out = tmp_path / "out"
    result = run_sweep(spec, out, backend="ray", cpus_per_trial=1, echo=lambda _: None)
    assert result.backend == "ray" and not result.failed
    assert all(is_finished(out, t) for t in result.trials)
    again = run_sweep(spec, out, backend="ray", echo=lambda _: None)
    assert {o["status"] for o in again.outcomes.values()} == {"skipped"}
