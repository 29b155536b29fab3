"""Immediate rewards: functions of the (B, K) 0/1 response tensor, chosen by name.

The registry is a plain dict, so a user adds a reward with :func:`register_reward` and names it
in ``EnvConfig.reward``; nothing is looked up with ``eval``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from hsrl.errors import ConfigError

RewardFn = Callable[[torch.Tensor], torch.Tensor]

NO_CLICK_COST = -0.1
"""Value of an exposed item without a positive response in ``mean_with_cost``."""
SWEET_POINT = 0.9
"""Target of the RL4RS sweet-point transform."""

_REWARDS: dict[str, RewardFn] = {}


def register_reward(name: str) -> Callable[[RewardFn], RewardFn]:
    """Decorator: make ``fn(response (B, K)) -> reward (B,)`` available as ``name``."""

    def add(fn: RewardFn) -> RewardFn:
        if name in _REWARDS:
            raise ConfigError(f"reward {name!r} is already registered")
        _REWARDS[name] = fn
        return fn

    return add


def get_reward(name: str) -> RewardFn:
    if name not in _REWARDS:
        raise ConfigError(f"unknown reward {name!r} (known: {', '.join(sorted(_REWARDS))})")
    return _REWARDS[name]


def reward_names() -> tuple[str, ...]:
    return tuple(sorted(_REWARDS))


@register_reward("mean_with_cost")
def mean_with_cost(response: torch.Tensor) -> torch.Tensor:
    """Mean over the slate of 1 for a positive response and -0.1 otherwise (ML1M)."""
    value = torch.where(response > 0, 1.0, NO_CLICK_COST).to(torch.float32)
    return value.mean(dim=1)


@register_reward("rl4rs")
def sweet_point(response: torch.Tensor) -> torch.Tensor:
    """RL4RS: r = 1 - |mean_with_cost - 0.9|; the best slate is not one where all is clicked."""
    return 1.0 - (mean_with_cost(response) - SWEET_POINT).abs()
