"""The canonical prepared dataset: one typed, columnar format whatever the source.

A prepared dataset is a folder::

    manifest.json   format version, source files with sha256, counts, dimensions, split recipe
    items.npz       item_features (N + 1, F) float32; row 0 is the padding item (zeros)
    <split>.npz     one file per split ("train", "val", "test", ...), the logged records:
                    user_profile    (R, P) float32  model-ready user features
                    history         (R, H) int32    earlier positively-responded item ids,
                                                    oldest first, left-padded with 0
                    slate           (R, K) int32    exposed item ids (1..N)
                    response        (R, K) uint8    1 = positive response (click), 0 = none
                    session_id      (R,)   int64
                    sequence_id     (R,)   int64
                    timestamp       (R,)   int64
                    behavior_policy (R,)   int64
    ground_truth.npz  (built-in dataset only) the parameters of the true user model

Every reader (RL4RS, MovieLens-1M, the processed ML1M format, the built-in generator) builds
:class:`ItemTable` and :class:`Records` and hands them to :func:`write_prepared`; every later
step reads them back with :func:`load_prepared`.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hsrl import __version__
from hsrl.errors import DataError
from hsrl.io import atomic_output_dir, load_arrays, read_json, save_arrays, sha256_file, write_json

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
ITEMS_FILE = "items.npz"
GROUND_TRUTH_FILE = "ground_truth.npz"

_SPLIT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")

RECORD_DTYPES: dict[str, np.dtype] = {
    "user_profile": np.dtype(np.float32),
    "history": np.dtype(np.int32),
    "slate": np.dtype(np.int32),
    "response": np.dtype(np.uint8),
    "session_id": np.dtype(np.int64),
    "sequence_id": np.dtype(np.int64),
    "timestamp": np.dtype(np.int64),
    "behavior_policy": np.dtype(np.int64),
}


@dataclass(frozen=True)
class ItemTable:
    """Item features indexed by item id; id 0 is padding and has all-zero features."""

    features: torch.Tensor  # (N + 1, F) float32

    @property
    def num_items(self) -> int:
        return self.features.shape[0] - 1

    @property
    def feature_dim(self) -> int:
        return self.features.shape[1]

    def to(self, device: torch.device | str) -> ItemTable:
        return ItemTable(self.features.to(device))


@dataclass(frozen=True)
class Records:
    """Logged (user, slate, response) records of one split, as tensors (see module docs)."""

    user_profile: torch.Tensor  # (R, P) float32
    history: torch.Tensor  # (R, H) int64, left-padded with 0
    slate: torch.Tensor  # (R, K) int64
    response: torch.Tensor  # (R, K) float32 in {0, 1}
    session_id: torch.Tensor  # (R,) int64
    sequence_id: torch.Tensor  # (R,) int64
    timestamp: torch.Tensor  # (R,) int64
    behavior_policy: torch.Tensor  # (R,) int64

    def __len__(self) -> int:
        return self.slate.shape[0]

    @property
    def slate_size(self) -> int:
        return self.slate.shape[1]

    @property
    def history_length(self) -> int:
        return self.history.shape[1]

    @property
    def profile_dim(self) -> int:
        return self.user_profile.shape[1]

    def history_lengths(self) -> torch.Tensor:
        """Number of non-padding history entries per record, (R,)."""
        return (self.history > 0).sum(dim=1)

    def to(self, device: torch.device | str) -> Records:
        return Records(
            **{f.name: getattr(self, f.name).to(device) for f in dataclasses.fields(self)}
        )

    def select(self, index: torch.Tensor | slice) -> Records:
        return Records(**{f.name: getattr(self, f.name)[index] for f in dataclasses.fields(self)})


@dataclass(frozen=True)
class PreparedDataset:
    path: Path
    manifest: dict[str, Any]
    items: ItemTable
    splits: dict[str, Records]

    @property
    def source(self) -> str:
        return self.manifest["source"]

    def split(self, name: str) -> Records:
        if name not in self.splits:
            raise DataError(
                self.path / MANIFEST,
                f"the dataset has no split {name!r} (it has {', '.join(self.splits)})",
            )
        return self.splits[name]

    @property
    def ground_truth_path(self) -> Path | None:
        name = self.manifest.get("ground_truth")
        return self.path / name if name else None

    def item_locations(self) -> torch.Tensor | None:
        """Each item's page location (N + 1,) long (0 = none), from the item metadata; None
        when the dataset has none (MovieLens). A damaged or mismatched table is a DataError."""
        name = self.manifest.get("item_meta")
        meta = self.path / name if name else None
        if meta is None or not meta.exists():
            return None
        arrays = load_arrays(meta)
        if "location" not in arrays:
            return None
        location = torch.from_numpy(np.asarray(arrays["location"])).long()
        if location.shape != (self.items.num_items + 1,):
            raise DataError(meta, "item locations do not cover the item table")
        return location


def records_from_numpy(
    arrays: Mapping[str, np.ndarray], where: Path | str = "<records>"
) -> Records:
    """Check shapes and dtypes of record arrays and wrap them as tensors."""
    missing = [k for k in RECORD_DTYPES if k not in arrays]
    if missing:
        raise DataError(where, f"missing record array(s) {', '.join(missing)}")
    count = arrays["slate"].shape[0]
    for key in RECORD_DTYPES:
        if arrays[key].shape[0] != count:
            raise DataError(
                where, f"array {key!r} has {arrays[key].shape[0]} rows, expected {count}"
            )
    if arrays["slate"].ndim != 2 or arrays["response"].shape != arrays["slate"].shape:
        raise DataError(where, "slate and response must both be (records, slate size)")
    tensors = {}
    for key, dtype in RECORD_DTYPES.items():
        kind = arrays[key].dtype.kind
        if dtype.kind in "iu" and kind not in "iub":
            raise DataError(where, f"array {key!r} holds {arrays[key].dtype} values, not integers")
        if dtype.kind == "f" and kind not in "iuf":
            raise DataError(where, f"array {key!r} holds {arrays[key].dtype} values, not reals")
        if key == "response" and arrays[key].size and not np.isin(arrays[key], (0, 1)).all():
            raise DataError(where, "array 'response' holds values other than 0 and 1")
        array = np.ascontiguousarray(arrays[key], dtype=dtype)
        tensor = torch.from_numpy(array)
        if key in ("history", "slate"):
            tensor = tensor.long()
        elif key == "response":
            tensor = tensor.float()
        tensors[key] = tensor
    return Records(**tensors)


def records_to_numpy(records: Records) -> dict[str, np.ndarray]:
    return {
        key: getattr(records, key).cpu().numpy().astype(dtype, copy=False)
        for key, dtype in RECORD_DTYPES.items()
    }


def _check_records(records: Records, items: ItemTable, where: Path | str) -> None:
    """Invariants every reader must meet and every loaded split is checked for; a violation is
    a reader bug, bad raw data or a damaged file (``where`` names the split or its file)."""
    n = items.num_items
    for key in ("slate", "history"):
        ids = getattr(records, key)
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) > n):
            raise DataError(where, f"{key} holds item ids outside 0..{n}")
    if records.slate.numel() and int(records.slate.min()) < 1:
        raise DataError(where, "slate holds the padding id 0")
    if not torch.isfinite(records.user_profile).all():
        raise DataError(where, "user_profile holds NaN or inf")


def write_prepared(
    out: str | Path,
    items: ItemTable,
    splits: Mapping[str, Records],
    *,
    source: str,
    source_files: list[str | Path] = (),
    split_recipe: str,
    extra: Mapping[str, Any] | None = None,
    extra_arrays: Mapping[str, Mapping[str, np.ndarray]] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a prepared dataset atomically (all of it, or nothing).

    ``extra_arrays`` maps a file name (for example ``ground_truth.npz``) to arrays stored beside
    the splits; ``extra`` adds keys to the manifest.
    """
    out = Path(out)
    if not splits:
        raise DataError(out, "no splits to write")
    features = items.features
    if features.ndim != 2 or features.shape[0] < 2:
        raise DataError(out, "item table must be (N + 1, F) with at least one item")
    if not torch.isfinite(features).all():
        raise DataError(out, "item features hold NaN or inf")
    if features[0].abs().sum() != 0:
        raise DataError(out, "item row 0 (padding) must be all zeros")
    first = next(iter(splits.values()))
    for name, records in splits.items():
        _check_records(records, items, f"<{name}>")
        if records.slate_size != first.slate_size or records.history_length != first.history_length:
            raise DataError(out, f"split {name!r} has another slate size or history length")
        if records.profile_dim != first.profile_dim:
            raise DataError(out, f"split {name!r} has another user profile size")
    manifest: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "created_by": f"hsrl {__version__}",
        "source": source,
        "source_files": [
            {"name": Path(p).name, "bytes": Path(p).stat().st_size, "sha256": sha256_file(p)}
            for p in source_files
        ],
        "num_items": items.num_items,
        "item_feature_dim": items.feature_dim,
        "user_profile_dim": first.profile_dim,
        "slate_size": first.slate_size,
        "history_length": first.history_length,
        "splits": {name: {"records": len(r)} for name, r in splits.items()},
        "split_recipe": split_recipe,
    }
    if extra:
        manifest.update(extra)
    with atomic_output_dir(out, overwrite=overwrite) as tmp:
        save_arrays(tmp / ITEMS_FILE, item_features=features.cpu().numpy().astype(np.float32))
        for name, records in splits.items():
            save_arrays(tmp / f"{name}.npz", **records_to_numpy(records))
        for file_name, arrays in (extra_arrays or {}).items():
            save_arrays(tmp / file_name, **arrays)
        write_json(tmp / MANIFEST, manifest)
    return out


