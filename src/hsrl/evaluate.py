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

from hsrl.errors import ConfigError, HsrlError
from hsrl.stats import summarize

METRICS = ("total_reward", "depth", "avg_reward", "click_rate")


class Policy(Protocol):
    def act(self, obs: dict[str, torch.Tensor], *, explore: bool, generator: Any) -> Any: ...


MAX_EPISODES = 10_000_000
"""Most episodes one evaluation runs (a bound against a mistyped count)."""


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
        if self.episodes > MAX_EPISODES:
            raise ConfigError(
                f"episodes: at most {MAX_EPISODES:,}, got {self.episodes:,} (the 95% interval "
                "of a mean is already about 0.1% of its spread at a million)"
            )


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
    ranker: str | Path | None = None,
    rank_by_truth: bool = False,
) -> dict[str, Any]:
    """Evaluate a trained run (or a reference policy in the run's setting); returns a result dict.

    ``policy`` is "agent" (the run's trained agent), or a reference policy: "random", "greedy"
    or "oracle" (myopic greedy / reward-optimal under the evaluation simulator, or under the
    ``ranker`` simulator / the ground truth with ``rank_by_truth``).
    """
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
    parts.catalogue.layout = env.layout
    if policy == "agent":
        if ranker is not None or rank_by_truth:
            raise ConfigError("--ranker applies to the greedy and oracle policies only")
        actor = parts.agent
    else:
        actor = _reference_actor(policy, env, parts.catalogue, config.data, ranker, rank_by_truth)
    start = time.perf_counter()
    episodes = run_episodes(env, actor, settings)
    return {
        "run": str(Path(run_dir)),
        "agent": config.agent if policy == "agent" else policy_label(policy, ranker, rank_by_truth),
        "policy": policy,
        "seed": config.seed,
        "iteration": iteration,
        "evaluation": _evaluation_info(
            ground_truth,
            sim_dir,
            split,
            settings,
            parts.device,
            ranker,
            rank_by_truth,
            start,
            config.env.layout,
        ),
        "metrics": summarize_episodes(episodes),
    }


def policy_label(
    policy: str, ranker: str | Path | None, rank_by_truth: bool, epsilon: float = 0.0
) -> str:
    """Table name of a reference policy: "greedy", "greedy (truth)", "oracle (sim NAME)",
    "greedy (truth) eps=0.5"."""
    label = policy
    if rank_by_truth:
        label = f"{policy} (truth)"
    elif ranker is not None:
        label = f"{policy} (sim {Path(ranker).name})"
    return f"{label} eps={epsilon:g}" if epsilon > 0 else label


def _evaluation_info(
    ground_truth: bool,
    sim_dir: str | Path | None,
    split: str,
    settings: EvalSettings,
    device: Any,
    ranker: str | Path | None,
    rank_by_truth: bool,
    start: float,
    layout: str = "free",
) -> dict[str, Any]:
    info = {
        "simulator": "ground_truth" if ground_truth else str(sim_dir),
        "ranker": "ground_truth" if rank_by_truth else (None if ranker is None else str(ranker)),
        "split": split,
        "episodes": settings.episodes,
        "seed": settings.seed,
        "device": str(device),
        "wall_s": round(time.perf_counter() - start, 3),
    }
    if layout != "free":
        info["layout"] = layout
    return info


def _reference_actor(
    policy: str,
    env: Any,
    catalogue: Any,
    data: str | Path,
    ranker: str | Path | None,
    rank_by_truth: bool,
    epsilon: float = 0.0,
) -> Any:
    """A reference policy in ``env``, ranking by ``ranker`` (a simulator folder), the ground
    truth, or (neither) the env's own model; mixed with random slates at rate ``epsilon``."""
    from hsrl.agents.reference import reference_policy
    from hsrl.data.prepared import load_prepared
    from hsrl.simulator.env import make_backend

    if ranker is not None and rank_by_truth:
        raise ConfigError("give --ranker SIM_DIR or --rank-by-truth, not both")
    backend = None
    if ranker is not None or rank_by_truth:
        if policy == "random":
            raise ConfigError("--ranker applies to the greedy and oracle policies only")
        dataset = load_prepared(data, splits=[])
        try:
            backend = make_backend(dataset, env.record_sessions, ranker, env.device)
        except HsrlError as exc:
            raise type(exc)(f"--ranker: {exc}") from exc
    return reference_policy(policy, env, catalogue, backend, epsilon)


