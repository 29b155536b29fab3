"""A2C over flat item ids: HSRL's learning rule without semantic IDs (the SPEC 7.5 ablation).

The policy is a softmax over the live items, P(i | s) = softmax_i(dot(item_map(f_i), W s) / tau).
Scoring through item features rather than with a head of N outputs keeps the network's shape
independent of the catalogue: a new item is scored as soon as it has features, a retired one is
masked out, and nothing is retrained or resized, which is what a fair "HSRL without SIDs"
comparison needs (a head over ids would have to grow, and would give new items random logits).

Per update, exactly as HSRL's rule (SPEC 6.5) with one value head on the state:
    y = r + gamma (1 - terminated) V_target(s')
    critic loss = MSE(V(s), y)
    A = clip(y - V(s), -c, c)                                       (no gradient)
    actor loss = mean_b A_b * mean_k -log P(item_bk | s_b) - beta H(P(. | s_b))
The critic reads the state detached, so only the actor shapes the encoder.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from hsrl.agents.base import Action, Agent, Catalogue, EnvSpec, adam, freeze, soft_update, td_target
from hsrl.agents.ddpg import (
    batch_next_obs,
    batch_obs,
    check_discounting,
    check_rates,
    optimizer_step,
)
from hsrl.nets.critic import ValueMLP
from hsrl.nets.latent import LatentActor, LatentActorConfig
from hsrl.replay import Batch
from hsrl.slate import greedy_slate, sample_slate


@dataclass(frozen=True)
class A2CFlatConfig(LatentActorConfig):
    """Defaults follow HSRL's (SPEC 6.5) so that the only difference is the action space."""

    hyper_head: str = "linear"
    """Item logits dot(item_map(f_i), W s): a linear head W by default ('identity', 'mlp')."""
    temperature: float = 1.0
    """Softmax temperature over item scores."""
    critic_hidden: tuple[int, ...] = (256, 64)
    critic_dropout: float = 0.2
    actor_lr: float = 1e-3
    critic_lr: float = 1e-3
    weight_decay: float = 1e-5
    entropy_coef: float = 0.1
    """beta of the entropy bonus over the item distribution (live items only)."""
    advantage_clip: float = 1.0
    gamma: float = 0.9
    target_tau: float = 0.01
    reference_bootstrap: bool = False
    """Reproduce the reference's TD target r + gamma * done * V' (a known bug; off by default)."""
    explore_epsilon: float = 0.0
    """Weight of a uniform law mixed into the sampling distribution while exploring."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.temperature <= 0:
            raise ValueError("temperature must be positive")
        if self.advantage_clip <= 0:
            raise ValueError("advantage_clip must be positive")
        if not 0.0 <= self.explore_epsilon < 1.0:
            raise ValueError("explore_epsilon must be in [0, 1)")
        if not 0.0 <= self.critic_dropout < 1.0:
            raise ValueError("critic_dropout must be in [0, 1)")
        check_rates(self, "actor_lr", "critic_lr", "weight_decay", "entropy_coef")
        check_discounting(self)


class A2CFlatAgent(Agent):
    name = "a2c_flat"
    config_class = A2CFlatConfig

    def __init__(self, config: A2CFlatConfig, spec: EnvSpec, catalogue: Catalogue):
        super().__init__(spec, catalogue)
        self.config = config
        self.actor = LatentActor(config, spec.item_dim, spec.history_length, spec.profile_dim)
        self.critic = ValueMLP(self.actor.dim, config.critic_hidden, config.critic_dropout)
        # V_target(s') needs only the encoder: the head and item map do not enter the value.
        self.target = freeze(
            nn.ModuleDict(
                {
                    "encoder": copy.deepcopy(self.actor.encoder),
                    "critic": copy.deepcopy(self.critic),
                }
            )
        )
        self.actor_optimizer = adam(
            self.actor.parameters(), lr=config.actor_lr, weight_decay=config.weight_decay
        )
        self.critic_optimizer = adam(
            self.critic.parameters(), lr=config.critic_lr, weight_decay=config.weight_decay
        )

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"actor": self.actor_optimizer, "critic": self.critic_optimizer}

    def policy(self, obs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """State s (B, d) and log P(i | s) over the catalogue (B, N + 1), -inf where not live."""
        features = self.catalogue.features
        state, z = self.actor(obs, features)
        scores = self.actor.score(z, features, self.catalogue.live)
        return state, torch.log_softmax(scores / self.config.temperature, dim=-1)

    @torch.no_grad()
    def act(
        self, obs: dict[str, torch.Tensor], *, explore: bool, generator: torch.Generator | None
    ) -> Action:
        _, log_probs = self.policy(obs)
        k = self.spec.slate_size
        if explore:
            slate = sample_slate(
                log_probs, k, generator, self.config.explore_epsilon, self.catalogue.layout
            )
        else:
            slate = greedy_slate(log_probs, k, self.catalogue.layout)
        return Action(slate, slate)

    def losses(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """Critic loss, actor loss and the detached values to log."""
        cfg = self.config
        state, log_probs = self.policy(batch_obs(batch))
        value = self.critic(state.detach())  # (B,)
        with torch.no_grad():
            next_obs = batch_next_obs(batch)
            next_state = self.target["encoder"](
                next_obs["history"], next_obs["user_profile"], self.catalogue.features
            )
            next_value = self.target["critic"](next_state)
            target = td_target(
                batch.reward, batch.terminated, next_value, cfg.gamma, cfg.reference_bootstrap
            )
        critic_loss = F.mse_loss(value, target)
        advantage = (target - value.detach()).clamp(-cfg.advantage_clip, cfg.advantage_clip)

        chosen = log_probs.gather(1, batch.action.long())  # (B, K)
        # Items retired since the transition was recorded have no probability any more: skip them.
        shown = torch.isfinite(chosen)
        nll = -chosen.masked_fill(~shown, 0.0).sum(dim=-1) / shown.sum(dim=-1).clamp(min=1)
        live_log_probs = log_probs.masked_fill(~self.catalogue.live, 0.0)
        entropy = -(log_probs.exp() * live_log_probs).sum(dim=-1)  # (B,)
        actor_loss = (advantage * nll).mean() - cfg.entropy_coef * entropy.mean()
        metrics = {
            "loss/critic": critic_loss.detach(),
            "loss/actor": actor_loss.detach(),
            "value/mean": value.detach().mean(),
            "advantage/mean": advantage.mean(),
            "policy/entropy": entropy.detach().mean(),
        }
        return critic_loss, actor_loss, metrics

    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        critic_loss, actor_loss, metrics = self.losses(batch)
        # The two losses share no parameters (the critic reads s detached, A is detached), so
        # stepping one optimiser cannot invalidate the other loss's graph.
        optimizer_step(self.critic_optimizer, critic_loss)
        optimizer_step(self.actor_optimizer, actor_loss)
        tau = self.config.target_tau
        soft_update(self.target["encoder"], self.actor.encoder, tau)
        soft_update(self.target["critic"], self.critic, tau)
        return metrics
