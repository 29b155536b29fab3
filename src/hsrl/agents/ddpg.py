"""DDPG in the latent (hyper-)action space (SPEC 7.1), the base of BehaviorDDPG and HAC.

The actor maps a state to a hyper-action Z(s); a slate is the top-K items by
dot(item_map(features_i), Z), so the action space does not grow with the catalogue. Per update,
with target networks for the bootstrap:
    y = r + gamma (1 - terminated) Q_target(s', Z_target(s'))
    critic loss = MSE(Q(s, Z_b), y)       Z_b = the (noisy) hyper-action recorded when acting
    actor loss  = -mean Q(s, Z(s))
The critic reads the state detached: only the actor's losses shape the state encoder, and the
actor can raise Q only by changing its action, not the critic's view of the state.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from hsrl.agents.base import Action, Agent, Catalogue, EnvSpec, adam, freeze, soft_update, td_target
from hsrl.nets.latent import LatentActor, LatentActorConfig, QCritic
from hsrl.replay import Batch
from hsrl.slate import greedy_slate, sample_slate

EXPLORE_MODES = ("greedy", "sample")


@dataclass(frozen=True)
class DDPGConfig(LatentActorConfig):
    """Reference defaults: HAC's RL4RS scripts (actor 1e-4, critic 1e-3, decay 1e-5, noise 0.1,
    tau 0.01, gamma 0.9, top-K slates, critic 256-64 with dropout 0.2)."""

    critic_hidden: tuple[int, ...] = (256, 64)
    critic_dropout: float = 0.2
    actor_lr: float = 1e-4
    critic_lr: float = 1e-3
    weight_decay: float = 1e-5
    """Adam weight decay of every optimiser."""
    gamma: float = 0.9
    target_tau: float = 0.01
    """Soft-update rate of the target actor and critic."""
    noise_std: float = 0.1
    """Standard deviation of the Gaussian noise added to Z while exploring."""
    explore: str = "greedy"
    """Slate from the noisy scores while exploring: 'greedy' (top-K, the reference) or 'sample'
    (K items without replacement from softmax(scores))."""
    explore_epsilon: float = 0.0
    """With explore='sample': weight of a uniform law over live items mixed into the sampling."""
    reference_bootstrap: bool = False
    """Reproduce the reference's TD target r + gamma * done * Q' (a known bug; off by default)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.explore not in EXPLORE_MODES:
            raise ValueError(f"explore must be 'greedy' or 'sample', got {self.explore!r}")
        if not 0.0 <= self.explore_epsilon < 1.0:
            raise ValueError("explore_epsilon must be in [0, 1)")
        if self.noise_std < 0:
            raise ValueError("noise_std must not be negative")
        check_rates(self, "actor_lr", "critic_lr", "weight_decay")
        check_discounting(self)
        if not 0.0 <= self.critic_dropout < 1.0:
            raise ValueError("critic_dropout must be in [0, 1)")


def check_rates(config: object, *names: str) -> None:
    """Learning rates and weight decays must not be negative."""
    for name in names:
        if getattr(config, name) < 0:
            raise ValueError(f"{name} must not be negative")


def check_discounting(config: object) -> None:
    """gamma in [0, 1] and target_tau in (0, 1]."""
    if not 0.0 <= config.gamma <= 1.0:  # type: ignore[attr-defined]
        raise ValueError("gamma must be in [0, 1]")
    if not 0.0 < config.target_tau <= 1.0:  # type: ignore[attr-defined]
        raise ValueError("target_tau must be in (0, 1]")


def batch_obs(batch: Batch) -> dict[str, torch.Tensor]:
    return {"history": batch.history, "user_profile": batch.user_profile}


def batch_next_obs(batch: Batch) -> dict[str, torch.Tensor]:
    return {"history": batch.next_history, "user_profile": batch.next_user_profile}


