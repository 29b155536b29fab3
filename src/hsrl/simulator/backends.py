"""Where the environment's click probabilities come from: a learned model or the ground truth.

The environment only needs :class:`ResponseBackend`: an item table and
``click_probability(user_state, slate) -> (B, K)``. Two adapters are provided:

- :class:`LearnedBackend` over a trained :class:`~hsrl.simulator.response_model.UserResponseModel`;
- :class:`GroundTruthBackend` over the built-in dataset's true user model
  (``hsrl.data.builtin.GroundTruthUserModel``), so a policy can be scored against the users
  that generated the data, not only against a model fitted to them.

Any object with the same two members works (for example a user's own simulator).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch

from hsrl.simulator.response_model import UserResponseModel


@dataclass(frozen=True)
class UserState:
    """What a backend may read about the B current users (all tensors on the env's device)."""

    record: torch.Tensor  # (B,) long: index of the logged record the user was sampled from
    session_id: torch.Tensor  # (B,) long: that record's session id
    user_profile: torch.Tensor  # (B, P) float
    history: torch.Tensor  # (B, H) long: current history, left-padded with 0


@runtime_checkable
class ResponseBackend(Protocol):
    item_features: torch.Tensor  # (N + 1, F) on the env's device; row 0 = padding

    def click_probability(self, state: UserState, slate: torch.Tensor) -> torch.Tensor:
        """Probability (B, K) in [0, 1] that each user responds to each item of ``slate`` (B, K)."""
        ...


class LearnedBackend:
    """Click probabilities from a trained response model, in evaluation mode."""

    def __init__(self, model: UserResponseModel):
        self.model = model.eval()
        self.model.requires_grad_(False)

    @property
    def item_features(self) -> torch.Tensor:
        return self.model.item_features

    @property
    def profile_dim(self) -> int:
        return int(self.model.config.profile_dim)  # type: ignore[arg-type]

    def set_item_features(self, features: torch.Tensor) -> None:
        """Score another item table (N' + 1, F), e.g. with new items: only features are needed."""
        self.model.set_item_features(features)

    def item_logits(self, state: UserState) -> torch.Tensor:
        """Immediate click logit of every item id 0..N for the B users, (B, N + 1), without the
        slot term (the same for every item in a slot), so it ranks items as p(click) does."""
        with torch.inference_mode():
            items = torch.arange(self.item_features.shape[0], device=state.history.device)
            items = items.expand(state.history.shape[0], -1)
            return self.model.item_logits(state.user_profile, state.history, items)

    def slot_logits(self, slate_size: int) -> torch.Tensor | None:
        """The slot term (K,) of the model's logit, or None for a position-free model."""
        with torch.inference_mode():
            return self.model.slot_logits(slate_size)

    def click_probability(self, state: UserState, slate: torch.Tensor) -> torch.Tensor:
        # inference_mode is safe here: the probabilities never leave the env; the response the
        # env derives from them is made outside inference mode, so agents can train on it.
        with torch.inference_mode():
            return self.model.click_probability(state.user_profile, state.history, slate)


class GroundTruthBackend:
    """Click probabilities of the built-in dataset's true user model.

    ``model`` follows ``hsrl.data.builtin.GroundTruthUserModel``: ``click_probability(user (B,),
    history (B, H), slate (B, K)) -> (B, K)``, ``user_of_session(session_id (B,)) -> (B,)``,
    ``num_users`` and ``item_features``. When the sessions of the records the env samples from
    are given, the true user of every record is looked up once here instead of at every step.
    """

    def __init__(
        self,
        model: Any,
        device: torch.device | str = "cpu",
        record_sessions: torch.Tensor | None = None,
    ):
        self.model = model
        self.device = torch.device(device)
        features = torch.as_tensor(model.item_features, dtype=torch.float32)
        self._item_features = features.to(self.device)
        self._record_user: torch.Tensor | None = None
        if record_sessions is not None:
            with torch.no_grad():
                users = model.user_of_session(record_sessions.to(self.device))
            self._record_user = torch.as_tensor(users, device=self.device).long()

    @property
    def item_features(self) -> torch.Tensor:
        return self._item_features

    def set_item_features(self, features: torch.Tensor) -> None:
        """The same true users over another item table (N' + 1, F), e.g. with new items."""
        self.model = self.model.with_items(features)
        self._item_features = self.model.item_features.to(self.device)

    def _users(self, state: UserState) -> torch.Tensor:
        if self._record_user is not None:
            return self._record_user[state.record]
        return self.model.user_of_session(state.session_id)

    def item_logits(self, state: UserState) -> torch.Tensor:
        """Immediate click logit of every item id 0..N without the slot term, (B, N + 1).

        The slot term is the same for every item, so this ranks items as p(click) does.
        """
        with torch.inference_mode():
            items = torch.arange(self.item_features.shape[0], device=state.history.device)
            items = items.expand(state.history.shape[0], -1)
            return self.model.item_logits(self._users(state), state.history, items)

    def slot_logits(self, slate_size: int) -> torch.Tensor:
        """The true slot term (K,) of the click logit."""
        positions = torch.arange(slate_size, device=self.device)
        bias = self.model.slot_bias.to(self.device)
        return bias[positions.clamp(max=bias.shape[0] - 1)]

    def click_probability(self, state: UserState, slate: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return self.model.click_probability(self._users(state), state.history, slate)
