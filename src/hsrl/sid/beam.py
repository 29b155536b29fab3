"""Beam decoding over the SID prefix tree: slates whose cost does not grow with the catalogue.

The hierarchical policy gives, per user, L token distributions ``log p_l (B, L, V)``; an item's
score is ``log P(i | s) = sum_l log p_l(z_l(i)) - log Z`` where Z sums over the live items
(SPEC 6.3). Scoring every item costs O(B N L). Beam decoding walks the prefix tree instead:
at level l it extends each kept prefix by the tokens under which live items exist
(:meth:`hsrl.sid.SidIndex.children_mask`) and keeps the best ``beam_width`` extensions, so one
slate costs O(B W V L) tree lookups and never touches the N items.

Greedy (:func:`beam_search`). With the soft-residual HPN the level distributions do not depend
on the chosen prefix, so a prefix's score is the sum of its tokens' log-probabilities and the
normaliser Z is shared by every item: ranking complete SIDs by their token sums is ranking items
by P(i | s). The search returns the best K complete SIDs it reached. It is exact when no prefix
it dropped could still lead to a better item; it reports that per user (``exact``) from a
bound: a dropped prefix's best completion is at most its score plus the best token of every
remaining level. A beam of at least the number of prefixes of every level below L is always
exact; in a full tree (every prefix has every child) a beam of K is.

Sampled (:func:`beam_sample`, exploration). Stochastic beam search (Kool, van Hoof and Welling,
ICML 2019) draws K distinct complete SIDs without replacement from the tree's own
distribution ``q(z) = prod_l q_l(z_l | z_<l)``, where ``q_l`` is ``p_l`` restricted to the
tokens that have live items below them and renormalised (optionally mixed with a uniform law
over those tokens, weight epsilon). It is the Gumbel-top-k trick applied level by level: each
prefix carries a Gumbel-perturbed log-probability, and its children's perturbations are drawn
conditioned on their maximum being the parent's, so keeping the top W at each level and the top
K at the last gives exact samples without replacement from q. When every prefix has every child,
q is P(i | s); in a sparse tree, q moves mass from crowded subtrees to thin ones (an item alone
under its prefix gets the whole prefix's probability), which is fine for exploration: the
replayed tokens are scored under p_l by the learning rule either way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from hsrl.errors import ConfigError
from hsrl.sid.prefix import keys_to_tokens
from hsrl.sid.table import SidIndex

NEG_INF = float("-inf")


@dataclass
class BeamResult:
    """K complete SIDs per user, best (or first drawn) first."""

    sid: torch.Tensor  # (B, K, L) long tokens
    items: torch.Tensor  # (B, K) long item ids (live, distinct per row)
    scores: torch.Tensor  # (B, K) sum_l log p_l(z_l) (greedy) or perturbed log q (sampled)
    exact: torch.Tensor | None = None  # (B,) bool: greedy result proven to be the exact top K


def check_beam(index: SidIndex, slate_size: int, beam_width: int) -> None:
    """Reject a beam that cannot return ``slate_size`` distinct live items."""
    if beam_width < slate_size:
        raise ConfigError(
            f"beam_width {beam_width} is smaller than the slate size {slate_size}: the beam "
            "must keep at least K prefixes to return K items"
        )
    if index.num_live < slate_size:
        raise ConfigError(
            f"the catalogue has {index.num_live} live items, fewer than the slate size {slate_size}"
        )


def _check_inputs(log_probs: torch.Tensor, index: SidIndex, k: int, width: int) -> None:
    if log_probs.ndim != 3 or log_probs.shape[1:] != (index.levels, index.codes):
        raise ValueError(
            f"log_probs must be (B, {index.levels}, {index.codes}), got {tuple(log_probs.shape)}"
        )
    check_beam(index, k, width)


def _children(index: SidIndex, keys: torch.Tensor, level: int) -> torch.Tensor:
    """Which next tokens exist under each kept prefix: keys (B, M) -> (B, M, V) bool.

    A prefix is carried as its integer key (:func:`hsrl.sid.prefix.prefix_keys`), -1 for a dead
    beam entry, which has no children.
    """
    b, m = keys.shape
    counts = index.tree.children_counts(keys.reshape(-1), level)  # (B M, V)
    return (counts > 0).view(b, m, index.codes)


def _extend(keys: torch.Tensor, flat_index: torch.Tensor, valid: torch.Tensor, codes: int):
    """Keys (B, M') of the chosen (parent, token) pairs ``flat_index (B, M')`` into (B, M, V).

    Invalid picks (score -inf: fewer existing candidates than the beam) get key -1, which has
    no children, so they stay dead for the rest of the search.
    """
    parent = keys.gather(1, flat_index // codes)  # (B, M')
    child = parent * codes + flat_index % codes
    return torch.where(valid, child, -1)


def _finish(index: SidIndex, keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Full-SID keys (B, K) -> their tokens (B, K, L) and live item ids (B, K)."""
    tokens = keys_to_tokens(keys.clamp(min=0), index.levels, index.codes)
    return tokens, index.tree.lookup(keys)


def _root(log_probs: torch.Tensor) -> torch.Tensor:
    """The beam holding only the root (key 0, the empty prefix): (B, 1)."""
    return torch.zeros(log_probs.shape[0], 1, dtype=torch.long, device=log_probs.device)


