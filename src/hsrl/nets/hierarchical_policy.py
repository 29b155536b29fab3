"""The Hierarchical Policy Network: SID tokens coarse to fine over residual contexts.

Context c_0 = s. At level l: logits_l = W_l c_{l-1}; p_l = softmax(logits_l / tau);
e_l = p_l E_l (the expected token embedding); c_l = LayerNorm_l(c_{l-1} - e_l), the part of
the state still to be decided. Using the expected (soft) embedding keeps the chain
differentiable end to end.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

ResidualMode = Literal["soft", "none"]


@dataclass
class PolicyOutput:
    log_probs: torch.Tensor  # (B, L, V) log p_l
    contexts: torch.Tensor  # (B, L + 1, d) c_0..c_L


class HierarchicalPolicy(nn.Module):
    def __init__(
        self,
        dim: int,
        levels: int,
        codes: int,
        temperature: float = 1.0,
        residual: ResidualMode = "soft",
    ):
        super().__init__()
        if residual not in ("soft", "none"):
            raise ValueError(f"residual must be 'soft' or 'none', got {residual!r}")
        self.levels = levels
        self.codes = codes
        self.temperature = temperature
        self.residual = residual
        self.heads = nn.ModuleList(nn.Linear(dim, codes) for _ in range(levels))
        self.token_embeddings = nn.ModuleList(nn.Embedding(codes, dim) for _ in range(levels))
        self.norms = nn.ModuleList(nn.LayerNorm(dim) for _ in range(levels))

    def forward(self, state: torch.Tensor) -> PolicyOutput:
        contexts = [state]
        log_probs = []
        context = state
        for head, embedding, norm in zip(self.heads, self.token_embeddings, self.norms):
            logp = torch.log_softmax(head(context) / self.temperature, dim=-1)  # (B, V)
            log_probs.append(logp)
            if self.residual == "soft":
                expected = logp.exp() @ embedding.weight  # (B, d)
                context = norm(context - expected)
            contexts.append(context)
        return PolicyOutput(torch.stack(log_probs, dim=1), torch.stack(contexts, dim=1))


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
