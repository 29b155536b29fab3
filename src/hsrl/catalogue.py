"""Catalogues that change: retire items, add new ones, and keep every part in step.

A catalogue change touches three things that must agree: the environment's item table (the
simulator scores new items from their features), the agent's :class:`~hsrl.agents.Catalogue`
(features, live mask) and, for HSRL, the SID index (new items get SIDs from the frozen codebook
through the collision policy; retired items free theirs). :func:`apply_change` updates all of
them at once. Ids are stable: new items get the next ids (N + 1, N + 2, ...), retired items keep
their rows in every table (logged and replayed histories still name them) and only leave the live
mask. No network changes shape: every agent reads the catalogue at act time.

A :class:`ChurnSchedule` says how much of the catalogue is replaced, in how many changes and
when; :func:`plan_changes` turns it into concrete changes, a pure function of the schedule and
the starting catalogue, so every agent compared on one dataset sees the very same items come and
go.

New items. There is no real "tomorrow's catalogue", so new items are drawn like the existing
ones: each copies the features of a random live item (its prototype) and perturbs the continuous
columns (more than 12 distinct values among live items) with Gaussian noise of ``noise`` times
the column's standard deviation, clipped to the column's range; categorical columns keep the
prototype's value. ``noise = 0`` gives exact copies (a new id for an old item); 0.5 (default)
gives items near, but not on, existing ones.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch

from hsrl.agents.base import Catalogue
from hsrl.errors import ConfigError

# A column with at most this many distinct values among live items is treated as categorical.
CATEGORICAL_MAX_VALUES = 12


@dataclass(frozen=True)
class ChurnSchedule:
    """How the catalogue changes: a share replaced, in equal steps, at given iterations."""

    fraction: float = 0.0
    """Share of the starting live items replaced by new items over the whole schedule."""
    steps: int = 1
    """Number of changes; each retires and adds an equal share (the last one takes the rest)."""
    start: int = 0
    """Iteration of the first change, counted from where the schedule starts."""
    every: int = 1
    """Iterations between two changes."""
    noise: float = 0.5
    """Perturbation of new items' continuous features, in column standard deviations."""
    seed: int = 0
    """Which items retire and how new items are drawn."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.fraction <= 1.0:
            raise ConfigError(f"churn fraction must be in [0, 1], got {self.fraction}")
        if self.steps < 1 or self.every < 1 or self.start < 0:
            raise ConfigError("churn steps and every must be at least 1, start at least 0")
        if self.noise < 0:
            raise ConfigError(f"churn noise must not be negative, got {self.noise}")

    def iterations(self) -> list[int]:
        """The iteration of each change, in order."""
        return [self.start + step * self.every for step in range(self.steps)]


@dataclass
class CatalogueChange:
    """One change: these live items retire, then these new items arrive (ids appended in order)."""

    retire: torch.Tensor  # (R,) long item ids
    features: torch.Tensor  # (A, F) float features of the new items
    rows: torch.Tensor | None = None
    """(A,) long: the page row (location) of each new item, its prototype's; needed under a
    page layout (:class:`~hsrl.slate.PageLayout`)."""

    def to_dict(self) -> dict[str, Any]:
        return {"retired": int(self.retire.numel()), "added": int(self.features.shape[0])}


def categorical_columns(features: torch.Tensor, live: torch.Tensor) -> torch.Tensor:
    """(F,) bool: columns with at most CATEGORICAL_MAX_VALUES distinct values among live items."""
    rows = features[live]  # (M, F)
    sorted_rows = rows.sort(dim=0).values
    distinct = 1 + (sorted_rows[1:] != sorted_rows[:-1]).sum(dim=0)  # (F,)
    return distinct <= CATEGORICAL_MAX_VALUES


def new_item_features(
    features: torch.Tensor,
    live: torch.Tensor,
    count: int,
    noise: float,
    generator: torch.Generator,
) -> torch.Tensor:
    """``count`` new feature vectors (count, F) drawn like the live items (module docs)."""
    return _draw_new_items(features, live, count, noise, generator)[0]


def _draw_new_items(
    features: torch.Tensor,
    live: torch.Tensor,
    count: int,
    noise: float,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """New feature vectors (count, F) and the ids (count,) of the items they were copied from."""
    live_ids = live.nonzero().squeeze(1)
    if live_ids.numel() == 0:
        raise ConfigError("the catalogue has no live item to draw new items from")
    rows = features[live_ids].float()  # (M, F)
    pick = torch.randint(live_ids.numel(), (count,), generator=generator)
    new = rows[pick.to(rows.device)].clone()  # (count, F)
    if noise > 0 and count > 0:
        continuous = ~categorical_columns(features, live)  # (F,)
        std = rows.std(dim=0) if rows.shape[0] > 1 else rows.new_zeros(rows.shape[1])
        gauss = torch.randn(count, rows.shape[1], generator=generator).to(rows.device)
        perturbed = new + gauss * (noise * std)
        low, high = rows.min(dim=0).values, rows.max(dim=0).values
        perturbed = torch.maximum(torch.minimum(perturbed, high), low)
        new = torch.where(continuous, perturbed, new)
    return new, live_ids[pick.to(live_ids.device)]


def plan_changes(
    schedule: ChurnSchedule,
    features: torch.Tensor,
    live: torch.Tensor,
    item_row: torch.Tensor | None = None,
) -> list[CatalogueChange]:
    """The schedule's changes for a catalogue ``features (N + 1, F)``, ``live (N + 1,)``.

    ``round(fraction * live items)`` distinct starting items retire, spread evenly over the
    steps, and as many new items arrive, so the live catalogue keeps its size. Deterministic in
    the schedule's seed and the catalogue. With ``item_row`` (N + 1,), the page row of each
    item, every new item gets its prototype's row.
    """
    generator = torch.Generator().manual_seed(schedule.seed)
    original = live.nonzero().squeeze(1).cpu()  # (M,)
    total = round(schedule.fraction * original.numel())
    order = torch.randperm(original.numel(), generator=generator)
    retire = original[order[:total]]  # random order: the chunks are random subsets
    new, prototype = _draw_new_items(features.cpu(), live.cpu(), total, schedule.noise, generator)
    rows = None if item_row is None else item_row.cpu().long()[prototype]
    new_rows = (
        torch.tensor_split(rows, schedule.steps) if rows is not None else [None] * schedule.steps
    )
    return [
        CatalogueChange(r.sort().values, f, row)
        for r, f, row in zip(
            torch.tensor_split(retire, schedule.steps),
            torch.tensor_split(new, schedule.steps),
            new_rows,
        )
    ]


def apply_change(
    change: CatalogueChange, catalogue: Catalogue, envs: Iterable[Any] = ()
) -> torch.Tensor:
    """Apply one change to the agent's catalogue (and its SID index) and to environments.

    Returns the new items' ids (A,). Checks everything first, so a change that cannot apply
    (an item not live, SIDs running out) raises :class:`ConfigError` and changes nothing.
    """
    device = catalogue.device
    n = catalogue.features.shape[0] - 1
    retire = change.retire.to(device).long().reshape(-1)
    added = change.features.to(device, torch.float32)
    if added.ndim != 2 or added.shape[1] != catalogue.features.shape[1]:
        raise ConfigError(
            f"new item features must be (A, {catalogue.features.shape[1]}), "
            f"got {tuple(added.shape)}"
        )
    if retire.numel():
        if bool(((retire < 1) | (retire > n)).any()):
            raise ConfigError(f"retire: item ids must be in 1..{n}")
        if torch.unique(retire).numel() != retire.numel():
            raise ConfigError("retire: an item id is given twice")
        if not bool(catalogue.live[retire].all()):
            raise ConfigError("retire: an item is not live")
    layout = catalogue.layout
    if layout is not None:
        if change.rows is None or change.rows.numel() != added.shape[0]:
            raise ConfigError(
                "under a page layout every new item needs its page row (CatalogueChange.rows)"
            )
        live_after = catalogue.live.clone()
        live_after[retire] = False
        live_after = torch.cat([live_after, live_after.new_ones(added.shape[0])])
        layout = layout.with_items(torch.cat([layout.item_row, change.rows.to(device).long()]))
        layout.check_items(live_after)
    sid = catalogue.sid
    if sid is not None:
        from hsrl.sid.collisions import check_capacity

        if sid.num_items != n:
            raise ConfigError(
                f"the SID index covers {sid.num_items} items, the catalogue {n}: out of step"
            )
        check_capacity(sid.num_live - retire.numel(), added.shape[0], sid.levels, sid.codes)
        sid.retire_items(retire)
        ids = sid.add_items(added)
    else:
        ids = torch.arange(n + 1, n + 1 + added.shape[0], device=device)
    live = catalogue.live.clone()
    live[retire] = False
    live = torch.cat([live, torch.ones(added.shape[0], dtype=torch.bool, device=device)])
    catalogue.features = torch.cat([catalogue.features, added])
    catalogue.live = live
    catalogue.layout = layout
    for env in envs:
        env.set_items(catalogue.features, catalogue.live, layout)
    return ids.to(device)


__all__ = [
    "CatalogueChange",
    "ChurnSchedule",
    "apply_change",
    "categorical_columns",
    "new_item_features",
    "plan_changes",
]
