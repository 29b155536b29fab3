"""HAC, the Hyper-Actor Critic (arXiv 2302.03431; SPEC 7.3): BehaviorDDPG plus an inverse module.

The environment only sees the slate (the effect-action), not the hyper-action Z that produced
it; after noise and top-K many Z give the same slate. HAC therefore
- trains the critic on the hyper-action inferred from the executed slate,
  Z_hat = mean_k item_map(features of slate item k), instead of the Z recorded when acting:
      critic loss = MSE(Q(s, Z_hat), r + gamma (1 - terminated) Q_target(s', Z_target(s')));
- adds to the actor's objective a hyper-actor (alignment) loss lambda * ||Z(s) - Z_hat||^2
  (averaged over the d coordinates, as the reference's mse), whose gradient reaches both the
  actor's head and encoder (through Z) and the item map (through Z_hat), so that the two
  action spaces agree and Q(s, Z(s)) is evaluated where the critic was trained;
- keeps BehaviorDDPG's supervised step.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from hsrl.agents.behavior_ddpg import BehaviorDDPGAgent, BehaviorDDPGConfig
from hsrl.replay import Batch
from hsrl.slate import greedy_slate

ALIGNMENT_SLATES = ("executed", "greedy")


@dataclass(frozen=True)
class HACConfig(BehaviorDDPGConfig):
    hyper_actor_coef: float = 0.1
    """lambda of the hyper-actor loss lambda * ||Z(s) - Z_hat||^2 (reference 0.1)."""
    alignment_slate: str = "executed"
    """Slate Z_hat is inferred from in the hyper-actor loss: 'executed' (the replayed slate, as
    SPEC 7.3 describes) or 'greedy' (the current actor's top-K slate, as the reference code
    does)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.hyper_actor_coef < 0:
            raise ValueError("hyper_actor_coef must not be negative")
        if self.alignment_slate not in ALIGNMENT_SLATES:
            raise ValueError(
                f"alignment_slate must be 'executed' or 'greedy', got {self.alignment_slate!r}"
            )


class HACAgent(BehaviorDDPGAgent):
    name = "hac"
    config_class = HACConfig

    def critic_action(self, batch: Batch) -> torch.Tensor:
        """Z_hat of the executed slate; no gradient, so the critic loss trains the critic only."""
        with torch.no_grad():
            return self.actor.infer_hyper_action(batch.slate, self.catalogue.features)

    def actor_regularisers(self, batch: Batch, z: torch.Tensor) -> dict[str, torch.Tensor]:
        features = self.catalogue.features
        if self.config.alignment_slate == "executed":
            slate = batch.slate
        else:
            with torch.no_grad():
                scores = self.actor.score(z, features, self.catalogue.live)
                slate = greedy_slate(scores, self.spec.slate_size, self.catalogue.layout)
        z_hat = self.actor.infer_hyper_action(slate, features)  # (B, d)
        return {"loss/hyper_actor": self.config.hyper_actor_coef * F.mse_loss(z, z_hat)}
