"""The prefix tree over SIDs: which next tokens exist under a prefix, and which item has a SID.

A SID ``(z_1, ..., z_L)`` with tokens in ``0..V-1`` is stored as one integer key
``sum_l z_l V^(L-l)``, so the SIDs under a prefix of length ``l`` form one contiguous key range
``[p V^(L-l), (p + 1) V^(L-l))`` where ``p`` is the prefix's own key. Keeping the keys sorted
turns every tree query into a vectorised ``searchsorted``: the children of M prefixes are
``M x (V + 1)`` range boundaries, whatever the size of the catalogue. For the upper levels,
where ``V^l`` is small, dense per-prefix counts answer the same queries with one gather.

The same structure is the occupancy map of the collision policy (which SIDs are taken, how many
free SIDs a prefix has).
"""

from __future__ import annotations

import torch

from hsrl.errors import ConfigError

# Keys are int64; keep V^L clear of overflow in ``(p + 1) * V^(L - l)``.
MAX_SID_SPACE = 1 << 62
# Dense counts per prefix are kept for levels with at most this many prefixes, and a dense
# occupancy bitmap of full SIDs when there are at most this many SIDs (64 MiB of bools).
DEFAULT_DENSE_LIMIT = 1 << 20
DEFAULT_BITMAP_LIMIT = 1 << 26


def check_vocabulary(levels: int, codes: int) -> None:
    """Reject codebook shapes whose SIDs cannot be encoded as one int64 key."""
    if levels < 1:
        raise ConfigError(f"--levels must be at least 1, got {levels}")
    if codes < 2:
        raise ConfigError(f"--codes must be at least 2, got {codes}")
    if codes**levels > MAX_SID_SPACE:
        raise ConfigError(
            f"--codes {codes} --levels {levels}: {codes}^{levels} SIDs do not fit in a 64-bit key"
        )


def prefix_keys(tokens: torch.Tensor, codes: int) -> torch.Tensor:
    """Keys of prefixes ``(..., l)`` as ``(...)`` long; -1 where a token is outside 0..V-1.

    A prefix of length 0 has key 0 (the root).
    """
    tokens = tokens.long()
    length = tokens.shape[-1]
    valid = ((tokens >= 0) & (tokens < codes)).all(-1)
    powers = codes ** torch.arange(length - 1, -1, -1, device=tokens.device)  # (l,)
    keys = (tokens.clamp(0, codes - 1) * powers).sum(-1)
    return torch.where(valid, keys, torch.full_like(keys, -1))


