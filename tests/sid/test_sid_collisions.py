"""The collision policy: one-to-one tables on hard cases, and the documented moves."""

from __future__ import annotations

import pytest
import torch

from hsrl.errors import ConfigError
from hsrl.sid import PrefixIndex, ResidualCodebook, build_sid_index, place_items, prefix_keys


def line_codebook() -> ResidualCodebook:
    """L = 2, V = 4, 1-dim: level 1 at 0, 10, 20, 30; level 2 at -1, 0, 1, 2."""
    return ResidualCodebook(
        torch.tensor([[[0.0], [10.0], [20.0], [30.0]], [[-1.0], [0.0], [1.0], [2.0]]])
    )


def empty_tree(levels: int, codes: int) -> PrefixIndex:
    none = torch.empty(0, dtype=torch.long)
    return PrefixIndex(none, none, levels, codes)


def place(x: torch.Tensor, tree: PrefixIndex, first_id: int = 1):
    book = line_codebook()
    ids = torch.arange(first_id, first_id + x.shape[0])
    return place_items(x, book.encode(x), ids, book, tree)


def test_nearest_item_keeps_the_sid_the_other_takes_the_nearest_free_last_code():
    tree = empty_tree(2, 4)
    # Both encode to (0, 1); item 1 is nearer its last centroid (0.1 from 0, against 0.2).
    result = place(torch.tensor([[0.2], [0.1]]), tree)
    # Item 2 (x = 0.1) keeps (0, 1); item 1's residual 0.2 is nearest code 2 (at 1) among free.
    assert result.sid.tolist() == [[0, 2], [0, 1]]
    assert result.collided == 1 and result.moved_at_level == [0, 1]
    assert tree.lookup(prefix_keys(result.sid, 4)).tolist() == [1, 2]


def test_a_full_prefix_sends_the_item_to_the_nearest_prefix_with_room():
    tree = empty_tree(2, 4)
    old = torch.tensor([[0, 0], [0, 1], [0, 2], [0, 3]])
    tree.add(prefix_keys(old, 4), torch.arange(1, 5))
    # x = 4 encodes to (0, 3), taken, and prefix 0 is full: level 1 moves to the nearest code
    # with room (10), the residual -6 then takes last code 0 (at -1).
    result = place(torch.tensor([[4.0]]), tree, first_id=5)
    assert result.sid.tolist() == [[1, 0]]
    assert result.moved_at_level == [1, 0]
    # The old items keep their SIDs.
    assert tree.lookup(prefix_keys(old, 4)).tolist() == [1, 2, 3, 4]


def test_identical_items_fill_their_prefix_in_preference_order_then_the_next_prefix():
    tree = empty_tree(2, 4)
    result = place(torch.full((6, 1), 0.1), tree)
    # Residual 0.1 prefers last codes 1, 2, 0, 3; then prefix 1 (residual -9.9): codes 0, 1.
    assert result.sid.tolist() == [[0, 1], [0, 2], [0, 0], [0, 3], [1, 0], [1, 1]]
    assert result.collided == 5 and result.moved_at_level == [2, 3]
    assert result.rounds == 2  # a crowd is spread over a prefix in one round


def test_placement_is_deterministic_and_one_to_one_under_heavy_collisions():
    g = torch.Generator().manual_seed(0)
    book = ResidualCodebook(torch.randn(3, 8, 5, generator=g))
    x = torch.randn(500, 5, generator=g) * 0.3  # 500 items in 512 SIDs: many collide
    preferred = book.encode(x)
    ids = torch.arange(1, 501)
    first = place_items(x, preferred, ids, book, empty_tree(3, 8))
    second = place_items(x, preferred, ids, book, empty_tree(3, 8))
    assert torch.equal(first.sid, second.sid)
    keys = prefix_keys(first.sid, 8)
    assert torch.unique(keys).numel() == 500
    assert first.collided == 500 - torch.unique(prefix_keys(preferred, 8)).numel()
    assert sum(first.moved_at_level) == first.collided
    # An item whose preferred SID nobody else wanted keeps it.
    pref_keys = prefix_keys(preferred, 8)
    alone = torch.bincount(pref_keys, minlength=512)[pref_keys] == 1
    assert torch.equal(first.sid[alone], preferred[alone])
    # Of the items sharing a preferred SID, the one nearest its last centroid keeps it.
    error = ((x - book.decode(preferred)) ** 2).sum(1)
    kept = (first.sid == preferred).all(1)
    for key in pref_keys[~alone].unique()[:20].tolist():
        group = (pref_keys == key).nonzero().squeeze(1)
        winner = group[kept[group]]
        assert winner.numel() == 1
        assert error[winner] <= error[group].min() + 1e-7


def test_many_identical_feature_vectors_get_distinct_sids():
    features = torch.zeros(301, 4)
    features[1:] = torch.tensor([1.0, -2.0, 0.5, 3.0])
    for balanced in (False, True):
        index, report = build_sid_index(features, levels=3, codes=8, balanced=balanced, seed=0)
        assert report["collisions_after"] == 0
        assert torch.equal(index.items_of(index.item_sid[1:]), torch.arange(1, 301))
        if not balanced:  # every item encodes to the same SID
            assert report["collisions_before"] == 299


def test_more_items_than_sids_is_a_clear_error():
    features = torch.randn(514, 3)
    features[0] = 0
    with pytest.raises(ConfigError, match=r"513 items .* 8\^3 = 512 .* raise --codes or --levels"):
        build_sid_index(features, levels=3, codes=8)
    index, report = build_sid_index(features[:513], levels=3, codes=8, balanced=False)
    assert report["collisions_after"] == 0 and index.num_live == 512  # every SID used once


def test_a_full_catalogue_refuses_new_items_until_one_retires():
    g = torch.Generator().manual_seed(2)
    features = torch.cat([torch.zeros(1, 3), torch.randn(16, 3, generator=g)])
    index, _ = build_sid_index(features, levels=2, codes=4, balanced=True)
    before = index.item_sid.clone()
    with pytest.raises(ConfigError, match="raise --codes or --levels, or retire"):
        index.add_items(torch.randn(1, 3, generator=g))
    assert torch.equal(index.item_sid, before) and index.num_items == 16
    freed = index.item_sid[7].clone()
    index.retire_items(torch.tensor([7]))
    new = index.add_items(torch.randn(1, 3, generator=g))
    assert new.tolist() == [17]
    assert torch.equal(index.item_sid[17], freed)  # the only free SID
    assert (index.levels, index.codes) == (2, 4)
