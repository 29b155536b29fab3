"""Offline supervised learning (SPEC 7.4): the latent actor fitted to logged responses, no RL.

The actor is the same as DDPG's (state encoder, hyper-action head, item map); it is trained only
with the BCE between sigmoid(dot(item_map(f_k), Z(s))) of each logged exposed item and the
logged response, on batches the trainer samples from the dataset's records (``offline``), and
then evaluated in the simulator like every other agent. It never collects data, so it has no
exploration: it always recommends the top-K items by score.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from hsrl.agents.base import Action, Agent, Catalogue, EnvSpec, adam
from hsrl.agents.ddpg import batch_obs, check_rates, optimizer_step
from hsrl.nets.latent import LatentActor, LatentActorConfig
from hsrl.replay import Batch
from hsrl.slate import greedy_slate


@dataclass(frozen=True)
class SupervisedConfig(LatentActorConfig):
    """Reference: HAC's train_supervise.sh (actor lr 1e-4 in its sweep, decay 1e-5)."""

    actor_lr: float = 1e-4
    weight_decay: float = 1e-5

    def __post_init__(self) -> None:
        super().__post_init__()
        check_rates(self, "actor_lr", "weight_decay")


class SupervisedAgent(Agent):
    name = "supervised"
    offline = True
    config_class = SupervisedConfig

    def __init__(self, config: SupervisedConfig, spec: EnvSpec, catalogue: Catalogue):
        super().__init__(spec, catalogue)
        self.config = config
        self.actor = LatentActor(config, spec.item_dim, spec.history_length, spec.profile_dim)
        self.actor_optimizer = adam(
            self.actor.parameters(), lr=config.actor_lr, weight_decay=config.weight_decay
        )

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"actor": self.actor_optimizer}

    @torch.no_grad()
    def act(
        self, obs: dict[str, torch.Tensor], *, explore: bool, generator: torch.Generator | None
    ) -> Action:
        features = self.catalogue.features
        _, z = self.actor(obs, features)
        slate = greedy_slate(
            self.actor.score(z, features, self.catalogue.live),
            self.spec.slate_size,
            self.catalogue.layout,
        )
        return Action(slate, z)

    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        loss = self.actor.response_loss(
            batch_obs(batch), batch.slate, batch.response, self.catalogue.features
        )
        optimizer_step(self.actor_optimizer, loss)
        return {"loss/behavior": loss.detach()}
