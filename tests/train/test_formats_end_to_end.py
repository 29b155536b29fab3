"""HSRL trains, resumes and evaluates from the CLI on RL4RS-format and ML1M-format data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from hsrl.cli import main

GENRES = ["Action", "Comedy", "Drama", "Horror", "Romance", "Thriller"]


def write_synthetic_ml1m(
    folder: Path, users: int = 40, movies: int = 80, per_user: int = 60
) -> Path:
    """A small random dataset in the exact ml-1m `.dat` formats (MovieLens is not shipped)."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    lines = []
    for movie in range(1, movies + 1):
        genres = "|".join(sorted(rng.choice(GENRES, size=rng.integers(1, 3), replace=False)))
        lines.append(f"{movie}::Movie {movie} (1999)::{genres}")
    (folder / "movies.dat").write_text("\n".join(lines) + "\n", encoding="latin-1")
    ages = [1, 18, 25, 35, 45, 50, 56]
    lines = [f"{u}::{'MF'[u % 2]}::{ages[u % 7]}::{u % 21}::0000{u}" for u in range(1, users + 1)]
    (folder / "users.dat").write_text("\n".join(lines) + "\n", encoding="latin-1")
    lines = []
    for u in range(1, users + 1):
        seen = rng.choice(np.arange(1, movies + 1), size=per_user, replace=False)
        for t, movie in enumerate(seen):
            lines.append(f"{u}::{movie}::{rng.integers(1, 6)}::{978300000 + 60 * t}")
    (folder / "ratings.dat").write_text("\n".join(lines) + "\n", encoding="latin-1")
    return folder


def run_hsrl(tmp_path: Path, data: Path, codes: int) -> dict:
    sim, sid, run = tmp_path / "sim", tmp_path / "sid", tmp_path / "run"
    assert (
        main(
            [
                "simulator",
                "train",
                "--data",
                str(data),
                "--out",
                str(sim),
                "--epochs",
                "1",
                "--no-progress",
            ]
        )
        == 0
    )
    assert (
        main(["sid", "build", "--data", str(data), "--out", str(sid), "--codes", str(codes)]) == 0
    )
    args = [
        "train", "--agent", "hsrl", "--data", str(data), "--simulator", str(sim), "--sid", str(sid),
        "--out", str(run), "--iterations", "6", "--no-progress", "--set", "train.warmup=16",
        "--set", "train.batch_size=8", "--set", "env.num_users=4", "--set", "train.tensorboard=false",
    ]  # fmt: skip
    assert main(args) == 0
    assert main(["train", "--resume", str(run), "--iterations", "3", "--no-progress"]) == 0
    assert main(["evaluate", str(run), "--episodes", "8", "--json"]) == 0
    return json.loads((run / "config.json").read_text())


@pytest.mark.slow
def test_hsrl_on_the_real_rl4rs_fragment(rl4rs_prepared, tmp_path, capsys):
    run_hsrl(tmp_path, rl4rs_prepared, codes=16)
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["iteration"] == 9 and result["evaluation"]["split"] == "test"
    assert result["metrics"]["total_reward"]["n"] == 8


@pytest.mark.slow
def test_hsrl_on_ml1m_format_data(tmp_path, capsys):
    raw = write_synthetic_ml1m(tmp_path / "ml-1m")
    data = tmp_path / "data"
    assert main(["data", "prepare", "ml1m", "--raw", str(raw), "--out", str(data)]) == 0
    run_hsrl(tmp_path, data, codes=8)
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["iteration"] == 9
    # ML1M uses the plain mean_with_cost reward: per-step rewards are in [-0.1, 1].
    assert -0.1 <= result["metrics"]["avg_reward"]["mean"] <= 1.0
