"""K-means backends: sklearn as the oracle, balanced sizes, seeds, chunking, faiss."""

from __future__ import annotations

import sys

import pytest
import torch
from sklearn.cluster import KMeans

from hsrl.errors import ConfigError
from hsrl.sid.kmeans import TorchSearch, balanced_assign, kmeans, make_search

# Our plain k-means (4 seeded restarts) must reach within 5% of sklearn's best of 10 restarts.
INERTIA_TOLERANCE = 1.05


def blobs(n: int, k: int, dim: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(k, dim, generator=g) * 4
    return centres[torch.randint(k, (n,), generator=g)] + torch.randn(n, dim, generator=g)


@pytest.mark.parametrize("case", ["rl4rs-16", "rl4rs-8", "blobs-10"])
def test_plain_kmeans_inertia_close_to_sklearn(case, rl4rs_features):
    if case.startswith("rl4rs"):
        x, k = rl4rs_features[1:], int(case.split("-")[1])
    else:
        x, k = blobs(600, 10, 8, seed=3), 10
    ours = kmeans(x, k, seed=0, n_init=4, max_iter=100)
    oracle = KMeans(n_clusters=k, n_init=10, random_state=0).fit(x.numpy())
    assert ours.inertia <= INERTIA_TOLERANCE * oracle.inertia_
    # The reported inertia is the real one of the returned centroids and assignment.
    real = float(((x - ours.centroids[ours.assign]) ** 2).sum())
    assert real == pytest.approx(ours.inertia, rel=1e-4)
    # Plain k-means assigns every point to its nearest centroid.
    nearest = torch.cdist(x, ours.centroids).argmin(1)
    assert (ours.centroids[nearest] - ours.centroids[ours.assign]).abs().max() < 1e-5


@pytest.mark.parametrize("n,k", [(283, 16), (100, 7), (10, 16), (64, 8), (1001, 33), (5, 5)])
def test_balanced_cluster_sizes_differ_by_at_most_one(n, k):
    x = blobs(n, 3, 6, seed=n)  # very unequal natural clusters
    result = kmeans(x, k, balanced=True, seed=1)
    sizes = torch.bincount(result.assign, minlength=k)
    assert int(sizes.sum()) == n
    assert int(sizes.max() - sizes.min()) <= 1


def test_balanced_assignment_keeps_a_perfect_split():
    # Two tight groups of equal size around two centroids: balanced = nearest.
    g = torch.Generator().manual_seed(0)
    x = torch.cat(
        [torch.randn(50, 2, generator=g) * 0.1, torch.randn(50, 2, generator=g) * 0.1 + 5]
    )
    centroids = torch.tensor([[5.0, 5.0], [0.0, 0.0]])
    assign, dist = balanced_assign(x, centroids, TorchSearch())
    assert assign[:50].eq(1).all() and assign[50:].eq(0).all()
    assert torch.allclose(dist, ((x - centroids[assign]) ** 2).sum(1), atol=1e-4)


def test_balanced_assignment_full_cluster_keeps_its_closest_points():
    # Three of four points are nearest centroid 0, which holds two: the farthest moves.
    x = torch.tensor([[0.0], [0.1], [0.9], [3.0]])
    centroids = torch.tensor([[0.0], [2.0]])
    assign, _ = balanced_assign(x, centroids, TorchSearch())
    assert assign.tolist() == [0, 0, 1, 1]


def test_same_seed_same_result_other_seed_other_result(rl4rs_features):
    x = rl4rs_features[1:]
    for balanced in (False, True):
        a = kmeans(x, 16, balanced=balanced, seed=5)
        b = kmeans(x, 16, balanced=balanced, seed=5)
        c = kmeans(x, 16, balanced=balanced, seed=6)
        assert torch.equal(a.centroids, b.centroids) and torch.equal(a.assign, b.assign)
        assert not torch.equal(a.centroids, c.centroids)


def test_identical_points_and_more_clusters_than_points():
    x = torch.ones(20, 3)
    for balanced in (False, True):
        result = kmeans(x, 8, balanced=balanced, seed=0)
        assert torch.isfinite(result.centroids).all()
        assert result.inertia == pytest.approx(0.0, abs=1e-6)
    few = torch.randn(3, 4)
    result = kmeans(few, 6, seed=0)
    assert result.inertia == pytest.approx(0.0, abs=1e-5)
    assert torch.unique(result.assign).numel() == 3


@pytest.mark.parametrize("m", [1, 3])
def test_chunked_search_equals_brute_force(m):
    g = torch.Generator().manual_seed(0)
    x, c = torch.randn(257, 5, generator=g), torch.randn(11, 5, generator=g)
    allowed = torch.ones(11, dtype=torch.bool)
    allowed[[2, 7]] = False
    dist, index = TorchSearch(chunk_elements=40)(x, c, m, allowed)  # 3 rows per chunk
    brute = torch.cdist(x, c) ** 2
    brute[:, ~allowed] = float("inf")
    expect_d, expect_i = brute.topk(m, dim=1, largest=False)
    assert torch.equal(index, expect_i)
    assert torch.allclose(dist, expect_d, atol=1e-4)


def test_unknown_backend_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown k-means backend"):
        make_search("annoy")


def test_missing_faiss_gives_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "faiss", None)  # makes `import faiss` fail
    with pytest.raises(ConfigError, match="faiss package is not installed"):
        kmeans(torch.randn(10, 2), 2, backend="faiss")


def test_faiss_backend_agrees_with_torch(rl4rs_features):
    pytest.importorskip("faiss")
    x = rl4rs_features[1:]
    g = torch.Generator().manual_seed(1)
    c = torch.randn(16, 40, generator=g)
    allowed = torch.arange(16) % 3 != 0
    d_t, i_t = make_search("torch")(x, c, 4, allowed)
    d_f, i_f = make_search("faiss")(x, c, 4, allowed)
    assert torch.allclose(d_t, d_f, rtol=1e-4, atol=1e-3)
    assert (i_t == i_f).float().mean() > 0.99  # equal up to exact ties
    for balanced in (False, True):
        ours = kmeans(x, 16, balanced=balanced, seed=0, backend="torch")
        theirs = kmeans(x, 16, balanced=balanced, seed=0, backend="faiss")
        assert theirs.inertia == pytest.approx(ours.inertia, rel=0.02)
