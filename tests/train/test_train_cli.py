"""`hsrl train` / `hsrl evaluate` through the command line: behaviour and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from hsrl.cli import main

TINY = [
    "--set", "train.batch_size=16",
    "--set", "train.warmup=24",
    "--set", "train.log_every=4",
    "--set", "train.tensorboard=false",
    "--set", "env.num_users=8",
    "--set", "agent.encoder.dim=16",
    "--set", "agent.encoder.heads=2",
]  # fmt: skip


def train_args(
    world: dict[str, Path], out: Path, agent: str = "hsrl", iterations: int = 8
) -> list[str]:
    return [
        "train", "--agent", agent, "--data", str(world["data"]), "--simulator",
        str(world["simulator"]), "--sid", str(world["sid"]), "--out", str(out),
        "--iterations", str(iterations), "--no-progress", *TINY,
    ]  # fmt: skip


def test_train_resume_and_evaluate_from_the_cli(tiny_world, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(train_args(tiny_world, run)) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["agent"] == "hsrl" and config["train"]["iterations"] == 8
    assert config["agent_config"]["encoder"]["dim"] == 16
    assert main(["train", "--resume", str(run), "--iterations", "4", "--no-progress"]) == 0
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert state["iteration"] == 12
    capsys.readouterr()
    assert main(["evaluate", str(run), "--episodes", "12", "--json"]) == 0
    out = capsys.readouterr().out
    result = json.loads(out)  # exactly one JSON object on stdout
    assert result["iteration"] == 12 and result["evaluation"]["episodes"] == 12
    assert result["metrics"]["depth"]["n"] == 12
    assert 1 <= result["metrics"]["depth"]["mean"] <= 20  # temper 20 caps the depth
    saved = list((run / "eval").glob("*.json"))
    assert len(saved) == 1 and json.loads(saved[0].read_text()) == result
    assert (
        main(["evaluate", str(run), "--episodes", "12", "--ground-truth", "--policy", "greedy"])
        == 0
    )
    assert "greedy" in capsys.readouterr().out


def test_evaluation_is_reproducible_under_a_seed(tiny_world, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(train_args(tiny_world, run, iterations=4)) == 0
    results = []
    for _ in range(2):
        capsys.readouterr()
        assert main(["evaluate", str(run), "--episodes", "10", "--seed", "5", "--json"]) == 0
        results.append(json.loads(capsys.readouterr().out)["metrics"])
    assert results[0] == results[1]


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "--agent", "hsrl"], "needs --data, --out"),
        (["train", "--resume", "RUN", "--iterations", "3", "--seed", "1"], "drop --seed"),
        (["train", "--resume", "RUN"], "needs --iterations"),
        (
            ["train", "--agent", "hsrl", "--data", "D", "--out", "O", "--set", "nonsense"],
            "KEY=VALUE",
        ),
    ],
)
def test_bad_flags_give_clear_errors(args, message, capsys):
    assert main(args) == 1
    assert message in capsys.readouterr().err


def test_unknown_setting_names_the_field(tiny_world, tmp_path, capsys):
    args = train_args(tiny_world, tmp_path / "run") + ["--set", "agent.entropy_cof=0.2"]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "entropy_cof" in err and "unknown field" in err
    assert not (tmp_path / "run").exists()


def test_hsrl_without_semantic_ids_is_refused(tiny_world, tmp_path, capsys):
    args = [a for a in train_args(tiny_world, tmp_path / "run")]
    i = args.index("--sid")
    del args[i : i + 2]
    assert main(args) == 1
    assert "--sid" in capsys.readouterr().err


def test_existing_run_is_not_overwritten_by_accident(tiny_world, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(train_args(tiny_world, run, iterations=2)) == 0
    before = (run / "checkpoints" / "last.pt").read_bytes()
    assert main(train_args(tiny_world, run, iterations=2)) == 1
    assert "already exists" in capsys.readouterr().err
    assert (run / "checkpoints" / "last.pt").read_bytes() == before


def test_corrupted_or_missing_checkpoint_is_a_clear_error(tiny_world, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(train_args(tiny_world, run, iterations=2)) == 0
    ckpt = run / "checkpoints" / "last.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:200])
    assert main(["train", "--resume", str(run), "--iterations", "2", "--no-progress"]) == 1
    assert "not a readable checkpoint" in capsys.readouterr().err
    ckpt.unlink()
    assert main(["evaluate", str(run), "--episodes", "5"]) == 1
    assert "checkpoint not found" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path / "nowhere")]) == 1
    assert "not a run folder" in capsys.readouterr().err


def test_checkpoint_of_another_architecture_is_refused(tiny_world, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(train_args(tiny_world, run, iterations=2)) == 0
    config = json.loads((run / "config.json").read_text())
    config["agent_config"]["encoder"]["dim"] = 24
    (run / "config.json").write_text(json.dumps(config))
    assert main(["evaluate", str(run), "--episodes", "5"]) == 1
    assert "does not match" in capsys.readouterr().err


def test_run_trained_on_the_ground_truth_evaluates_on_it_by_default(tiny_world, tmp_path, capsys):
    run = tmp_path / "run"
    args = train_args(tiny_world, run, iterations=3)
    i = args.index("--simulator")
    del args[i : i + 2]
    assert main([*args, "--ground-truth"]) == 0
    assert json.loads((run / "config.json").read_text())["env"]["ground_truth"] is True
    capsys.readouterr()
    assert main(["evaluate", str(run), "--episodes", "6", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["evaluation"]["simulator"] == "ground_truth"
    sim = str(tiny_world["simulator"])
    assert main(["evaluate", str(run), "--episodes", "6", "--simulator", sim, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["evaluation"]["simulator"] == sim