def keys_to_tokens(keys: torch.Tensor, levels: int, codes: int) -> torch.Tensor:
    """Inverse of :func:`prefix_keys` for full SIDs: ``(...)`` keys to ``(..., L)`` tokens."""
    powers = codes ** torch.arange(levels - 1, -1, -1, device=keys.device)  # (L,)
    return (keys[..., None] // powers) % codes


class PrefixIndex:
    """Sorted SID keys of a set of items, with range and child queries (see module docs).

    Keys are unique; ``items[i]`` is the item id holding ``keys[i]``.
    """

    def __init__(
        self,
        keys: torch.Tensor,
        items: torch.Tensor,
        levels: int,
        codes: int,
        dense_limit: int = DEFAULT_DENSE_LIMIT,
        bitmap_limit: int = DEFAULT_BITMAP_LIMIT,
    ):
        check_vocabulary(levels, codes)
        self.levels, self.codes = levels, codes
        keys, order = torch.sort(keys.long())
        self.keys = keys  # (M,) long, ascending
        self.items = items.long()[order]  # (M,) long
        if keys.numel() > 1 and bool((keys[1:] == keys[:-1]).any()):
            raise ValueError("PrefixIndex keys must be unique")
        self._span = [codes ** (levels - length) for length in range(levels + 1)]
        # _counts[l]: SIDs under each prefix of length l (dense levels only); for l = L it is a
        # bool bitmap of the taken SIDs.
        self._counts: list[torch.Tensor | None] = []
        for length in range(levels + 1):
            size = codes**length
            if length == levels and size <= bitmap_limit:
                taken = torch.zeros(size, dtype=torch.bool, device=keys.device)
                taken[keys] = True
                self._counts.append(taken)
            elif length < levels and size <= dense_limit:
                counts = torch.zeros(size, dtype=torch.long, device=keys.device)
                counts.index_add_(0, keys // self._span[length], torch.ones_like(keys))
                self._counts.append(counts)
            else:
                self._counts.append(None)

    @classmethod
    def from_table(
        cls,
        item_sid: torch.Tensor,
        live: torch.Tensor,
        codes: int,
        dense_limit: int = DEFAULT_DENSE_LIMIT,
        bitmap_limit: int = DEFAULT_BITMAP_LIMIT,
    ) -> PrefixIndex:
        """The tree of the live rows of an item-to-SID table ``(N + 1, L)``."""
        items = live.nonzero().squeeze(1)  # (M,)
        keys = prefix_keys(item_sid[items], codes)
        return cls(keys, items, item_sid.shape[1], codes, dense_limit, bitmap_limit)

    @property
    def device(self) -> torch.device:
        return self.keys.device

    def __len__(self) -> int:
        return self.keys.numel()

    def capacity_under(self, length: int) -> int:
        """How many SIDs a prefix of ``length`` tokens spans."""
        return self._span[length]

    def to(self, device: torch.device | str) -> PrefixIndex:
        other = object.__new__(PrefixIndex)
        other.__dict__.update(self.__dict__)
        other.keys, other.items = self.keys.to(device), self.items.to(device)
        other._counts = [None if c is None else c.to(device) for c in self._counts]
        return other

    def clone(self) -> PrefixIndex:
        other = self.to(self.device)
        other.keys, other.items = self.keys.clone(), self.items.clone()
        other._counts = [None if c is None else c.clone() for c in self._counts]
        return other

    # -- queries -------------------------------------------------------------------------------

    def lookup(self, keys: torch.Tensor) -> torch.Tensor:
        """Item holding each full-SID key ``(...)``; 0 where no item does (or the key is -1)."""
        if self.keys.numel() == 0:
            return torch.zeros_like(keys)
        pos = torch.searchsorted(self.keys, keys).clamp_max_(self.keys.numel() - 1)
        found = (self.keys[pos] == keys) & (keys >= 0)
        return torch.where(found, self.items[pos], torch.zeros_like(keys))

    def contains(self, keys: torch.Tensor) -> torch.Tensor:
        """Whether each full-SID key ``(...)`` is taken."""
        taken = self._counts[self.levels]
        if taken is not None:
            return taken[keys.clamp_min(0)] & (keys >= 0)
        if self.keys.numel() == 0:
            return torch.zeros_like(keys, dtype=torch.bool)
        pos = torch.searchsorted(self.keys, keys).clamp_max_(self.keys.numel() - 1)
        return (self.keys[pos] == keys) & (keys >= 0)

    def range_under(self, prefix: torch.Tensor, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Positions ``[start, stop)`` in :attr:`keys` of the SIDs under prefixes ``(P,)`` of ``length``."""
        span = self._span[length]
        lo = prefix * span
        start = torch.searchsorted(self.keys, lo)
        stop = torch.searchsorted(self.keys, lo + span)
        invalid = prefix < 0
        return start.masked_fill(invalid, 0), stop.masked_fill(invalid, 0)

    def count_under(self, prefix: torch.Tensor, length: int) -> torch.Tensor:
        """Number of SIDs under each prefix key ``(P,)`` of ``length`` tokens; 0 for key -1."""
        counts = self._counts[length]
        if counts is not None:
            got = counts[prefix.clamp_min(0)].long()
            return got.masked_fill(prefix < 0, 0)
        start, stop = self.range_under(prefix, length)
        return stop - start

    def children_counts(self, prefix: torch.Tensor, length: int) -> torch.Tensor:
        """SIDs under each child ``(P, V)`` of prefixes ``(P,)`` of ``length < L`` tokens."""
        if not 0 <= length < self.levels:
            raise ValueError(f"children of a prefix need 0 <= length < {self.levels}, got {length}")
        v = self.codes
        counts = self._counts[length + 1]
        if counts is not None:
            # The children of a prefix are V consecutive entries: gather whole rows.
            got = counts.view(-1, v)[prefix.clamp_min(0)].long()  # (P, V)
        else:
            span = self._span[length + 1]
            bounds = (
                prefix.clamp_min(0)[:, None] * v + torch.arange(v + 1, device=prefix.device)
            ) * span
            pos = torch.searchsorted(self.keys, bounds.reshape(-1)).reshape(
                bounds.shape
            )  # (P, V+1)
            got = pos[:, 1:] - pos[:, :-1]
        return got.masked_fill((prefix < 0)[:, None], 0)

    def children_with_room(self, prefix: torch.Tensor, length: int) -> torch.Tensor:
        """Which children ``(P, V)`` of prefixes ``(P,)`` of ``length < L`` tokens still have a
        free SID below them (for key -1: none)."""
        counts = self._counts[length + 1]
        if length + 1 == self.levels and counts is not None:
            room = ~counts.view(-1, self.codes)[prefix.clamp_min(0)]  # bitmap rows
        else:
            room = self.children_counts(prefix, length) < self._span[length + 1]
        return room.masked_fill_((prefix < 0)[:, None], False)

    # -- updates -------------------------------------------------------------------------------

    def add(self, keys: torch.Tensor, items: torch.Tensor) -> None:
        """Insert new, distinct keys (absent so far) with their items; a linear-time merge."""
        if keys.numel() == 0:
            return
        keys, order = torch.sort(keys.long())
        items = items.long()[order]
        n, m = self.keys.numel(), keys.numel()
        pos = torch.searchsorted(self.keys, keys) + torch.arange(m, device=keys.device)
        is_new = torch.zeros(n + m, dtype=torch.bool, device=keys.device)
        is_new[pos] = True
        merged_keys = torch.empty(n + m, dtype=torch.long, device=keys.device)
        merged_items = torch.empty(n + m, dtype=torch.long, device=keys.device)
        merged_keys[pos], merged_items[pos] = keys, items
        merged_keys[~is_new], merged_items[~is_new] = self.keys, self.items
        self.keys, self.items = merged_keys, merged_items
        self._update_counts(keys, 1)

    def remove(self, keys: torch.Tensor) -> None:
        """Delete keys that are present."""
        if keys.numel() == 0:
            return
        keys = keys.long()
        drop = torch.isin(self.keys, keys)
        removed = self.keys[drop]
        self.keys, self.items = self.keys[~drop], self.items[~drop]
        self._update_counts(removed, -1)

    def _update_counts(self, keys: torch.Tensor, sign: int) -> None:
        for length, counts in enumerate(self._counts):
            if counts is None:
                continue
            if length == self.levels:
                counts[keys] = sign > 0
            else:
                counts.index_add_(0, keys // self._span[length], torch.full_like(keys, sign))
