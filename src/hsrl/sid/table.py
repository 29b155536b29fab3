"""The one-to-one item <-> SID table, its prefix tree, and its files.

:class:`SidIndex` is what the HSRL policy holds: the frozen codebook, ``item_sid (N + 1, L)``
(row 0 and retired items are -1), ``live (N + 1,)``, lookups from SIDs to items and the
prefix-tree queries of constrained decoding, all as tensors on one device. New items get SIDs
from the frozen codebook under the collision policy of :mod:`hsrl.sid.collisions`; retiring an
item frees its SID. The vocabulary (L levels of V codes) never changes, so the policy's heads
never change shape.

A SID folder::

    sid_meta.json    format, L, V, feature dim, item count, sha256 of each file below, sha256 of
                     the item features it was built for (one block per build/add), build config
    codebook.npz     centroids (L, V, F) float32
    sid_table.npz    item_sid (N + 1, L) int32 (-1 = padding/retired), live (N + 1,) bool
    report.json      (from ``hsrl sid build``) the build report; report.txt its summary

Only ``.npz`` (read without pickle) and JSON; a damaged file, or a table built for another
catalogue, is a :class:`~hsrl.errors.DataError` that names the file and the problem.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hsrl import __version__
from hsrl.device import resolve_device
from hsrl.errors import ConfigError, DataError
from hsrl.io import atomic_output_dir, load_arrays, read_json, save_arrays, sha256_file, write_json
from hsrl.sid.codebook import ResidualCodebook
from hsrl.sid.collisions import Placement, check_capacity, place_items
from hsrl.sid.prefix import PrefixIndex, check_vocabulary, prefix_keys

FORMAT = "hsrl-sid"
FORMAT_VERSION = 1
META_FILE = "sid_meta.json"
CODEBOOK_FILE = "codebook.npz"
TABLE_FILE = "sid_table.npz"
REPORT_FILES = ("report.json", "report.txt")


def features_sha256(features: torch.Tensor) -> str:
    """Fingerprint of item features: sha256 of their float32 little-endian bytes."""
    array = np.ascontiguousarray(features.detach().cpu().numpy(), dtype="<f4")
    return hashlib.sha256(array.tobytes()).hexdigest()


class SidIndex:
    """Semantic IDs of a catalogue: codebook, one-to-one table, prefix tree (module docs)."""

    def __init__(
        self,
        codebook: ResidualCodebook,
        item_sid: torch.Tensor,
        live: torch.Tensor,
        *,
        feature_blocks: list[dict[str, Any]] | None = None,
        build: dict[str, Any] | None = None,
        changes: list[dict[str, Any]] | None = None,
    ):
        check_vocabulary(codebook.levels, codebook.codes)
        device = codebook.device
        self.codebook = codebook
        self.item_sid = item_sid.long().to(device)  # (N + 1, L)
        self.live = live.bool().to(device)  # (N + 1,)
        if self.item_sid.shape != (self.live.shape[0], codebook.levels):
            raise ValueError("item_sid must be (N + 1, levels) and live (N + 1,)")
        self.feature_blocks = list(feature_blocks or [])
        self.build = dict(build or {})
        self.changes = list(changes or [])
        self._tree = PrefixIndex.from_table(self.item_sid, self.live, codebook.codes)
        self.last_placement: Placement | None = None  # how the last add_items went

    # -- shape of the action space -------------------------------------------------------------

    @property
    def levels(self) -> int:
        return self.codebook.levels

    @property
    def codes(self) -> int:
        return self.codebook.codes

    @property
    def feature_dim(self) -> int:
        return self.codebook.feature_dim

    @property
    def num_items(self) -> int:
        """N: item ids run 1..N (live or retired); the table has N + 1 rows."""
        return self.item_sid.shape[0] - 1

    @property
    def num_live(self) -> int:
        return len(self._tree)

    @property
    def device(self) -> torch.device:
        return self.codebook.device

    @property
    def tree(self) -> PrefixIndex:
        """The prefix tree over live SIDs (sorted keys; see :mod:`hsrl.sid.prefix`)."""
        return self._tree

    def to(self, device: torch.device | str) -> SidIndex:
        device = resolve_device(device)
        other = object.__new__(SidIndex)
        other.__dict__.update(self.__dict__)
        other.codebook = self.codebook.to(device)
        other.item_sid, other.live = self.item_sid.to(device), self.live.to(device)
        other.feature_blocks = list(self.feature_blocks)
        other.changes = list(self.changes)
        other._tree = self._tree.to(device)
        return other

    # -- lookups and prefix-tree queries -------------------------------------------------------

    def items_of(self, sid: torch.Tensor) -> torch.Tensor:
        """Item ids ``(...)`` of SIDs ``(..., L)``; 0 where no live item has the SID."""
        if sid.shape[-1] != self.levels:
            raise ValueError(f"SIDs must have {self.levels} tokens, got shape {tuple(sid.shape)}")
        return self._tree.lookup(prefix_keys(sid.to(self.device), self.codes))

    def sid_of(self, items: torch.Tensor) -> torch.Tensor:
        """SIDs ``(..., L)`` of item ids ``(...)``; -1 rows for padding and retired items."""
        return self.item_sid[items.to(self.device)]

    def children_mask(self, prefix: torch.Tensor, level: int | None = None) -> torch.Tensor:
        """Which next tokens exist: ``(M, V)`` bool for prefixes ``(M, l)`` of ``l < L`` tokens.

        ``level`` (default ``prefix.shape[1]``) is the number of leading tokens of ``prefix``
        to use, so a beam's full ``(M, L)`` token buffer can be passed as is. A prefix holding a
        token outside ``0..V-1`` has no children.
        """
        level = prefix.shape[1] if level is None else level
        if not 0 <= level < self.levels or prefix.shape[1] < level:
            raise ValueError(f"children_mask needs 0 <= level < {self.levels} prefix tokens")
        keys = prefix_keys(prefix[:, :level].to(self.device), self.codes)  # (M,)
        return self._tree.children_counts(keys, level) > 0

    def count_under(self, prefix: torch.Tensor) -> torch.Tensor:
        """Number of live items ``(M,)`` under prefixes ``(M, l)``, ``0 <= l <= L``."""
        keys = prefix_keys(prefix.to(self.device), self.codes)
        return self._tree.count_under(keys, prefix.shape[1])

    def items_under(self, prefix: torch.Tensor) -> torch.Tensor:
        """Live item ids under one prefix ``(l,)``, in SID order."""
        key = prefix_keys(prefix.to(self.device)[None, :], self.codes)
        start, stop = self._tree.range_under(key, prefix.shape[0])
        return self._tree.items[int(start[0]) : int(stop[0])]

    def encode(self, features: torch.Tensor) -> torch.Tensor:
        """Nearest-centroid SIDs ``(M, L)`` of feature vectors ``(M, F)`` (no collision policy)."""
        return self.codebook.encode(self._check_features(features))

    # -- catalogue changes ---------------------------------------------------------------------

    def add_items(self, features: torch.Tensor) -> torch.Tensor:
        """Give new items ``(M, F)`` the ids ``N + 1 .. N + M`` and distinct free SIDs.

        Encodes with the frozen codebook and applies the collision policy; old items keep their
        SIDs. Raises :class:`ConfigError` (and changes nothing) if the SIDs would run out.
        """
        features = self._check_features(features)
        m = features.shape[0]
        check_capacity(self.num_live, m, self.levels, self.codes)
        start = self.num_items + 1
        ids = torch.arange(start, start + m, device=self.device)
        tree = self._tree.clone()
        placement = place_items(features, self.codebook.encode(features), ids, self.codebook, tree)
        self.item_sid = torch.cat([self.item_sid, placement.sid])
        self.live = torch.cat([self.live, torch.ones(m, dtype=torch.bool, device=self.device)])
        self._tree = tree
        self.feature_blocks.append(
            {"start": start, "stop": start + m, "sha256": features_sha256(features)}
        )
        self.changes.append(_change("add", m, placement))
        self.last_placement = placement
        return ids

    def retire_items(self, ids: torch.Tensor) -> None:
        """Remove live items from the catalogue; their SIDs become free for new items."""
        ids = torch.as_tensor(ids, dtype=torch.long, device=self.device).reshape(-1)
        if ids.numel() == 0:
            return
        bad = (ids < 1) | (ids > self.num_items)
        if bool(bad.any()):
            raise ConfigError(
                f"retire_items: item id {int(ids[bad][0])} is outside 1..{self.num_items}"
            )
        if torch.unique(ids).numel() != ids.numel():
            raise ConfigError("retire_items: an item id is given twice")
        dead = ~self.live[ids]
        if bool(dead.any()):
            raise ConfigError(f"retire_items: item {int(ids[dead][0])} is already retired")
        self._tree.remove(prefix_keys(self.item_sid[ids], self.codes))
        self.live[ids] = False
        self.item_sid[ids] = -1
        self.changes.append({"op": "retire", "items": int(ids.numel())})

    def _check_features(self, features: torch.Tensor) -> torch.Tensor:
        features = torch.as_tensor(features).float().to(self.device)
        if features.ndim != 2 or features.shape[1] != self.feature_dim:
            raise ConfigError(
                f"new item features must be (M, {self.feature_dim}), got {tuple(features.shape)}"
            )
        if not bool(torch.isfinite(features).all()):
            raise ConfigError("new item features hold NaN or inf")
        return features

    # -- catalogue identity --------------------------------------------------------------------

    def check_catalogue(self, features: torch.Tensor, where: str | Path = "the dataset") -> None:
        """Raise :class:`DataError` unless ``features (N + 1, F)`` are the ones this was built for."""
        rows, dim = tuple(features.shape) if features.ndim == 2 else (-1, -1)
        problem = None
        if dim != self.feature_dim:
            problem = f"{dim}-dim item features, the SIDs were built for {self.feature_dim}"
        elif rows != self.num_items + 1:
            problem = f"{rows - 1} items, the SIDs were built for {self.num_items}"
        else:
            for block in self.feature_blocks:
                got = features_sha256(features[block["start"] : block["stop"]])
                if got != block["sha256"]:
                    problem = (
                        f"item features of ids {block['start']}..{block['stop'] - 1} differ from "
                        "the ones the SIDs were built for"
                    )
                    break
        if problem:
            raise DataError(
                where,
                f"{problem}: this SID index belongs to another catalogue (run `hsrl sid build`)",
            )

    # -- files ---------------------------------------------------------------------------------

    def save(self, out: str | Path, *, overwrite: bool = False) -> Path:
        """Write the index folder atomically (any report files of an old folder are kept)."""
        out = Path(out)
        with atomic_output_dir(out, overwrite=overwrite) as tmp:
            self.write_files(tmp)
            for name in REPORT_FILES:
                if (out / name).is_file():
                    shutil.copy2(out / name, tmp / name)
        return out

    def write_files(self, folder: Path) -> None:
        """Write the three index files into an existing folder (meta last: it hashes the others)."""
        save_arrays(folder / CODEBOOK_FILE, centroids=self.codebook.centroids.cpu().numpy())
        save_arrays(
            folder / TABLE_FILE,
            item_sid=self.item_sid.cpu().numpy().astype(np.int32),
            live=self.live.cpu().numpy(),
        )
        write_json(folder / META_FILE, self.meta(folder))

    def meta(self, folder: Path | None = None) -> dict[str, Any]:
        meta = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "created_by": f"hsrl {__version__}",
            "levels": self.levels,
            "codes": self.codes,
            "feature_dim": self.feature_dim,
            "num_items": self.num_items,
            "num_live": self.num_live,
            "feature_blocks": self.feature_blocks,
            "build": self.build,
            "changes": self.changes,
        }
        if folder is not None:
            meta["files"] = {
                name: {"sha256": sha256_file(folder / name)} for name in (CODEBOOK_FILE, TABLE_FILE)
            }
        return meta

    @classmethod
    def load(
        cls,
        path: str | Path,
        device: torch.device | str = "cpu",
        *,
        features: torch.Tensor | None = None,
    ) -> SidIndex:
        """Read a SID folder; with ``features (N + 1, F)``, also check it fits that catalogue."""
        path = Path(path)
        if not path.is_dir():
            raise DataError(path, "not a SID folder (run `hsrl sid build` first)")
        meta_path = path / META_FILE
        meta = read_json(meta_path)
        levels, codes, dim, num_items = _read_meta(meta, meta_path)
        for name in (CODEBOOK_FILE, TABLE_FILE):
            file = path / name
            if not file.is_file():
                raise DataError(file, "file not found")
            if sha256_file(file) != meta["files"][name]["sha256"]:
                raise DataError(file, "the file is damaged or was changed after it was written")
        centroids = load_arrays(path / CODEBOOK_FILE, required=("centroids",))["centroids"]
        table = load_arrays(path / TABLE_FILE, required=("item_sid", "live"))
        item_sid, live = table["item_sid"], table["live"]
        _check_arrays(centroids, item_sid, live, levels, codes, dim, num_items, path)
        device = resolve_device(device)
        try:
            index = cls(
                ResidualCodebook(torch.from_numpy(centroids.astype(np.float32)).to(device)),
                torch.from_numpy(item_sid.astype(np.int64)),
                torch.from_numpy(live.astype(bool)),
                feature_blocks=meta["feature_blocks"],
                build=meta.get("build") or {},
                changes=meta.get("changes") or [],
            )
        except ValueError as exc:  # duplicate keys in the prefix tree
            raise DataError(path / TABLE_FILE, "two live items share a SID") from exc
        if features is not None:
            index.check_catalogue(features, where=path)
        return index


def _change(op: str, items: int, placement: Placement) -> dict[str, Any]:
    return {
        "op": op,
        "items": items,
        "collided": placement.collided,
        "moved_at_level": placement.moved_at_level,
    }


def _read_meta(meta: Any, where: Path) -> tuple[int, int, int, int]:
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise DataError(where, "not an hsrl SID index (no 'format': 'hsrl-sid')")
    if meta.get("format_version") != FORMAT_VERSION:
        raise DataError(
            where,
            f"SID format version {meta.get('format_version')} is not supported (this hsrl reads "
            f"version {FORMAT_VERSION}); build the SIDs again",
        )
    values = []
    for key in ("levels", "codes", "feature_dim", "num_items"):
        value = meta.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise DataError(where, f"'{key}' must be a positive integer, got {value!r}")
        values.append(value)
    try:
        check_vocabulary(values[0], values[1])
    except ConfigError as exc:
        raise DataError(where, str(exc)) from exc
    files = meta.get("files")
    if not isinstance(files, dict) or any(
        not isinstance(files.get(name), dict) or not isinstance(files[name].get("sha256"), str)
        for name in (CODEBOOK_FILE, TABLE_FILE)
    ):
        raise DataError(where, "'files' must give the sha256 of codebook.npz and sid_table.npz")
    blocks = meta.get("feature_blocks")
    if not isinstance(blocks, list) or not all(
        isinstance(b, dict)
        and isinstance(b.get("start"), int)
        and isinstance(b.get("stop"), int)
        and isinstance(b.get("sha256"), str)
        for b in blocks
    ):
        raise DataError(where, "'feature_blocks' must be a list of {start, stop, sha256}")
    return values[0], values[1], values[2], values[3]


def _check_arrays(
    centroids: np.ndarray,
    item_sid: np.ndarray,
    live: np.ndarray,
    levels: int,
    codes: int,
    dim: int,
    num_items: int,
    path: Path,
) -> None:
    if centroids.shape != (levels, codes, dim) or centroids.dtype.kind != "f":
        raise DataError(
            path / CODEBOOK_FILE,
            f"centroids must be float ({levels}, {codes}, {dim}), got {centroids.dtype} "
            f"{centroids.shape}",
        )
    if not np.isfinite(centroids).all():
        raise DataError(path / CODEBOOK_FILE, "centroids hold NaN or inf")
    table = path / TABLE_FILE
    if item_sid.shape != (num_items + 1, levels) or item_sid.dtype.kind not in "iu":
        raise DataError(
            table,
            f"item_sid must be integer ({num_items + 1}, {levels}), got {item_sid.dtype} {item_sid.shape}",
        )
    if live.shape != (num_items + 1,) or live.dtype != np.bool_:
        raise DataError(
            table, f"live must be bool ({num_items + 1},), got {live.dtype} {live.shape}"
        )
    if live[0]:
        raise DataError(table, "row 0 is the padding item and cannot be live")
    valid = ((item_sid >= 0) & (item_sid < codes)).all(axis=1)
    retired = (item_sid == -1).all(axis=1)
    if not (valid[live].all() and retired[~live].all()):
        raise DataError(
            table, f"live items need tokens in 0..{codes - 1}, padding and retired rows all -1"
        )
