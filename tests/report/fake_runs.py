"""Hand-made run folders (config, log, evaluations) with known numbers, for report tests."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any


def run_config(agent: str, seed: int, data: str = "/data/builtin", **env: Any) -> dict[str, Any]:
    """A config.json like `hsrl train` writes (only the fields the report reads need be right)."""
    return {
        "agent": agent,
        "data": data,
        "simulator": "/data/sim",
        "sid": "/data/sid",
        "seed": seed,
        "device": "cpu",
        "agent_config": {},
        "env": {"num_users": 32, "split": "train", "reward": "rl4rs", "temper": 20.0, **env},
        "train": {"iterations": 3000, "batch_size": 64, "warmup": 1000, "log_every": 100},
    }


def evaluation(
    mean: float,
    *,
    std: float = 1.0,
    n: int = 100,
    simulator: str = "/data/sim",
    split: str = "test",
    policy: str = "agent",
    iteration: int = 3000,
    agent: str = "hsrl",
) -> dict[str, Any]:
    """An eval/*.json result; every metric gets ``mean`` scaled per metric, std and n given."""
    half = 1.96 * std / math.sqrt(n)
    metrics = {}
    for metric, scale in (
        ("total_reward", 1.0),
        ("depth", 1.1),
        ("avg_reward", 0.05),
        ("click_rate", 0.04),
    ):
        m, s, h = mean * scale, std * scale, half * scale
        metrics[metric] = {"mean": m, "std": s, "n": n, "ci95_low": m - h, "ci95_high": m + h}
    return {
        "run": "x",
        "agent": agent if policy == "agent" else policy,
        "policy": policy,
        "seed": 0,
        "iteration": iteration,
        "evaluation": {
            "simulator": simulator,
            "split": split,
            "episodes": n,
            "seed": 0,
            "device": "cpu",
            "wall_s": 1.0,
        },
        "metrics": metrics,
    }


def write_run(
    folder: Path,
    config: dict[str, Any] | None,
    log: list[dict[str, Any]] | None = None,
    evaluations: dict[str, dict[str, Any]] | None = None,
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    if config is not None:
        (folder / "config.json").write_text(json.dumps(config))
    if log is not None:
        (folder / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in log))
    for name, result in (evaluations or {}).items():
        (folder / "eval").mkdir(exist_ok=True)
        (folder / "eval" / f"{name}.json").write_text(json.dumps(result))
    return folder


def learning_log(final: float, seed: int, iterations: int = 3000, every: int = 100) -> list[dict]:
    """A plausible training log: reward and depth rising towards ``final`` with seeded noise."""
    import random

    rng = random.Random(seed * 7919 + int(final * 100))
    records = []
    for it in range(every, iterations + 1, every):
        progress = 1 - math.exp(-3 * it / iterations)
        reward = 2.0 + (final - 2.0) * progress + rng.gauss(0, 0.35)
        records.append(
            {
                "iteration": it,
                "env_steps": it * 32,
                "time_s": 1.0 + it,
                "perf/iterations_per_s": 50.0,
                "loss/critic": 0.1,
                "episode/count": 40,
                "episode/total_reward": reward,
                "episode/depth": 1.1 * reward + rng.gauss(0, 0.2),
            }
        )
    return records