@torch.no_grad()
def beam_search(
    log_probs: torch.Tensor, index: SidIndex, slate_size: int, beam_width: int
) -> BeamResult:
    """The K live items of highest P(i | s) found by a beam of ``beam_width`` (module docs).

    log_probs (B, L, V) per-level token log-probabilities; returns items best first.
    """
    _check_inputs(log_probs, index, slate_size, beam_width)
    log_probs = log_probs.to(index.device)
    b, levels, codes = log_probs.shape
    # Best remaining completion of any prefix after level l: sum of the per-level maxima below.
    level_max = log_probs.max(dim=-1).values  # (B, L)
    suffix = level_max.flip(1).cumsum(1).flip(1)  # (B, L): sum over levels >= l
    remaining = torch.cat([suffix[:, 1:], torch.zeros_like(suffix[:, :1])], dim=1)  # levels > l
    dropped_bound = torch.full((b,), NEG_INF, device=log_probs.device)
    keys = _root(log_probs)
    score = torch.zeros(b, 1, device=log_probs.device)
    for level in range(levels):
        exists = _children(index, keys, level)  # (B, M, V)
        candidate = (score.unsqueeze(-1) + log_probs[:, level].unsqueeze(1)).masked_fill(
            ~exists, NEG_INF
        )  # (B, M, V)
        flat = candidate.reshape(b, -1)  # (B, M V)
        keep = min(slate_size if level == levels - 1 else beam_width, flat.shape[1])
        extra = 1 if level < levels - 1 and flat.shape[1] > keep else 0
        top = flat.topk(keep + extra, dim=-1)
        if extra:
            # The best candidate not kept bounds every item below a dropped prefix.
            bound = top.values[:, keep] + remaining[:, level]
            dropped_bound = torch.maximum(dropped_bound, bound)
        values, picks = top.values[:, :keep], top.indices[:, :keep]
        keys = _extend(keys, picks, torch.isfinite(values), codes)
        score = values
    tokens, items = _finish(index, keys)  # (B, K, L), (B, K)
    exact = score[:, -1] >= dropped_bound
    return BeamResult(tokens, items, score, exact)


def _log1mexp(x: torch.Tensor) -> torch.Tensor:
    """log(1 - exp(x)) for x <= 0, accurate at both ends."""
    return torch.where(x > -0.6931, torch.log(-torch.expm1(x)), torch.log1p(-torch.exp(x)))


def _gumbel(shape: torch.Size, like: torch.Tensor, generator: torch.Generator | None):
    uniform = torch.rand(shape, generator=generator, device=like.device, dtype=like.dtype)
    return -torch.log(-torch.log(uniform.clamp(min=1e-20, max=1.0 - 1e-7)))


@torch.no_grad()
def beam_sample(
    log_probs: torch.Tensor,
    index: SidIndex,
    slate_size: int,
    beam_width: int,
    generator: torch.Generator | None = None,
    epsilon: float = 0.0,
) -> BeamResult:
    """K distinct live items drawn without replacement by stochastic beam search (module docs).

    ``epsilon`` mixes each level's restricted distribution with a uniform law over the tokens
    that have live items below the prefix.
    """
    _check_inputs(log_probs, index, slate_size, beam_width)
    if not 0.0 <= epsilon < 1.0:
        raise ValueError("epsilon must be in [0, 1)")
    log_probs = log_probs.to(index.device)
    b, levels, codes = log_probs.shape
    keys = _root(log_probs)
    log_q = torch.zeros(b, 1, device=log_probs.device)  # log q(prefix), (B, M)
    perturbed = torch.zeros(b, 1, device=log_probs.device)  # its Gumbel-perturbed value
    for level in range(levels):
        exists = _children(index, keys, level)  # (B, M, V)
        local = log_probs[:, level].unsqueeze(1).masked_fill(~exists, NEG_INF)  # (B, M, V)
        local = torch.log_softmax(local, dim=-1)  # NaN rows (no child) are masked below
        if epsilon > 0.0:
            count = exists.sum(dim=-1, keepdim=True).clamp(min=1).float()  # (B, M, 1)
            uniform = math.log(epsilon) - torch.log(count)  # (B, M, 1)
            local = torch.logaddexp(local + math.log1p(-epsilon), uniform)
        alive = exists & torch.isfinite(perturbed).unsqueeze(-1)  # (B, M, V)
        child_log_q = (log_q.unsqueeze(-1) + local).masked_fill(~alive, NEG_INF)
        drawn = (child_log_q + _gumbel(child_log_q.shape, child_log_q, generator)).masked_fill(
            ~alive, NEG_INF
        )
        # Condition the children's perturbations on their maximum being the parent's value.
        top = drawn.max(dim=-1, keepdim=True).values  # (B, M, 1)
        parent = perturbed.unsqueeze(-1)  # (B, M, 1)
        v = parent - drawn + _log1mexp((drawn - top).clamp(max=0.0))
        child = parent - v.clamp(min=0.0) - torch.log1p(torch.exp(-v.abs()))
        child = child.masked_fill(~alive, NEG_INF)  # (B, M, V)
        flat = child.reshape(b, -1)
        keep = min(slate_size if level == levels - 1 else beam_width, flat.shape[1])
        top_k = flat.topk(keep, dim=-1)
        valid = torch.isfinite(top_k.values)
        log_q = child_log_q.reshape(b, -1).gather(1, top_k.indices).masked_fill(~valid, NEG_INF)
        perturbed = top_k.values
        keys = _extend(keys, top_k.indices, valid, codes)
    tokens, items = _finish(index, keys)
    return BeamResult(tokens, items, perturbed)
