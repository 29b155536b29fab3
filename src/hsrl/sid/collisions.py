"""The collision policy: every live item gets its own SID, deterministically.

Items arrive with a preferred SID (the fitted k-means path at build time, the nearest-centroid
encoding for new items). Then:

1. Items already in the table keep their SIDs (a new item never displaces an old one).
2. Among new items that prefer the same free SID, the one nearest its last-level centroid
   (smallest reconstruction error; then the smaller item id) keeps it. The others collide.
3. A colliding item keeps the longest prefix of its preferred SID that still has a free SID
   under it, and chooses the tokens below it anew, level by level: at each level a code with
   room under the prefix chosen so far (a subtree with a free SID), nearest to the item's
   residual at that level; at the last level, the nearest free code. When only the last level
   changes this is "the nearest free last-level code under the same prefix"; when that prefix
   is full the item moves up one level to the nearest prefix with room, and so on to the root.
4. Colliding items are placed in rounds against the SIDs taken so far. Within a round, at each
   level, the items choosing a code there are matched to the codes with room by deferred
   acceptance with capacities: a code can take as many items as its subtree has free SIDs
   (one at the last level). Each item proposes to its nearest code with room that has not
   refused it (among its 16 nearest); each code holds on to its nearest proposers up to its
   capacity (ties: the smaller item id) and refuses the others, who propose to their next
   choice. Items matched at a level go on to the next; an item refused by all its choices
   waits for the next round, which sees the new occupancy (its prefix may be full by then, so
   it moves up). Every round places at least one item, so the process ends; a crowd of items
   heading for one crowded prefix is spread over the nearest prefixes with room in a round or
   two instead of one item per round.

If the catalogue would hold more live items than the V^L SIDs exist, nothing is placed and a
:class:`~hsrl.errors.ConfigError` tells the user to raise V or L (or retire items).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from hsrl.errors import ConfigError
from hsrl.sid.codebook import ResidualCodebook
from hsrl.sid.prefix import PrefixIndex, prefix_keys

# Codes with room that an item lists at one level in one round (rule 4).
_CHOICES = 16
# Items whose (items x V) distance matrices are computed at once.
_CHUNK_ELEMENTS = 1 << 22
# Membership tests use a dense bitmap for key spaces up to this size (64 MiB of bools).
_BITMAP_LIMIT = 1 << 26


@dataclass
class Placement:
    """The SIDs given to a batch of items and how the policy got there."""

    sid: torch.Tensor  # (D, L) long
    collided: int = 0  # items whose preferred SID was taken (by an older or a nearer item)
    moved_at_level: list[int] = field(default_factory=list)  # collided items by first changed level
    rounds: int = 0


def check_capacity(live: int, new: int, levels: int, codes: int) -> None:
    space = codes**levels
    if live + new > space:
        raise ConfigError(
            f"{live + new} items need distinct semantic IDs but {codes}^{levels} = {space} exist "
            f"(codes V={codes}, levels L={levels}): raise --codes or --levels"
            + (f", or retire some of the {live} live items" if live else "")
        )


def place_items(
    features: torch.Tensor,
    preferred: torch.Tensor,
    item_ids: torch.Tensor,
    codebook: ResidualCodebook,
    occupancy: PrefixIndex,
) -> Placement:
    """Give items ``(D, F)`` with preferred SIDs ``(D, L)`` distinct free SIDs (module docs).

    ``item_ids (D,)`` must be ascending (they break ties); ``occupancy`` holds the SIDs already
    taken and receives the new ones.
    """
    levels, codes = codebook.levels, codebook.codes
    d_items = features.shape[0]
    check_capacity(len(occupancy), d_items, levels, codes)
    device = codebook.device
    x = features.float().to(device)
    preferred = preferred.long().to(device)
    item_ids = item_ids.long().to(device)
    sid = preferred.clone()
    placement = Placement(sid=sid, moved_at_level=[0] * levels)
    if d_items == 0:
        return placement

    # Rules 1 and 2: who keeps the preferred SID.
    keys = prefix_keys(preferred, codes)  # (D,)
    error = ((x - codebook.decode(preferred)) ** 2).sum(1)  # (D,)
    order = _lexsort(keys, error)  # by key, then error, then index (= item id order)
    sorted_keys = keys[order]
    first = torch.ones(d_items, dtype=torch.bool, device=device)
    first[1:] = sorted_keys[1:] != sorted_keys[:-1]
    keeps = torch.zeros(d_items, dtype=torch.bool, device=device)
    keeps[order] = first & ~occupancy.contains(sorted_keys)
    occupancy.add(keys[keeps], item_ids[keeps])
    pending = (~keeps).nonzero().squeeze(1)  # (P,) ascending
    placement.collided = int(pending.numel())

    # Rules 3 and 4: rounds of placement for the colliding items.
    while pending.numel() > 0:
        placement.rounds += 1
        new_sid, kept, placed = _round(x[pending], preferred[pending], codebook, occupancy)
        if not bool(placed.any()):  # cannot happen (see module docs); never loop forever
            raise RuntimeError("collision policy made no progress")
        winners = pending[placed]
        sid[winners] = new_sid[placed]
        occupancy.add(prefix_keys(new_sid[placed], codes), item_ids[winners])
        moved = torch.bincount(kept[placed], minlength=levels)
        for level in range(levels):
            placement.moved_at_level[level] += int(moved[level])
        pending = pending[~placed]
    return placement


def _round(
    x: torch.Tensor, preferred: torch.Tensor, codebook: ResidualCodebook, occupancy: PrefixIndex
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One round of rules 3 and 4 for colliding items ``(P, F)``.

    Returns their SIDs ``(P, L)`` (valid where placed), the number of preferred tokens each
    kept ``(P,)`` and which were placed ``(P,)``.
    """
    levels, codes = codebook.levels, codebook.codes
    n = x.shape[0]
    # Rule 3: the deepest prefix of the preferred SID with a free SID under it.
    kept = torch.full((n,), -1, dtype=torch.long, device=x.device)
    for length in range(levels - 1, -1, -1):
        count = occupancy.count_under(prefix_keys(preferred[:, :length], codes), length)
        room = count < occupancy.capacity_under(length)
        kept = torch.where((kept < 0) & room, length, kept)
    if bool((kept < 0).any()):  # unreachable after check_capacity; kept as a guard
        raise ConfigError("no free semantic ID is left: raise --codes or --levels")
    sid = preferred.clone()
    residual = x.clone()  # (P, F)
    active = torch.ones(n, dtype=torch.bool, device=x.device)  # not refused this round
    for level in range(levels):
        choose = (active & (kept <= level)).nonzero().squeeze(1)
        if choose.numel() > 0:
            parent = prefix_keys(sid[choose, :level], codes)  # (c,)
            at_level = residual[choose]  # (c, F)
            span = occupancy.capacity_under(level + 1)

            def capacity(keys, length=level + 1, span=span):
                return span - occupancy.count_under(keys, length)

            def relist(rows, full, at_level=at_level, parent=parent, level=level):
                centroids = codebook.centroids[level]
                return _codes_with_room(
                    at_level[rows], centroids, parent[rows], level, occupancy, exclude=full
                )

            everyone = torch.arange(choose.numel(), device=x.device)
            lists = relist(everyone, None)
            matched, code = _deferred_acceptance(parent, codes, lists, capacity, relist)
            sid[choose[matched], level] = code[matched]
            active[choose[~matched]] = False
        residual = residual - codebook.centroids[level][sid[:, level]]
    return sid, kept, active


