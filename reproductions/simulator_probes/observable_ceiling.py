"""How much of the truth's greedy value can any simulator reach from what the env observes?

The true users' greedy policy ranks items with each user's latent preference z_u. A learned
simulator sees only the user's portrait and click history, so even a perfect fit of
p(click | portrait, history) ranks by an estimate of z_u. This probe measures that ceiling on a
built-in world: it keeps every term of the true click model exact (item appeal, fatigue,
boredom, slot biases) and replaces z_u by a regression estimate from the portrait and the
current history, fitted on the training split's records against the true latents (privileged
information no simulator has). Its greedy policy, acting on the true users, gives the
"observable-ceiling" transfer ratio.

    python reproductions/simulator_probes/observable_ceiling.py WORLD [--episodes 1000]

WORLD holds data/ (hsrl data prepare builtin ...). Prints one JSON line: the estimator's
held-out R^2 per kind of input, and truth-greedy, plug-in greedy and their ratio (plus oracles).
"""

from __future__ import annotations

import argparse
import json
import math
import time

import torch

from hsrl.agents.base import Catalogue
from hsrl.agents.reference import reference_policy
from hsrl.data.builtin import PORTRAIT_CATEGORIES, GroundTruthUserModel
from hsrl.data.prepared import load_prepared
from hsrl.evaluate import EvalSettings, run_episodes, summarize_episodes
from hsrl.train import EnvSettings, build_env

NUM_CODES = len(PORTRAIT_CATEGORIES)


class Features:
    """Inputs of the latent estimator: portrait codes one-hot, dense values, history summaries."""

    def __init__(self, truth: GroundTruthUserModel, train_profiles: torch.Tensor, use: str):
        self.truth = truth
        self.use = use
        # The prepared profile is log1p of the raw portrait; codes are exact integers there.
        codes = train_profiles[:, :NUM_CODES]
        self.code_values = [torch.unique(codes[:, c]) for c in range(NUM_CODES)]

    def __call__(self, profile: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        parts = []
        if "portrait" in self.use:
            for c, values in enumerate(self.code_values):
                parts.append((profile[:, c : c + 1] == values.unsqueeze(0)).float())
            parts.append(profile[:, NUM_CODES:])
            parts.append((profile[:, NUM_CODES:] > 0).float())
        if "history" in self.use:
            emb = self.truth.item_embedding[history]  # (B, H, D)
            real = (history > 0).float().unsqueeze(-1)
            count = real.sum(1).clamp_min(1.0)
            parts.append(emb.sum(1) / count)
            parts.append(self.truth.item_direction[history].sum(1) / count)
            parts.append(torch.log1p(real.sum(1)))
        if "recent" in self.use:  # the last m items one by one (recency, fatigue window)
            window = self.truth.fatigue_window
            parts.append(self.truth.item_embedding[history[:, -window:]].flatten(1))
        return torch.cat(parts, dim=1)


def fit_estimator(x: torch.Tensor, z: torch.Tensor, seed: int, epochs: int = 30) -> torch.nn.Module:
    """An MLP regression x -> z (the posterior mean under squared error), Adam, early stopping."""
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(x.shape[0], generator=gen)
    cut = int(0.9 * x.shape[0])
    tr, va = order[:cut], order[cut:]
    mean, std = x[tr].mean(0), x[tr].std(0).clamp_min(1e-6)
    torch.manual_seed(seed)
    net = torch.nn.Sequential(
        torch.nn.Linear(x.shape[1], 256),
        torch.nn.ReLU(),
        torch.nn.Linear(256, 256),
        torch.nn.ReLU(),
        torch.nn.Linear(256, z.shape[1]),
    )
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, weight_decay=1e-5)
    best, best_state = math.inf, None
    xn = (x - mean) / std
    for _ in range(epochs):
        net.train()
        for idx in tr[torch.randperm(tr.numel(), generator=gen)].split(256):
            loss = ((net(xn[idx]) - z[idx]) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        net.eval()
        with torch.no_grad():
            val = float(((net(xn[va]) - z[va]) ** 2).mean())
        if val < best:
            best, best_state = val, {k: v.clone() for k, v in net.state_dict().items()}
    net.load_state_dict(best_state)
    return _Normalised(net, mean, std).eval()


class _Normalised(torch.nn.Module):
    def __init__(self, net: torch.nn.Module, mean: torch.Tensor, std: torch.Tensor):
        super().__init__()
        self.net, self.mean, self.std = net, mean, std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mean) / self.std)


