"""The built-in dataset: a known ground-truth user model and the logs it generates.

The main job must run on a fresh machine with no download, and a policy should be scored
against the users that produced the data, not only against a model fitted to them. This module
provides both:

- :class:`GroundTruthUserModel`: seeded, frozen users with latent preferences, a 42-value
  portrait derived from them, and a click model in which affinity, slot position and the recent
  history (fatigue from repeating similar items, boredom with a monotone feed) set the click
  probability; saved as plain arrays in ``ground_truth.npz``;
- :func:`generate_raw`: sessions of several pages per user, logged by a stochastic
  preference-aware behaviour policy, written in the exact RL4RS raw format (so the RL4RS reader
  handles them), plus the ground truth;
- :func:`prepare_builtin`: generation followed by the ordinary RL4RS reading and
  :func:`~hsrl.data.prepared.write_prepared`, for ``hsrl data prepare builtin``.

The click model (docs/builtin_dataset.md gives the full description and measured numbers)::

    logit p(click | u, i, k, h) = a(u, i) + s_k - gamma_f * S(i, h) - gamma_b * M(h)
    a(u, i) = <z_u, e_i> / sqrt(D) + <w, x_i> / sqrt(F),  e_i = P^T x_i / sqrt(F)
    S(i, h) = 1/m sum_{j in last m of h} relu(cos(e_i, e_j) - tau) / (1 - tau)
    M(h)    = || 1/m sum_{j in last m of h} e_j / |e_j| ||

``S`` penalises an item similar to what the user recently clicked (myopic choice can see and
avoid it); ``M`` lowers every click probability after a monotone run of clicks. A greedy
policy never pays for ``M`` now but creates it for the next steps, so diversity beats greedy
over an episode: the long-term effect that RL should find.
"""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hsrl.config import to_dict
from hsrl.data.prepared import write_prepared
from hsrl.errors import ConfigError, DataError, HsrlError
from hsrl.io import atomic_output_dir, load_arrays, save_arrays, temp_prefix
from hsrl.simulator.history import append_positive

GROUND_TRUTH_VERSION = 1
SLATE_SIZE = 9  # an RL4RS page: three rows of three items
ROW_SIZE = 3
NUM_LOCATIONS = 3  # row r of a page shows items of location r
FEATURE_DIM = 40
HISTORY_CAP = 60  # positively-responded items kept in user_seqfeature
PORTRAIT_CATEGORIES = (1, 40, 3, 4, 6, 2, 2, 4, 2, 12)  # values per categorical portrait code
PORTRAIT_DENSE = 32
PORTRAIT_DIM = len(PORTRAIT_CATEGORIES) + PORTRAIT_DENSE  # 42, as in RL4RS
REAL_LOCATION_SIZES = (39, 108, 136)  # items of location 1/2/3 in the real item table
RAW_HEADER = (
    "timestamp@session_id@sequence_id@exposed_items@user_feedback@user_seqfeature@"
    "user_protrait@item_feature@behavior_policy_id"
)
ITEM_HEADER = "item_id item_vec price location special_item"
TRAIN_FILE = "rl4rs_b_train.csv"
TEST_FILE = "rl4rs_b_test.csv"
ITEM_FILE = "item_info.csv"
GROUND_TRUTH_FILE = "ground_truth.npz"
# Click rate per slot in the logged data that the slot biases are fitted to: a monotone
# smoothing of the real RL4RS fragment (0.87, 0.89, 0.84, 0.78, 0.75, 0.78, 0.57, 0.52, 0.32;
# mean 0.70).
SLOT_CLICK_TARGET = (0.87, 0.86, 0.83, 0.78, 0.76, 0.74, 0.60, 0.53, 0.32)
_CHUNK = 16384  # users per block in the simulation (bounds memory at any scale)


# --------------------------------------------------------------------------------------------
# configuration


@dataclass(frozen=True)
class UserModelConfig:
    """Parameters of the ground-truth users (what is sampled, not what is fitted)."""

    latent_dim: int = 16
    """D: size of the preference space; items enter it by a fixed random projection."""
    num_types: int = 8
    """user types: latent preferences are drawn from a mixture with this many components."""
    individual_scale: float = 0.6
    """spread of a user around the mean of the type, relative to the spread of type means."""
    affinity_scale: float = 1.5
    """standard deviation over items of a user's affinity logit."""
    item_bias_scale: float = 0.3
    """standard deviation of the user-independent item appeal, a linear function of x_i."""
    fatigue_weight: float = 3.0
    """gamma_f: logit penalty when the whole recent window is the candidate item itself."""
    fatigue_threshold: float = 0.3
    """tau: cosine similarity under which a recent item does not tire the candidate."""
    fatigue_window: int = 20
    """m: how many of the latest positively-responded items count for fatigue and boredom."""
    boredom_weight: float = 6.0
    """gamma_b: logit penalty on every item when the recent window is one direction only."""
    slot_click_target: tuple[float, ...] = SLOT_CLICK_TARGET
    """logged click rate per slot that the slot biases are calibrated to."""

    def __post_init__(self) -> None:
        if self.latent_dim < 1 or self.num_types < 1 or self.fatigue_window < 1:
            raise ValueError("latent_dim, num_types and fatigue_window must be positive")
        if not 0.0 <= self.fatigue_threshold < 1.0:
            raise ValueError("fatigue_threshold must be in [0, 1)")
        if len(self.slot_click_target) != SLATE_SIZE or not all(
            0.0 < p < 1.0 for p in self.slot_click_target
        ):
            raise ValueError(f"slot_click_target needs {SLATE_SIZE} rates in (0, 1)")


@dataclass(frozen=True)
class GeneratorConfig:
    """How the logs are produced: users, sessions, the behaviour policy, the split."""

    num_users: int = 2000
    sessions_per_user: int = 3
    max_pages_per_session: int = 3
    """pages (records) of a session are uniform in 1..max_pages_per_session."""
    max_warmup_pages: int = 8
    """unlogged pages before a user's first logged one (uniform in 0..max), so logged
    histories range from empty to full."""
    behaviour_temperature: float = 1.0
    """softmax temperature of the behaviour policy over true affinities (lower = greedier)."""
    candidate_pool: int = 2048
    """largest number of items of one location the behaviour policy scores for a block of
    users; bigger locations are sampled (a random window of a fixed permutation)."""
    test_fraction: float = 0.2
    """share of users whose sessions go to rl4rs_b_test.csv."""
    explore_share: float = 0.0
    """share of pages shown with a randomised layout (exploration traffic): the behaviour
    policy's 9 items in a uniformly random slot order instead of row r = location r. Such pages
    are logged with behavior_policy_id 2 (the others 1). Without them, an item's effect and its
    slot's effect cannot be told apart from the logs."""
    calibration_rounds: int = 3
    calibration_users: int = 1000
    """slot biases are fitted on pilot logs of this many users, in this many rounds."""

    def __post_init__(self) -> None:
        if self.num_users < 2:
            raise ValueError("num_users must be at least 2 (train and test users)")
        if self.sessions_per_user < 1 or self.max_pages_per_session < 1:
            raise ValueError("sessions_per_user and max_pages_per_session must be positive")
        if self.max_warmup_pages < 0 or self.calibration_rounds < 0:
            raise ValueError("max_warmup_pages and calibration_rounds must be non-negative")
        if self.behaviour_temperature <= 0 or self.candidate_pool < ROW_SIZE:
            raise ValueError("behaviour_temperature must be > 0 and candidate_pool >= 3")
        if not 0.0 < self.test_fraction < 1.0:
            raise ValueError("test_fraction must be in (0, 1)")
        if not 0.0 <= self.explore_share <= 1.0:
            raise ValueError("explore_share must be in [0, 1]")


