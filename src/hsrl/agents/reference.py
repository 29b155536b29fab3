"""Reference points for every results table: a uniformly random policy and a myopic greedy one.

They act through the same interface as trained agents but do not learn.
"""

from __future__ import annotations

from typing import Any

import torch

from hsrl.agents.base import Action, Catalogue
from hsrl.errors import ConfigError
from hsrl.slate import greedy_slate, uniform_slate

REFERENCE_POLICIES = ("random", "greedy")


class RandomPolicy:
    """K distinct live items uniformly at random."""

    def __init__(self, catalogue: Catalogue, slate_size: int):
        self.catalogue = catalogue
        self.slate_size = slate_size

    def act(self, obs: dict[str, torch.Tensor], *, explore: bool, generator: Any) -> Action:
        batch = obs["history"].shape[0]
        slate = uniform_slate(self.catalogue.live, batch, self.slate_size, generator)
        return Action(slate, slate)


class MyopicGreedyPolicy:
    """The K live items with the highest immediate click probability under the env's simulator.

    It optimises only the next response, ignoring how the slate changes the user's future (their
    history, fatigue and patience): the natural foil for long-term RL.
    """

    def __init__(self, env: Any, catalogue: Catalogue, slate_size: int):
        self.env = env
        self.catalogue = catalogue
        self.slate_size = slate_size

    def act(self, obs: dict[str, torch.Tensor], *, explore: bool, generator: Any) -> Action:
        # The env's current users are the ones ``obs`` describes: the env scores them itself.
        scores = self.env.item_scores()  # (B, N + 1) logits: same ranking as p(click)
        scores = scores.masked_fill(~self.catalogue.live, float("-inf"))
        slate = greedy_slate(scores, self.slate_size)
        return Action(slate, slate)


def reference_policy(
    name: str, env: Any, catalogue: Catalogue
) -> RandomPolicy | MyopicGreedyPolicy:
    if name == "random":
        return RandomPolicy(catalogue, env.slate_size)
    if name == "greedy":
        return MyopicGreedyPolicy(env, catalogue, env.slate_size)
    raise ConfigError(
        f"unknown reference policy {name!r} (choose from {', '.join(REFERENCE_POLICIES)})"
    )
