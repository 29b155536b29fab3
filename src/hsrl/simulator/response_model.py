"""The user response model: the learned core of the simulator (SPEC section 3).

Given a user profile, the ids of the user's last H positively-responded items and the ids of
the K exposed items, the model gives one click logit per exposed item:

    user   = MLP(profile)                                   # (B, f)
    seq    = SelfAttention(item_emb(history))               # (B, H, f)
    intent = CrossAttention(query=user, keys=values=seq)    # (B, f)
    intent = Linear([intent, user])                         # ML1M variant only
    logit_k = <item_emb(slate_k), intent>

``item_emb`` is one linear map of the item features shared by history and slate, as in the
HAC reference. The model holds the item feature table as a buffer and takes item ids, so
swapping the table (:meth:`UserResponseModel.set_item_features`) lets it score new items.

Padding positions of the history (id 0, all-zero features) are not masked, as in the
reference: they embed to the linear map's bias, which the model learns to discount. This also
keeps an empty history well defined.

Speed: the item embedding and the self-attention input projection are per-item linear maps,
so ``linear(gather(features, ids)) == gather(linear(features), ids)``. When the table is
smaller than the number of ids a batch touches, and always in evaluation without gradients
(where the projected table is cached), the model projects the table once and gathers rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from hsrl.errors import ConfigError

Variant = Literal["rl4rs", "ml1m"]
Position = Literal["none", "slot", "auto"]
POSITIONS = ("none", "slot", "auto")


@dataclass(frozen=True)
class ResponseModelConfig:
    """Architecture of the response model; defaults are the HAC reference's RL4RS settings."""

    variant: Variant = "rl4rs"
    """"rl4rs": intent from cross-attention; "ml1m": intent and user vector fused by a linear map."""
    feature_dim: int = 16
    """f: size of the user, item and intent vectors."""
    hidden_dim: int = 256
    """Width of the profile MLP's hidden layer."""
    num_heads: int = 2
    """Attention heads (must divide feature_dim)."""
    dropout: float = 0.2
    """Dropout after the profile MLP's hidden layer (the reference's default)."""
    history_length: int = 50
    """H: how many of the latest positively-responded items the model reads."""
    profile_dim: int | None = None
    """P: user profile size; None = take it from the dataset."""
    item_feature_dim: int | None = None
    """F: item feature size; None = take it from the dataset."""
    position: Position = "none"
    """"none": the reference's position-free model (an item's logit is the same in every slot);
    "slot": a learned logit offset per slot is added (the position-based click model), trained on
    the logged slot of every exposure, so the slot effect is not credited to the items; "auto"
    (training only): "slot" when the training logs identify it, else "none"."""
    slate_size: int | None = None
    """K: slots with their own offset ("slot" position only); None = take it from the dataset.
    Slots past the K-th share the K-th's offset."""

    def __post_init__(self) -> None:
        if self.variant not in ("rl4rs", "ml1m"):
            raise ConfigError(f"variant: {self.variant!r} is not 'rl4rs' or 'ml1m'")
        if self.position not in POSITIONS:
            raise ConfigError(f"position: {self.position!r} is not 'none', 'slot' or 'auto'")
        for name in ("feature_dim", "hidden_dim", "num_heads", "history_length"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}: must be at least 1, got {getattr(self, name)}")
        if self.feature_dim % self.num_heads:
            raise ConfigError(
                f"num_heads: {self.num_heads} does not divide feature_dim {self.feature_dim}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout: must be in [0, 1), got {self.dropout}")
        for name in ("profile_dim", "item_feature_dim", "slate_size"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"{name}: must be at least 1, got {value}")