def _codes_with_room(
    residual: torch.Tensor,
    centroids: torch.Tensor,
    parent: torch.Tensor,
    level: int,
    occupancy: PrefixIndex,
    exclude: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each item's nearest codes with room under its prefix: ids and distances ``(c, C)``.

    ``exclude`` (sorted child keys) removes codes that are full for this match. Distances are
    inf past the codes with room. Computed in chunks of rows.
    """
    codes = centroids.shape[0]
    choices = min(codes, _CHOICES)
    c_sq = (centroids * centroids).sum(1)  # (V,)
    rows = max(1, _CHUNK_ELEMENTS // codes)
    excluded = None
    if exclude is not None and exclude.numel() > 0:
        excluded = _Members(exclude, codes ** (level + 1))
    ids, dists = [], []
    for start in range(0, residual.shape[0], rows):
        part = parent[start : start + rows]
        room = occupancy.children_with_room(part, level)  # (b, V)
        if excluded is not None:
            room &= ~excluded.children(part, codes)
        xb = residual[start : start + rows]
        # ||x||^2 does not change the ranking: add it to the chosen distances only.
        dist = torch.addmm(c_sq, xb, centroids.t(), beta=1.0, alpha=-2.0)  # (b, V)
        dist.masked_fill_(~room, math.inf)
        if choices == codes:
            d, i = torch.sort(dist, dim=1, stable=True)
        else:
            d, i = torch.topk(dist, choices, dim=1, largest=False, sorted=True)
        ids.append(i)
        dists.append((d + (xb * xb).sum(1, keepdim=True)).clamp_min_(0))
    return torch.cat(ids), torch.cat(dists)


def _deferred_acceptance(
    parent: torch.Tensor,
    codes: int,
    lists: tuple[torch.Tensor, torch.Tensor],
    capacity: Callable[[torch.Tensor], torch.Tensor],
    relist: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Match items under prefixes ``parent (P,)`` to child codes (rule 4 of the module docs).

    ``lists`` = each item's codes with room, nearest first, and their distances ``(P, C)``
    (inf = none). ``capacity(child_keys)`` says how many items a child can take. An item
    refused by a full list of C asks ``relist(rows, full_child_keys)`` for its next C codes,
    leaving out the children that are full: in deferred acceptance a full child stays full,
    so they would refuse it again. Returns which items hold a code at the end ``(P,)`` and
    that code ``(P,)``. Rows must be in item-id order (ties go to the earlier row).
    """
    listed_codes, dist = (t.clone() for t in lists)
    p_items, choices = listed_codes.shape
    device = parent.device
    listed = torch.isfinite(dist).sum(1)  # (P,)
    pointer = torch.zeros(p_items, dtype=torch.long, device=device)  # next code to propose to
    holding = torch.zeros(p_items, dtype=torch.bool, device=device)
    key = parent * codes + listed_codes[:, 0]  # (P,) the child each item proposes to / holds
    space = int(parent.max()) * codes + codes if p_items else 0  # child keys lie below this
    while True:
        out_of_list = ~holding & (pointer >= listed) & (listed == choices)
        if bool(out_of_list.any()):
            rows = out_of_list.nonzero().squeeze(1)
            taken, count = torch.unique(key[holding], return_counts=True)  # sorted
            listed_codes[rows], dist[rows] = relist(rows, taken[count >= capacity(taken)])
            listed[rows] = torch.isfinite(dist[rows]).sum(1)
            pointer[rows] = 0
            key[rows] = parent[rows] * codes + listed_codes[rows, 0]
        proposing = (~holding & (pointer < listed)).nonzero().squeeze(1)
        if proposing.numel() == 0:
            break
        # Only the children proposed to now can change hands: their holders compete again.
        held = holding.nonzero().squeeze(1)
        contested = held[_Members(torch.unique(key[proposing]), space)(key[held])]
        who = torch.sort(torch.cat([proposing, contested])).values  # ascending: ties by item order
        order = _lexsort(key[who], dist[who, pointer[who]])
        sorted_key = key[who[order]]
        accept = _rank_in_runs(sorted_key) < capacity(sorted_key)
        holding[who] = False
        holding[who[order[accept]]] = True
        refused = who[order[~accept]]
        pointer[refused] += 1  # propose to the next choice
        next_code = listed_codes[refused, pointer[refused].clamp_max(choices - 1)]
        key[refused] = parent[refused] * codes + next_code
    return holding, listed_codes[
        torch.arange(p_items, device=device), pointer.clamp_max(choices - 1)
    ]


class _Members:
    """Membership in a sorted set of keys below ``space``: a dense bitmap when the key space is
    small enough (one gather per query), else a binary search."""

    def __init__(self, members: torch.Tensor, space: int):
        self.members = members
        self.bitmap = None
        if space <= _BITMAP_LIMIT:
            self.bitmap = torch.zeros(space, dtype=torch.bool, device=members.device)
            self.bitmap[members] = True

    def __call__(self, values: torch.Tensor) -> torch.Tensor:
        if self.bitmap is not None:
            return self.bitmap[values]
        return _isin_sorted(values, self.members)

    def children(self, parent: torch.Tensor, codes: int) -> torch.Tensor:
        """Membership ``(P, V)`` of the V children ``parent * V + j`` of each parent key."""
        if self.bitmap is not None:
            return self.bitmap.view(-1, codes)[parent]
        return self(parent[:, None] * codes + torch.arange(codes, device=parent.device))


def _isin_sorted(values: torch.Tensor, sorted_set: torch.Tensor) -> torch.Tensor:
    pos = torch.searchsorted(sorted_set, values.reshape(-1)).clamp_max_(sorted_set.numel() - 1)
    return (sorted_set[pos] == values.reshape(-1)).reshape(values.shape)


def _lexsort(primary: torch.Tensor, *secondary: torch.Tensor) -> torch.Tensor:
    """Indices sorting by ``primary``, then each ``secondary`` in turn, then position."""
    order = torch.arange(primary.numel(), device=primary.device)
    for key in (*reversed(secondary), primary):
        order = order[torch.sort(key[order], stable=True).indices]
    return order


def _rank_in_runs(sorted_keys: torch.Tensor) -> torch.Tensor:
    """Position of each element within its run of equal keys, for sorted keys ``(P,)``."""
    n = sorted_keys.numel()
    position = torch.arange(n, device=sorted_keys.device)
    starts = torch.ones(n, dtype=torch.bool, device=sorted_keys.device)
    starts[1:] = sorted_keys[1:] != sorted_keys[:-1]
    return position - torch.cummax(torch.where(starts, position, 0), 0).values
