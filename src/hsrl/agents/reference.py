"""Reference points for every results table: random, myopic greedy and the myopic oracle.

They act through the same interface as trained agents but do not learn.

- ``random``: K distinct live items uniformly at random.
- ``greedy``: the K live items with the highest immediate click probability, the best in slot 1.
- ``oracle``: the slate with the highest *expected immediate reward* (myopic and reward-optimal).
  With the RL4RS sweet-point reward 8 clicks of 9 pay more than 9, so this is not ``greedy``.

``greedy`` and ``oracle`` rank by a *ranker*: by default the env's own response model; given
another backend (a learned simulator, or the ground truth), they rank by it while acting in the
env. That is the transfer test: how well do choices made under one model do under another?

The oracle's search (:func:`oracle_slates`). Clicks of a slate are independent given their
probabilities, and the rewards used here depend only on the number of clicks C, so the expected
reward of a slate is ``sum_c P(C = c) r(c)`` with P the Poisson-binomial law of its click
probabilities (an exact K-step recursion). Holding the other K - 1 slots fixed, the expected
reward is linear in the probability of slot k: ``alpha_k + beta_k p_k``. So at an optimum every
slot holds either an item at least as likely to be clicked as every item left out (beta_k > 0)
or one at most as likely as all of them (beta_k < 0): the optimal *set* is the top m plus the
bottom K - m items of the ranking, for some m in 0..K (click probabilities increase with the
item's logit in every slot). The oracle scores all K + 1 such sets exactly. For a position-free
model that is the exact optimum. With a slot term, each set is laid out with its top items in
the best slots (in order) and its bottom items in the worst; the two best sets are then improved
by exchanging the items of two slots while any exchange raises the expected reward (a local
search over the order; the test suite compares the result with exhaustive search on small
cases).

Under a page layout (:class:`~hsrl.slate.PageLayout`) the same argument holds within each row:
row r holds the top m_r plus the bottom n_r - m_r of its own items, so the oracle scores all
prod_r (n_r + 1) such slates (64 for three rows of three) and exchanges items only between slots
of one row. ``random`` and ``greedy`` pick each row's items among that row's items.
"""

from __future__ import annotations

from typing import Any

import torch

from hsrl.agents.base import Action, Catalogue
from hsrl.errors import ConfigError
from hsrl.slate import PageLayout, greedy_slate, uniform_slate

REFERENCE_POLICIES = ("random", "greedy", "oracle")


class RandomPolicy:
    """K distinct live items uniformly at random."""

    def __init__(self, catalogue: Catalogue, slate_size: int):
        self.catalogue = catalogue
        self.slate_size = slate_size

    def act(self, obs: dict[str, torch.Tensor], *, explore: bool, generator: Any) -> Action:
        batch = obs["history"].shape[0]
        slate = uniform_slate(
            self.catalogue.live, batch, self.slate_size, generator, self.catalogue.layout
        )
        return Action(slate, slate)


