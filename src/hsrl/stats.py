"""Summary statistics with confidence intervals, shared by evaluation and reports."""

from __future__ import annotations

import math
from statistics import NormalDist

import torch

_Z975 = NormalDist().inv_cdf(0.975)


def t_quantile_975(dof: int) -> float:
    """Two-sided 95% quantile of Student's t (Cornish-Fisher expansion; < 1e-3 off for dof >= 5).

    Tabulated values are used for dof 1 to 4, where the expansion is poor.
    """
    if dof < 1:
        return math.nan
    if dof <= 4:
        return (12.706204736, 4.302652730, 3.182446305, 2.776445105)[dof - 1]
    z = _Z975
    v = float(dof)
    return (
        z
        + (z**3 + z) / (4 * v)
        + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * v**2)
        + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * v**3)
        + (79 * z**9 + 776 * z**7 + 1482 * z**5 - 1920 * z**3 - 945 * z) / (92160 * v**4)
    )


def summarize(values: torch.Tensor | list[float]) -> dict[str, float]:
    """Mean, sample std, count and the 95% t-interval of the mean."""
    x = torch.as_tensor(values, dtype=torch.float64).flatten()
    n = x.numel()
    if n == 0:
        return {
            "mean": math.nan,
            "std": math.nan,
            "n": 0,
            "ci95_low": math.nan,
            "ci95_high": math.nan,
        }
    mean = float(x.mean())
    std = float(x.std(unbiased=True)) if n > 1 else math.nan
    half = t_quantile_975(n - 1) * std / math.sqrt(n) if n > 1 else math.nan
    return {"mean": mean, "std": std, "n": n, "ci95_low": mean - half, "ci95_high": mean + half}