class PlugInRanker:
    """The true click model with z_u replaced by the estimate from the current observation."""

    def __init__(self, truth: GroundTruthUserModel, features: Features, estimator: torch.nn.Module):
        self.truth, self.features, self.estimator = truth, features, estimator

    def item_logits(self, state) -> torch.Tensor:
        truth = self.truth
        with torch.no_grad():
            z = self.estimator(self.features(state.user_profile, state.history))  # (B, D)
            items = torch.arange(truth.num_items + 1).expand(z.shape[0], -1)
            affinity = z @ truth.item_embedding.T / math.sqrt(truth.latent_dim) + truth.item_appeal
            fatigue, boredom = truth.fatigue(state.history, items)
            return (
                affinity - truth.fatigue_weight * fatigue - truth.boredom_weight * boredom[:, None]
            )

    def slot_logits(self, slate_size: int) -> torch.Tensor:
        bias = self.truth.slot_bias
        return bias[torch.arange(slate_size).clamp(max=bias.shape[0] - 1)]


def truth_env(data: str, settings: EvalSettings):
    """The true users of the test split, in cohorts of the evaluation's size, on the CPU."""
    return build_env(
        data,
        None,
        EnvSettings(),
        torch.device("cpu"),
        split="test",
        num_users=min(settings.cohort_size, settings.episodes),
        ground_truth=True,
    )


def r2(pred: torch.Tensor, z: torch.Tensor) -> float:
    return float(1 - ((pred - z) ** 2).sum() / ((z - z.mean(0)) ** 2).sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("world")
    parser.add_argument("--episodes", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    start = time.perf_counter()
    data = f"{args.world}/data"
    dataset = load_prepared(data)
    truth = GroundTruthUserModel.load(dataset.ground_truth_path, "cpu")
    train, test = dataset.splits["train"], dataset.splits["test"]
    z_train = truth.user_latent[truth.user_of_session(train.session_id)]
    z_test = truth.user_latent[truth.user_of_session(test.session_id)]
    out: dict = {"world": args.world}
    rankers = {}
    for use in ("portrait", "history", "portrait+history", "portrait+history+recent"):
        features = Features(truth, train.user_profile, use)
        est = fit_estimator(features(train.user_profile, train.history), z_train, args.seed)
        with torch.no_grad():
            out[f"r2_{use}"] = r2(est(features(test.user_profile, test.history)), z_test)
        rankers[use] = PlugInRanker(truth, features, est)

    settings = EvalSettings(episodes=args.episodes, seed=args.seed)

    def evaluate(policy: str, ranker) -> float:
        env = truth_env(data, settings)
        catalogue = Catalogue(env.item_features, layout=env.layout)
        actor = reference_policy(policy, env, catalogue, ranker, 0.0)
        return summarize_episodes(run_episodes(env, actor, settings))["total_reward"]["mean"]

    for policy in ("greedy", "oracle"):
        best = evaluate(policy, None)
        out[f"truth_{policy}"] = best
        for use in ("portrait+history", "portrait+history+recent"):
            value = evaluate(policy, rankers[use])
            out[f"plugin_{policy}_{use}"] = value
            out[f"plugin_{policy}_{use}_ratio"] = value / best
    out["seconds"] = round(time.perf_counter() - start, 1)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