class _RankingPolicy:
    """A myopic policy that scores the env's current users with a ranker backend."""

    def __init__(self, env: Any, catalogue: Catalogue, slate_size: int, ranker: Any = None):
        self.env = env
        self.catalogue = catalogue
        self.slate_size = slate_size
        self.ranker = ranker

    def scores(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Item logits (B, N + 1) with -inf for items that cannot be shown, slot logits (K,)."""
        # The env's current users are the ones ``obs`` describes: score them from its state.
        if self.ranker is None:
            items, slots = self.env.item_scores(), self.env.slot_scores()
        else:
            with torch.no_grad():
                items = self.ranker.item_logits(self.env.user_state()).clone()
            slot_logits = getattr(self.ranker, "slot_logits", None)
            slots = slot_logits(self.slate_size) if slot_logits is not None else None
            if slots is None:
                slots = torch.zeros(self.slate_size, device=items.device)
            slots = slots.to(items.device, torch.float32)
        return items.masked_fill(~self.catalogue.live, float("-inf")), slots


class MyopicGreedyPolicy(_RankingPolicy):
    """The K live items with the highest immediate click probability under the ranker.

    It optimises only the next response, ignoring how the slate changes the user's future (their
    history, fatigue and patience): the natural foil for long-term RL. The best item is shown in
    slot 1, the next in slot 2, and so on.
    """

    def act(self, obs: dict[str, torch.Tensor], *, explore: bool, generator: Any) -> Action:
        items, _ = self.scores()
        slate = greedy_slate(items, self.slate_size, self.catalogue.layout)
        return Action(slate, slate)


class MyopicOraclePolicy(_RankingPolicy):
    """The slate with the highest expected immediate reward under the ranker (module docs)."""

    def __init__(self, env: Any, catalogue: Catalogue, slate_size: int, ranker: Any = None):
        super().__init__(env, catalogue, slate_size, ranker)
        self.reward_of_clicks = count_reward(env.reward_fn, slate_size, catalogue.device)

    def act(self, obs: dict[str, torch.Tensor], *, explore: bool, generator: Any) -> Action:
        items, slots = self.scores()
        slate = oracle_slates(items, slots, self.reward_of_clicks, layout=self.catalogue.layout)
        return Action(slate, slate)


def count_reward(reward_fn: Any, slate_size: int, device: torch.device) -> torch.Tensor:
    """r(c) for c = 0..K clicks (K + 1,); the reward must depend on the number of clicks only."""
    k = slate_size
    first = (torch.arange(k).unsqueeze(0) < torch.arange(k + 1).unsqueeze(1)).float()  # (K+1, K)
    last = first.flip(1)
    values = reward_fn(first.to(device)).float()
    if not torch.allclose(values, reward_fn(last.to(device)).float(), atol=1e-6):
        raise ConfigError(
            "the oracle policy needs a reward that depends only on the number of clicks"
        )
    return values


def click_count_law(prob: torch.Tensor) -> torch.Tensor:
    """P(C = c) for c = 0..K of K independent clicks: prob (..., K) -> (..., K + 1)."""
    law = torch.zeros((*prob.shape[:-1], prob.shape[-1] + 1), device=prob.device, dtype=prob.dtype)
    law[..., 0] = 1.0
    for k in range(prob.shape[-1]):
        p = prob[..., k : k + 1]
        shifted = torch.cat((torch.zeros_like(p), law[..., :-1]), dim=-1)
        law = law * (1 - p) + shifted * p
    return law


def expected_reward(prob: torch.Tensor, reward_of_clicks: torch.Tensor) -> torch.Tensor:
    """Expected reward (...,) of slates with click probabilities prob (..., K)."""
    return click_count_law(prob) @ reward_of_clicks.to(prob.dtype)


def candidate_slates(
    item_logits: torch.Tensor,
    slot_logits: torch.Tensor,
    layout: PageLayout | None = None,
    check: bool = True,
) -> torch.Tensor:
    """The oracle's candidate slates (B, M, K) for a ranking ``item_logits`` (B, N + 1) (-inf =
    not allowed): per row, the top m plus the bottom n - m allowed items for every m, the
    better-ranked items in the slots of higher ``slot_logits`` (K,); every combination of one
    filling per row (M = K + 1 without a layout). ``check`` off skips the host-side check that
    each row has enough allowed items (for callers that guarantee it, such as graphed acting)."""
    k = slot_logits.shape[0]
    device = item_logits.device
    if layout is None:
        rows = [(torch.arange(k, device=device), item_logits)]
    else:
        rows = [
            (layout.slots_of(r), item_logits.masked_fill(layout.item_row != r, float("-inf")))
            for r in range(1, layout.num_rows + 1)
        ]
    # Per row: its n + 1 candidate fillings (B, n + 1, n), laid out in the row's slots.
    fillings = [_row_fillings(logits, slots, slot_logits, check) for slots, logits in rows]
    # Every combination of one filling per row: (M, R) indices into the rows' fillings.
    choice = torch.cartesian_prod(
        *[torch.arange(f.shape[1], device=device) for f in fillings]
    ).view(-1, len(fillings))
    batch = item_logits.shape[0]
    slates = torch.empty((batch, choice.shape[0], k), dtype=torch.long, device=device)
    for r, ((slots, _), filling) in enumerate(zip(rows, fillings)):
        slates[..., slots] = filling[:, choice[:, r]]
    return slates


def oracle_slates(
    item_logits: torch.Tensor,
    slot_logits: torch.Tensor,
    reward_of_clicks: torch.Tensor,
    max_rounds: int = 20,
    refine: int = 2,
    layout: PageLayout | None = None,
) -> torch.Tensor:
    """Myopic reward-optimal slates (B, K) for item logits (B, N + 1) (-inf = not allowed) and a
    slot term (K,): see the module docs for the search. The ``refine`` best candidate slates
    are improved by slot exchanges (within rows under a ``layout``)."""
    k = slot_logits.shape[0]
    slates = candidate_slates(item_logits, slot_logits, layout)
    batch, count = slates.shape[:2]
    logits = item_logits.unsqueeze(1).expand(-1, count, -1).gather(2, slates).double()
    slots = slot_logits.double()
    values = expected_reward(torch.sigmoid(logits + slots), reward_of_clicks.double())
    keep = values.topk(min(refine, count), dim=1).indices  # (B, R)
    best_value = torch.full((batch,), -torch.inf, device=item_logits.device, dtype=torch.float64)
    best = slates[:, 0]
    pairs = _exchange_pairs(layout, k, item_logits.device)
    for r in range(keep.shape[1]):
        pick = keep[:, r].view(batch, 1, 1).expand(-1, 1, k)
        slate, value = _improve_by_exchanges(
            slates.gather(1, pick).squeeze(1),
            logits.gather(1, pick).squeeze(1),
            slots,
            reward_of_clicks,
            max_rounds,
            pairs,
        )
        better = value > best_value
        best = torch.where(better.unsqueeze(1), slate, best)
        best_value = torch.where(better, value, best_value)
    return best


def _row_fillings(
    item_logits: torch.Tensor, slots: torch.Tensor, slot_logits: torch.Tensor, check: bool = True
) -> torch.Tensor:
    """The n + 1 fillings (B, n + 1, n) of n slots: filling m holds the top m plus the bottom
    n - m allowed items, the better-ranked items in the slots with the higher slot logit."""
    n = slots.numel()
    if check and int(torch.isfinite(item_logits).sum(dim=1).min()) < n:
        raise ConfigError(f"the oracle needs at least {n} items that can be shown in each row")
    best_first = item_logits.topk(n, dim=1).indices  # the top n allowed items, best first
    worst_first = (
        item_logits.masked_fill(~torch.isfinite(item_logits), torch.inf)
        .topk(n, dim=1, largest=False)
        .indices
    )  # the bottom n allowed items, worst first
    # Filling m in rank order (best first): position j >= m holds the (n - 1 - j)-th worst item.
    m = torch.arange(n + 1, device=item_logits.device).view(1, -1, 1)
    j = torch.arange(n, device=item_logits.device).view(1, 1, -1)
    ranked = torch.where(j < m, best_first.unsqueeze(1), worst_first.flip(1).unsqueeze(1))
    # Best-ranked item in the row's best slot, and so on down.
    order = slot_logits[slots].argsort(descending=True)
    filling = torch.empty_like(ranked)
    filling[..., order] = ranked
    return filling


def _exchange_pairs(layout: PageLayout | None, k: int, device: torch.device) -> torch.Tensor:
    """The slot pairs (P, 2) whose items may be exchanged: any two, or two of one row."""
    pairs = torch.combinations(torch.arange(k, device=device), 2)
    if layout is not None:
        pairs = pairs[layout.slot_row[pairs[:, 0]] == layout.slot_row[pairs[:, 1]]]
    return pairs


def _improve_by_exchanges(
    slate: torch.Tensor,
    logits: torch.Tensor,
    slots: torch.Tensor,
    reward_of_clicks: torch.Tensor,
    max_rounds: int,
    pairs: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exchange the items of two slots (``pairs`` (P, 2)) while that raises the expected reward
    (best exchange per round, every user at once); returns the slates and expected rewards."""
    reward = reward_of_clicks.double()
    value = expected_reward(torch.sigmoid(logits + slots), reward)
    k = slots.shape[0]
    if bool((slots == slots[0]).all()) or pairs.shape[0] == 0:
        return slate, value  # position-free: the order does not matter
    perms = torch.arange(k, device=slate.device).repeat(pairs.shape[0], 1)  # (P, K)
    rows = torch.arange(pairs.shape[0], device=slate.device)
    perms[rows, pairs[:, 0]] = pairs[:, 1]
    perms[rows, pairs[:, 1]] = pairs[:, 0]
    for _ in range(max_rounds):
        swapped = logits[:, perms]  # (B, P, K)
        values = expected_reward(torch.sigmoid(swapped + slots), reward)  # (B, P)
        top, which = values.max(dim=1)
        gain = top > value + 1e-12
        if not bool(gain.any()):
            break
        chosen = perms[which]  # (B, K)
        logits = torch.where(gain.unsqueeze(1), logits.gather(1, chosen), logits)
        slate = torch.where(gain.unsqueeze(1), slate.gather(1, chosen), slate)
        value = torch.where(gain, top, value)
    return slate, value


