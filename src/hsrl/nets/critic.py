"""Value networks: a value MLP and the Multi-Level Critic built on it."""

from __future__ import annotations

import torch
from torch import nn


class ValueMLP(nn.Module):
    """Linear-ReLU-Dropout-LayerNorm blocks, then a scalar output (reference: 256, 64)."""

    def __init__(self, dim: int, hidden: tuple[int, ...] = (256, 64), dropout: float = 0.2):
        super().__init__()
        layers: list[nn.Module] = []
        width = dim
        for size in hidden:
            layers += [nn.Linear(width, size), nn.ReLU(), nn.Dropout(dropout), nn.LayerNorm(size)]
            width = size
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)


class MultiLevelCritic(nn.Module):
    """One value MLP on every context c_0..c_L; V(s) = sum_l softmax(omega)_l V_l.

    The token weights omega start uniform and are learned unless ``learn_weights`` is off (the
    reference never optimises them).
    """

    def __init__(
        self,
        dim: int,
        levels: int,
        hidden: tuple[int, ...] = (256, 64),
        dropout: float = 0.2,
        learn_weights: bool = True,
        single_level: bool = False,
    ):
        super().__init__()
        self.value = ValueMLP(dim, hidden, dropout)
        self.single_level = single_level
        self.omega = nn.Parameter(torch.zeros(levels + 1), requires_grad=learn_weights)

    @property
    def weights(self) -> torch.Tensor:
        return torch.softmax(self.omega, dim=0)

    def level_values(self, contexts: torch.Tensor) -> torch.Tensor:
        """contexts (B, L + 1, d) -> V_0..V_L (B, L + 1)."""
        return self.value(contexts)

    def forward(self, contexts: torch.Tensor) -> torch.Tensor:
        """State value V(s), (B,)."""
        if self.single_level:
            return self.value(contexts[:, 0])
        return (self.level_values(contexts) * self.weights).sum(dim=-1)
