"""Catalogue changes: planning, applying them to agent, SID index and environment consistently."""

from __future__ import annotations

import pytest
import torch

from hsrl.agents import Catalogue
from hsrl.catalogue import (
    CatalogueChange,
    ChurnSchedule,
    apply_change,
    categorical_columns,
    plan_changes,
)
from hsrl.errors import ConfigError
from hsrl.sid import SidIndex, build_sid_index
from hsrl.simulator.env import EnvConfig, InvalidActionError, make_env


def toy_catalogue(num_items: int = 120, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Features with two categorical columns (3 and 5 values) and four continuous ones."""
    g = torch.Generator().manual_seed(seed)
    features = torch.cat(
        [
            torch.randint(0, 3, (num_items + 1, 1), generator=g).float(),
            torch.randint(0, 5, (num_items + 1, 1), generator=g).float() / 4,
            torch.randn(num_items + 1, 4, generator=g),
        ],
        dim=1,
    )
    features[0] = 0
    live = torch.ones(num_items + 1, dtype=torch.bool)
    live[0] = False
    return features, live


def test_schedule_validates_its_fields():
    for bad in ({"fraction": 1.5}, {"steps": 0}, {"every": 0}, {"noise": -1.0}, {"start": -1}):
        with pytest.raises(ConfigError):
            ChurnSchedule(**bad)
    assert ChurnSchedule(fraction=0.2, steps=3, start=5, every=10).iterations() == [5, 15, 25]


def test_plan_replaces_the_fraction_in_equal_steps_deterministically():
    features, live = toy_catalogue()
    live[7] = False  # an item already retired is never retired again
    schedule = ChurnSchedule(fraction=0.3, steps=4, seed=3)
    changes = plan_changes(schedule, features, live)
    total = round(0.3 * int(live.sum()))
    assert len(changes) == 4
    assert sum(c.retire.numel() for c in changes) == total
    assert sum(c.features.shape[0] for c in changes) == total
    assert [c.retire.numel() for c in changes] == [c.features.shape[0] for c in changes]
    retired = torch.cat([c.retire for c in changes])
    assert torch.unique(retired).numel() == total and bool(live[retired].all())
    again = plan_changes(schedule, features, live)
    assert all(
        torch.equal(a.retire, b.retire) and torch.equal(a.features, b.features)
        for a, b in zip(changes, again)
    )
    other = plan_changes(ChurnSchedule(fraction=0.3, steps=4, seed=4), features, live)
    assert not torch.equal(
        torch.cat([c.retire for c in other]).sort().values, retired.sort().values
    )


def test_new_items_look_like_the_live_ones():
    features, live = toy_catalogue()
    assert categorical_columns(features, live).tolist() == [True, True] + [False] * 4
    (change,) = plan_changes(ChurnSchedule(fraction=0.5, noise=0.5), features, live)
    new = change.features
    rows = features[live]
    for column in (0, 1):  # categorical: values that exist
        assert bool(torch.isin(new[:, column], rows[:, column].unique()).all())
    low, high = rows.min(0).values, rows.max(0).values
    assert bool(((new >= low) & (new <= high)).all())
    # Continuous columns are perturbed, so new items are not copies of old ones...
    distance = torch.cdist(new[:, 2:], rows[:, 2:]).min(dim=1).values
    assert bool((distance > 1e-3).all())
    # ... unless the noise is 0: then each is an exact copy of a live item.
    (copy,) = plan_changes(ChurnSchedule(fraction=0.5, noise=0.0), features, live)
    assert bool((copy.features[:, None, :] == rows[None]).all(-1).any(1).all())


def sid_catalogue(features: torch.Tensor, levels: int = 3, codes: int = 8) -> Catalogue:
    index, _ = build_sid_index(features, levels, codes, seed=0, n_init=1)
    return Catalogue(features.clone(), sid=index)


def test_apply_change_keeps_ids_stable_and_catalogue_and_sids_in_step():
    features, _ = toy_catalogue()
    catalogue = sid_catalogue(features)
    (change,) = plan_changes(ChurnSchedule(fraction=0.25, seed=1), features, catalogue.live)
    ids = apply_change(change, catalogue)
    n_new = change.features.shape[0]
    assert torch.equal(ids, torch.arange(121, 121 + n_new))
    assert catalogue.features.shape == (121 + n_new, 6)
    assert torch.equal(catalogue.features[:121], features)  # old rows, retired ones too, stay
    assert torch.equal(catalogue.features[121:], change.features)
    assert not bool(catalogue.live[change.retire].any()) and bool(catalogue.live[ids].all())
    assert int(catalogue.live.sum()) == 120  # same size
    sid = catalogue.sid
    assert torch.equal(sid.live, catalogue.live)
    assert bool((sid.item_sid[change.retire] == -1).all())
    live_sids = sid.item_sid[catalogue.live]
    assert torch.unique(live_sids, dim=0).shape[0] == 120  # still one-to-one
    # New SIDs come from the frozen codebook: an exact copy of an old item would prefer its SID.
    assert torch.equal(sid.encode(change.features[:1]), sid.codebook.encode(change.features[:1]))


def test_a_change_that_cannot_apply_changes_nothing():
    features, _ = toy_catalogue(60)
    catalogue = sid_catalogue(features, levels=2, codes=8)  # room for 64 SIDs
    before = (catalogue.features.clone(), catalogue.live.clone(), catalogue.sid.item_sid.clone())
    too_many = CatalogueChange(torch.tensor([1, 2]), torch.randn(8, 6))  # 60 - 2 + 8 > 64
    not_live = CatalogueChange(torch.tensor([0]), torch.randn(1, 6))
    twice = CatalogueChange(torch.tensor([3, 3]), torch.randn(1, 6))
    wrong_dim = CatalogueChange(torch.tensor([3]), torch.randn(1, 5))
    for change in (too_many, not_live, twice, wrong_dim):
        with pytest.raises(ConfigError):
            apply_change(change, catalogue)
        assert torch.equal(catalogue.features, before[0])
        assert torch.equal(catalogue.live, before[1])
        assert torch.equal(catalogue.sid.item_sid, before[2])


@pytest.mark.parametrize("truth", [True, False])
def test_env_scores_new_items_from_features_and_refuses_retired_ones(tiny_world, truth):
    env = make_env(
        tiny_world["data"],
        None if truth else tiny_world["simulator"],
        ground_truth=truth,
        config=EnvConfig(num_users=6),
    )
    sid = SidIndex.load(tiny_world["sid"])
    catalogue = Catalogue(env.item_features.clone(), sid=sid)
    n = env.num_items
    # New items that copy items 1..9: the simulator must score them exactly like the originals.
    change = CatalogueChange(torch.tensor([10, 11, 12]), catalogue.features[1:10].clone())
    ids = apply_change(change, catalogue, [env])
    assert env.num_items == n + 9 and torch.equal(env.live, catalogue.live)
    env.reset(seed=0)
    # The simulator scores items from their features only: copies score like their originals.
    scores = env.item_scores()  # (B, N + 1) immediate click logits
    assert scores.shape == (6, n + 10)
    assert torch.allclose(scores[:, ids], scores[:, 1:10], atol=1e-5)
    env.step(ids[:9].expand(6, -1).clone())  # new items are accepted
    with pytest.raises(InvalidActionError, match="not in the live catalogue"):
        env.step(torch.tensor([[10, 1, 2, 3, 4, 5, 6, 7, 8]] * 6))
