"""User histories as fixed-width rows of item ids, oldest first, left-padded with 0."""

from __future__ import annotations

import torch


def fit_history(history: torch.Tensor, length: int) -> torch.Tensor:
    """Cut (keep the latest) or left-pad ``history`` (R, H') to ``length`` columns."""
    have = history.shape[1]
    if have >= length:
        return history[:, have - length :]
    pad = history.new_zeros((history.shape[0], length - have))
    return torch.cat((pad, history), dim=1)


def append_positive(
    history: torch.Tensor, slate: torch.Tensor, response: torch.Tensor
) -> torch.Tensor:
    """Append the positively-responded items of each slate in slot order; keep the last H.

    history (B, H) long, slate (B, K) long, response (B, K) 0/1 -> new history (B, H).
    As in the reference, the H current entries (padding included) are all kept in front of
    the new items, so padding shifts out on the left as items arrive.
    Vectorised: clicked items are compacted to the left of a (B, K + 1) scratch row (column K
    collects the rest); the result is the window [n, n + H) of [history, compacted clicks],
    where n is the number of clicks.
    """
    batch, width = history.shape
    k = slate.shape[1]
    clicked = response > 0  # (B, K)
    position = torch.cumsum(clicked, dim=1) - 1  # slot of each click among the clicks
    target = torch.where(clicked, position, torch.full_like(position, k))  # (B, K)
    compact = slate.new_zeros((batch, k + 1)).scatter_(1, target, slate)  # (B, K + 1)
    joined = torch.cat((history, compact[:, :k]), dim=1)  # (B, H + K)
    count = clicked.sum(dim=1, keepdim=True)  # (B, 1)
    window = torch.arange(width, device=history.device).unsqueeze(0) + count  # (B, H)
    return joined.gather(1, window)
