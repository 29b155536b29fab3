"""The batched recommendation environment (SPEC section 4).

B simulated users step in parallel on one device; every quantity is a tensor and no step loops
over users in Python. One step:

1. validate the slate (B, K) of item ids (one min/max check with a host sync; or deferred to
   the next ``pop_finished_episodes``, or skipped: ``EnvConfig.check_actions``); under the page
   layout (``EnvConfig.layout = "rows"``) every slot must hold an item of its row;
2. click probabilities (B, K) from the response backend (learned model or ground truth);
3. responses ~ Bernoulli(p) with the env's own ``torch.Generator``;
4. reward (B,) from a registered reward function of the responses;
5. history: append the clicked items in slot order, keep the last H;
6. leave model: temper -= (1 - r) K + 1; a user whose temper is below 1 leaves (terminated);
   ``max_steps``, if set, truncates;
7. finished users are recorded (total reward, depth, average reward, click rate) and replaced
   at once by users sampled from the split's logged records (same-step autoreset).

Gymnasium's batched API is followed with tensors instead of arrays:
``reset(seed=...) -> obs, info`` and ``step(slate) -> obs, reward, terminated, truncated, info``
where ``obs = {"user_profile": (B, P) float, "history": (B, H) long}``. The observation
returned for a user who finished is already the new user's; the finished user's last
observation is in ``info["final_observation"]`` (rows where ``info["_final_observation"]``).

Returned tensors are never modified later by the env (state updates are out of place), and they
are ordinary tensors (not inference tensors), so agents can store and train on them directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from hsrl.config import replace
from hsrl.data.prepared import Records, load_prepared
from hsrl.device import resolve_device
from hsrl.errors import ConfigError, DataError, HsrlError
from hsrl.simulator.backends import GroundTruthBackend, LearnedBackend, ResponseBackend, UserState
from hsrl.simulator.history import append_positive, fit_history
from hsrl.simulator.leave import INITIAL_TEMPER, update_temper
from hsrl.simulator.rewards import get_reward
from hsrl.slate import LAYOUTS, PageLayout

# Finished-episode rows are kept per step and compacted (one host sync) this often.
_COMPACT_EVERY = 64
# "No invalid id seen" for the deferred slate check (below every possible id).
_NO_ID = torch.iinfo(torch.long).min


def canonical_device(device: torch.device) -> torch.device:
    """``cuda`` -> ``cuda:<current>``, so that it compares equal to a tensor's device."""
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", torch.cuda.current_device())
    return device


class InvalidActionError(HsrlError):
    """A slate handed to ``RecEnv.step`` has the wrong shape, dtype, device or item ids."""