class RandomMixPolicy:
    """``base``'s slate, replaced for each user and step with probability epsilon by a uniformly
    random slate: policies of graded quality between ``base`` and random."""

    def __init__(self, base: Any, catalogue: Catalogue, slate_size: int, epsilon: float):
        self.base = base
        self.random = RandomPolicy(catalogue, slate_size)
        self.epsilon = epsilon

    def act(self, obs: dict[str, torch.Tensor], *, explore: bool, generator: Any) -> Action:
        slate = self.base.act(obs, explore=explore, generator=generator).slate
        noise = self.random.act(obs, explore=explore, generator=generator).slate
        draw = torch.rand(slate.shape[0], generator=generator, device=slate.device)
        mixed = torch.where((draw < self.epsilon).unsqueeze(1), noise, slate)
        return Action(mixed, mixed)


def reference_policy(
    name: str, env: Any, catalogue: Catalogue, ranker: Any = None, epsilon: float = 0.0
) -> Any:
    """A reference policy acting in ``env``; ``ranker`` (a response backend) is the model that
    greedy and oracle rank by (default: the env's own). With ``epsilon`` > 0 each slate is a
    uniformly random one with that probability (:class:`RandomMixPolicy`)."""
    if not 0.0 <= epsilon <= 1.0:
        raise ConfigError(f"epsilon: must be in [0, 1], got {epsilon}")
    if name == "random":
        policy: Any = RandomPolicy(catalogue, env.slate_size)
    elif name == "greedy":
        policy = MyopicGreedyPolicy(env, catalogue, env.slate_size, ranker)
    elif name == "oracle":
        policy = MyopicOraclePolicy(env, catalogue, env.slate_size, ranker)
    else:
        raise ConfigError(
            f"unknown reference policy {name!r} (choose from {', '.join(REFERENCE_POLICIES)})"
        )
    if epsilon > 0.0 and name != "random":
        policy = RandomMixPolicy(policy, catalogue, env.slate_size, epsilon)
    return policy