def read_manifest(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_dir():
        raise DataError(path, "not a prepared dataset folder (run `hsrl data prepare` first)")
    manifest = read_json(path / MANIFEST)
    if not isinstance(manifest, dict) or "format_version" not in manifest:
        raise DataError(path / MANIFEST, "not an hsrl dataset manifest")
    if manifest["format_version"] != FORMAT_VERSION:
        raise DataError(
            path / MANIFEST,
            f"format version {manifest['format_version']} is not supported (this hsrl reads "
            f"version {FORMAT_VERSION}); prepare the dataset again",
        )
    for key in ("num_items", "item_feature_dim", "slate_size", "history_length"):
        value = manifest.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise DataError(path / MANIFEST, f"field {key!r} must be a positive integer")
    splits = manifest.get("splits")
    if not isinstance(splits, dict) or not splits:
        raise DataError(path / MANIFEST, "field 'splits' must name at least one split")
    for name, entry in splits.items():
        count = entry.get("records") if isinstance(entry, dict) else None
        if not isinstance(name, str) or not _SPLIT_NAME.fullmatch(name):
            raise DataError(path / MANIFEST, f"split name {name!r} is not a plain name")
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise DataError(path / MANIFEST, f"splits.{name}.records must be a count")
    return manifest


def load_prepared(path: str | Path, splits: list[str] | None = None) -> PreparedDataset:
    """Load a prepared dataset (all splits, or the named ones) as CPU tensors."""
    path = Path(path)
    manifest = read_manifest(path)
    item_arrays = load_arrays(path / ITEMS_FILE, required=("item_features",))
    features = torch.from_numpy(
        np.ascontiguousarray(item_arrays["item_features"], dtype=np.float32)
    )
    if features.shape != (manifest["num_items"] + 1, manifest["item_feature_dim"]):
        raise DataError(path / ITEMS_FILE, "item table does not match the manifest")
    if not torch.isfinite(features).all():
        raise DataError(path / ITEMS_FILE, "item features hold NaN or inf")
    items = ItemTable(features)
    names = list(manifest["splits"]) if splits is None else splits
    loaded = {}
    for name in names:
        if name not in manifest["splits"]:
            raise DataError(
                path / MANIFEST, f"no split {name!r} (have {', '.join(manifest['splits'])})"
            )
        file = path / f"{name}.npz"
        records = records_from_numpy(load_arrays(file), where=file)
        if len(records) != manifest["splits"][name]["records"]:
            raise DataError(file, "record count does not match the manifest")
        if records.slate_size != manifest["slate_size"]:
            raise DataError(file, "slate size does not match the manifest")
        _check_records(records, items, file)
        loaded[name] = records
    return PreparedDataset(path=path, manifest=manifest, items=items, splits=loaded)
