"""Latent-action pieces shared by the DDPG family, offline supervised learning and flat A2C.

A latent-action actor does not output items: it outputs a hyper-action Z = f(s) in the same
d-dimensional space as a learned linear map of item features, and scores every item by
dot(item_map(features_i), Z). Because items enter only through their features, the same
parameters score any catalogue, including items added after training (SPEC 7).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from hsrl.nets.critic import ValueMLP
from hsrl.nets.state_encoder import StateEncoder, StateEncoderConfig

HYPER_HEADS = ("identity", "linear", "mlp")


@dataclass(frozen=True)
class LatentActorConfig:
    """How a latent-action actor is built; agent configs extend this dataclass."""

    encoder: StateEncoderConfig = field(default_factory=StateEncoderConfig)
    hyper_head: str = "identity"
    """Z = f(s): 'identity' (Z = s, the reference), 'linear' (Z = W s) or 'mlp'."""
    hyper_hidden: tuple[int, ...] = (64,)
    """Hidden sizes of the 'mlp' hyper-action head (ReLU between layers)."""
    tie_item_map: bool = True
    """Score items with the encoder's own item projection (the reference shares one map between
    the history encoder and the scorer); False gives the scorer a separate linear map."""

    def __post_init__(self) -> None:
        if self.hyper_head not in HYPER_HEADS:
            raise ValueError(
                f"hyper_head must be one of {', '.join(HYPER_HEADS)}, got {self.hyper_head!r}"
            )
        if any(size < 1 for size in self.hyper_hidden):
            raise ValueError("hyper_hidden sizes must be positive")


def _hyper_head(config: LatentActorConfig) -> nn.Module:
    d = config.encoder.dim
    if config.hyper_head == "identity":
        return nn.Identity()
    if config.hyper_head == "linear":
        return nn.Linear(d, d)
    layers: list[nn.Module] = []
    width = d
    for size in config.hyper_hidden:
        layers += [nn.Linear(width, size), nn.ReLU()]
        width = size
    layers.append(nn.Linear(width, d))
    return nn.Sequential(*layers)


class LatentActor(nn.Module):
    """State encoder + hyper-action head + item map; scores items over a catalogue given at call.

    Item features (N + 1, F) are passed to every call rather than stored, so the trainer can swap
    in a changed catalogue without touching the actor.
    """

    def __init__(
        self, config: LatentActorConfig, item_dim: int, history_length: int, profile_dim: int
    ):
        super().__init__()
        self.config = config
        self.encoder = StateEncoder(config.encoder, item_dim, history_length, profile_dim)
        self.head = _hyper_head(config)
        self.item_map = (
            self.encoder.item_proj if config.tie_item_map else nn.Linear(item_dim, self.dim)
        )

    @property
    def dim(self) -> int:
        """Size d of the state, the hyper-action and the item embeddings."""
        return self.config.encoder.dim

    def state(self, obs: dict[str, torch.Tensor], item_features: torch.Tensor) -> torch.Tensor:
        """Observation -> state s (B, d)."""
        return self.encoder(obs["history"], obs["user_profile"], item_features)

    def hyper_action(self, state: torch.Tensor) -> torch.Tensor:
        """s (B, d) -> Z (B, d)."""
        return self.head(state)

    def forward(
        self, obs: dict[str, torch.Tensor], item_features: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Observation -> (s, Z), both (B, d)."""
        state = self.state(obs, item_features)
        return state, self.hyper_action(state)

    def score(
        self, hyper_action: torch.Tensor, item_features: torch.Tensor, live: torch.Tensor
    ) -> torch.Tensor:
        """dot(item_map(f_i), Z) for every item: (B, N + 1), -inf where ``live`` is False."""
        items = self.item_map(item_features)  # (N + 1, d)
        scores = hyper_action @ items.T  # (B, N + 1)
        return scores.masked_fill(~live, float("-inf"))

    def slate_scores(
        self, hyper_action: torch.Tensor, slate: torch.Tensor, item_features: torch.Tensor
    ) -> torch.Tensor:
        """Scores of given items only: Z (B, d), slate (B, K) ids -> (B, K)."""
        items = self.item_map(item_features[slate])  # (B, K, d)
        return (items * hyper_action.unsqueeze(1)).sum(dim=-1)

    def infer_hyper_action(self, slate: torch.Tensor, item_features: torch.Tensor) -> torch.Tensor:
        """HAC's inverse module: the hyper-action a slate stands for, the mean of its item
        embeddings. slate (B, K) ids -> Z_hat (B, d)."""
        return self.item_map(item_features[slate]).mean(dim=1)

    def response_loss(
        self,
        obs: dict[str, torch.Tensor],
        slate: torch.Tensor,
        response: torch.Tensor,
        item_features: torch.Tensor,
    ) -> torch.Tensor:
        """Mean BCE between sigmoid(score of each exposed item) and the observed response.

        The supervised signal of BehaviorDDPG, HAC and offline supervised learning: Z(s) (no
        exploration noise) should rank clicked items above skipped ones.
        """
        _, hyper_action = self(obs, item_features)
        logits = self.slate_scores(hyper_action, slate, item_features)  # (B, K)
        return F.binary_cross_entropy_with_logits(logits, response.to(logits.dtype))


class QCritic(nn.Module):
    """Q(s, Z) = MLP([s, Z]) with the value MLP's blocks (reference: 256, 64, dropout 0.2)."""

    def __init__(
        self,
        state_dim: int,
        action_dim: int,
        hidden: tuple[int, ...] = (256, 64),
        dropout: float = 0.2,
    ):
        super().__init__()
        self.value = ValueMLP(state_dim + action_dim, hidden, dropout)

    def forward(self, state: torch.Tensor, hyper_action: torch.Tensor) -> torch.Tensor:
        """state (B, d_s), hyper_action (B, d_a) -> Q (B,)."""
        return self.value(torch.cat([state, hyper_action], dim=-1))
