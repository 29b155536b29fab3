"""The evaluation protocol (SPEC 9).

The policy acts greedily for a fixed number of finished episodes on a chosen simulator (the
training simulator, another learned simulator such as one trained on the test split, or the
built-in dataset's ground truth), with a fixed seed. Users are evaluated in cohorts: each cohort
of B users is followed until every one of them has left, and only those first episodes count.
Counting the first N episodes to finish in a stream of replaced users instead would favour short
episodes and bias every metric.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

from hsrl.errors import ConfigError
from hsrl.stats import summarize

METRICS = ("total_reward", "depth", "avg_reward", "click_rate")


class Policy(Protocol):
    def act(self, obs: dict[str, torch.Tensor], *, explore: bool, generator: Any) -> Any: ...


@dataclass(frozen=True)
class EvalSettings:
    episodes: int = 1000
    """Finished episodes (users) to evaluate."""
    seed: int = 0
    cohort_size: int = 1000
    """Users followed in parallel; cohorts are drawn until `episodes` users have finished."""
    max_steps: int = 200
    """Safety cap per episode (the leave model ends episodes well before it by default)."""

    def __post_init__(self) -> None:
        if self.episodes < 1 or self.cohort_size < 1 or self.max_steps < 1:
            raise ConfigError("episodes, cohort size and max steps must be at least 1")


@torch.no_grad()
def run_episodes(env: Any, policy: Policy, settings: EvalSettings) -> dict[str, torch.Tensor]:
    """Per-episode metrics (each a (episodes,) tensor) of ``policy`` acting greedily in ``env``."""
    generator = torch.Generator(device=env.device).manual_seed(settings.seed)
    collected: dict[str, list[torch.Tensor]] = {m: [] for m in METRICS}
    done_count = 0
    cohort = 0
    while done_count < settings.episodes:
        obs, _ = env.reset(seed=settings.seed * 100_003 + cohort)
        batch = env.num_users
        active = torch.ones(batch, dtype=torch.bool, device=env.device)
        total = torch.zeros(batch, device=env.device)
        depth = torch.zeros(batch, device=env.device)
        clicks = torch.zeros(batch, device=env.device)
        shown = torch.zeros(batch, device=env.device)
        for _ in range(settings.max_steps):
            action = policy.act(obs, explore=False, generator=generator)
            obs, reward, terminated, truncated, info = env.step(action.slate)
            a = active.float()
            total += reward * a
            depth += a
            clicks += info["response"].sum(dim=-1) * a
            shown += info["response"].shape[-1] * a
            active &= ~(terminated | truncated)
            if not bool(active.any()):
                break
        collected["total_reward"].append(total)
        collected["depth"].append(depth)
        collected["avg_reward"].append(total / depth.clamp(min=1))
        collected["click_rate"].append(clicks / shown.clamp(min=1))
        done_count += batch
        cohort += 1
    return {m: torch.cat(v)[: settings.episodes].cpu() for m, v in collected.items()}


def summarize_episodes(episodes: dict[str, torch.Tensor]) -> dict[str, dict[str, float]]:
    return {metric: summarize(values) for metric, values in episodes.items()}


def evaluate_run(
    run_dir: str | Path,
    settings: EvalSettings,
    *,
    simulator: str | Path | None = None,
    ground_truth: bool = False,
    split: str | None = None,
    device: str | None = None,
    policy: str = "agent",
) -> dict[str, Any]:
    """Evaluate a trained run (or a reference policy in the run's setting); returns a result dict.

    ``policy`` is "agent" (the run's trained agent), "random" or "greedy" (myopic greedy under the
    evaluation simulator).
    """
    from hsrl.agents.reference import reference_policy
    from hsrl.train import build_env, load_agent

    parts, iteration = load_agent(run_dir, device=device)
    config = parts.config
    dataset_splits = _dataset_splits(config.data)
    if split is None:
        split = "test" if "test" in dataset_splits else config.env.split
    elif split not in dataset_splits:
        raise ConfigError(f"--split {split!r}: the dataset has {', '.join(dataset_splits)}")
    sim_dir = simulator if simulator is not None else config.simulator
    if sim_dir is None and not ground_truth:
        if not config.env.ground_truth:
            raise ConfigError("no simulator to evaluate on: pass --simulator DIR or --ground-truth")
        ground_truth = True  # a run trained on the true users is evaluated on them by default
    env = build_env(
        config.data,
        sim_dir,
        config.env,
        parts.device,
        split=split,
        num_users=min(settings.cohort_size, settings.episodes),
        ground_truth=ground_truth,
    )
    parts.catalogue.features = env.item_features
    actor = parts.agent if policy == "agent" else reference_policy(policy, env, parts.catalogue)
    start = time.perf_counter()
    episodes = run_episodes(env, actor, settings)
    return {
        "run": str(Path(run_dir)),
        "agent": config.agent if policy == "agent" else policy,
        "policy": policy,
        "seed": config.seed,
        "iteration": iteration,
        "evaluation": {
            "simulator": "ground_truth" if ground_truth else str(sim_dir),
            "split": split,
            "episodes": settings.episodes,
            "seed": settings.seed,
            "device": str(parts.device),
            "wall_s": round(time.perf_counter() - start, 3),
        },
        "metrics": summarize_episodes(episodes),
    }


def _dataset_splits(data: str | Path) -> list[str]:
    from hsrl.data.prepared import read_manifest

    return list(read_manifest(data)["splits"])


def format_result(result: dict[str, Any]) -> str:
    ev = result["evaluation"]
    lines = [
        f"{result['agent']} ({result['run']}, iteration {result['iteration']}) on "
        f"{ev['simulator']} / split {ev['split']}, {ev['episodes']} episodes, seed {ev['seed']}",
    ]
    for metric, s in result["metrics"].items():
        lines.append(
            f"  {metric:<13} {s['mean']:9.4f}  95% CI [{s['ci95_low']:.4f}, {s['ci95_high']:.4f}]"
            f"  std {s['std']:.4f}"
        )
    return "\n".join(lines)