@dataclass(frozen=True)
class EnvConfig:
    """How the simulated users behave and how many step at once."""

    num_users: int = 32
    """B: users stepped in parallel."""
    slate_size: int | None = None
    """K: items per slate; None = the dataset's slate size."""
    reward: str = "rl4rs"
    """Reward function name: "rl4rs" (sweet point) or "mean_with_cost" (ML1M), or registered."""
    initial_temper: float = INITIAL_TEMPER
    """T0: a new user's patience."""
    history_length: int = 50
    """H: positively-responded items kept in the observation."""
    max_steps: int | None = None
    """Truncate an episode after this many steps (None = only the leave model ends it)."""
    split: str = "train"
    """Which split's logged records new users are sampled from."""
    device: str = "cpu"
    """Where the users live: cpu, cuda, cuda:N or auto."""
    check_actions: bool | str = True
    """Check the item ids of every slate. True: before the step (one host sync per step);
    "deferred": on the device without a sync, raising at the next ``pop_finished_episodes`` or
    ``state_dict`` (a training loop's pace: the GPU keeps working ahead); False: never."""
    layout: str = "free"
    """"free": any item in any slot; "rows": the dataset's page layout, row r of the page (slots
    (r-1)K/R+1 .. rK/R) shows only items of location r, as on RL4RS pages (needs item
    locations in the dataset)."""

    def __post_init__(self) -> None:
        if self.num_users < 1:
            raise ConfigError(f"num_users: must be at least 1, got {self.num_users}")
        if self.slate_size is not None and self.slate_size < 1:
            raise ConfigError(f"slate_size: must be at least 1, got {self.slate_size}")
        if self.history_length < 1:
            raise ConfigError(f"history_length: must be at least 1, got {self.history_length}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ConfigError(f"max_steps: must be at least 1, got {self.max_steps}")
        if self.check_actions not in (True, False, "deferred"):
            raise ConfigError(
                f"check_actions: must be true, false or 'deferred', got {self.check_actions!r}"
            )
        if self.layout not in LAYOUTS:
            raise ConfigError(f"layout: must be one of {', '.join(LAYOUTS)}, got {self.layout!r}")
        if not self.initial_temper >= 1.0:
            raise ConfigError(f"initial_temper: must be at least 1, got {self.initial_temper}")


@dataclass(frozen=True)
class TensorSpec:
    """Shape, dtype, device and value range of one tensor of the env's interface."""

    shape: tuple[int, ...]
    dtype: torch.dtype
    device: torch.device
    low: float | None = None
    high: float | None = None

    def problem(self, tensor: Any) -> str | None:
        """Why ``tensor`` does not meet the spec, or None (values checked only if bounded)."""
        if not isinstance(tensor, torch.Tensor):
            return f"expected a torch.Tensor, got {type(tensor).__name__}"
        if tuple(tensor.shape) != self.shape:
            return f"shape {tuple(tensor.shape)}, expected {self.shape}"
        if tensor.dtype != self.dtype:
            return f"dtype {tensor.dtype}, expected {self.dtype}"
        if tensor.device != self.device:
            return f"device {tensor.device}, expected {self.device}"
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            return "holds NaN or inf"
        if tensor.numel() and self.low is not None and float(tensor.min()) < self.low:
            return f"holds values below {self.low}"
        if tensor.numel() and self.high is not None and float(tensor.max()) > self.high:
            return f"holds values above {self.high}"
        return None


EPISODE_KEYS = ("total_reward", "depth", "avg_reward", "click_rate", "truncated")


class RecEnv:
    """B users of a recommender on one device (see module docs for the step semantics)."""

    metadata = {"autoreset_mode": "same-step", "render_modes": []}

    def __init__(
        self,
        backend: ResponseBackend,
        records: Records,
        config: EnvConfig | None = None,
        device: str | torch.device | None = None,
        layout: PageLayout | None = None,
    ):
        config = config or EnvConfig()
        self.config = config
        self.device = canonical_device(resolve_device(config.device if device is None else device))
        self.backend = backend
        if len(records) == 0:
            raise DataError(f"<{config.split}>", "no logged records to sample users from")
        features = backend.item_features
        if features.device != self.device:
            raise ConfigError(
                f"the response backend's item table is on {features.device}, the env on {self.device}"
            )
        expected_profile = getattr(backend, "profile_dim", None)
        if expected_profile is not None and expected_profile != records.profile_dim:
            raise ConfigError(
                f"the response backend reads user profiles of size {expected_profile}, the "
                f"records of split {config.split!r} have size {records.profile_dim}"
            )
        self._reward_fn = get_reward(config.reward)
        self.num_users = config.num_users
        self.slate_size = config.slate_size or records.slate_size
        self.history_length = config.history_length
        self.initial_temper = float(config.initial_temper)
        # The logged users new episodes start from, resident on the device.
        self._pool_profile = records.user_profile.to(self.device, torch.float32)  # (R, P)
        pool_history = fit_history(records.history, self.history_length)
        if int(pool_history.max()) > self.num_items:
            raise DataError(
                f"<{config.split}>", "histories hold item ids outside the backend's item table"
            )
        self._pool_history = pool_history.to(self.device, torch.int32)  # (R, H), compact
        self._pool_session = records.session_id.to(self.device)  # (R,)
        self.num_records = len(records)
        self.profile_dim = records.profile_dim
        self.live: torch.Tensor | None = None
        """(N + 1,) bool: the items slates may hold (set by :meth:`set_items`); None = 1..N."""
        if (layout is not None) != (config.layout == "rows"):
            raise ConfigError(
                f"layout {config.layout!r}: give a PageLayout exactly when the layout is 'rows'"
            )
        if layout is not None:
            if layout.slot_row.shape[0] != self.slate_size:
                raise ConfigError(
                    f"the page layout has {layout.slot_row.shape[0]} slots, the env's slate "
                    f"size is {self.slate_size}"
                )
            if layout.item_row.shape[0] != self.num_items + 1:
                raise ConfigError("the page layout covers another item table than the backend's")
            layout = layout.to(self.device)
        self.layout = layout
        """Which items each slot may hold (:class:`~hsrl.slate.PageLayout`), or None: any."""
        self._generator = torch.Generator(device=self.device)
        self._generator.seed()
        self._pending: list[tuple[torch.Tensor, ...]] = []
        self._finished: list[dict[str, torch.Tensor]] = []
        self._deferred_invalid: torch.Tensor | None = None
        """Largest invalid item id seen by the deferred check (or _NO_ID), on the device."""
        self._started = False

    # ------------------------------------------------------------------ description
    @property
    def record_sessions(self) -> torch.Tensor:
        """Session ids (R,) of the logged records new users are sampled from."""
        return self._pool_session

    @property
    def reward_fn(self) -> Any:
        """The reward function of the responses, (B, K) -> (B,)."""
        return self._reward_fn

    @property
    def item_features(self) -> torch.Tensor:
        """(N + 1, F) item features on the env's device; row 0 is the padding item."""
        return self.backend.item_features

    @property
    def num_items(self) -> int:
        return self.backend.item_features.shape[0] - 1

    def set_items(
        self,
        features: torch.Tensor,
        live: torch.Tensor | None = None,
        layout: PageLayout | None = None,
    ) -> None:
        """Change the catalogue: a new item table (N' + 1, F) and the items that may be shown.

        Ids are stable: new items are appended rows, retired ones keep their rows (histories
        may still hold them) and are only left out of ``live``. The backend scores new items
        from their features (it needs ``set_item_features``). Under the page layout, ``layout``
        gives the rows of the grown table (it may be left out when the table keeps its size).
        """
        set_features = getattr(self.backend, "set_item_features", None)
        if set_features is None:
            raise ConfigError(
                f"{type(self.backend).__name__} cannot change its item table (no set_item_features)"
            )
        if features.shape[0] < self.num_items + 1:
            raise ConfigError("set_items: item ids are stable, the table can only grow")
        if live is not None and live.shape != (features.shape[0],):
            raise ConfigError(f"set_items: live must be ({features.shape[0]},) bool")
        if self.layout is not None:
            layout = layout or self.layout
            if layout.item_row.shape[0] != features.shape[0]:
                raise ConfigError(
                    "set_items: under the page layout the new items need their rows (layout)"
                )
            layout = self.layout.with_items(layout.item_row.to(self.device))
            if live is not None:
                layout.check_items(live.to(self.device, torch.bool))
            self.layout = layout
        set_features(features.to(self.device))
        self.live = None if live is None else live.to(self.device, torch.bool)

    def observation_spec(self) -> dict[str, TensorSpec]:
        b = self.num_users
        return {
            "user_profile": TensorSpec((b, self.profile_dim), torch.float32, self.device),
            "history": TensorSpec(
                (b, self.history_length), torch.long, self.device, 0, self.num_items
            ),
        }

    def profile_bounds(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-column minimum and maximum (P,) of the profiles new users are drawn from."""
        return self._pool_profile.amin(dim=0), self._pool_profile.amax(dim=0)

    def action_spec(self) -> TensorSpec:
        return TensorSpec(
            (self.num_users, self.slate_size), torch.long, self.device, 1, self.num_items
        )

    # ------------------------------------------------------------------ API
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Sample B new users. With ``seed`` the env's generator restarts from it.

        Episodes in progress are dropped (not recorded); finished ones stay until popped.
        """
        if seed is not None:
            self._generator.manual_seed(int(seed))
        b = self.num_users
        with torch.no_grad():
            record = self._sample_records()
            self._record = record
            self._profile = self._pool_profile[record]
            self._history = self._pool_history[record].long()
            self._temper = torch.full((b,), self.initial_temper, device=self.device)
            self._steps = torch.zeros(b, dtype=torch.long, device=self.device)
            self._total_reward = torch.zeros(b, device=self.device)
            self._clicks = torch.zeros(b, device=self.device)
        self._started = True
        return self._observation(), {"record": record}

    def step(
        self, slate: torch.Tensor
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor, torch.Tensor, dict[str, Any]]:
        """Show one slate (B, K) of item ids to every user; see the module docs."""
        if not self._started:
            raise HsrlError("RecEnv.step called before reset()")
        slate = self._check_slate(slate)
        k = self.slate_size
        with torch.no_grad():
            state = UserState(
                self._record, self._pool_session[self._record], self._profile, self._history
            )
            probability = self.backend.click_probability(state, slate)  # (B, K)
            noise = torch.rand(probability.shape, generator=self._generator, device=self.device)
            response = (noise < probability).float()  # (B, K)
            reward = self._reward_fn(response).float()  # (B,)
            history = append_positive(self._history, slate, response)  # (B, H)
            temper, terminated = update_temper(self._temper, reward, k)
            steps = self._steps + 1
            total = self._total_reward + reward
            clicks = self._clicks + response.sum(dim=1)
            if self.config.max_steps is not None:
                truncated = (steps >= self.config.max_steps) & ~terminated
            else:
                truncated = torch.zeros_like(terminated)
            done = terminated | truncated  # (B,)
            self._pending.append((done, total, steps, clicks, truncated))
            if len(self._pending) >= _COMPACT_EVERY:
                self._compact()
            depth = steps.float()
            episode = {
                "r": total,
                "l": steps,
                "avg_r": total / depth,
                "click_rate": clicks / (depth * k),
            }
            final_observation = {"user_profile": self._profile, "history": history}

            # Same-step autoreset: finished users are replaced by freshly sampled ones.
            fresh = self._sample_records()  # (B,)
            record = torch.where(done, fresh, self._record)
            self._record = record
            self._profile = self._pool_profile[record]
            self._history = torch.where(
                done.unsqueeze(1), self._pool_history[fresh].long(), history
            )
            self._temper = torch.where(done, self.initial_temper, temper)
            self._steps = torch.where(done, 0, steps)
            self._total_reward = torch.where(done, 0.0, total)
            self._clicks = torch.where(done, 0.0, clicks)
            info = {
                "response": response,
                "click_probability": probability.clone(),
                "final_observation": final_observation,
                "_final_observation": done,
                "episode": episode,
                "_episode": done,
            }
        return self._observation(), reward, terminated, truncated, info

    def item_scores(self) -> torch.Tensor:
        """Immediate click logits (B, N + 1) of every item for the current users.

        What a myopic policy ranks by; needs a backend with ``item_logits`` (both built-in
        backends have it).
        """
        if not self._started:
            raise HsrlError("RecEnv.item_scores called before reset()")
        item_logits = getattr(self.backend, "item_logits", None)
        if item_logits is None:
            raise HsrlError(
                f"{type(self.backend).__name__} cannot score all items (no item_logits)"
            )
        with torch.no_grad():
            return item_logits(self.user_state()).clone()

    def user_state(self) -> UserState:
        """What a backend reads about the current users (for scoring them with another model)."""
        if not self._started:
            raise HsrlError("RecEnv.user_state called before reset()")
        return UserState(
            self._record, self._pool_session[self._record], self._profile, self._history
        )

    def slot_scores(self) -> torch.Tensor:
        """The slot term (K,) of the backend's click logit: logit(p) of item i in slot k is
        ``item_scores()[:, i] + slot_scores()[k]``. Zeros for a position-free backend (or one
        without ``slot_logits``)."""
        slot_logits = getattr(self.backend, "slot_logits", None)
        slots = slot_logits(self.slate_size) if slot_logits is not None else None
        if slots is None:
            return torch.zeros(self.slate_size, device=self.device)
        return slots.detach().to(self.device, torch.float32).clone()

    def pop_finished_episodes(self) -> dict[str, torch.Tensor]:
        """Every episode finished since the last call, in order of finishing (then of user).

        Keys: ``total_reward`` (sum of r), ``depth`` (steps, long), ``avg_reward``,
        ``click_rate`` (clicks / (depth K)), ``truncated`` (bool: ended by max_steps).
        """
        self._raise_deferred_invalid()
        self._compact()
        finished, self._finished = self._finished, []
        if not finished:
            empty = torch.zeros(0, device=self.device)
            return {
                "total_reward": empty,
                "depth": empty.long(),
                "avg_reward": empty,
                "click_rate": empty,
                "truncated": empty.bool(),
            }
        return {key: torch.cat([f[key] for f in finished]) for key in EPISODE_KEYS}

    def close(self) -> None:
        self._pending.clear()

    # ------------------------------------------------------------------ resume
    _STATE_KEYS = ("record", "history", "temper", "steps", "total_reward", "clicks")

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly where the env is (tensors and ints only,
        so it loads with ``torch.load(weights_only=True)``); unpopped episodes included."""
        self._raise_deferred_invalid()
        self._compact()
        state: dict[str, Any] = {
            "num_users": self.num_users,
            "started": self._started,
            "generator": self._generator.get_state(),
            "finished": [dict(f) for f in self._finished],
        }
        if self._started:
            for key in self._STATE_KEYS:
                state[key] = getattr(self, f"_{key}")
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        from hsrl.errors import CheckpointError

        try:
            if int(state["num_users"]) != self.num_users:
                raise CheckpointError(
                    f"env state is for {state['num_users']} users, this env has {self.num_users}"
                )
            self._generator.set_state(state["generator"].cpu())
            finished = [
                {key: f[key].to(self.device) for key in EPISODE_KEYS} for f in state["finished"]
            ]
            values = {}
            if state["started"]:
                for key in self._STATE_KEYS:
                    value = state[key].to(self.device)
                    if value.shape[0] != self.num_users:
                        raise CheckpointError(f"env state {key!r} has the wrong shape")
                    values[key] = value
                if int(values["record"].max()) >= self.num_records:
                    raise CheckpointError("env state refers to records the split does not have")
        except (KeyError, TypeError, AttributeError, RuntimeError) as exc:
            raise CheckpointError(f"env state is damaged or from another version ({exc})") from exc
        self._pending, self._finished = [], finished
        self._deferred_invalid = None
        self._started = bool(state["started"])
        for key, value in values.items():
            setattr(self, f"_{key}", value)
        if self._started:
            self._profile = self._pool_profile[self._record]

    # ------------------------------------------------------------------ internals
    def _observation(self) -> dict[str, torch.Tensor]:
        return {"user_profile": self._profile, "history": self._history}

    def _sample_records(self) -> torch.Tensor:
        return torch.randint(
            self.num_records, (self.num_users,), generator=self._generator, device=self.device
        )

    def _check_slate(self, slate: torch.Tensor) -> torch.Tensor:
        """The slate to step with (clamped into the item table under the deferred check)."""
        expected = (self.num_users, self.slate_size)
        if not isinstance(slate, torch.Tensor):
            raise InvalidActionError(f"slate: expected a torch.Tensor, got {type(slate).__name__}")
        if tuple(slate.shape) != expected:
            raise InvalidActionError(
                f"slate: shape {tuple(slate.shape)}, expected {expected} (users, slate size)"
            )
        if slate.dtype != torch.long:
            raise InvalidActionError(f"slate: dtype {slate.dtype}, expected torch.int64 item ids")
        if slate.device != self.device:
            raise InvalidActionError(f"slate: on {slate.device}, the env is on {self.device}")
        if self.config.check_actions == "deferred":
            inside = slate.clamp(0, self.num_items)
            invalid = (slate != inside) | (slate == 0)
            if self.live is not None:
                invalid = invalid | ~self.live[inside]
            if self.layout is not None:
                invalid = invalid | self.layout.misplaced(inside)
            worst = torch.where(invalid, slate, _NO_ID).max()
            previous = self._deferred_invalid
            self._deferred_invalid = worst if previous is None else torch.maximum(previous, worst)
            return inside
        if self.config.check_actions:
            checks = list(torch.aminmax(slate))
            if self.live is not None:
                shown = self.live[slate.clamp(0, self.num_items)]
                checks.append(torch.where(shown, 0, slate).max())  # a retired id, or 0
            low, high, *retired = torch.stack(checks).tolist()  # one host sync
            if low < 1 or high > self.num_items:
                raise InvalidActionError(self._invalid_message(low if low < 1 else high))
            if retired and retired[0] > 0:
                raise InvalidActionError(self._invalid_message(retired[0]))
            if self.layout is not None:
                self._check_layout(slate)
        return slate

    def _check_layout(self, slate: torch.Tensor) -> None:
        misplaced = self.layout.misplaced(slate)
        if bool(misplaced.any()):
            user, slot = (int(v) for v in torch.nonzero(misplaced)[0])
            item = int(slate[user, slot])
            raise InvalidActionError(
                f"slate of user {user}: slot {slot + 1} holds item {item} of row "
                f"{int(self.layout.item_row[item])}, but the page layout shows only row "
                f"{int(self.layout.slot_row[slot])} items there"
            )

    def _invalid_message(self, item: int) -> str:
        if 1 <= item <= self.num_items:
            if self.live is None or bool(self.live[item]):
                return f"slate holds item {item} in a slot of another page row (layout 'rows')"
            return f"slate holds item {item}, which is not in the live catalogue"
        what = "the padding id 0" if item == 0 else f"item id {item}"
        return f"slate holds {what}; valid item ids are 1..{self.num_items}"

    def _raise_deferred_invalid(self) -> None:
        if self._deferred_invalid is None:
            return
        worst, self._deferred_invalid = int(self._deferred_invalid), None
        if worst != _NO_ID:
            raise InvalidActionError(
                self._invalid_message(worst) + " (found by the deferred slate check, which "
                "reports at the next pop_finished_episodes or state_dict)"
            )

    def _compact(self) -> None:
        if not self._pending:
            return
        done, total, steps, clicks, truncated = (torch.stack(x) for x in zip(*self._pending))
        self._pending = []
        mask = done.reshape(-1)  # step-major, then user
        depth = steps.reshape(-1)[mask]
        total = total.reshape(-1)[mask]
        clicks = clicks.reshape(-1)[mask]
        self._finished.append(
            {
                "total_reward": total,
                "depth": depth,
                "avg_reward": total / depth,
                "click_rate": clicks / (depth * self.slate_size),
                "truncated": truncated.reshape(-1)[mask],
            }
        )


def make_env(
    dataset_dir: str | Path,
    simulator_dir: str | Path | None = None,
    ground_truth: bool = False,
    split: str | None = None,
    config: EnvConfig | None = None,
    device: str | torch.device | None = None,
) -> RecEnv:
    """An env over a prepared dataset's users and either a trained simulator or the ground truth.

    ``split`` and ``device`` override those of ``config``. A simulator is checked against the
    dataset (dimensions and item table) before use.
    """
    config = config or EnvConfig()
    split = split or config.split
    device = resolve_device(config.device if device is None else device)
    config = replace(config, split=split, device=str(device))
    if ground_truth == (simulator_dir is not None):
        raise ConfigError(
            "make_env: give either a simulator folder or ground_truth=True (exactly one)"
        )
    dataset = load_prepared(dataset_dir, splits=[split])
    records = dataset.split(split)
    backend = make_backend(dataset, records.session_id, simulator_dir, device=device)
    layout = None
    if config.layout == "rows":
        layout = dataset_layout(dataset, config.slate_size or records.slate_size)
    return RecEnv(backend, records, config, device=device, layout=layout)


def dataset_layout(dataset: Any, slate_size: int) -> PageLayout:
    """The page layout of a prepared dataset: its items' locations as page rows."""
    location = dataset.item_locations()
    if location is None:
        raise DataError(
            Path(dataset.path), "layout 'rows' needs item locations, and this dataset has none"
        )
    try:
        return PageLayout.from_locations(location, slate_size)
    except ConfigError as exc:
        raise DataError(Path(dataset.path), str(exc)) from exc


def make_backend(
    dataset: Any,
    record_sessions: torch.Tensor,
    simulator_dir: str | Path | None,
    device: torch.device,
) -> ResponseBackend:
    """The response backend for users sampled from logged records with these session ids: the
    trained simulator in ``simulator_dir`` (checked against the dataset), or the ground truth
    of a built-in dataset when it is None."""
    if simulator_dir is None:
        path = dataset.ground_truth_path
        if path is None:
            raise DataError(
                Path(dataset.path),
                "this dataset has no ground-truth user model (only built-in ones do)",
            )
        from hsrl.data.builtin import GroundTruthUserModel

        model = GroundTruthUserModel.load(path, device)
        return GroundTruthBackend(model, device, record_sessions=record_sessions)
    from hsrl.simulator.train import check_compatible, load_simulator

    learned = load_simulator(simulator_dir, device)
    check_compatible(learned, dataset)
    return LearnedBackend(learned)
