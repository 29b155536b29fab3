"""The leave model: a patience ("temper") that each step drains, faster after poor slates.

A user starts at ``initial`` (T0 = 20). After a step with reward r on a slate of K items the
temper drops by (1 - r) * K + 1; the user leaves when it is below 1. Since the drop is at least
1 whenever r <= 1, an episode lasts at most T0 steps.
"""

from __future__ import annotations

import torch

INITIAL_TEMPER = 20.0


def temper_drop(reward: torch.Tensor, slate_size: int) -> torch.Tensor:
    """(B,) reward -> (B,) decrease of the temper for this step."""
    return (1.0 - reward) * slate_size + 1.0


def update_temper(
    temper: torch.Tensor, reward: torch.Tensor, slate_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """New temper (B,) and who leaves (B,) bool after a step with ``reward``."""
    temper = temper - temper_drop(reward, slate_size)
    return temper, temper < 1.0
