"""SASRec-style state encoder: the user's recent positive items -> a state vector.

Item ids are looked up in an item feature table passed at call time, so the same encoder keeps
working when the catalogue changes (new items only need features).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class StateEncoderConfig:
    dim: int = 32
    """State size d."""
    layers: int = 2
    heads: int = 4
    feedforward: int = 128
    dropout: float = 0.1
    use_profile: bool = False
    """Add a projection of the user profile to the state (the reference ignores the profile)."""


class StateEncoder(nn.Module):
    def __init__(
        self, config: StateEncoderConfig, item_dim: int, history_length: int, profile_dim: int
    ):
        super().__init__()
        self.config = config
        d = config.dim
        self.item_proj = nn.Linear(item_dim, d)
        self.position = nn.Embedding(history_length, d)
        self.dropout = nn.Dropout(config.dropout)
        self.norm = nn.LayerNorm(d)
        layer = nn.TransformerEncoderLayer(
            d_model=d,
            nhead=config.heads,
            dim_feedforward=config.feedforward,
            dropout=config.dropout,
            batch_first=True,
        )
        self.transformer = nn.TransformerEncoder(layer, config.layers, enable_nested_tensor=False)
        causal = torch.triu(torch.ones(history_length, history_length, dtype=torch.bool), 1)
        self.register_buffer("causal_mask", causal, persistent=False)
        self.profile_proj = nn.Linear(profile_dim, d) if config.use_profile else None

    @property
    def dim(self) -> int:
        return self.config.dim

    def forward(
        self, history: torch.Tensor, user_profile: torch.Tensor, item_features: torch.Tensor
    ) -> torch.Tensor:
        """history (B, H) item ids left-padded with 0 -> state (B, d), the output at the last slot."""
        h = history.shape[1]
        x = self.item_proj(item_features[history])  # (B, H, d)
        x = x + self.position.weight[-h:]
        x = self.norm(self.dropout(x))
        padding = history == 0  # (B, H)
        # The last position always attends to itself, so an empty history stays well defined.
        padding = padding.clone()
        padding[:, -1] = False
        out = self.transformer(x, mask=self.causal_mask[-h:, -h:], src_key_padding_mask=padding)
        state = out[:, -1]  # (B, d)
        if self.profile_proj is not None:
            state = state + self.profile_proj(user_profile)
        return state