def evaluate_policy(
    policy: str,
    data: str | Path,
    settings: EvalSettings,
    *,
    simulator: str | Path | None = None,
    ground_truth: bool = False,
    ranker: str | Path | None = None,
    rank_by_truth: bool = False,
    split: str | None = None,
    device: str = "cpu",
    layout: str = "free",
    epsilon: float = 0.0,
) -> dict[str, Any]:
    """Evaluate a reference policy (random, greedy, oracle) on a dataset, with no run folder.

    With ``epsilon`` > 0 greedy and oracle show a uniformly random slate instead, for each user
    and step with that probability (policies of graded quality).

    The env has the default env settings (reward from the dataset, T0 = 20) and the page
    ``layout`` ("free" or "rows"), cohorts of ``settings.cohort_size`` users, on ``simulator``
    or the ground truth, over ``split`` (default: test when the dataset has it).
    """
    from hsrl.agents.base import Catalogue
    from hsrl.agents.reference import REFERENCE_POLICIES
    from hsrl.device import resolve_device
    from hsrl.train import EnvSettings, build_env

    if policy not in REFERENCE_POLICIES:
        raise ConfigError(
            f"--policy {policy!r}: choose from {', '.join(REFERENCE_POLICIES)} (or give a RUN_DIR)"
        )
    if (simulator is None) == (not ground_truth):
        raise ConfigError("give --simulator DIR or --ground-truth (exactly one)")
    dataset_splits = _dataset_splits(data)
    if split is None:
        split = "test" if "test" in dataset_splits else "train"
    elif split not in dataset_splits:
        raise ConfigError(f"--split {split!r}: the dataset has {', '.join(dataset_splits)}")
    torch_device = resolve_device(device)
    env = build_env(
        data,
        simulator,
        EnvSettings(layout=layout),
        torch_device,
        split=split,
        num_users=min(settings.cohort_size, settings.episodes),
        ground_truth=ground_truth,
    )
    catalogue = Catalogue(env.item_features, layout=env.layout)
    if epsilon and policy == "random":
        raise ConfigError("--epsilon mixes greedy or oracle with random slates, not random")
    actor = _reference_actor(policy, env, catalogue, data, ranker, rank_by_truth, epsilon)
    start = time.perf_counter()
    episodes = run_episodes(env, actor, settings)
    return {
        "run": None,
        "agent": policy_label(policy, ranker, rank_by_truth, epsilon),
        "policy": policy,
        "seed": None,
        "iteration": None,
        "data": str(data),
        "evaluation": _evaluation_info(
            ground_truth,
            simulator,
            split,
            settings,
            torch_device,
            ranker,
            rank_by_truth,
            start,
            layout,
        ),
        "metrics": summarize_episodes(episodes),
    }


def _dataset_splits(data: str | Path) -> list[str]:
    from hsrl.data.prepared import read_manifest

    return list(read_manifest(data)["splits"])


def format_result(result: dict[str, Any]) -> str:
    ev = result["evaluation"]
    where = (
        f"{result['run']}, iteration {result['iteration']}"
        if result.get("run")
        else f"data {result.get('data')}"
    )
    lines = [
        f"{result['agent']} ({where}) on "
        f"{ev['simulator']} / split {ev['split']}, {ev['episodes']} episodes, seed {ev['seed']}",
    ]
    for metric, s in result["metrics"].items():
        lines.append(
            f"  {metric:<13} {s['mean']:9.4f}  95% CI [{s['ci95_low']:.4f}, {s['ci95_high']:.4f}]"
            f"  std {s['std']:.4f}"
        )
    return "\n".join(lines)
