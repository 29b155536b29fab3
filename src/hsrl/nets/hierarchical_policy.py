"""The Hierarchical Policy Network: SID tokens coarse to fine over residual contexts.

Context c_0 = s. At level l: logits_l = W_l c_{l-1}; p_l = softmax(logits_l / tau);
e_l = p_l E_l (the expected token embedding); c_l = LayerNorm_l(c_{l-1} - e_l), the part of
the state still to be decided.

Residual modes:
- ``soft`` (the method): the residual subtracts the expected embedding, which keeps the chain
  differentiable end to end; every level's distribution depends on the state only, so the item
  distribution is a product of per-level distributions;
- ``sampled``: the residual subtracts the embedding of the token actually chosen,
  c_l = LN_l(c_{l-1} - E_l[z_l]), so level l is conditioned on the prefix z_<l (an
  autoregressive policy over SIDs). Items are scored over the prefix tree of the live SIDs
  (:class:`PrefixPaths`) and training conditions on the stored tokens (teacher forcing);
- ``none`` (ablation): every level reads c_0.

Per-slot chains (``slots`` = K > 0): slot k starts from its own context
c_0^k = LayerNorm(s + q_k), q_k a learned slot query, and runs the same levels (shared heads,
token embeddings and norms), so each slot of the slate has its own token distributions
(outputs gain a slot axis: log-probs (B, K, L, V), contexts (B, K, L + 1, d)).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

ResidualMode = Literal["soft", "sampled", "none"]


@dataclass
class PolicyOutput:
    log_probs: torch.Tensor  # (B, L, V) log p_l; (B, K, L, V) with per-slot chains
    contexts: torch.Tensor  # (B, L + 1, d) c_0..c_L; (B, K, L + 1, d) with per-slot chains


class HierarchicalPolicy(nn.Module):
    def __init__(
        self,
        dim: int,
        levels: int,
        codes: int,
        temperature: float = 1.0,
        residual: ResidualMode = "soft",
        slots: int = 0,
    ):
        super().__init__()
        if slots and residual == "sampled":
            raise ValueError("per-slot chains need residual 'soft' or 'none'")
        if residual not in ("soft", "sampled", "none"):
            raise ValueError(f"residual must be 'soft', 'sampled' or 'none', got {residual!r}")
        self.levels = levels
        self.codes = codes
        self.temperature = temperature
        self.residual = residual
        self.heads = nn.ModuleList(nn.Linear(dim, codes) for _ in range(levels))
        self.token_embeddings = nn.ModuleList(nn.Embedding(codes, dim) for _ in range(levels))
        self.norms = nn.ModuleList(nn.LayerNorm(dim) for _ in range(levels))
        self.slots = slots
        if slots:
            self.slot_queries = nn.Parameter(torch.randn(slots, dim) * 0.5)
            self.slot_norm = nn.LayerNorm(dim)

    def forward(self, state: torch.Tensor) -> PolicyOutput:
        """Token distributions and contexts of the soft chain (action-independent).

        In ``sampled`` mode these are the contexts the critic reads (they depend on the state
        only); the policy's own distributions are those of :meth:`path_log_probs` and
        :meth:`tree_item_log_probs`.
        """
        if self.slots:
            state = self.slot_norm(state.unsqueeze(-2) + self.slot_queries)  # (B, K, d)
        contexts = [state]
        log_probs = []
        context = state
        for head, embedding, norm in zip(self.heads, self.token_embeddings, self.norms):
            logp = torch.log_softmax(head(context) / self.temperature, dim=-1)  # (B, V)
            log_probs.append(logp)
            if self.residual != "none":
                expected = logp.exp() @ embedding.weight  # (B, d)
                context = norm(context - expected)
            contexts.append(context)
        return PolicyOutput(torch.stack(log_probs, dim=-2), torch.stack(contexts, dim=-2))

    def _level_log_probs(self, level: int, context: torch.Tensor) -> torch.Tensor:
        return torch.log_softmax(self.heads[level](context) / self.temperature, dim=-1)

    def _step(self, level: int, context: torch.Tensor, token: torch.Tensor) -> torch.Tensor:
        """c_l = LN_l(c_{l-1} - E_l[z_l]) for chosen tokens; context (..., d), token (...)."""
        return self.norms[level](context - self.token_embeddings[level](token))

    def path_log_probs(self, state: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Distributions along given SIDs, conditioned on each prefix (``sampled`` mode).

        state (B, d), tokens (B, K, L) -> log p_l(. | s, z_<l) as (B, K, L, V).
        """
        b, k, levels = tokens.shape
        context = state.unsqueeze(1).expand(b, k, state.shape[-1])  # (B, K, d)
        out = []
        for level in range(levels):
            out.append(self._level_log_probs(level, context))  # (B, K, V)
            if level + 1 < levels:
                context = self._step(level, context, tokens[..., level])
        return torch.stack(out, dim=2)

    def path_contexts(self, state: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Contexts c_0..c_L along given SIDs, c_l = LN_l(c_{l-1} - E_l[z_l]) (the ``sampled``
        step, whatever the residual mode): state (B, d), tokens (B, K, L) -> (B, K, L + 1, d)."""
        b, k, levels = tokens.shape
        context = state.unsqueeze(1).expand(b, k, state.shape[-1])
        out = [context]
        for level in range(levels):
            context = self._step(level, context, tokens[..., level])
            out.append(context)
        return torch.stack(out, dim=2)

    def tree_contexts(self, state: torch.Tensor, paths: PrefixPaths) -> torch.Tensor:
        """:meth:`path_contexts` of every item of the SID tree at once, one context per prefix:
        state (B, d) -> (B, N + 1, L + 1, d); items that are not live get prefix 0's."""
        b = state.shape[0]
        prefixes = self._prefix_contexts(state, paths)
        out = [prefix[:, paths.item_prefix[level]] for level, prefix in enumerate(prefixes)]
        last = self.levels - 1
        out.append(self._step(last, out[-1], paths.item_token[last].expand(b, -1)))
        return torch.stack(out, dim=2)

    def _prefix_contexts(self, state: torch.Tensor, paths: PrefixPaths) -> list[torch.Tensor]:
        """The context of every distinct SID prefix of length 0..L - 1: (B, P_l, d) each."""
        b = state.shape[0]
        contexts = [state.unsqueeze(1)]  # (B, 1, d): the empty prefix
        for level in range(self.levels - 1):
            parent, last = paths.parent[level + 1], paths.last_token[level + 1]
            contexts.append(self._step(level, contexts[-1][:, parent], last.expand(b, -1)))
        return contexts

    def tree_item_log_probs(
        self, state: torch.Tensor, paths: PrefixPaths, live: torch.Tensor
    ) -> torch.Tensor:
        """log P(item | s) of the autoregressive (``sampled``) policy over the live SID tree.

        One context per existing prefix and user: the cost grows with the number of distinct
        prefixes (at most N per level), not with V^L. Returns (B, N + 1), -inf where not live.
        """
        total = state.new_zeros(state.shape[0], paths.item_prefix[0].shape[0])  # (B, N + 1)
        for level, context in enumerate(self._prefix_contexts(state, paths)):
            logp = self._level_log_probs(level, context)  # (B, P_l, V)
            prefix = paths.item_prefix[level]  # (N + 1,) prefix id of each item at level l
            token = paths.item_token[level]  # (N + 1,)
            total = total + logp[:, prefix, token]
        total = total.masked_fill(~live, float("-inf"))
        return torch.log_softmax(total, dim=-1)


@dataclass
class PrefixPaths:
    """The prefix tree of a SID table, as index tensors for batched scoring.

    For level l (0-based): ``item_prefix[l]`` (N + 1,) the id of each item's length-l prefix
    among the distinct prefixes of that length (level 0: the empty prefix, id 0), and
    ``item_token[l]`` its level-l token; for l >= 1, ``parent[l]`` and ``last_token[l]`` give
    each length-l prefix's parent prefix (length l - 1) and last token. Items that are not live
    (and padding) point at prefix 0 and token 0; their scores are masked anyway.
    """

    item_prefix: list[torch.Tensor]
    item_token: list[torch.Tensor]
    parent: list[torch.Tensor]
    last_token: list[torch.Tensor]

    @classmethod
    def build(cls, item_sid: torch.Tensor, live: torch.Tensor) -> PrefixPaths:
        n1, levels = item_sid.shape
        sid = torch.where(live.unsqueeze(1), item_sid, torch.zeros_like(item_sid)).clamp(min=0)
        item_prefix = [torch.zeros(n1, dtype=torch.long, device=sid.device)]
        parent = [torch.zeros(1, dtype=torch.long, device=sid.device)]
        last_token = [torch.zeros(1, dtype=torch.long, device=sid.device)]
        for level in range(1, levels):
            keys = torch.stack([item_prefix[level - 1], sid[:, level - 1]], dim=1)  # (N + 1, 2)
            unique, inverse = torch.unique(keys, dim=0, return_inverse=True)
            item_prefix.append(inverse)
            parent.append(unique[:, 0])
            last_token.append(unique[:, 1])
        item_token = [sid[:, level] for level in range(levels)]
        return cls(item_prefix, item_token, parent, last_token)


def item_log_probs(
    log_probs: torch.Tensor, item_sid: torch.Tensor, live: torch.Tensor
) -> torch.Tensor:
    """log P(i | s) = sum_l log p_l(z_l(i)), renormalised over live items.

    log_probs (B, L, V); item_sid (N + 1, L) with -1 for padding and retired items;
    live (N + 1,) bool. Returns (B, N + 1) with -inf for items that cannot be recommended.
    """
    levels = log_probs.shape[1]
    safe_sid = item_sid.clamp(min=0)  # (N + 1, L)
    total = log_probs[:, 0, :][:, safe_sid[:, 0]]  # (B, N + 1)
    for level in range(1, levels):
        total = total + log_probs[:, level, :][:, safe_sid[:, level]]
    total = total.masked_fill(~live, float("-inf"))
    return torch.log_softmax(total, dim=-1)


def token_log_probs(log_probs: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """log p_l(z_l) of chosen tokens: log_probs (B, L, V), tokens (B, K, L) -> (B, K, L)."""
    b, k, levels = tokens.shape
    expanded = log_probs.unsqueeze(1).expand(b, k, levels, log_probs.shape[-1])
    return expanded.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
