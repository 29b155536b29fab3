"""BehaviorDDPG: DDPG plus a supervised loss on the observed responses (SPEC 7.2).

After the DDPG critic and actor steps, a third step with its own optimiser (own learning rate)
minimises the BCE between sigmoid(dot(item_map(f_k), Z(s))) of each exposed item k of the
replayed slate and the user's response to it. It anchors the hyper-action to what users
actually click, which stabilises the actor while the critic is still poor.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from hsrl.agents.base import Catalogue, EnvSpec, adam
from hsrl.agents.ddpg import DDPGAgent, DDPGConfig, batch_obs, check_rates, optimizer_step
from hsrl.replay import Batch


@dataclass(frozen=True)
class BehaviorDDPGConfig(DDPGConfig):
    behavior_lr: float = 1e-4
    """Learning rate of the supervised (behaviour) step; 0 turns the step off (the loss is still
    logged). Reference 1e-4 on RL4RS."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_rates(self, "behavior_lr")


class BehaviorDDPGAgent(DDPGAgent):
    name = "behavior_ddpg"
    config_class = BehaviorDDPGConfig

    def __init__(self, config: BehaviorDDPGConfig, spec: EnvSpec, catalogue: Catalogue):
        super().__init__(config, spec, catalogue)
        self.behavior_optimizer = adam(
            self.actor.parameters(), lr=config.behavior_lr, weight_decay=config.weight_decay
        )

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {**super().optimizers(), "behavior": self.behavior_optimizer}

    def behavior_loss(self, batch: Batch) -> torch.Tensor:
        """Mean BCE of the exposed items' scores against the observed responses."""
        return self.actor.response_loss(
            batch_obs(batch), batch.slate, batch.response, self.catalogue.features
        )

    def behavior_step(self, batch: Batch) -> dict[str, torch.Tensor]:
        learn = self.config.behavior_lr > 0
        # A fresh forward pass: the actor step has just changed the encoder in place.
        with torch.set_grad_enabled(learn):
            loss = self.behavior_loss(batch)
        if learn:
            optimizer_step(self.behavior_optimizer, loss)
        return {"loss/behavior": loss.detach()}

    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        metrics = self.actor_critic_step(batch)
        metrics.update(self.behavior_step(batch))
        self.update_targets()
        return metrics
