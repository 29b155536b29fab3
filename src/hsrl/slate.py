"""From item scores to a slate: greedy top-K, or K items sampled without replacement.

Every agent scores the items of the live catalogue and hands the scores here, so exploration,
the live-item rule and the page layout are implemented once. Sampling without replacement uses
the Gumbel-top-k trick, which draws K distinct items with the same law as sequential sampling
from softmax(scores).

A :class:`PageLayout` restricts where items may go: the page's K slots form R rows of K / R
slots, and row r shows only items of location r (RL4RS's pages: locations 1, 2, 3 in slots 1-3,
4-6, 7-9). Under a layout every helper picks each row's items among that row's items only, the
best of the row in the row's first slot; with no layout (``None``) any item may go anywhere.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from hsrl.errors import ConfigError

LAYOUTS = ("free", "rows")
"""Env layout modes: "free" (any item in any slot) or "rows" (the dataset's page layout)."""


@dataclass(frozen=True)
class PageLayout:
    """Row r of the page (slots ``slots_of(r)``) shows only items whose ``item_row`` is r.

    ``item_row`` (N + 1,) long: the row (location) of each item, 0 for the padding item and for
    items of no row; ``slot_row`` (K,) long: the row of each slot, rows 1..R in page order, each
    a block of consecutive slots.
    """

    item_row: torch.Tensor
    slot_row: torch.Tensor
    _row_slots: tuple[torch.Tensor, ...] = field(init=False, repr=False, compare=False)
    """The slots of rows 1..R, found once here so that acting needs no host sync."""

    def __post_init__(self) -> None:
        rows = self.slot_row.tolist()
        slices = []
        for row in range(1, max(rows, default=0) + 1):
            first = rows.index(row) if row in rows else -1
            count = rows.count(row)
            if first < 0 or rows[first : first + count] != [row] * count:
                raise ConfigError(
                    f"page layout: the slots of row {row} must be one block of consecutive slots"
                )
            slices.append(torch.arange(first, first + count, device=self.slot_row.device))
        object.__setattr__(self, "_row_slots", tuple(slices))

    @classmethod
    def from_locations(cls, location: torch.Tensor, slate_size: int) -> PageLayout:
        """R rows of K / R slots for item locations 1..R (0 = no location), as RL4RS pages."""
        location = torch.as_tensor(location).long()
        rows = sorted(int(v) for v in torch.unique(location[1:]).tolist() if v > 0)
        if not rows or rows != list(range(1, len(rows) + 1)):
            raise ConfigError(
                f"the page layout needs item locations 1..R, the item table has {rows or 'none'}"
            )
        if slate_size % len(rows):
            raise ConfigError(
                f"the page layout needs the slate size to be a multiple of the {len(rows)} rows, "
                f"got {slate_size}"
            )
        per_row = slate_size // len(rows)
        slot_row = torch.arange(slate_size, device=location.device) // per_row + 1
        layout = cls(location, slot_row)
        layout.check_items(torch.ones_like(location, dtype=torch.bool))
        return layout

    @property
    def num_rows(self) -> int:
        return len(self._row_slots)

    def slots_of(self, row: int) -> torch.Tensor:
        """The slots (0-based) of row ``row`` (1-based), in page order."""
        return self._row_slots[row - 1]

    def to(self, device: torch.device | str) -> PageLayout:
        return PageLayout(self.item_row.to(device), self.slot_row.to(device))

    def with_items(self, item_row: torch.Tensor) -> PageLayout:
        """The same rows over a grown item table (new items appended with their rows)."""
        item_row = torch.as_tensor(item_row, device=self.item_row.device).long()
        n = self.item_row.shape[0]
        if item_row.shape[0] < n or not torch.equal(item_row[:n], self.item_row):
            raise ConfigError("page layout: item ids are stable, rows can only be appended")
        return PageLayout(item_row, self.slot_row)

    def check_items(self, live: torch.Tensor) -> None:
        """Raise ConfigError unless every row has as many live items as slots."""
        for row in range(1, self.num_rows + 1):
            have = int((live & (self.item_row == row)).sum())
            need = self.slots_of(row).numel()
            if have < need:
                raise ConfigError(
                    f"page layout: row {row} has {need} slots but only {have} live items"
                )

    def misplaced(self, slate: torch.Tensor) -> torch.Tensor:
        """(B, K) bool: the slot holds an item of another row (ids must be in the table)."""
        return self.item_row[slate] != self.slot_row


def _per_row_top(keys: torch.Tensor, slate_size: int, layout: PageLayout | None) -> torch.Tensor:
    """The slate of the highest keys (B, N + 1) -> (B, K), each row from its own items."""
    if layout is None:
        return keys.topk(slate_size, dim=-1).indices
    slate = torch.empty((keys.shape[0], slate_size), dtype=torch.long, device=keys.device)
    for row in range(1, layout.num_rows + 1):
        slots = layout.slots_of(row)
        row_keys = keys.masked_fill(layout.item_row != row, float("-inf"))
        slate[:, slots] = row_keys.topk(slots.numel(), dim=-1).indices
    return slate


def greedy_slate(
    scores: torch.Tensor, slate_size: int, layout: PageLayout | None = None
) -> torch.Tensor:
    """scores (B, N + 1) with -inf for items that cannot be shown -> item ids (B, K)."""
    return _per_row_top(scores, slate_size, layout)


def sample_slate(
    log_probs: torch.Tensor,
    slate_size: int,
    generator: torch.Generator | None = None,
    epsilon: float = 0.0,
    layout: PageLayout | None = None,
) -> torch.Tensor:
    """K distinct items from softmax(log_probs), mixed with a uniform law of weight epsilon.

    log_probs (B, N + 1) normalised log-probabilities with -inf for items that cannot be shown.
    Under a layout each row's items are drawn from the law restricted to that row's items.
    """
    keys = log_probs_with_uniform(log_probs, epsilon) + gumbel_noise(log_probs, generator)
    return _per_row_top(keys, slate_size, layout)


def log_probs_with_uniform(log_probs: torch.Tensor, epsilon: float) -> torch.Tensor:
    """log((1 - epsilon) p + epsilon u), u uniform over the entries p allows (finite ones)."""
    if epsilon <= 0.0:
        return log_probs
    allowed = torch.isfinite(log_probs)
    count = allowed.sum(dim=-1, keepdim=True).clamp(min=1)  # (..., 1)
    uniform = torch.where(allowed, -torch.log(count.float()), float("-inf"))
    return torch.logaddexp(log_probs + math.log1p(-epsilon), uniform + math.log(epsilon))


def gumbel_noise(like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Standard Gumbel noise of ``like``'s shape, dtype and device: argmax(log p + noise) is a
    draw from p, and the top k of it a draw of k without replacement."""
    uniform = torch.rand(like.shape, generator=generator, device=like.device, dtype=like.dtype)
    return -torch.log(-torch.log(uniform.clamp(min=1e-20, max=1.0 - 1e-7)))


def uniform_slate(
    live: torch.Tensor,
    batch: int,
    slate_size: int,
    generator: torch.Generator | None = None,
    layout: PageLayout | None = None,
) -> torch.Tensor:
    """K distinct live items uniformly at random per user: live (N + 1,) bool -> (B, K)."""
    scores = torch.rand((batch, live.shape[0]), generator=generator, device=live.device)
    scores = scores.masked_fill(~live, float("-inf"))
    return _per_row_top(scores, slate_size, layout)
