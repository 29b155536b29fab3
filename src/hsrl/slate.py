"""From item scores to a slate: greedy top-K, or K items sampled without replacement.

Every agent scores the items of the live catalogue and hands the scores here, so exploration
and the live-item rule are implemented once. Sampling without replacement uses the Gumbel-top-k
trick, which draws K distinct items with the same law as sequential sampling from softmax(scores).
"""

from __future__ import annotations

import math

import torch


def greedy_slate(scores: torch.Tensor, slate_size: int) -> torch.Tensor:
    """scores (B, N + 1) with -inf for items that cannot be shown -> item ids (B, K)."""
    return scores.topk(slate_size, dim=-1).indices


def sample_slate(
    log_probs: torch.Tensor,
    slate_size: int,
    generator: torch.Generator | None = None,
    epsilon: float = 0.0,
) -> torch.Tensor:
    """K distinct items from softmax(log_probs), mixed with a uniform law of weight epsilon.

    log_probs (B, N + 1) normalised log-probabilities with -inf for items that cannot be shown.
    """
    if epsilon > 0.0:
        live = torch.isfinite(log_probs)
        count = live.sum(dim=-1, keepdim=True).clamp(min=1)  # (B, 1)
        uniform = torch.where(live, -torch.log(count.float()), float("-inf"))
        log_probs = torch.logaddexp(log_probs + math.log1p(-epsilon), uniform + math.log(epsilon))
    uniform_noise = torch.rand(
        log_probs.shape, generator=generator, device=log_probs.device, dtype=log_probs.dtype
    )
    gumbel = -torch.log(-torch.log(uniform_noise.clamp(min=1e-20, max=1.0 - 1e-7)))
    return (log_probs + gumbel).topk(slate_size, dim=-1).indices


def uniform_slate(
    live: torch.Tensor, batch: int, slate_size: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """K distinct live items uniformly at random per user: live (N + 1,) bool -> (B, K)."""
    scores = torch.rand((batch, live.shape[0]), generator=generator, device=live.device)
    scores = scores.masked_fill(~live, -1.0)
    return scores.topk(slate_size, dim=-1).indices