def optimizer_step(optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> None:
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


class DDPGAgent(Agent):
    name = "ddpg"
    config_class = DDPGConfig

    def __init__(self, config: DDPGConfig, spec: EnvSpec, catalogue: Catalogue):
        super().__init__(spec, catalogue)
        self.config = config
        self.actor = LatentActor(config, spec.item_dim, spec.history_length, spec.profile_dim)
        d = self.actor.dim
        self.critic = QCritic(d, d, config.critic_hidden, config.critic_dropout)
        self.target = freeze(
            nn.ModuleDict(
                {"actor": copy.deepcopy(self.actor), "critic": copy.deepcopy(self.critic)}
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

    # --- acting -----------------------------------------------------------------------------
    @torch.no_grad()
    def act(
        self, obs: dict[str, torch.Tensor], *, explore: bool, generator: torch.Generator | None
    ) -> Action:
        cfg = self.config
        features = self.catalogue.features
        _, z = self.actor(obs, features)  # (B, d)
        if explore and cfg.noise_std > 0:
            noise = torch.randn(z.shape, generator=generator, device=z.device, dtype=z.dtype)
            z = z + cfg.noise_std * noise
        scores = self.actor.score(z, features, self.catalogue.live)  # (B, N + 1)
        if explore and cfg.explore == "sample":
            log_probs = torch.log_softmax(scores, dim=-1)
            slate = sample_slate(
                log_probs,
                self.spec.slate_size,
                generator,
                cfg.explore_epsilon,
                self.catalogue.layout,
            )
        else:
            slate = greedy_slate(scores, self.spec.slate_size, self.catalogue.layout)
        return Action(slate, z)

    # --- losses -----------------------------------------------------------------------------
    @torch.no_grad()
    def bootstrap_target(self, batch: Batch) -> torch.Tensor:
        """y = r + gamma (1 - terminated) Q_target(s', Z_target(s')), (B,)."""
        next_state, next_z = self.target["actor"](batch_next_obs(batch), self.catalogue.features)
        next_q = self.target["critic"](next_state, next_z)
        cfg = self.config
        return td_target(batch.reward, batch.terminated, next_q, cfg.gamma, cfg.reference_bootstrap)

    def critic_action(self, batch: Batch) -> torch.Tensor:
        """The hyper-action the critic is trained on: DDPG uses the one recorded when acting."""
        return batch.action.to(self.catalogue.features.dtype)

    def critic_loss(self, batch: Batch, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """MSE(Q(s, Z_b), y) and Q (B,); the state is read detached."""
        q = self.critic(state.detach(), self.critic_action(batch))
        return F.mse_loss(q, self.bootstrap_target(batch)), q

    def actor_regularisers(self, batch: Batch, z: torch.Tensor) -> dict[str, torch.Tensor]:
        """Extra terms added to the actor's objective, by metric name (none for DDPG)."""
        return {}

    def actor_loss(
        self, batch: Batch, state: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """-mean Q(s, Z(s)) plus the regularisers; returns the total and its detached parts."""
        z = self.actor.hyper_action(state)  # (B, d)
        q_loss = -self.critic(state.detach(), z).mean()
        extra = self.actor_regularisers(batch, z)
        total = q_loss + sum(extra.values()) if extra else q_loss
        metrics = {"loss/actor": q_loss.detach(), "action/z_norm": z.detach().norm(dim=-1).mean()}
        metrics.update({name: value.detach() for name, value in extra.items()})
        return total, metrics

    # --- learning ---------------------------------------------------------------------------
    def actor_critic_step(self, batch: Batch) -> dict[str, torch.Tensor]:
        """One critic step, then one actor step against the updated critic (as in the reference
        and in TD3/DDPG implementations)."""
        state = self.actor.state(batch_obs(batch), self.catalogue.features)  # (B, d)
        critic_loss, q = self.critic_loss(batch, state)
        optimizer_step(self.critic_optimizer, critic_loss)
        # The critic step changed only critic weights, so ``state``'s graph is still valid.
        actor_loss, metrics = self.actor_loss(batch, state)
        optimizer_step(self.actor_optimizer, actor_loss)
        metrics["loss/critic"] = critic_loss.detach()
        metrics["value/q"] = q.detach().mean()
        return metrics

    def update_targets(self) -> None:
        tau = self.config.target_tau
        soft_update(self.target["actor"], self.actor, tau)
        soft_update(self.target["critic"], self.critic, tau)

    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        metrics = self.actor_critic_step(batch)
        self.update_targets()
        return metrics
