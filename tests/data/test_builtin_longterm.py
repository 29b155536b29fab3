"""The built-in users reward long-term planning: a diversity-aware policy beats myopic greedy.

Episodes follow SPEC section 4: reward r = 1 - |mean_with_cost - 0.9| with mean_with_cost the
slate mean of (1 if click else -0.1); temper starts at 20, drops by (1 - r) * K + 1 per step,
and the user leaves when it is below 1. Run as a script for the full-size measurement quoted
in docs/builtin_dataset.md:  python tests/data/test_builtin_longterm.py --users 4000
"""

from __future__ import annotations

import argparse
import json
import math
from functools import partial

import torch

from hsrl.data.builtin import (
    GeneratorConfig,
    GroundTruthUserModel,
    build_ground_truth,
    load_real_catalogue,
    simulate_logs,
)

SLATE = 9


def greedy_policy(model: GroundTruthUserModel, user, history, gen) -> torch.Tensor:
    """Top-K items by immediate click probability (the slot term is the same for all items)."""
    candidates = torch.arange(1, model.num_items + 1).expand(user.shape[0], -1)
    logits = model.item_logits(user, history, candidates)  # (B, N)
    return candidates.gather(1, logits.topk(SLATE, dim=1).indices)


def diverse_policy(
    model, user, history, gen, penalty: float = 0.2, space: str = "latent"
) -> torch.Tensor:
    """Maximal marginal relevance: immediate probability minus similarity to the slate so far.

    Similarity is the cosine of the users' own item embedding (``latent``) or of the raw
    item features (``features``, all that a policy sees of an item).
    """
    batch = user.shape[0]
    candidates = torch.arange(1, model.num_items + 1).expand(batch, -1)
    prob = torch.sigmoid(model.item_logits(user, history, candidates) + model.slot_bias[0])
    if space == "latent":
        direction = model.item_direction[1:]  # (N, D)
    else:
        direction = torch.nn.functional.normalize(model.item_features[1:], dim=1)  # (N, F)
    similarity = torch.zeros_like(prob)
    chosen = []
    for _ in range(SLATE):
        score = prob - penalty * similarity
        if chosen:
            score = score.scatter(1, torch.stack(chosen, 1), -math.inf)
        pick = score.argmax(1)  # (B,)
        chosen.append(pick)
        similarity = torch.maximum(similarity, (direction[pick] @ direction.T).clamp_min(0.0))
    return torch.stack(chosen, 1) + 1


def random_policy(model, user, history, gen) -> torch.Tensor:
    keys = torch.rand(user.shape[0], model.num_items, generator=gen)
    return keys.topk(SLATE, dim=1).indices + 1


def rollout(model, policy, user, history, seed: int = 1) -> dict[str, float]:
    """Run every user's episode to its end; totals per user averaged over users."""
    gen = torch.Generator().manual_seed(seed)
    batch = user.shape[0]
    temper = torch.full((batch,), 20.0)
    alive = torch.ones(batch, dtype=torch.bool)
    total = torch.zeros(batch)
    depth = torch.zeros(batch)
    clicks = torch.zeros(batch)
    while bool(alive.any()):
        slate = policy(model, user, history, gen)
        prob = model.click_probability(user, history, slate)
        click = (torch.rand(prob.shape, generator=gen) < prob).float()
        mean_with_cost = torch.where(click > 0, 1.0, -0.1).mean(1)
        reward = 1.0 - (mean_with_cost - 0.9).abs()
        total += reward * alive
        depth += alive.float()
        clicks += click.mean(1) * alive
        temper = temper - ((1.0 - reward) * SLATE + 1.0)
        width = history.shape[1]
        joined = torch.cat((history, torch.where(click > 0, slate, 0)), 1)
        keep = torch.cat((torch.ones_like(history, dtype=torch.bool), click > 0), 1)
        order = torch.argsort(keep.long() * joined.shape[1] + torch.arange(joined.shape[1]), dim=1)
        moved = joined.gather(1, order)[:, -width:]
        history = torch.where(alive.unsqueeze(1), moved, history)
        alive &= temper >= 1.0
    return {
        "total_reward": float(total.mean()),
        "depth": float(depth.mean()),
        "click_rate": float((clicks / depth).mean()),
    }


def start_states(num_users: int, seed: int):
    """A built-in population and one logged (user, history) per user, as the env would sample."""
    config = GeneratorConfig(num_users=num_users, calibration_users=min(num_users, 2000))
    model = build_ground_truth(load_real_catalogue(), seed=seed, generator_config=config)
    logs = simulate_logs(model, torch.arange(num_users), config, seed=seed)
    first = torch.ones(len(logs.user), dtype=torch.bool)
    user = torch.from_numpy(logs.user)
    first[1:] = user[1:] != user[:-1]
    history = torch.from_numpy(logs.history[first.numpy()]).long()[:, -50:]
    return model, user[first], history


def compare(num_users: int, seed: int, more: bool = False) -> dict[str, dict[str, float]]:
    model, user, history = start_states(num_users, seed)
    policies = {"random": random_policy, "greedy": greedy_policy, "diverse": diverse_policy}
    if more:
        for penalty in (0.1, 0.3):
            policies[f"diverse_{penalty}"] = partial(diverse_policy, penalty=penalty)
        for penalty in (0.1, 0.2, 0.3):
            policies[f"diverse_features_{penalty}"] = partial(
                diverse_policy, penalty=penalty, space="features"
            )
    return {name: rollout(model, fn, user, history, seed=seed + 1) for name, fn in policies.items()}


def test_diversity_beats_greedy_over_an_episode():
    result = compare(num_users=400, seed=0)
    greedy, diverse = result["greedy"], result["diverse"]
    assert result["random"]["total_reward"] < greedy["total_reward"]
    assert diverse["total_reward"] > greedy["total_reward"] * 1.05
    assert diverse["depth"] > greedy["depth"]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=4000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    for seed in args.seeds:
        for name, metrics in compare(args.users, seed, more=True).items():
            print(json.dumps({"seed": seed, "policy": name, **metrics}), flush=True)
