"""Ranking metrics of the response model, computed with tensor ops on any device."""

from __future__ import annotations

import torch


def roc_auc(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """Area under the ROC curve of ``scores`` against 0/1 ``labels`` (any shapes, flattened).

    Uses the rank-sum (Mann-Whitney) formula with average ranks for tied scores, so it equals
    scikit-learn's ``roc_auc_score``. NaN when only one class is present.
    """
    scores = scores.reshape(-1).double()
    positive = labels.reshape(-1).bool()
    n = scores.numel()
    n_pos = int(positive.sum())
    n_neg = n - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = torch.argsort(scores)
    sorted_scores = scores[order]
    # Tied scores share the mean of the ranks they span.
    _, inverse, counts = torch.unique_consecutive(
        sorted_scores, return_inverse=True, return_counts=True
    )
    ends = torch.cumsum(counts, 0).double()  # 1-based rank of each tie group's last member
    mean_rank = ends - (counts.double() - 1.0) / 2.0
    ranks = torch.empty(n, dtype=torch.float64, device=scores.device)
    ranks[order] = mean_rank[inverse]
    rank_sum = ranks[positive].sum().item()
    return (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


def slot_mean_auc(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean over slate slots of the per-slot AUC of (R, K) scores; slots with one class skipped.

    This is what the HAC reference reports (``roc_auc_score`` on (R, K) arrays averages the
    columns), kept beside the pooled :func:`roc_auc` for comparison with published numbers.
    """
    values = [roc_auc(scores[:, k], labels[:, k]) for k in range(scores.shape[1])]
    values = [v for v in values if v == v]
    return sum(values) / len(values) if values else float("nan")
