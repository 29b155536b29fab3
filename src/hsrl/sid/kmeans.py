"""K-means for codebooks: plain (Lloyd) and balanced (equal-size clusters), chunked and seeded.

Why our own: the codebook of a catalogue of a million items must be fitted in seconds on a GPU
and in minutes on a laptop, with the same seeded result on either, and the balanced variant
(every code used by the same number of items, as in the reference) must not loop over items in
Python. Distances are computed as ``||x||^2 - 2 x.c + ||c||^2`` (one matrix product per chunk of
rows, so memory stays bounded whatever N is); random choices come from a CPU generator so a
seed picks the same initial centroids on every device.

Balanced assignment (sizes differ by at most one): every cluster has a capacity
(``N // k`` first, then one more for the ``N % k`` items left over). In rounds, each unassigned
item proposes to its nearest cluster that still has room; a cluster accepts its closest
proposers up to its remaining capacity (ties by item order) and rejects the rest, who propose
again next round. An item starts with its nearest cluster as its only candidate and fetches its
``m`` nearest clusters with room whenever all its candidates are full, so a round costs
O(items left x m). Every round either fills a cluster or places every proposer, so it ends
after at most ``k + 1`` rounds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import torch

from hsrl.errors import ConfigError

# Budget of one chunk of the (rows x clusters) distance matrix, in float32 elements.
DEFAULT_CHUNK_ELEMENTS = 1 << 24  # 64 MiB
_SMALL = 1 << 16


@dataclass(frozen=True)
class KMeansResult:
    centroids: torch.Tensor  # (k, F)
    assign: torch.Tensor  # (N,) long, cluster of every point
    inertia: float  # sum of squared distances of the points to their cluster's centroid
    iterations: int  # Lloyd iterations of the best run
    converged: bool  # stopped by the tolerance rather than the iteration cap


class NearestSearch(Protocol):
    """Finds each point's ``m`` nearest centroids (squared L2), optionally among allowed ones."""

    name: str

    def __call__(
        self, x: torch.Tensor, centroids: torch.Tensor, m: int, allowed: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]: ...


