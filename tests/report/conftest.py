"""Fixtures of the report and sweep tests: a tiny prepared world, built once per session."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # fake_runs helpers


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    """One torch thread: these tensors are tiny, and the test machine's cores are shared."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _hsrl(*argv: str) -> None:
    from hsrl.cli import main

    code = main(list(argv))
    assert code == 0, f"hsrl {' '.join(argv)} exited with {code}"


@pytest.fixture(scope="session")
def report_world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A 60-user built-in dataset, a one-epoch simulator and a 2 x 8 SID table, via the CLI."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("world")
    world = {"data": root / "data", "simulator": root / "simulator", "sid": root / "sid"}
    try:
        _hsrl(
            "data", "prepare", "builtin", "--out", str(world["data"]),
            "--option", "num_users=60", "--option", "num_items=60",
        )  # fmt: skip
        _hsrl(
            "simulator", "train", "--data", str(world["data"]), "--out",
            str(world["simulator"]), "--epochs", "1", "--no-progress",
        )  # fmt: skip
        _hsrl(
            "sid", "build", "--data", str(world["data"]), "--out", str(world["sid"]),
            "--levels", "2", "--codes", "8",
        )  # fmt: skip
    finally:
        torch.set_num_threads(before)
    return world


def tiny_sweep(world: dict[str, Path], **changes) -> dict:
    """A sweep of 2 trials x 1 seed with very small budgets (seconds per trial)."""
    sweep = {
        "name": "tiny",
        "base": {
            "data": str(world["data"]),
            "simulator": str(world["simulator"]),
            "sid": str(world["sid"]),
            "preset": "builtin",
            "iterations": 20,
            "set": {
                "train.warmup": 16,
                "train.batch_size": 16,
                "train.log_every": 5,
                "train.tensorboard": False,
                "env.num_users": 8,
                "agent.encoder": {"dim": 16, "heads": 2, "feedforward": 32},
            },
        },
        "agents": ["hsrl", "ddpg"],
        "seeds": [0],
        "evaluation": {"episodes": 20, "simulator": True, "ground_truth": True},
    }
    sweep.update(changes)
    return sweep
