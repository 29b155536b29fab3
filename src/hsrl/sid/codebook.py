"""The residual codebook: L levels of V centroids; an item's SID is its path through them.

Level 1 clusters the item vectors; level l clusters what is left after subtracting the chosen
centroids of the levels above (the residual). Encoding a vector with a frozen codebook takes
the nearest centroid of each level in turn, which is how new items get a SID without refitting.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import torch

from hsrl.errors import ConfigError
from hsrl.sid.kmeans import NearestSearch, TorchSearch, kmeans, make_search


@dataclass(frozen=True)
class ResidualCodebook:
    centroids: torch.Tensor  # (L, V, F) float32

    def __post_init__(self):
        if self.centroids.ndim != 3:
            raise ValueError(
                f"centroids must be (levels, codes, features), got {tuple(self.centroids.shape)}"
            )

    @property
    def levels(self) -> int:
        return self.centroids.shape[0]

    @property
    def codes(self) -> int:
        return self.centroids.shape[1]

    @property
    def feature_dim(self) -> int:
        return self.centroids.shape[2]

    @property
    def device(self) -> torch.device:
        return self.centroids.device

    def to(self, device: torch.device | str) -> ResidualCodebook:
        return ResidualCodebook(self.centroids.to(device))

    def encode(self, x: torch.Tensor, search: NearestSearch | None = None) -> torch.Tensor:
        """SIDs ``(N, L)`` of vectors ``(N, F)``: the nearest centroid of each level's residual."""
        search = search or TorchSearch()
        residual = x.float().to(self.device)
        tokens = torch.empty(x.shape[0], self.levels, dtype=torch.long, device=self.device)
        for level in range(self.levels):
            _, nearest = search(residual, self.centroids[level], 1)
            tokens[:, level] = nearest.squeeze(1)
            residual = residual - self.centroids[level][tokens[:, level]]
        return tokens

    def decode(self, tokens: torch.Tensor, levels: int | None = None) -> torch.Tensor:
        """Reconstruction ``(N, F)`` from the first ``levels`` tokens of SIDs ``(N, L)``."""
        levels = self.levels if levels is None else levels
        out = torch.zeros(tokens.shape[0], self.feature_dim, device=self.device)
        for level in range(levels):
            out += self.centroids[level][tokens[:, level]]
        return out

    def residual(self, x: torch.Tensor, tokens: torch.Tensor, level: int) -> torch.Tensor:
        """What is left of ``x`` for level ``level`` (0-based) to encode, given the tokens above."""
        return x.float().to(self.device) - self.decode(tokens, level)

    def reconstruction_errors(self, x: torch.Tensor, tokens: torch.Tensor) -> list[float]:
        """Mean squared error ``||x - x_hat_l||^2`` after each level l = 1..L."""
        residual = x.float().to(self.device)
        errors = []
        for level in range(self.levels):
            residual = residual - self.centroids[level][tokens[:, level]]
            errors.append(float((residual * residual).sum(1).double().mean()))
        return errors


def default_n_init(num_points: int, codes: int) -> int:
    """Restarts of k-means per level: several when cheap (small catalogues), one when large."""
    return 4 if num_points * codes <= 2_000_000 else 1


def fit_residual_codebook(
    x: torch.Tensor,
    levels: int,
    codes: int,
    *,
    balanced: bool = True,
    seed: int = 0,
    max_iter: int = 30,
    tol: float = 1e-4,
    n_init: int | None = None,
    max_points_per_centroid: int | None = 512,
    backend: str | NearestSearch = "torch",
) -> tuple[ResidualCodebook, torch.Tensor, list[dict[str, Any]]]:
    """Fit L levels of k-means on successive residuals of ``x (N, F)`` (already on its device).

    Returns the codebook, each point's fitted tokens ``(N, L)`` (for balanced k-means these are
    the balanced assignment, not necessarily the nearest centroid) and per-level fit facts.
    """
    if x.ndim != 2 or x.shape[0] < 1:
        raise ConfigError(f"item features must be (N, F) with N >= 1, got {tuple(x.shape)}")
    n = x.shape[0]
    search = make_search(backend)
    restarts = n_init if n_init is not None else default_n_init(n, codes)
    residual = x.float().contiguous()
    centroids = torch.empty(levels, codes, x.shape[1], device=x.device)
    tokens = torch.empty(n, levels, dtype=torch.long, device=x.device)
    info = []
    for level in range(levels):
        start = time.perf_counter()
        result = kmeans(
            residual,
            codes,
            balanced=balanced,
            seed=(seed * 1_000_003 + level * 104_729) % (2**62),
            max_iter=max_iter,
            tol=tol,
            n_init=restarts,
            max_points_per_centroid=max_points_per_centroid,
            backend=search,
        )
        centroids[level] = result.centroids
        tokens[:, level] = result.assign
        residual = residual - result.centroids[result.assign]
        if x.device.type == "cuda":
            torch.cuda.synchronize(x.device)
        info.append(
            {
                "level": level + 1,
                "iterations": result.iterations,
                "converged": result.converged,
                "n_init": restarts,
                "inertia": result.inertia,
                "mean_sq_error": result.inertia / n if math.isfinite(result.inertia) else None,
                "seconds": round(time.perf_counter() - start, 4),
            }
        )
    return ResidualCodebook(centroids), tokens, info