# --------------------------------------------------------------------------------------------
# item tables


@dataclass(frozen=True)
class ItemCatalogue:
    """An item table as the generator needs it: numbers for the model, text for the files."""

    features: np.ndarray  # (N + 1, F) float32, row 0 = padding (zeros)
    location: np.ndarray  # (N + 1,) int64 in 1..3, row 0 = 0
    vec_text: list[str] = field(repr=False)  # (N + 1) item_vec cells, exactly as in the file
    price_text: list[str] = field(repr=False)
    special_text: list[str] = field(repr=False)
    source: Path | None = None  # the packaged real table, when it is that one

    @property
    def num_items(self) -> int:
        return self.features.shape[0] - 1


def real_item_table_path() -> Path:
    """The RL4RS item table shipped with the package (CC BY-SA 4.0, see SOURCE.md there)."""
    return Path(str(resources.files("hsrl.data") / "builtin_assets" / ITEM_FILE))


def load_real_catalogue() -> ItemCatalogue:
    """Read the packaged RL4RS item table, keeping every cell's text for the records."""
    path = real_item_table_path()
    try:
        lines = path.read_text(encoding="ascii").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(path, f"cannot read the packaged item table ({exc})") from exc
    if not lines or lines[0].split() != ITEM_HEADER.split():
        raise DataError(path, f"expected the header {ITEM_HEADER!r}", line=1)
    rows = [line.split(" ") for line in lines[1:] if line.strip()]
    n = len(rows)
    for number, row in enumerate(rows, start=2):
        if len(row) != 5 or row[0] != str(number - 1):
            raise DataError(
                path, "expected 5 space-separated cells with ids 1, 2, ...", line=number
            )
    try:
        vectors = np.array([[float(v) for v in row[1].split(",")] for row in rows], np.float32)
    except ValueError as exc:
        raise DataError(path, f"non-numeric item_vec ({exc})") from exc
    if vectors.shape != (n, FEATURE_DIM):
        raise DataError(path, f"item_vec must hold {FEATURE_DIM} values per item")
    features = np.vstack([np.zeros((1, FEATURE_DIM), np.float32), vectors])
    location = np.array([0] + [int(row[3]) for row in rows], np.int64)
    return ItemCatalogue(
        features=features,
        location=location,
        vec_text=["0"] + [row[1] for row in rows],
        price_text=["0"] + [row[2] for row in rows],
        special_text=["0"] + [row[4] for row in rows],
        source=path,
    )


def format_rows(values: np.ndarray, decimals: int, sep: str = ",") -> list[str]:
    """Each row of ``values`` (R, C) as text: numbers joined by ``sep`` (one character).

    A number is written with at most ``decimals`` decimals and no trailing zeros (``-0.402``,
    ``1.5``, ``0``), after rounding, so the text and the rounded number agree.
    """
    values = np.asarray(values, dtype=np.float64)
    return format_ticks(np.rint(values * 10**decimals).astype(np.int64), decimals, sep)


def format_ticks(ticks: np.ndarray, decimals: int, sep: str = ",") -> list[str]:
    """Like :func:`format_rows` for fixed-point numbers ``ticks / 10**decimals`` (R, C) ints.

    Vectorised: the characters of all numbers of a block of rows are laid out in one
    (rows, columns, slots) byte matrix from digit lookup tables, unused slots are masked out,
    and the rest is one string split into lines; no Python object per number.
    """
    ticks = np.asarray(ticks)
    if ticks.ndim != 2 or ticks.shape[1] == 0 or len(sep.encode()) > 1:
        raise ValueError("format_ticks needs a (rows, columns) array and a one-character sep")
    lines: list[str] = []
    for lo in range(0, ticks.shape[0], 20_000):
        lines.extend(_format_block(ticks[lo : lo + 20_000], decimals, sep.encode()))
    return lines


def _decimal_table(decimals: int) -> tuple[np.ndarray, np.ndarray]:
    """ASCII digits of every decimal part 0..10**decimals - 1, and how many of them to write.

    ``5000`` of 4 decimals is written ``5`` (trailing zeros dropped); 0 is not written at all.
    """
    number = np.arange(10**decimals, dtype=np.int64)
    power = 10 ** np.arange(decimals - 1, -1, -1, dtype=np.int64)  # (d,)
    digits = (number[:, None] // power % 10).astype(np.uint8)  # (10**d, d)
    nonzero = digits != 0
    used = np.where(nonzero.any(1), decimals - np.argmax(nonzero[:, ::-1], 1), 0)
    return digits + ord("0"), used


def _format_block(ticks: np.ndarray, decimals: int, sep: bytes) -> list[str]:
    scale = 10**decimals
    negative = ticks < 0  # (R, C)
    whole, frac = np.divmod(np.abs(ticks), scale)
    width = len(str(int(whole.max()))) if whole.size else 1
    power = 10 ** np.arange(width - 1, -1, -1, dtype=whole.dtype)  # (W,)
    rows, cols = ticks.shape
    slots = 1 + width + 1 + decimals + 1  # sign, whole digits, point, decimals, separator
    chars = np.empty((rows, cols, slots), np.uint8)
    keep = np.zeros((rows, cols, slots), bool)
    chars[..., 0], keep[..., 0] = ord("-"), negative
    chars[..., 1 : 1 + width] = whole[..., None] // power % 10 + ord("0")
    whole_used = np.ones_like(whole)  # (R, C) digits of the whole part; 0 has one
    for digits in range(1, width):
        whole_used += whole >= 10**digits
    keep[..., 1 : 1 + width] = np.arange(width) >= width - whole_used[..., None]
    if decimals:
        frac_chars, frac_used = _decimal_table(decimals)
        used = frac_used[frac]  # (R, C)
        chars[..., 1 + width], keep[..., 1 + width] = ord("."), used > 0
        chars[..., 2 + width : 2 + width + decimals] = frac_chars[frac]
        keep[..., 2 + width : 2 + width + decimals] = np.arange(decimals) < used[..., None]
    else:
        chars[..., 1 + width] = ord(".")
    chars[..., -1] = sep[0] if sep else 0
    keep[..., -1] = bool(sep)
    chars[:, -1, -1], keep[:, -1, -1] = ord("\n"), True
    return chars[keep].tobytes().decode("ascii").split("\n")[:-1]


def synthetic_catalogue(num_items: int, *, seed: int) -> ItemCatalogue:
    """``num_items`` synthetic items that look like the real table, for scale tests.

    Locations keep the real proportions (39 : 108 : 136) with ids grouped by location as in the
    real table. Each synthetic item copies the categorical columns of a random real item of its
    location (its prototype) and perturbs the continuous ones, so the catalogue has the real
    table's structure (clusters of similar items, location-dependent columns) at any size.
    """
    if num_items < 30:
        raise ConfigError(f"num_items must be at least 30 (got {num_items})")
    real = load_real_catalogue()
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x17E5]))
    total = sum(REAL_LOCATION_SIZES)
    first = round(num_items * REAL_LOCATION_SIZES[0] / total)
    second = round(num_items * REAL_LOCATION_SIZES[1] / total)
    sizes = (first, second, num_items - first - second)
    location = np.concatenate([np.full(n, loc + 1, np.int64) for loc, n in enumerate(sizes)])
    prototype = np.empty(num_items, np.int64)
    start = 0
    for loc, n in enumerate(sizes):
        pool = np.flatnonzero(real.location == loc + 1)
        prototype[start : start + n] = rng.choice(pool, size=n)
        start += n
    distinct = np.array([len(np.unique(real.features[1:, j])) for j in range(FEATURE_DIM)])
    continuous = np.flatnonzero(distinct > 12)
    low, high = real.features[1:, continuous].min(0), real.features[1:, continuous].max(0)
    vectors = real.features[prototype]  # (N, F) float32
    noise = rng.standard_normal((num_items, len(continuous)), dtype=np.float32)
    noise *= 0.7
    noise += vectors[:, continuous]
    vectors[:, continuous] = np.clip(noise, low, high)
    del noise
    ticks = np.rint(vectors * np.float32(1e4)).astype(np.int32)  # fixed point, 4 decimals
    del vectors
    price = np.array([float(p) for p in real.price_text], np.float64)[prototype]
    price = np.maximum(np.rint(price * np.exp(rng.normal(0.0, 0.3, num_items)) * 10), 1)
    special = np.array(real.special_text, dtype="S1")[prototype]

    features = np.zeros((num_items + 1, FEATURE_DIM), np.float32)
    features[1:] = ticks / 1e4  # exactly what the text says, as float32
    vec_text = format_ticks(ticks, 4)
    price_text = format_ticks(price.astype(np.int64)[:, None], 1)
    return ItemCatalogue(
        features=features,
        location=np.concatenate([[0], location]).astype(np.int64),
        vec_text=["0"] + vec_text,
        price_text=["0"] + price_text,
        special_text=["0"] + [b.decode() for b in special.tolist()],
    )


