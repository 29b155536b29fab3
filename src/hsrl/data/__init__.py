"""Datasets: raw readers, the built-in generator, and the one prepared format they all write.

``prepare(source, ...)`` dispatches to the reader of a source; ``load_prepared(path)`` reads
any prepared dataset back as tensors.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from pathlib import Path

from hsrl.data.prepared import ItemTable, PreparedDataset, Records, load_prepared, write_prepared
from hsrl.errors import ConfigError

# source name -> (module, function). Each function has the signature
#   fn(raw: Path | None, out: Path, *, seed: int, overwrite: bool, options: Mapping[str, str]) -> Path
_PREPARERS = {
    "builtin": ("hsrl.data.builtin", "prepare_builtin"),
    "rl4rs": ("hsrl.data.rl4rs", "prepare_rl4rs"),
    "ml1m": ("hsrl.data.ml1m", "prepare_ml1m"),
    "ml1m-processed": ("hsrl.data.ml1m_processed", "prepare_ml1m_processed"),
}
SOURCES = tuple(_PREPARERS)


def prepare(
    source: str,
    *,
    raw: str | Path | None,
    out: str | Path,
    seed: int = 0,
    overwrite: bool = False,
    options: Mapping[str, str] | None = None,
) -> Path:
    """Prepare a dataset from ``source`` into the folder ``out`` (atomically)."""
    if source not in _PREPARERS:
        raise ConfigError(f"unknown data source {source!r} (choose from {', '.join(SOURCES)})")
    if source != "builtin" and raw is None:
        raise ConfigError(f"data prepare {source}: --raw DIR is required")
    module, function = _PREPARERS[source]
    fn = getattr(importlib.import_module(module), function)
    return fn(
        None if raw is None else Path(raw),
        Path(out),
        seed=seed,
        overwrite=overwrite,
        options=dict(options or {}),
    )


__all__ = [
    "SOURCES",
    "ItemTable",
    "PreparedDataset",
    "Records",
    "load_prepared",
    "prepare",
    "write_prepared",
]
