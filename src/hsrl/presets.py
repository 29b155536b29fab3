"""Named starting points for runs: the reference settings, and quick ones for the built-in data.

A preset is a nested dict of overrides applied to :class:`hsrl.train.RunConfig` defaults; flags
(``--set key=value``) are applied after it. Numbers follow SPEC 6.5, 3 and 4.
"""

from __future__ import annotations

import copy
from typing import Any

from hsrl.errors import ConfigError

# Per-agent settings live under "agents" and apply only to that agent's config.
_HSRL_RL4RS = {
    "actor_lr": 1e-3,
    "critic_lr": 1e-3,
    "weight_decay": 1e-5,
    "gamma": 0.9,
    "target_tau": 0.01,
    "entropy_coef": 0.1,
}
_REFERENCE_LOOP = {
    "iterations": 50_000,
    "batch_size": 64,
    "replay_capacity": 100_000,
    "warmup": 2_000,
}

PRESETS: dict[str, dict[str, Any]] = {
    # HSRL's RL4RS reference: 32 users, batch 64, 100k replay, 2k warm-up, lr 1e-3 both, gamma 0.9,
    # target tau 0.01, entropy 0.1, 50k iterations. Baselines keep their own reference defaults.
    "rl4rs": {
        "env": {"num_users": 32, "reward": "rl4rs", "temper": 20.0},
        "train": dict(_REFERENCE_LOOP),
        "agents": {"hsrl": dict(_HSRL_RL4RS), "a2c_flat": dict(_HSRL_RL4RS)},
    },
    # ML1M reference: same loop, actor lr 5e-5, plain mean_with_cost reward.
    "ml1m": {
        "env": {"num_users": 32, "reward": "mean_with_cost", "temper": 20.0},
        "train": dict(_REFERENCE_LOOP),
        "agents": {
            "hsrl": {**_HSRL_RL4RS, "actor_lr": 5e-5},
            "a2c_flat": {**_HSRL_RL4RS, "actor_lr": 5e-5},
        },
    },
    # The main job's budget on the built-in data: the reference loop, shortened to a few minutes
    # on a 2-core CPU. The entropy bonus is 0.01 instead of 0.1: at 0.1 the bonus on the sum of
    # the level entropies holds the policy near uniform for the whole short budget (measured:
    # entropy 8.22 of 8.32 after 1,500 iterations, greedy total reward 5.9 vs 6.6 at 0.01).
    # HSRL learns here with additions kept by measurement over 5 seeds (docs/hsrl.md,
    # "Ablations"): the autoregressive residual, per-item credit, and the token-level item
    # critic, which pulls the policy towards the items it expects to be clicked and picks the
    # slate among the policy's candidates (the method as specified: 2.3 on the learned
    # simulator; with the first two 5.9; with the item critic 9.3).
    "builtin": {
        "env": {"num_users": 32, "reward": "rl4rs", "temper": 20.0},
        "train": {
            "iterations": 3_000,
            "batch_size": 64,
            "replay_capacity": 100_000,
            "warmup": 1_000,
            "log_every": 100,
            "checkpoint_every": 1_000,
        },
        "agents": {
            "hsrl": {
                "entropy_coef": 0.01,
                "residual": "sampled",
                "item_credit": 1.0,
                "item_critic_coef": 1.0,
                "item_critic_temperature": 0.5,
                "slate_assembly": "critic",
                # The item critic also fits the logged records (docs/hsrl.md, screens 11-13
                # and "five seeds 5"): +0.8 on the true users at five seeds, level on the
                # simulator.
                "logged_coef": 3.0,
            },
            "a2c_flat": {"entropy_coef": 0.01},
            # The baselines' tuning grids (docs/hsrl.md, "Baseline tuning"): only supervised's
            # learning rate helped on both columns (1e-3: 6.25 / 4.23 over five seeds; the
            # reference 1e-4 had 4.78 / 3.43 on an earlier build of the same world); the other
            # baselines stay at their reference settings.
            "supervised": {"actor_lr": 1e-3},
        },
    },
}


def preset(name: str, agent: str | None = None) -> dict[str, Any]:
    """The preset's run settings, with the agent-specific part for ``agent`` as agent_config."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r} (choose from {', '.join(PRESETS)})")
    values = copy.deepcopy(PRESETS[name])
    per_agent = values.pop("agents", {})
    if agent is not None and agent in per_agent:
        values["agent_config"] = per_agent[agent]
    return values


def merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Recursive dict merge: values of ``overrides`` win; nested dicts merge."""
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def parse_assignment(text: str) -> dict[str, Any]:
    """``a.b.c=value`` -> {"a": {"b": {"c": value}}}; value is JSON when it parses, else a string.

    ``agent.`` is shorthand for ``agent_config.``.
    """
    import json

    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE, e.g. train.batch_size=128")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    parts = key.split(".")
    if parts[0] == "agent":
        parts[0] = "agent_config"
    nested: dict[str, Any] = {}
    cursor = nested
    for part in parts[:-1]:
        cursor = cursor.setdefault(part, {})
    cursor[parts[-1]] = value
    return nested
