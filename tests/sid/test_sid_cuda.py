"""The same SID behaviour on a CUDA device (runs where torch sees a GPU)."""

from __future__ import annotations

import pytest
import torch

from hsrl.sid import SidIndex, build_sid_index, kmeans

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def test_cuda_build_is_one_to_one_and_queries_stay_on_device(rl4rs_features, tmp_path):
    for balanced in (False, True):
        index, report = build_sid_index(rl4rs_features, balanced=balanced, seed=0, device="cuda")
        assert index.item_sid.is_cuda and index.live.is_cuda
        assert report["collisions_after"] == 0
        ids = torch.arange(1, 284, device="cuda")
        assert torch.equal(index.items_of(index.item_sid[ids]), ids)
        mask = index.children_mask(index.item_sid[ids][:, :2])
        assert mask.is_cuda and mask[torch.arange(283), index.item_sid[ids][:, 2]].all()
        cpu, _ = build_sid_index(rl4rs_features, balanced=balanced, seed=0, device="cpu")
        # Same seeded initial centroids; float sums on another device may differ in the last
        # bits, so compare quality rather than bits.
        assert report["levels_detail"][-1]["reconstruction_mse"] == pytest.approx(
            cpu.codebook.reconstruction_errors(rl4rs_features[1:], cpu.item_sid[1:])[-1], rel=0.05
        )
    new = index.add_items(rl4rs_features[1:6].cuda() + 0.5)
    assert new.is_cuda and torch.equal(index.items_of(index.item_sid[new]), new)
    index.retire_items(new[:2])
    index.save(tmp_path / "sid")
    loaded = SidIndex.load(tmp_path / "sid", device="cuda")
    assert torch.equal(loaded.item_sid.cpu(), index.item_sid.cpu())
    assert torch.equal(loaded.to("cpu").live, index.live.cpu())


def test_cuda_balanced_kmeans_sizes(rl4rs_features):
    result = kmeans(rl4rs_features[1:].cuda(), 16, balanced=True, seed=0)
    sizes = torch.bincount(result.assign, minlength=16)
    assert int(sizes.max() - sizes.min()) <= 1
