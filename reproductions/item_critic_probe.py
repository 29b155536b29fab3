"""How good is a trained HSRL agent's click model (its token-level item critic)?

Follows 1,000 test users in the learned simulator with the agent acting greedily and, at every
step, compares the agent's item critic q(s, i) with the simulator's own click logits over the
live items: the per-user Spearman correlation, the overlap of the two top-9 sets, and the
expected step reward (under the simulator) of the agent's slate against the simulator's oracle
slate for the same users. A probe for docs/hsrl.md: where is HSRL's gap to the oracle?

    python reproductions/item_critic_probe.py RUN_DIR SIM_DIR [--steps 8]
"""

from __future__ import annotations

import argparse
import json

import torch

from hsrl.agents.reference import count_reward, expected_reward, oracle_slates
from hsrl.train import EnvSettings, build_env, load_agent


def spearman(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-row Spearman correlation of (B, N) scores."""
    ra = a.argsort(dim=1).argsort(dim=1).float()
    rb = b.argsort(dim=1).argsort(dim=1).float()
    ra, rb = ra - ra.mean(1, keepdim=True), rb - rb.mean(1, keepdim=True)
    return (ra * rb).sum(1) / (ra.norm(dim=1) * rb.norm(dim=1)).clamp_min(1e-8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    parser.add_argument("simulator")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--users", type=int, default=1000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    parts, _ = load_agent(args.run, "cpu")
    agent = parts.agent
    env = build_env(
        parts.config.data,
        args.simulator,
        EnvSettings(),
        torch.device("cpu"),
        split="test",
        num_users=args.users,
    )
    reward_of_clicks = count_reward(env.reward_fn, env.slate_size, env.device)
    obs, _ = env.reset(seed=0)
    gen = torch.Generator().manual_seed(0)
    rows = []
    for step in range(args.steps):
        with torch.no_grad():
            state = agent._state(obs, agent.encoder)
            q = agent._item_values(state)[:, 1:]
            sim = env.item_scores()[:, 1:]
            slots = env.slot_scores()
            action = agent.act(obs, explore=False, generator=gen)
            full_sim = env.item_scores()
            oracle = oracle_slates(full_sim, slots, reward_of_clicks)

            def value(slate, full_sim=full_sim, slots=slots):
                return expected_reward(
                    torch.sigmoid(full_sim.gather(1, slate) + slots), reward_of_clicks
                )

            top_q = q.topk(9, dim=1).indices
            top_s = sim.topk(9, dim=1).indices
            overlap = (top_q.unsqueeze(2) == top_s.unsqueeze(1)).any(2).float().sum(1) / 9
            agent_clicks = torch.sigmoid(full_sim.gather(1, action.slate) + slots).sum(1)
            oracle_clicks = torch.sigmoid(full_sim.gather(1, oracle) + slots).sum(1)
            rows.append(
                {
                    "step": step,
                    "spearman": float(spearman(q, sim).mean()),
                    "top9_overlap": float(overlap.mean()),
                    "agent_expected_reward": float(value(action.slate).mean()),
                    "oracle_expected_reward": float(value(oracle).mean()),
                    "agent_expected_clicks": float(agent_clicks.mean()),
                    "oracle_expected_clicks": float(oracle_clicks.mean()),
                }
            )
        obs, *_ = env.step(action.slate)
    print(json.dumps({"run": args.run, "steps": rows}))


if __name__ == "__main__":
    main()
