"""SASRec-style state encoder: the user's recent positive items -> a state vector.

Item ids are looked up in an item feature table passed at call time, so the same encoder keeps
working when the catalogue changes (new items only need features).

The state is the causal Transformer's output at the last (most recent) position. Only that
position is needed from the last layer, so the last layer computes attention for that one
query; earlier layers need every position because the last layer attends to all of them. This
gives the same result as running the full stack and keeping the last output.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
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
    profile_hidden: int = 0
    """With ``use_profile``: 0 = a linear projection of the profile; H > 0 = an MLP with one
    hidden layer of H ReLU units (as the response model's profile encoder)."""

    def __post_init__(self) -> None:
        if self.dim < 1 or self.layers < 1 or self.heads < 1 or self.feedforward < 1:
            raise ValueError("encoder dim, layers, heads and feedforward must be at least 1")
        if self.dim % self.heads:
            raise ValueError(f"encoder heads ({self.heads}) must divide dim ({self.dim})")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError("encoder dropout must be in [0, 1)")
        if self.profile_hidden < 0:
            raise ValueError("encoder profile_hidden must be 0 (linear) or positive")


def sequence_dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Dropout whose mask is shared by every position of a sequence: x (B, H, d).

    One Bernoulli draw per (user, feature) instead of per (user, position, feature): on CPU the
    random draws of element-wise masks were the largest single cost of an HSRL update (about
    1.7x slower per iteration at the reference sizes). Sharing the mask over time is the
    variational-dropout scheme for sequence models; the expected activation is unchanged.
    """
    if not training or p == 0.0:
        return x
    keep = torch.rand((x.shape[0], 1, x.shape[-1]), device=x.device, dtype=x.dtype) >= p
    return x * (keep.to(x.dtype) * (1.0 / (1.0 - p)))  # scale the small mask, not x


class CausalBlock(nn.Module):
    """Post-norm Transformer block (attention, then feed-forward), as in nn.TransformerEncoderLayer."""

    def __init__(self, dim: int, heads: int, feedforward: int, dropout: float):
        super().__init__()
        self.heads = heads
        self.dropout = dropout
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.ff1 = nn.Linear(dim, feedforward)
        self.ff2 = nn.Linear(feedforward, dim)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, last_only: bool) -> torch.Tensor:
        """x (B, H, d); mask broadcastable to (B, heads, Hq, H), True = may attend."""
        b, h, d = x.shape
        heads = self.heads
        q, k, v = self.qkv(x).split(d, dim=-1)  # (B, H, d) each
        if last_only:
            q, x = q[:, -1:], x[:, -1:]
        q = q.reshape(b, -1, heads, d // heads).transpose(1, 2)  # (B, heads, Hq, d/heads)
        k = k.reshape(b, h, heads, d // heads).transpose(1, 2)
        v = v.reshape(b, h, heads, d // heads).transpose(1, 2)
        p = self.dropout if self.training else 0.0
        # No dropout on the attention weights themselves: on CPU it forces SDPA's slow path
        # (about 10x slower); dropout still acts on the embeddings and on both residual branches.
        att = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        att = att.transpose(1, 2).reshape(b, -1, d)  # (B, Hq, d)
        x = self.norm1(x + sequence_dropout(self.out(att), p, self.training))
        ff = self.ff2(sequence_dropout(F.relu(self.ff1(x)), p, self.training))
        return self.norm2(x + sequence_dropout(ff, p, self.training))


class StateEncoder(nn.Module):
    def __init__(
        self, config: StateEncoderConfig, item_dim: int, history_length: int, profile_dim: int
    ):
        super().__init__()
        self.config = config
        d = config.dim
        self.item_proj = nn.Linear(item_dim, d)
        self.position = nn.Embedding(history_length, d)
        self.norm = nn.LayerNorm(d)
        self.blocks = nn.ModuleList(
            CausalBlock(d, config.heads, config.feedforward, config.dropout)
            for _ in range(config.layers)
        )
        causal = torch.ones(history_length, history_length, dtype=torch.bool).tril()
        self.register_buffer("causal", causal, persistent=False)
        self.profile_proj: nn.Module | None = None
        if config.use_profile and config.profile_hidden:
            self.profile_proj = nn.Sequential(
                nn.Linear(profile_dim, config.profile_hidden),
                nn.ReLU(),
                nn.Linear(config.profile_hidden, d),
            )
        elif config.use_profile:
            self.profile_proj = nn.Linear(profile_dim, d)

    @property
    def dim(self) -> int:
        return self.config.dim

    def forward(
        self, history: torch.Tensor, user_profile: torch.Tensor, item_features: torch.Tensor
    ) -> torch.Tensor:
        """history (B, H) item ids left-padded with 0 -> state (B, d)."""
        h = history.shape[1]
        p = self.config.dropout if self.training else 0.0
        x = self.item_proj(item_features[history]) + self.position.weight[-h:]  # (B, H, d)
        x = self.norm(sequence_dropout(x, p, self.training))
        # Padding keys are masked; the last position always sees itself, so an empty history
        # stays well defined.
        real = history != 0
        real[:, -1] = True
        key_ok = real[:, None, None, :]  # (B, 1, 1, H)
        full_mask = key_ok & self.causal[-h:, -h:]  # (B, 1, H, H)
        # A padded query row would see no key at all; let it see itself (its output is unused
        # by the real positions, which never attend to padding).
        full_mask = full_mask | torch.eye(h, dtype=torch.bool, device=history.device)
        last = len(self.blocks) - 1
        for i, block in enumerate(self.blocks):
            x = block(x, key_ok if i == last else full_mask, last_only=i == last)
        state = x[:, -1]  # (B, d)
        if self.profile_proj is not None:
            state = state + self.profile_proj(user_profile)
        return state