def write_item_table(path: Path, catalogue: ItemCatalogue) -> None:
    """Write ``item_info.csv`` (space-separated, RL4RS header); the real one is copied as is."""
    if catalogue.source is not None:
        path.write_bytes(catalogue.source.read_bytes())
        return
    n = catalogue.num_items
    with open(path, "w", encoding="ascii", newline="\n") as handle:
        handle.write(ITEM_HEADER)
        for lo in range(1, n + 1, 100_000):
            hi = min(lo + 100_000, n + 1)
            handle.write(
                "".join(
                    f"\n{i} {catalogue.vec_text[i]} {catalogue.price_text[i]} "
                    f"{catalogue.location[i]} {catalogue.special_text[i]}"
                    for i in range(lo, hi)
                )
            )


# --------------------------------------------------------------------------------------------
# the ground-truth user model


_ARRAY_KEYS = (
    "format_version",
    "item_features",
    "item_location",
    "projection",
    "item_weight",
    "user_latent",
    "user_type",
    "type_means",
    "portrait",
    "slot_bias",
    "fatigue_weight",
    "fatigue_threshold",
    "fatigue_window",
    "boredom_weight",
    "session_user",
)


class GroundTruthUserModel:
    """The true users of the built-in dataset: frozen parameters, pure tensor maths.

    Every method is vectorised over a batch and runs on the device the model is on. Users are
    indexed 0..U-1; item ids are 1..N with 0 the padding id (zero features, no effect).
    Histories are item ids oldest first, left-padded with 0, of any width; only the latest
    ``fatigue_window`` entries matter.
    """

    def __init__(
        self,
        *,
        item_features: torch.Tensor,  # (N + 1, F)
        item_location: torch.Tensor,  # (N + 1,) long
        projection: torch.Tensor,  # (F, D)
        item_weight: torch.Tensor,  # (F,)
        user_latent: torch.Tensor,  # (U, D)
        user_type: torch.Tensor,  # (U,) long
        type_means: torch.Tensor,  # (C, D)
        portrait: torch.Tensor,  # (U, 42) raw values
        slot_bias: torch.Tensor,  # (K,)
        fatigue_weight: float,
        fatigue_threshold: float,
        fatigue_window: int,
        boredom_weight: float,
        session_user: torch.Tensor,  # (S + 1,) long, row 0 = -1
    ):
        self.item_features = item_features.float()
        self.item_location = item_location.long()
        self.projection = projection.float()
        self.item_weight = item_weight.float()
        self.user_latent = user_latent.float()
        self.user_type = user_type.long()
        self.type_means = type_means.float()
        self.portrait = portrait.float()
        self.slot_bias = slot_bias.float()
        self.fatigue_weight = float(fatigue_weight)
        self.fatigue_threshold = float(fatigue_threshold)
        self.fatigue_window = int(fatigue_window)
        self.boredom_weight = float(boredom_weight)
        self.session_user = session_user.long()
        feature_dim = self.item_features.shape[1]
        # Derived once: the item side of every formula.
        self.item_embedding = (
            self.item_features @ self.projection / math.sqrt(feature_dim)
        )  # (N+1, D)
        self.item_embedding[0] = 0.0
        norm = self.item_embedding.norm(dim=1, keepdim=True).clamp_min(1e-8)
        self.item_direction = self.item_embedding / norm  # (N + 1, D), row 0 = 0
        self.item_appeal = self.item_features @ self.item_weight / math.sqrt(feature_dim)  # (N+1,)
        self.item_appeal[0] = 0.0

    # -- sizes and placement ----------------------------------------------------------------

    @property
    def num_users(self) -> int:
        return self.user_latent.shape[0]

    @property
    def num_items(self) -> int:
        return self.item_features.shape[0] - 1

    @property
    def num_sessions(self) -> int:
        return self.session_user.shape[0] - 1

    @property
    def latent_dim(self) -> int:
        return self.user_latent.shape[1]

    @property
    def device(self) -> torch.device:
        return self.user_latent.device

    def _fields(self) -> dict[str, Any]:
        return {
            "item_features": self.item_features,
            "item_location": self.item_location,
            "projection": self.projection,
            "item_weight": self.item_weight,
            "user_latent": self.user_latent,
            "user_type": self.user_type,
            "type_means": self.type_means,
            "portrait": self.portrait,
            "slot_bias": self.slot_bias,
            "fatigue_weight": self.fatigue_weight,
            "fatigue_threshold": self.fatigue_threshold,
            "fatigue_window": self.fatigue_window,
            "boredom_weight": self.boredom_weight,
            "session_user": self.session_user,
        }

    def _replace(self, **changes: Any) -> GroundTruthUserModel:
        return GroundTruthUserModel(**{**self._fields(), **changes})

    def to(self, device: torch.device | str) -> GroundTruthUserModel:
        """A copy of the model on ``device``."""
        device = torch.device(device)
        return GroundTruthUserModel(
            **{
                key: value.to(device) if isinstance(value, torch.Tensor) else value
                for key, value in self._fields().items()
            }
        )

    def with_items(
        self, item_features: torch.Tensor, item_location: torch.Tensor | None = None
    ) -> GroundTruthUserModel:
        """The same users over another item table (N' + 1, F), e.g. a catalogue with new items.

        Everything item-side (embedding, appeal, similarity) is a function of the features, so
        new items need nothing but their feature vectors. Row 0 must be the zero padding row.
        """
        features = torch.as_tensor(item_features, dtype=torch.float32, device=self.device)
        if features.ndim != 2 or features.shape[1] != self.item_features.shape[1]:
            raise HsrlError(
                f"with_items: expected features (N + 1, {self.item_features.shape[1]}), "
                f"got {tuple(features.shape)}"
            )
        if features.shape[0] < 2 or bool(features[0].abs().sum() != 0):
            raise HsrlError("with_items: row 0 must be the all-zero padding item")
        if item_location is None:
            location = torch.zeros(features.shape[0], dtype=torch.long, device=self.device)
        else:
            location = torch.as_tensor(item_location, device=self.device).long()
        return self._replace(item_features=features, item_location=location)

    def with_sessions(self, session_user: torch.Tensor) -> GroundTruthUserModel:
        """The same model with another session -> user table (S + 1,), row 0 unused."""
        return self._replace(session_user=torch.as_tensor(session_user).long().to(self.device))

    def with_slot_bias(self, slot_bias: torch.Tensor) -> GroundTruthUserModel:
        return self._replace(slot_bias=torch.as_tensor(slot_bias).float().to(self.device))

    # -- the user model -----------------------------------------------------------------------

    def affinity(self, user: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """History- and slot-free part of the click logit, a(u, i): (B,), (B, C) -> (B, C)."""
        latent = self.user_latent[user]  # (B, D)
        embedding = self.item_embedding[items]  # (B, C, D)
        score = torch.bmm(embedding, latent.unsqueeze(-1)).squeeze(-1)  # (B, C)
        return score / math.sqrt(self.latent_dim) + self.item_appeal[items]

    def affinity_all(self, user: torch.Tensor) -> torch.Tensor:
        """a(u, i) for every item id 0..N: (B,) -> (B, N + 1); column 0 is meaningless."""
        score = self.user_latent[user] @ self.item_embedding.T / math.sqrt(self.latent_dim)
        return score + self.item_appeal

    def fatigue(
        self, history: torch.Tensor, slate: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The two history effects: item fatigue S(i, h) (B, K) and feed boredom M(h) (B,).

        Padding entries have a zero direction, so they add nothing; both are divided by the
        window size m, not by the number of real entries, so a short history tires less.
        """
        recent = history[:, -self.fatigue_window :]  # (B, m)
        window = self.fatigue_window
        recent_dir = self.item_direction[recent]  # (B, m, D)
        cosine = torch.bmm(self.item_direction[slate], recent_dir.transpose(1, 2))  # (B, K, m)
        tau = self.fatigue_threshold
        item_fatigue = ((cosine - tau).clamp_min(0.0) / (1.0 - tau)).sum(-1) / window  # (B, K)
        boredom = recent_dir.sum(1).norm(dim=-1) / window  # (B,)
        return item_fatigue, boredom

    def item_logits(
        self, user: torch.Tensor, history: torch.Tensor, items: torch.Tensor
    ) -> torch.Tensor:
        """The click logit of candidate items without the slot term, (B, C).

        What a policy ranks by: the slot bias is the same for every item, so the top items
        for any slot are the top items here. ``items`` (B, C) may be any candidate set.
        """
        item_fatigue, boredom = self.fatigue(history, items)
        return (
            self.affinity(user, items)
            - self.fatigue_weight * item_fatigue
            - self.boredom_weight * boredom.unsqueeze(1)
        )

    def click_logits(
        self, user: torch.Tensor, history: torch.Tensor, slate: torch.Tensor
    ) -> torch.Tensor:
        """Logits of :meth:`click_probability`, (B, K)."""
        positions = torch.arange(slate.shape[1], device=slate.device)
        positions = positions.clamp_max(self.slot_bias.shape[0] - 1)
        return self.item_logits(user, history, slate) + self.slot_bias[positions]

    def click_probability(
        self, user: torch.Tensor, history: torch.Tensor, slate: torch.Tensor
    ) -> torch.Tensor:
        """p(click) of each item of each slate, (B, K).

        user (B,) long in 0..U-1; history (B, H) long item ids, oldest first, left-padded
        with 0; slate (B, K) long item ids, slot = position (slots past the ninth share the
        ninth slot's bias). Clicks of one slate are independent given these probabilities.
        """
        return torch.sigmoid(self.click_logits(user, history, slate))

    def user_profile(self, user: torch.Tensor) -> torch.Tensor:
        """The user's raw 42-value portrait (10 codes, 32 dense values; before log1p), (B, 42)."""
        return self.portrait[user]

    def user_of_session(self, session_id: torch.Tensor) -> torch.Tensor:
        """The true user (B,) of logged session ids (B,) (1..S, as in the raw files)."""
        session_id = torch.as_tensor(session_id, device=self.device).long()
        if session_id.numel() and (
            int(session_id.min()) < 1 or int(session_id.max()) > self.num_sessions
        ):
            raise HsrlError(
                f"session id(s) outside 1..{self.num_sessions} of this ground truth "
                "(is it the ground truth of another dataset?)"
            )
        return self.session_user[session_id]

    # -- storage --------------------------------------------------------------------------------

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Everything needed to rebuild the model, as plain arrays (no pickle)."""
        arrays = {"format_version": np.array(GROUND_TRUTH_VERSION, np.int64)}
        for key, value in self._fields().items():
            if isinstance(value, torch.Tensor):
                arrays[key] = value.detach().cpu().numpy()
            elif isinstance(value, int):
                arrays[key] = np.array(value, np.int64)
            else:
                arrays[key] = np.array(value, np.float64)
        return arrays

    def save(self, path: str | Path) -> None:
        save_arrays(path, **self.to_arrays())

    @classmethod
    def from_arrays(
        cls,
        arrays: Mapping[str, np.ndarray],
        device: torch.device | str = "cpu",
        where: Any = "<ground truth>",
    ) -> GroundTruthUserModel:
        missing = [key for key in _ARRAY_KEYS if key not in arrays]
        if missing:
            raise DataError(where, f"not a ground-truth file: missing {', '.join(missing)}")
        if int(arrays["format_version"]) != GROUND_TRUTH_VERSION:
            raise DataError(
                where,
                f"ground-truth version {int(arrays['format_version'])} is not supported "
                f"(this hsrl reads version {GROUND_TRUTH_VERSION}); prepare the dataset again",
            )
        features, projection = arrays["item_features"], arrays["projection"]
        latent, portrait = arrays["user_latent"], arrays["portrait"]
        checks = [
            (features.ndim == 2 and features.shape[0] >= 2, "item_features must be (N + 1, F)"),
            (arrays["item_location"].shape == (features.shape[0],), "item_location size"),
            (projection.ndim == 2 and projection.shape[0] == features.shape[1], "projection shape"),
            (arrays["item_weight"].shape == (features.shape[1],), "item_weight shape"),
            (latent.ndim == 2 and latent.shape[1] == projection.shape[1], "user_latent shape"),
            (arrays["user_type"].shape == (latent.shape[0],), "user_type size"),
            (portrait.shape == (latent.shape[0], PORTRAIT_DIM), "portrait must be (U, 42)"),
            (arrays["slot_bias"].ndim == 1 and arrays["slot_bias"].size >= 1, "slot_bias shape"),
            (arrays["session_user"].ndim == 1 and arrays["session_user"].size >= 1, "session_user"),
            (int(arrays["fatigue_window"]) >= 1, "fatigue_window must be positive"),
        ]
        for ok, problem in checks:
            if not ok:
                raise DataError(where, f"malformed ground truth: {problem}")
        for key in (
            "item_features",
            "projection",
            "item_weight",
            "user_latent",
            "portrait",
            "slot_bias",
        ):
            if not np.isfinite(arrays[key]).all():
                raise DataError(where, f"malformed ground truth: {key} holds NaN or inf")
        sessions = arrays["session_user"][1:]
        if sessions.size and (sessions.min() < 0 or sessions.max() >= latent.shape[0]):
            raise DataError(where, "malformed ground truth: session_user names unknown users")

        def tensor(key: str) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(arrays[key])).to(device)

        return cls(
            item_features=tensor("item_features"),
            item_location=tensor("item_location"),
            projection=tensor("projection"),
            item_weight=tensor("item_weight"),
            user_latent=tensor("user_latent"),
            user_type=tensor("user_type"),
            type_means=tensor("type_means"),
            portrait=tensor("portrait"),
            slot_bias=tensor("slot_bias"),
            fatigue_weight=float(arrays["fatigue_weight"]),
            fatigue_threshold=float(arrays["fatigue_threshold"]),
            fatigue_window=int(arrays["fatigue_window"]),
            boredom_weight=float(arrays["boredom_weight"]),
            session_user=tensor("session_user"),
        )

    @classmethod
    def load(cls, path: str | Path, device: torch.device | str = "cpu") -> GroundTruthUserModel:
        """Read ``ground_truth.npz`` (no pickle) onto ``device``."""
        return cls.from_arrays(load_arrays(path), device=device, where=Path(path))

    # -- sampling -------------------------------------------------------------------------------

    @classmethod
    def sample(
        cls,
        item_features: np.ndarray | torch.Tensor,
        item_location: np.ndarray | torch.Tensor,
        num_users: int,
        *,
        seed: int,
        config: UserModelConfig | None = None,
    ) -> GroundTruthUserModel:
        """Draw a fresh population of ``num_users`` users (slot biases still uncalibrated).

        Latent preferences come from a mixture of ``num_types`` Gaussians, so there are user
        types; the portrait is a noisy, deterministic-at-creation function of the latent, so a
        learned simulator can infer preferences both from the portrait and from the history.
        """
        config = config or UserModelConfig()
        gen = torch.Generator().manual_seed(int(seed) * 7919 + 1)
        features = torch.as_tensor(np.asarray(item_features), dtype=torch.float32)
        location = torch.as_tensor(np.asarray(item_location)).long()
        feature_dim, dim = features.shape[1], config.latent_dim
        projection = torch.randn(feature_dim, dim, generator=gen)  # (F, D)
        item_weight = torch.randn(feature_dim, generator=gen) * config.item_bias_scale  # (F,)
        # Type shares: a flat Dirichlet draw (normalised exponentials), so types differ in size.
        weights = -torch.log(torch.rand(config.num_types, generator=gen).clamp_min(1e-12))
        weights = weights / weights.sum()
        type_means = torch.randn(config.num_types, dim, generator=gen)  # (C, D)
        user_type = torch.multinomial(weights, num_users, replacement=True, generator=gen)  # (U,)
        spread = config.individual_scale
        latent = type_means[user_type] + spread * torch.randn(num_users, dim, generator=gen)
        # Item embeddings have unit variance per coordinate, so a(u, .) over items has
        # standard deviation |z_u| / sqrt(D): scale so that it is affinity_scale on average.
        latent = latent * (config.affinity_scale / math.sqrt(1.0 + spread**2))  # (U, D)
        portrait = _sample_portrait(latent, gen)
        return cls(
            item_features=features,
            item_location=location,
            projection=projection,
            item_weight=item_weight,
            user_latent=latent,
            user_type=user_type,
            type_means=type_means,
            portrait=portrait,
            slot_bias=torch.logit(torch.tensor(config.slot_click_target)),
            fatigue_weight=config.fatigue_weight,
            fatigue_threshold=config.fatigue_threshold,
            fatigue_window=config.fatigue_window,
            boredom_weight=config.boredom_weight,
            session_user=torch.full((1,), -1, dtype=torch.long),
        )


def _round_significant(values: np.ndarray, digits: int) -> np.ndarray:
    """Round to ``digits`` significant digits (what ``%.{digits}g`` prints)."""
    values = np.asarray(values, np.float64)
    magnitude = np.floor(np.log10(np.where(values == 0, 1.0, np.abs(values))))
    factor = 10.0 ** (digits - 1 - magnitude)
    return np.rint(values * factor) / factor


def _sample_portrait(latent: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """42 raw portrait values per user from the latent, as in RL4RS: 10 codes, 32 dense values.

    Codes: category = argmax of a random linear read-out of the latent plus Gumbel noise,
    written as a large integer code (like RL4RS's hashed ids). Dense values: a non-negative,
    sparse read-out (ReLU of a linear read-out plus offset and noise) at magnitudes like the
    real fragment (mostly 0..20, a few up to ~80), rounded to 4 significant digits as printed.
    """
    num_users, dim = latent.shape
    unit = latent / latent.norm(dim=1, keepdim=True).mean().clamp_min(1e-8) * math.sqrt(dim)
    columns = []
    for size in PORTRAIT_CATEGORIES:
        codes = torch.randperm(99_000, generator=gen)[:size] + 1000  # distinct 4-5 digit codes
        readout = torch.randn(dim, size, generator=gen)
        uniform = torch.rand(num_users, size, generator=gen).clamp(1e-12, 1 - 1e-12)
        scores = 2.0 * (unit @ readout) / math.sqrt(dim) - torch.log(-torch.log(uniform))
        columns.append(codes[scores.argmax(dim=1)].float().unsqueeze(1))
    readout = torch.randn(dim, PORTRAIT_DENSE, generator=gen)
    offset = torch.randn(PORTRAIT_DENSE, generator=gen) * 0.8 - 0.3
    offset[0] = 3.0  # the first dense value is never zero in RL4RS (about 2 to 5)
    scale = torch.exp(
        torch.empty(PORTRAIT_DENSE).uniform_(math.log(0.4), math.log(12.0), generator=gen)
    )
    scale[0] = 0.8
    noise = 0.4 * torch.randn(num_users, PORTRAIT_DENSE, generator=gen)
    dense = scale * (unit @ readout / math.sqrt(dim) + offset + noise).clamp_min(0.0)  # (U, 32)
    dense = dense.clamp_max(999.0).double().numpy()
    dense = np.where(dense < 1e-3, 0.0, _round_significant(dense, 4))
    columns.append(torch.from_numpy(dense).float())
    return torch.cat(columns, dim=1)  # (U, 42)


# --------------------------------------------------------------------------------------------
# behaviour policy and session simulation


class _BehaviourPolicy:
    """The logging policy: per row of the page, sample 3 items of that row's location.

    Items are drawn without replacement from softmax(a(u, i) / temperature) over the
    location's items (Gumbel top-3), the highest key in the row's first slot. It knows the
    users' true affinities but not their fatigue, so the logs carry preference signal and
    show fatigue effects. Locations larger than ``candidate_pool`` are scored on a random
    window of a fixed permutation per block of users (a retrieval stage).
    """

    def __init__(self, model: GroundTruthUserModel, config: GeneratorConfig, cpu: torch.Generator):
        self.model = model
        self.temperature = config.behaviour_temperature
        self.pool = config.candidate_pool
        self.groups = []
        location = model.item_location.cpu()
        for loc in range(1, NUM_LOCATIONS + 1):
            ids = torch.nonzero(location == loc).squeeze(1)
            if ids.numel() < ROW_SIZE:
                raise ConfigError(
                    f"the item table has fewer than {ROW_SIZE} items of location {loc}"
                )
            if ids.numel() > self.pool:
                ids = ids[torch.randperm(ids.numel(), generator=cpu)]
            self.groups.append(ids.to(model.device))

    def __call__(self, user: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """Slates (B, 9) for users (B,); ``gen`` lives on the model's device."""
        model = self.model
        latent = model.user_latent[user]  # (B, D)
        rows = []
        for ids in self.groups:
            pool = ids
            if ids.numel() > self.pool:
                start = int(torch.randint(ids.numel(), (1,), generator=gen, device=ids.device))
                pool = ids[(start + torch.arange(self.pool, device=ids.device)) % ids.numel()]
            score = latent @ model.item_embedding[pool].T / math.sqrt(model.latent_dim)
            score = score + model.item_appeal[pool]  # (B, C)
            # Gumbel top-k: the top 3 of score / T + Gumbel noise are a draw without
            # replacement; taken by repeated argmax (faster than topk for k = 3).
            uniform = torch.rand(score.shape, generator=gen, device=score.device)
            keys = score / self.temperature - torch.log(-torch.log(uniform.clamp_(1e-12, 1 - 1e-7)))
            picks = []
            for _ in range(ROW_SIZE):
                best = keys.argmax(dim=1, keepdim=True)  # (B, 1)
                picks.append(best)
                keys.scatter_(1, best, -math.inf)
            rows.append(pool[torch.cat(picks, dim=1)])  # (B, 3)
        return torch.cat(rows, dim=1)  # (B, 9)


@dataclass
class SimulatedLogs:
    """Logged pages in user-major order (all numpy, CPU)."""

    user: np.ndarray  # (R,) int64
    slate: np.ndarray  # (R, 9) int32
    response: np.ndarray  # (R, 9) uint8
    history: np.ndarray  # (R, HISTORY_CAP) int32, left-padded
    session: np.ndarray  # (R,) int64: position of the user in `users` * S + session number
    sequence: np.ndarray  # (R,) int64, 1-based page number in its session
    explore: np.ndarray  # (R,) bool: the page had a randomised layout (exploration traffic)

    def slot_click_rate(self) -> np.ndarray:
        return self.response.mean(axis=0)


def simulate_logs(
    model: GroundTruthUserModel,
    users: torch.Tensor,
    config: GeneratorConfig,
    *,
    seed: int,
) -> SimulatedLogs:
    """Simulate every user's warm-up and logged pages in lock-step; returns the logged ones.

    Step t shows a page to every user still active: unlogged warm-up pages first (they only
    build up the history), then ``sessions_per_user`` sessions of 1..max pages. Responses are
    Bernoulli(ground truth); clicked items join the history, which carries over sessions.
    The schedule is drawn on the CPU, the pages on the model's device (same seed and device
    type, same logs).
    """
    device = model.device
    gen = torch.Generator().manual_seed(int(seed))
    device_gen = torch.Generator(device=device).manual_seed(int(seed) + 1)
    num = users.shape[0]
    sessions = config.sessions_per_user
    warmup = torch.randint(config.max_warmup_pages + 1, (num,), generator=gen)  # (U,)
    pages = torch.randint(1, config.max_pages_per_session + 1, (num, sessions), generator=gen)
    logged = pages.sum(1)  # (U,)
    offset = torch.cumsum(logged, 0) - logged  # first record of each user
    total = int(logged.sum())
    slate_out = torch.zeros(total, SLATE_SIZE, dtype=torch.int32)
    response_out = torch.zeros(total, SLATE_SIZE, dtype=torch.uint8)
    history_out = torch.zeros(total, HISTORY_CAP, dtype=torch.int32)
    explore_out = torch.zeros(total, dtype=torch.bool)
    history = torch.zeros(num, HISTORY_CAP, dtype=torch.long, device=device)
    policy = _BehaviourPolicy(model, config, gen)
    end = warmup + logged
    for step in range(int(end.max())):
        active = torch.nonzero(end > step).squeeze(1)
        for block in active.split(_CHUNK):
            block_dev = block.to(device)
            user = users[block].to(device)
            past = history[block_dev]  # (B, H)
            slate = policy(user, device_gen)  # (B, 9)
            explore = None
            if config.explore_share > 0:
                explore = _randomise_layout(slate, config.explore_share, device_gen)
            prob = model.click_probability(user, past, slate)
            uniform = torch.rand(prob.shape, generator=device_gen, device=device)
            response = (uniform < prob).to(torch.uint8)  # (B, 9)
            history[block_dev] = append_positive(past, slate, response)
            is_logged = (warmup[block] <= step).cpu()
            if bool(is_logged.any()):
                rows = (offset[block] + step - warmup[block])[is_logged]
                slate_out[rows] = slate.cpu()[is_logged].int()
                response_out[rows] = response.cpu()[is_logged]
                history_out[rows] = past.cpu()[is_logged].int()
                if explore is not None:
                    explore_out[rows] = explore.cpu()[is_logged]
    session = torch.repeat_interleave(torch.arange(num * sessions), pages.flatten())  # (R,)
    first = torch.cumsum(pages.flatten(), 0) - pages.flatten()
    sequence = torch.arange(total) - first[session] + 1
    return SimulatedLogs(
        user=users.cpu()[torch.repeat_interleave(torch.arange(num), logged)].numpy(),
        slate=slate_out.numpy(),
        response=response_out.numpy(),
        history=history_out.numpy(),
        session=session.numpy(),
        sequence=sequence.numpy(),
        explore=explore_out.numpy(),
    )


def _randomise_layout(slate: torch.Tensor, share: float, gen: torch.Generator) -> torch.Tensor:
    """Shuffle the slots of a ``share`` of the pages in place; returns which pages (B,) bool."""
    batch, size = slate.shape
    explore = torch.rand(batch, generator=gen, device=slate.device) < share
    order = torch.rand((batch, size), generator=gen, device=slate.device).argsort(dim=1)
    slate.copy_(torch.where(explore.unsqueeze(1), slate.gather(1, order), slate))
    return explore


def calibrate_slot_bias(
    model: GroundTruthUserModel, config: GeneratorConfig, target: tuple[float, ...], *, seed: int
) -> GroundTruthUserModel:
    """Fit the slot biases so the logged click rate per slot matches ``target``.

    Fixed-point iteration in logit space on pilot logs of the first users: each round adds
    logit(target) - logit(measured) to the biases. A running minimum keeps the biases
    non-increasing over slots (slot 1 is the most visible).
    """
    pilot = torch.arange(min(config.calibration_users, model.num_users))
    wanted = torch.logit(torch.tensor(target, dtype=torch.float64))
    bias = model.slot_bias.double().cpu()
    for round_index in range(config.calibration_rounds):
        logs = simulate_logs(model, pilot, config, seed=int(seed) * 104729 + 11 + round_index)
        measured = torch.from_numpy(logs.slot_click_rate()).double().clamp(1e-3, 1 - 1e-3)
        bias = bias + wanted - torch.logit(measured)
        bias = torch.cummin(bias, dim=0).values
        model = model.with_slot_bias(bias.float())
    return model


# --------------------------------------------------------------------------------------------
# raw files


def _portrait_text(portrait: np.ndarray) -> list[str]:
    """The user_protrait cell of each user: 10 integer codes, then 32 values as ``%.4g``."""
    codes = portrait[:, : len(PORTRAIT_CATEGORIES)].astype(np.int64).tolist()
    dense = portrait[:, len(PORTRAIT_CATEGORIES) :].astype(np.float64).tolist()
    return [
        ",".join([*map(str, code), *[f"{v:.4g}" if v else "0" for v in values]])
        for code, values in zip(codes, dense)
    ]


def _record_lines(
    index: np.ndarray,
    logs: SimulatedLogs,
    timestamp: np.ndarray,
    session_id: np.ndarray,
    portrait_text: list[str],
    vec_text: list[str],
    id_text: list[str],
) -> Iterator[str]:
    """The text lines of records ``index`` (in file order), in blocks for a bounded memory."""
    bits = 1 << np.arange(SLATE_SIZE)
    feedback_text = [
        ",".join("1" if c >> k & 1 else "0" for k in range(SLATE_SIZE))
        for c in range(1 << SLATE_SIZE)
    ]
    for lo in range(0, len(index), 20_000):
        rows = index[lo : lo + 20_000]
        slates = logs.slate[rows].tolist()
        codes = (logs.response[rows].astype(np.int64) * bits).sum(1).tolist()
        history = logs.history[rows]
        pads = (history == 0).sum(1).tolist()
        histories = history.tolist()
        users = logs.user[rows].tolist()
        stamps = timestamp[rows].tolist()
        sessions = session_id[rows].tolist()
        sequences = logs.sequence[rows].tolist()
        policies = np.where(logs.explore[rows], 2, 1).tolist()
        yield "".join(
            f"\n{stamp}@{sess}@{seq}@{','.join([id_text[i] for i in slate])}@{feedback_text[code]}@"
            f"{','.join([id_text[i] for i in hist[pad:]]) if pad < HISTORY_CAP else '0'}@"
            f"{portrait_text[user]}@{';'.join([vec_text[i] for i in slate])}@{policy}"
            for stamp, sess, seq, slate, code, hist, pad, user, policy in zip(
                stamps, sessions, sequences, slates, codes, histories, pads, users, policies
            )
        )


def _write_records(path: Path, lines: Iterator[str]) -> None:
    with open(path, "w", encoding="ascii", newline="\n") as handle:
        handle.write(RAW_HEADER)
        for block in lines:
            handle.write(block)
        handle.write("\n")


# --------------------------------------------------------------------------------------------
# entry points


def build_ground_truth(
    catalogue: ItemCatalogue,
    *,
    seed: int,
    user_config: UserModelConfig | None = None,
    generator_config: GeneratorConfig | None = None,
    device: torch.device | str = "cpu",
) -> GroundTruthUserModel:
    """Sample the users of a catalogue and calibrate their slot biases (no sessions yet)."""
    user_config = user_config or UserModelConfig()
    generator_config = generator_config or GeneratorConfig()
    model = GroundTruthUserModel.sample(
        catalogue.features,
        catalogue.location,
        generator_config.num_users,
        seed=seed,
        config=user_config,
    ).to(device)
    return calibrate_slot_bias(model, generator_config, user_config.slot_click_target, seed=seed)


def generate_raw(
    out_dir: str | Path,
    *,
    num_users: int = 2000,
    sessions_per_user: int = 3,
    max_pages_per_session: int = 3,
    num_items: int | None = None,
    explore_share: float | None = None,
    seed: int = 0,
    user_config: UserModelConfig | None = None,
    generator_config: GeneratorConfig | None = None,
    device: torch.device | str = "cpu",
    overwrite: bool = False,
) -> dict[str, Any]:
    """Write a complete RL4RS-format dataset and its ground truth into ``out_dir`` (atomically).

    Files: ``item_info.csv`` (the real RL4RS table when ``num_items`` is None, else synthetic
    items), ``rl4rs_b_train.csv`` and ``rl4rs_b_test.csv`` (users split between them),
    ``ground_truth.npz``. Expect about ``num_users * sessions_per_user *
    (max_pages_per_session + 1) / 2`` records. Returns a summary (counts, measured click
    rates, timings). Everything is a function of ``seed`` (on one device type).
    """
    start = time.perf_counter()
    out_dir = Path(out_dir)
    if out_dir.exists() and not overwrite:  # fail before the work, not after it
        raise HsrlError(f"{out_dir}: already exists (choose another folder or overwrite)")
    base = generator_config or GeneratorConfig()
    try:
        config = GeneratorConfig(
            **{
                **to_dict(base),
                "num_users": int(num_users),
                "sessions_per_user": int(sessions_per_user),
                "max_pages_per_session": int(max_pages_per_session),
                **({} if explore_share is None else {"explore_share": float(explore_share)}),
            }
        )
    except ValueError as exc:
        raise ConfigError(f"builtin generator: {exc}") from exc
    user_config = user_config or UserModelConfig()
    device = torch.device(device)
    catalogue = (
        load_real_catalogue() if num_items is None else synthetic_catalogue(num_items, seed=seed)
    )
    timings = {"items_s": time.perf_counter() - start}

    model = build_ground_truth(
        catalogue, seed=seed, user_config=user_config, generator_config=config, device=device
    )
    timings["calibration_s"] = time.perf_counter() - start - sum(timings.values())

    logs = simulate_logs(
        model, torch.arange(config.num_users), config, seed=int(seed) * 15485863 + 3
    )
    timings["simulation_s"] = time.perf_counter() - start - sum(timings.values())

    # Sessions: start times spread over rounds; ids follow time order; pages a second apart.
    num_sessions = config.num_users * config.sessions_per_user
    round_index = np.arange(num_sessions) % config.sessions_per_user
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5E55]))
    session_start = 250_000 + round_index * 18_000 + rng.integers(0, 18_000, num_sessions)
    pair_user = np.arange(num_sessions) // config.sessions_per_user
    order = np.lexsort((pair_user, session_start))  # every session has at least one page
    session_id_of_pair = np.zeros(num_sessions, np.int64)
    session_id_of_pair[order] = np.arange(1, len(order) + 1)
    session_user = np.concatenate([[-1], pair_user[order]]).astype(np.int64)
    model = model.with_sessions(torch.from_numpy(session_user))
    session_id = session_id_of_pair[logs.session]  # (R,)
    timestamp = session_start[logs.session] + (logs.sequence - 1)

    # Users split by user; each file sorted by session then page.
    test_count = max(1, min(config.num_users - 1, round(config.num_users * config.test_fraction)))
    is_test_user = np.zeros(config.num_users, bool)
    is_test_user[rng.permutation(config.num_users)[:test_count]] = True
    file_order = np.lexsort((logs.sequence, session_id))
    test_rows = file_order[is_test_user[logs.user[file_order]]]
    train_rows = file_order[~is_test_user[logs.user[file_order]]]

    portrait_text = _portrait_text(model.portrait.cpu().numpy())
    id_text = [str(i) for i in range(catalogue.num_items + 1)]
    with atomic_output_dir(out_dir, overwrite=overwrite) as tmp:
        write_item_table(tmp / ITEM_FILE, catalogue)
        timings["item_table_write_s"] = time.perf_counter() - start - sum(timings.values())
        for name, rows in ((TRAIN_FILE, train_rows), (TEST_FILE, test_rows)):
            lines = _record_lines(
                rows, logs, timestamp, session_id, portrait_text, catalogue.vec_text, id_text
            )
            _write_records(tmp / name, lines)
        timings["records_write_s"] = time.perf_counter() - start - sum(timings.values())
        model.save(tmp / GROUND_TRUTH_FILE)
    timings["total_s"] = time.perf_counter() - start

    lengths = (logs.history > 0).sum(1)
    return {
        "seed": int(seed),
        "num_users": config.num_users,
        "num_items": catalogue.num_items,
        "item_table": "rl4rs" if catalogue.source is not None else "synthetic",
        "records": {"train": int(len(train_rows)), "test": int(len(test_rows))},
        "users": {"train": int(config.num_users - test_count), "test": int(test_count)},
        "sessions": int(len(order)),
        "click_rate": float(logs.response.mean()),
        "slot_click_rate": [round(float(v), 4) for v in logs.slot_click_rate()],
        "history_length": {
            "min": int(lengths.min()),
            "mean": round(float(lengths.mean()), 2),
            "max": int(lengths.max()),
        },
        "slot_bias": [round(float(v), 4) for v in model.slot_bias.cpu()],
        "generator": to_dict(config),
        "user_model": to_dict(user_config),
        "timings": {key: round(value, 3) for key, value in timings.items()},
    }


# Options of ``hsrl data prepare builtin --option KEY=VALUE`` (all integers) and their minimums.
PREPARE_DEFAULTS = {
    "num_users": 2000,
    "sessions_per_user": 3,
    "max_pages_per_session": 3,
    "num_items": 0,  # 0 = the real RL4RS item table (283 items); else synthetic items
    "history_length": 50,
    "val_percent": 10,  # share of the training users whose records form the "val" split
    "explore_percent": 0,  # share of pages with a randomised layout (exploration traffic)
}
PREPARE_MINIMUM = {
    "num_users": 10,
    "sessions_per_user": 1,
    "max_pages_per_session": 1,
    "num_items": 0,
    "history_length": 1,
    "val_percent": 1,
    "explore_percent": 0,
}


# Upper bounds that keep a mistyped option from asking for petabytes.
PREPARE_MAXIMUM = {
    "num_users": 10_000_000,
    "sessions_per_user": 1_000,
    "max_pages_per_session": 1_000,
    "num_items": 10_000_000,
    "history_length": 10_000,
}


def prepare_builtin(
    raw: Path | None, out: Path, *, seed: int, overwrite: bool, options: Mapping[str, str]
) -> Path:
    """Generate the built-in dataset and prepare it like RL4RS, with its ground truth.

    The raw files are generated into a temporary folder beside ``out``, read back by the
    RL4RS reader (so the built-in data goes through exactly the code path of real data), and
    written with ``ground_truth.npz``. Splits: the generator's test users form "test"; the
    training users are split by user into "train" and "val" (``val_percent``). Same seed, same
    options: identical arrays.
    """
    from hsrl.data.rl4rs import ITEM_META_FILE, read_item_table, read_records
    from hsrl.data.textscan import check_out, reader_options

    if raw is not None:
        raise ConfigError("data prepare builtin: the built-in dataset is generated; omit --raw")
    opts = reader_options(options, PREPARE_DEFAULTS, PREPARE_MINIMUM)
    if opts["num_items"] and opts["num_items"] < 30:
        raise ConfigError("--option num_items: must be 0 (the real table) or at least 30")
    if opts["val_percent"] >= 100:
        raise ConfigError("--option val_percent: must be below 100")
    if opts["explore_percent"] > 100:
        raise ConfigError("--option explore_percent: must be at most 100")
    for key, most in PREPARE_MAXIMUM.items():
        if opts[key] > most:
            raise ConfigError(f"--option {key}: must be at most {most:,}, got {opts[key]:,}")
    out = Path(out)
    check_out(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    num_items = opts["num_items"] or None
    with tempfile.TemporaryDirectory(prefix=temp_prefix(out, "raw"), dir=out.parent) as tmp:
        raw_dir = Path(tmp) / "raw"
        info = generate_raw(
            raw_dir,
            num_users=opts["num_users"],
            sessions_per_user=opts["sessions_per_user"],
            max_pages_per_session=opts["max_pages_per_session"],
            num_items=num_items,
            explore_share=opts["explore_percent"] / 100,
            seed=seed,
        )
        items, meta = read_item_table(raw_dir / ITEM_FILE)
        train = read_records(raw_dir / TRAIN_FILE, items, opts["history_length"])
        test = read_records(raw_dir / TEST_FILE, items, opts["history_length"])
        truth = load_arrays(raw_dir / GROUND_TRUTH_FILE)
    model = GroundTruthUserModel.from_arrays(truth, where=GROUND_TRUTH_FILE)
    train_user = model.user_of_session(train.session_id).numpy()  # (R,)
    users = np.unique(train_user)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x7A1]))
    val_count = max(1, round(len(users) * opts["val_percent"] / 100))
    is_val = np.isin(train_user, rng.permutation(users)[:val_count])
    splits = {
        "train": train.select(torch.from_numpy(~is_val)),
        "val": train.select(torch.from_numpy(is_val)),
        "test": test,
    }
    generator = {
        key: info[key]
        for key in ("seed", "num_users", "num_items", "item_table", "users", "sessions")
    }
    generator.update(
        params=info["generator"],
        user_model=info["user_model"],
        click_rate=round(info["click_rate"], 4),
        slot_click_rate=info["slot_click_rate"],
        history_length=info["history_length"],
    )
    return write_prepared(
        out,
        items,
        splits,
        source="builtin",
        source_files=[real_item_table_path()] if num_items is None else [],
        split_recipe=(
            f"users split at generation: {info['users']['test']} test users "
            f"({TEST_FILE}); the {len(users)} training users split by user, "
            f"{val_count} to 'val' ({opts['val_percent']}%, seed {seed}), the rest 'train'"
        ),
        extra={
            "options": opts,
            "ground_truth": GROUND_TRUTH_FILE,
            "generator": generator,
            "user_profile": "log1p of the 42 user_protrait values",
            "history": f"last {opts['history_length']} ids of user_seqfeature (0 entries dropped)",
            "item_meta": ITEM_META_FILE,
            "licence": (
                "item table: RL4RS (NetEase Fuxi AI Lab), CC BY-SA 4.0"
                if num_items is None
                else "synthetic items derived from the RL4RS item table (CC BY-SA 4.0)"
            ),
        },
        extra_arrays={GROUND_TRUTH_FILE: truth, ITEM_META_FILE: meta},
        overwrite=overwrite,
    )