class TorchSearch:
    """Exact search by chunked matrix products; runs on any torch device."""

    name = "torch"

    def __init__(self, chunk_elements: int = DEFAULT_CHUNK_ELEMENTS):
        self.chunk_elements = chunk_elements

    def __call__(
        self, x: torch.Tensor, centroids: torch.Tensor, m: int, allowed: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Squared distances ``(N, m)`` ascending (inf where fewer than m are allowed) and ids."""
        n, k = x.shape[0], centroids.shape[0]
        m = min(m, k)
        c_sq = (centroids * centroids).sum(1)  # (k,)
        if allowed is not None:
            c_sq = torch.where(allowed, c_sq, torch.full_like(c_sq, math.inf))
        dist = torch.empty(n, m, dtype=x.dtype, device=x.device)
        index = torch.empty(n, m, dtype=torch.long, device=x.device)
        rows = max(1, self.chunk_elements // max(k, 1))
        c_t = centroids.t()
        for start in range(0, n, rows):
            xb = x[start : start + rows]  # (b, F)
            # ||x||^2 does not change which centroids are nearest: add it after selecting.
            d = torch.addmm(c_sq, xb, c_t, beta=1.0, alpha=-2.0)  # (b, k)
            if m == 1 and d.numel() >= _SMALL:
                v, i = d.min(1, keepdim=True)  # values and indices in one pass
            elif m == 1:  # small: argmin avoids min(dim)'s thread start-up on busy CPUs
                i = d.argmin(1, keepdim=True)
                v = d.gather(1, i)
            else:
                v, i = d.topk(m, dim=1, largest=False, sorted=True)
            v += (xb * xb).sum(1, keepdim=True)
            dist[start : start + rows] = v.clamp_min_(0)
            index[start : start + rows] = i
        return dist, index


class FaissSearch:
    """Exact search with faiss (``IndexFlatL2``) on the CPU; an optional extra."""

    name = "faiss"

    def __init__(self):
        self.faiss = import_faiss()

    def __call__(
        self, x: torch.Tensor, centroids: torch.Tensor, m: int, allowed: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        device = x.device
        k = centroids.shape[0]
        m = min(m, k)
        ids = torch.arange(k, device=device) if allowed is None else allowed.nonzero().squeeze(1)
        n = x.shape[0]
        if ids.numel() == 0:
            return (
                torch.full((n, m), math.inf, device=device),
                torch.zeros(n, m, dtype=torch.long, device=device),
            )
        index = self.faiss.IndexFlatL2(centroids.shape[1])
        index.add(centroids[ids].detach().float().cpu().contiguous().numpy())
        d, i = index.search(x.detach().float().cpu().contiguous().numpy(), m)
        dist = torch.from_numpy(d).to(device).clamp_min_(0)
        local = torch.from_numpy(i).to(device)  # (N, m), -1 where fewer than m are allowed
        missing = local < 0
        dist[missing] = math.inf
        index_out = ids[local.clamp_min(0)]
        return dist, index_out


def import_faiss():
    """Import faiss lazily, with a clear error when the optional extra is missing."""
    try:
        import faiss
    except ImportError as exc:
        raise ConfigError(
            "--backend faiss: the faiss package is not installed "
            "(pip install 'hsrl[faiss]' or faiss-cpu), or use --backend torch"
        ) from exc
    return faiss


def make_search(backend: str | NearestSearch = "torch") -> NearestSearch:
    if not isinstance(backend, str):
        return backend
    if backend == "torch":
        return TorchSearch()
    if backend == "faiss":
        return FaissSearch()
    raise ConfigError(f"--backend: unknown k-means backend {backend!r} (use torch or faiss)")


def kmeans_plus_plus(
    x: torch.Tensor, k: int, generator: torch.Generator, trials: int | None = None
) -> torch.Tensor:
    """Greedy k-means++ seeding: ``(k, F)`` centroids chosen among the rows of ``x``.

    Each new centre is the best (lowest potential) of a few candidates drawn with probability
    proportional to the squared distance to the centres so far. Uniform draws come from the CPU
    ``generator``, so the choice is the same on every device.
    """
    n = x.shape[0]
    if n <= k:
        # Fewer points than clusters: every point is a centre; the rest repeat points and end up
        # empty (harmless: an encoder never prefers a duplicate over its first copy).
        perm = torch.randperm(n, generator=generator).to(x.device)
        return x[perm[torch.arange(k, device=x.device) % n]].clone()
    trials = trials or 2 + int(math.log(k))
    first = int(torch.randint(n, (1,), generator=generator))
    centres = torch.empty(k, x.shape[1], dtype=x.dtype, device=x.device)
    centres[0] = x[first]
    x_sq = (x * x).sum(1)  # (n,)
    closest = (x_sq - 2 * x @ x[first] + x_sq[first]).clamp_min_(0)  # (n,)
    for j in range(1, k):
        cumulative = torch.cumsum(closest.double(), 0)  # (n,)
        total = cumulative[-1]
        draws = torch.rand(trials, generator=generator, dtype=torch.float64).to(x.device)
        if float(total) > 0:
            cand = torch.searchsorted(cumulative, draws * total, right=True).clamp_max_(n - 1)
        else:  # all points coincide with a centre: any point will do
            cand = (draws * n).long().clamp_max_(n - 1)
        xc = x[cand]  # (t, F)
        d = (x_sq[:, None] - 2 * x @ xc.t() + x_sq[cand][None, :]).clamp_min_(0)  # (n, t)
        candidate_closest = torch.minimum(closest[:, None], d)  # (n, t)
        best = int(candidate_closest.sum(0).argmin())
        centres[j] = xc[best]
        closest = candidate_closest[:, best].contiguous()
    return centres


def _update_centroids(
    x: torch.Tensor, assign: torch.Tensor, old: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Means of the clusters (float64 sums, so CUDA's unordered atomics round away); empty keep old."""
    k = old.shape[0]
    sums = torch.zeros(k, x.shape[1], dtype=torch.float64, device=x.device)
    sums.index_put_((assign,), x.double(), accumulate=True)
    counts = torch.bincount(assign, minlength=k)  # (k,)
    means = (sums / counts.clamp_min(1)[:, None]).to(x.dtype)
    return torch.where((counts > 0)[:, None], means, old), counts


def balanced_assign(
    x: torch.Tensor, centroids: torch.Tensor, search: NearestSearch, candidates: int = 4
) -> tuple[torch.Tensor, torch.Tensor]:
    """Capacity-constrained assignment: cluster sizes differ by at most one.

    Returns ``assign (N,)`` and the squared distance of each point to its cluster ``(N,)``.
    """
    n, k = x.shape[0], centroids.shape[0]
    assign = torch.full((n,), -1, dtype=torch.long, device=x.device)
    dist = torch.zeros(n, dtype=x.dtype, device=x.device)
    pending = torch.arange(n, device=x.device)
    base, extra = divmod(n, k)
    if base > 0:
        capacity = torch.full((k,), base, dtype=torch.long, device=x.device)
        pending = _capacitated_rounds(
            x, centroids, pending, capacity, assign, dist, search, candidates
        )
    if extra > 0:
        capacity = torch.ones(k, dtype=torch.long, device=x.device)
        pending = _capacitated_rounds(
            x, centroids, pending, capacity, assign, dist, search, candidates
        )
    return assign, dist


def _capacitated_rounds(
    x: torch.Tensor,
    centroids: torch.Tensor,
    pending: torch.Tensor,
    capacity: torch.Tensor,
    assign: torch.Tensor,
    dist: torch.Tensor,
    search: NearestSearch,
    m: int,
) -> torch.Tensor:
    """Place ``pending`` points into clusters with room (see the module docs); fills in place.

    Stops when the points run out or the capacity does; returns the points still unplaced.
    """
    k = centroids.shape[0]
    remaining = capacity.clone()  # (k,)
    m = min(m, k)
    # First proposals need only the nearest cluster; more candidates are fetched on refresh.
    nearest_d, nearest_i = search(x[pending], centroids, 1, remaining > 0)  # (P, 1)
    cand_d = torch.cat([nearest_d, nearest_d.new_full((pending.numel(), m - 1), math.inf)], 1)
    cand_i = torch.cat([nearest_i, nearest_i.new_zeros((pending.numel(), m - 1))], 1)  # (P, m)
    while pending.numel() > 0 and int(remaining.sum()) > 0:
        open_ = remaining > 0  # (k,)
        usable = open_[cand_i] & torch.isfinite(cand_d)  # (P, m)
        stale = ~usable.any(1)
        if bool(stale.any()):
            fresh_d, fresh_i = search(x[pending[stale]], centroids, m, open_)
            cand_d[stale], cand_i[stale] = fresh_d, fresh_i
            usable[stale] = open_[fresh_i] & torch.isfinite(fresh_d)
        # The first usable candidate of each point (candidates are sorted by distance).
        first = usable.byte().argmax(1)  # (P,) argmax gives the first maximum
        cluster = cand_i.gather(1, first[:, None]).squeeze(1)  # (P,)
        d = cand_d.gather(1, first[:, None]).squeeze(1)  # (P,)
        # Order proposals by (cluster, distance, point order) and accept the first few per cluster.
        order = torch.sort(d, stable=True).indices
        order = order[torch.sort(cluster[order], stable=True).indices]
        sorted_cluster = cluster[order]
        group_size = torch.bincount(sorted_cluster, minlength=k)
        group_start = torch.cumsum(group_size, 0) - group_size
        rank = torch.arange(order.numel(), device=x.device) - group_start[sorted_cluster]
        accepted = order[rank < remaining[sorted_cluster]]
        assign[pending[accepted]] = cluster[accepted]
        dist[pending[accepted]] = d[accepted]
        remaining -= torch.bincount(cluster[accepted], minlength=k)
        keep = torch.ones(pending.numel(), dtype=torch.bool, device=x.device)
        keep[accepted] = False
        pending, cand_d, cand_i = pending[keep], cand_d[keep], cand_i[keep]
    return pending


def kmeans(
    x: torch.Tensor,
    k: int,
    *,
    balanced: bool = False,
    seed: int = 0,
    max_iter: int = 30,
    tol: float = 1e-4,
    n_init: int = 1,
    max_points_per_centroid: int | None = 512,
    init_sample: int | None = None,
    backend: str | NearestSearch = "torch",
) -> KMeansResult:
    """Cluster the rows of ``x (N, F)`` into ``k`` clusters; the best of ``n_init`` seeded runs.

    Stops a run when the inertia improves by less than ``tol`` (relative) or after
    ``max_iter`` iterations. Above ``k * max_points_per_centroid`` points the centroids are
    fitted on a seeded sample of that size and then every point is assigned once (balanced or
    nearest), as faiss does: more points per centroid barely move the centroids, and it keeps
    a million-item build in seconds. ``None`` or 0 fits on all points. ``init_sample`` caps the
    points k-means++ seeding looks at (default ``max(20000, 64 k)``).
    """
    if x.ndim != 2 or x.shape[0] == 0:
        raise ConfigError(f"k-means needs a non-empty (N, F) matrix, got shape {tuple(x.shape)}")
    if k < 1:
        raise ConfigError(f"k-means needs k >= 1 clusters, got {k}")
    if max_iter < 0 or n_init < 1 or tol < 0:
        raise ConfigError("k-means needs max_iter >= 0, n_init >= 1 and tol >= 0")
    search = make_search(backend)
    x = x.float().contiguous()
    n = x.shape[0]
    fit_x = x
    if max_points_per_centroid and n > k * max_points_per_centroid:
        generator = torch.Generator().manual_seed(_run_seed(seed, -1))
        sample = torch.randperm(n, generator=generator)[: k * max_points_per_centroid]
        fit_x = x[sample.sort().values.to(x.device)]
    best: KMeansResult | None = None
    for run in range(n_init):
        generator = torch.Generator().manual_seed(_run_seed(seed, run))
        result = _single_run(fit_x, k, balanced, generator, max_iter, tol, init_sample, search)
        if best is None or result.inertia < best.inertia:
            best = result
    assert best is not None
    if fit_x is not x:
        assign, dist = _assign(x, best.centroids, balanced, search)
        best = KMeansResult(
            best.centroids, assign, float(dist.double().sum()), best.iterations, best.converged
        )
    return best


def _assign(
    x: torch.Tensor, centroids: torch.Tensor, balanced: bool, search: NearestSearch
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cluster ``(N,)`` and squared distance ``(N,)`` of every point: balanced or nearest."""
    if balanced:
        return balanced_assign(x, centroids, search)
    d, i = search(x, centroids, 1)
    return i.squeeze(1), d.squeeze(1)


def _run_seed(seed: int, run: int) -> int:
    return (seed * 1_000_003 + run * 7919 + 17) % (2**63 - 1)


def _single_run(
    x: torch.Tensor,
    k: int,
    balanced: bool,
    generator: torch.Generator,
    max_iter: int,
    tol: float,
    init_sample: int | None,
    search: NearestSearch,
) -> KMeansResult:
    n = x.shape[0]
    sample_size = min(n, init_sample or max(20_000, 64 * k))
    if sample_size < n:
        sample = torch.randperm(n, generator=generator)[:sample_size].to(x.device)
        centroids = kmeans_plus_plus(x[sample], k, generator)
    else:
        centroids = kmeans_plus_plus(x, k, generator)

    def assign_all(c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return _assign(x, c, balanced, search)

    assign, dist = assign_all(centroids)
    inertia = float(dist.double().sum())
    best = (centroids, assign, inertia)
    iterations, converged = 0, False
    for iterations in range(1, max_iter + 1):  # noqa: B007
        centroids, counts = _update_centroids(x, assign, centroids)
        if not balanced:
            centroids = _reseed_empty(x, centroids, counts, dist)
        assign, dist = assign_all(centroids)
        new_inertia = float(dist.double().sum())
        if new_inertia < best[2]:
            best = (centroids, assign, new_inertia)
        if abs(inertia - new_inertia) <= tol * max(new_inertia, 1e-30):
            converged = True
            break
        inertia = new_inertia
    return KMeansResult(best[0], best[1], best[2], iterations, converged)


def _reseed_empty(
    x: torch.Tensor, centroids: torch.Tensor, counts: torch.Tensor, dist: torch.Tensor
) -> torch.Tensor:
    """Move the centroids of empty clusters onto the points farthest from their centroid."""
    empty = (counts == 0).nonzero().squeeze(1)
    if empty.numel() == 0:
        return centroids
    far = dist.topk(min(empty.numel(), dist.numel())).indices
    centroids = centroids.clone()
    centroids[empty[: far.numel()]] = x[far]
    return centroids


def inertia_of(x: torch.Tensor, centroids: torch.Tensor, assign: torch.Tensor) -> float:
    """Sum of squared distances of points to their assigned centroids."""
    return float(((x - centroids[assign]) ** 2).sum(1).double().sum())