class UserResponseModel(nn.Module):
    """Click logits of exposed items given a user profile and history (see module docs)."""

    item_features: torch.Tensor  # (N + 1, F) buffer; row 0 = padding

    def __init__(self, config: ResponseModelConfig, item_features: torch.Tensor):
        super().__init__()
        if config.profile_dim is None or config.item_feature_dim is None:
            raise ConfigError(
                "response model: profile_dim and item_feature_dim must be set "
                "(use ResponseModelConfig(...) with the dataset's dimensions)"
            )
        self.config = config
        f = config.feature_dim
        self._check_table(item_features)
        self.register_buffer("item_features", item_features.detach().float().clone())
        self.profile_encoder = nn.Sequential(
            nn.Linear(config.profile_dim, config.hidden_dim),
            nn.ReLU(),
            nn.Dropout(config.dropout),
            nn.Linear(config.hidden_dim, f),
        )
        self.item_encoder = nn.Linear(config.item_feature_dim, f)
        # nn.MultiheadAttention holds the parameters (familiar state-dict names); the forward
        # pass below uses them directly so that it can start from pre-projected item rows.
        self.history_attention = nn.MultiheadAttention(f, config.num_heads, batch_first=True)
        self.user_attention = nn.MultiheadAttention(f, config.num_heads, batch_first=True)
        self.fuse = nn.Linear(2 * f, f) if config.variant == "ml1m" else None
        if config.position == "auto":
            raise ConfigError("response model: position 'auto' is resolved at training time")
        if config.position == "slot":
            if config.slate_size is None:
                raise ConfigError("response model: position 'slot' needs slate_size")
            self.slot_bias = nn.Parameter(torch.zeros(config.slate_size))
        else:
            self.slot_bias = None
        self._tables: tuple[torch.Tensor, torch.Tensor] | None = None
        # Set by load_simulator: the dataset.json of the folder it came from.
        self.dataset_fingerprint: dict[str, Any] = {}
        self.simulator_path: Path | None = None

    # ------------------------------------------------------------------ item table
    def _check_table(self, features: torch.Tensor) -> None:
        if features.ndim != 2 or features.shape[0] < 2:
            raise ConfigError(
                f"item features must be (N + 1, F) with N >= 1, got {tuple(features.shape)}"
            )
        if features.shape[1] != self.config.item_feature_dim:
            raise ConfigError(
                f"item features have {features.shape[1]} columns, the model expects "
                f"{self.config.item_feature_dim}"
            )

    @property
    def num_items(self) -> int:
        return self.item_features.shape[0] - 1

    def set_item_features(self, features: torch.Tensor) -> None:
        """Replace the item table (same feature size, any number of items), e.g. new items."""
        self._check_table(features)
        self.item_features = features.detach().to(self.item_features.device, torch.float32).clone()
        self._tables = None

    # ------------------------------------------------------------------ cache control
    def train(self, mode: bool = True) -> UserResponseModel:
        self._tables = None
        return super().train(mode)

    def _apply(self, fn, recurse=True):  # type: ignore[no-untyped-def]
        self._tables = None
        return super()._apply(fn, recurse)

    def load_state_dict(self, state_dict, strict=True, assign=False):  # type: ignore[no-untyped-def]
        self._tables = None
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def item_tables(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-item embedding (N + 1, f) and self-attention input projection (N + 1, 3f)."""
        cacheable = not self.training and not torch.is_grad_enabled()
        if cacheable and self._tables is not None:
            return self._tables
        if not cacheable:
            return self._project_items()
        # The cache must hold normal tensors (not inference tensors): later callers may run
        # outside inference mode.
        with torch.inference_mode(False), torch.no_grad():
            self._tables = self._project_items()
        return self._tables

    def _project_items(self) -> tuple[torch.Tensor, torch.Tensor]:
        emb = self.item_encoder(self.item_features)  # (N + 1, f)
        attn = self.history_attention
        proj = F.linear(emb, attn.in_proj_weight, attn.in_proj_bias)  # (N + 1, 3f)
        return emb, proj

    # ------------------------------------------------------------------ forward
    def _attend(
        self, attn: nn.MultiheadAttention, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor
    ) -> torch.Tensor:
        """Multi-head attention from already projected q (B, Lq, f), k, v (B, Lk, f)."""
        batch, lq, f = q.shape
        heads = self.config.num_heads
        d = f // heads
        q = q.view(batch, lq, heads, d).transpose(1, 2)  # (B, heads, Lq, d)
        k = k.view(batch, -1, heads, d).transpose(1, 2)
        v = v.view(batch, -1, heads, d).transpose(1, 2)
        out = F.scaled_dot_product_attention(q, k, v)  # (B, heads, Lq, d)
        out = out.transpose(1, 2).reshape(batch, lq, f)
        return attn.out_proj(out)

    def user_intent(self, user_profile: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        """The intent vector (B, f) of each user from profile (B, P) and history ids (B, H)."""
        emb_table, proj_table = self._tables_for(history.numel())
        return self._intent(user_profile, history, emb_table, proj_table)

    def _tables_for(
        self, ids_touched: int
    ) -> tuple[torch.Tensor, torch.Tensor] | tuple[None, None]:
        use_tables = (not self.training and not torch.is_grad_enabled()) or (
            self.item_features.shape[0] <= ids_touched
        )
        return self.item_tables() if use_tables else (None, None)

    def _intent(
        self,
        user_profile: torch.Tensor,
        history: torch.Tensor,
        emb_table: torch.Tensor | None,
        proj_table: torch.Tensor | None,
    ) -> torch.Tensor:
        f = self.config.feature_dim
        attn = self.history_attention
        if proj_table is not None:
            seq_proj = proj_table[history]  # (B, H, 3f)
        else:
            seq_emb = self.item_encoder(self.item_features[history])  # (B, H, f)
            seq_proj = F.linear(seq_emb, attn.in_proj_weight, attn.in_proj_bias)
        q, k, v = seq_proj.split(f, dim=-1)
        seq = self._attend(attn, q, k, v)  # (B, H, f)

        user = self.profile_encoder(user_profile)  # (B, f)
        cross = self.user_attention
        w_q, w_kv = cross.in_proj_weight.split((f, 2 * f))
        b_q, b_kv = cross.in_proj_bias.split((f, 2 * f))
        query = F.linear(user, w_q, b_q).unsqueeze(1)  # (B, 1, f)
        k, v = F.linear(seq, w_kv, b_kv).split(f, dim=-1)  # (B, H, f) each
        intent = self._attend(cross, query, k, v).squeeze(1)  # (B, f)
        if self.fuse is not None:
            intent = self.fuse(torch.cat((intent, user), dim=-1))
        return intent

    def item_logits(
        self, user_profile: torch.Tensor, history: torch.Tensor, items: torch.Tensor
    ) -> torch.Tensor:
        """Position-free logits (B, C) of any candidate items (B, C): the logit without the slot
        term, which ranks candidates as the click probability in any one slot does."""
        emb_table, proj_table = self._tables_for(history.numel() + items.numel())
        intent = self._intent(user_profile, history, emb_table, proj_table)  # (B, f)
        if emb_table is not None:
            emb = emb_table[items]  # (B, C, f)
        else:
            emb = self.item_encoder(self.item_features[items])
        return (emb * intent.unsqueeze(1)).sum(dim=-1)

    def slot_logits(self, slate_size: int) -> torch.Tensor | None:
        """The slot term (K,) added to the logit of the k-th exposed item; None if position-free."""
        if self.slot_bias is None:
            return None
        slots = torch.arange(slate_size, device=self.slot_bias.device)
        return self.slot_bias[slots.clamp(max=self.slot_bias.shape[0] - 1)]

    def forward(
        self, user_profile: torch.Tensor, history: torch.Tensor, slate: torch.Tensor
    ) -> torch.Tensor:
        """Click logits (B, K) for profile (B, P) float, history (B, H) and slate (B, K) ids; the
        k-th item of a slate is shown in slot k."""
        logits = self.item_logits(user_profile, history, slate)
        slot = self.slot_logits(slate.shape[-1])
        return logits if slot is None else logits + slot

    def click_probability(
        self, user_profile: torch.Tensor, history: torch.Tensor, slate: torch.Tensor
    ) -> torch.Tensor:
        return torch.sigmoid(self.forward(user_profile, history, slate))

    def l2_penalty(self) -> torch.Tensor:
        """Sum over parameter tensors of their mean square (the reference's regulariser)."""
        return sum(p.pow(2).mean() for p in self.parameters())  # type: ignore[return-value]
