"""How much can planning add over the myopic oracle on the built-in true users?

The HSRL issue asks for a policy above the truth's myopic oracle. This probe measures the
headroom with hand-made, *privileged* planners: the oracle's slate search (top m plus bottom
K - m of a ranking, the m of highest true expected step reward), but on a ranking that charges
each item for the boredom it would create, lambda * <d_i, u> with d_i the item's direction in
the true preference space and u the unit mean direction of the user's recent clicks (the true
model's boredom term is the length of that mean). lambda = 0 is the myopic oracle.

Two versions: `truth` knows each user's latent preference z_u; `observable` replaces z_u by the
regression estimate of reproductions/simulator_probes/observable_ceiling.py (portrait and
history), so it uses only what a policy observes, plus the true model's form.

    python reproductions/planning_headroom.py WORLD [--lambdas 0,1,2,4] [--episodes 1000]

Prints one JSON line per (version, lambda): total reward on the true users.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent / "simulator_probes"))

from observable_ceiling import Features, fit_estimator, truth_env  # noqa: E402

from hsrl.agents.base import Action  # noqa: E402
from hsrl.agents.reference import (  # noqa: E402
    _exchange_pairs,
    _improve_by_exchanges,
    candidate_slates,
    count_reward,
    expected_reward,
)
from hsrl.data.builtin import GroundTruthUserModel  # noqa: E402
from hsrl.data.prepared import load_prepared  # noqa: E402
from hsrl.evaluate import EvalSettings, run_episodes, summarize_episodes  # noqa: E402


class BoredomAwareOracle:
    """The oracle's candidate slates on a boredom-charged ranking, chosen by expected reward."""

    def __init__(self, env, truth: GroundTruthUserModel, lam: float, latent_fn=None):
        self.env, self.truth, self.lam, self.latent_fn = env, truth, lam, latent_fn
        self.reward_of_clicks = count_reward(env.reward_fn, env.slate_size, env.device)
        self.users = env.backend._record_user  # the true user of every record (truth env)
        self.pairs = _exchange_pairs(None, env.slate_size, env.device)

    def act(self, obs, *, explore, generator):
        truth, state = self.truth, self.env.user_state()
        history = state.history
        if self.latent_fn is None:
            z = truth.user_latent[self.users[state.record]]
        else:
            z = self.latent_fn(state.user_profile, history)
        items = torch.arange(truth.num_items + 1).expand(z.shape[0], -1)
        logits = z @ truth.item_embedding.T / math.sqrt(truth.latent_dim) + truth.item_appeal
        fatigue, boredom = truth.fatigue(history, items)
        logits = logits - truth.fatigue_weight * fatigue - truth.boredom_weight * boredom[:, None]
        logits[:, 0] = -math.inf
        recent = truth.item_direction[history[:, -truth.fatigue_window :]].sum(1)  # (B, D)
        u = recent / recent.norm(dim=1, keepdim=True).clamp_min(1e-8)
        charge = truth.item_direction @ u.T  # (N + 1, B)
        ranking = logits - self.lam * charge.T
        slots = truth.slot_bias[torch.arange(self.env.slate_size).clamp(max=8)]
        slates = candidate_slates(ranking, slots, None, check=False)  # (B, M, K)
        b, m, k = slates.shape
        chosen = logits.unsqueeze(1).expand(b, m, -1).gather(2, slates).double()
        values = expected_reward(torch.sigmoid(chosen + slots.double()), self.reward_of_clicks)
        # The oracle's refinement: the two best candidates improved by slot exchanges.
        best_value = torch.full((b,), -torch.inf, dtype=torch.float64)
        slate = slates[:, 0]
        for r in range(2):
            pick = values.topk(2, dim=1).indices[:, r].view(b, 1, 1).expand(-1, 1, k)
            improved, value = _improve_by_exchanges(
                slates.gather(1, pick).squeeze(1),
                chosen.gather(1, pick).squeeze(1),
                slots.double(),
                self.reward_of_clicks,
                20,
                self.pairs,
            )
            better = value > best_value
            slate = torch.where(better.unsqueeze(1), improved, slate)
            best_value = torch.where(better, value, best_value)
        return Action(slate, slate)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("world")
    parser.add_argument("--lambdas", default="0,0.5,1,2,4")
    parser.add_argument("--versions", default="truth,observable")
    parser.add_argument("--episodes", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = f"{args.world}/data"
    dataset = load_prepared(data)
    truth = GroundTruthUserModel.load(dataset.ground_truth_path, "cpu")
    settings = EvalSettings(episodes=args.episodes, seed=args.seed)
    latent_fn = None
    if "observable" in args.versions:
        train = dataset.splits["train"]
        features = Features(truth, train.user_profile, "portrait+history")
        z = truth.user_latent[truth.user_of_session(train.session_id)]
        estimator = fit_estimator(features(train.user_profile, train.history), z, args.seed)

        def latent_fn(profile, history):
            with torch.no_grad():
                return estimator(features(profile, history))

    for version in args.versions.split(","):
        for lam in map(float, args.lambdas.split(",")):
            start = time.perf_counter()
            env = truth_env(data, settings)
            policy = BoredomAwareOracle(
                env, truth, lam, latent_fn if version == "observable" else None
            )
            metrics = summarize_episodes(run_episodes(env, policy, settings))
            print(
                json.dumps(
                    {
                        "world": args.world,
                        "version": version,
                        "lambda": lam,
                        "total_reward": metrics["total_reward"]["mean"],
                        "ci95": [
                            metrics["total_reward"]["ci95_low"],
                            metrics["total_reward"]["ci95_high"],
                        ],
                        "depth": metrics["depth"]["mean"],
                        "click_rate": metrics["click_rate"]["mean"],
                        "seconds": round(time.perf_counter() - start, 1),
                    }
                ),
                flush=True,
            )


if __name__ == "__main__":
    main()
