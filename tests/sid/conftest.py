"""Shared fixtures of the SID tests: the real RL4RS item table and a tiny prepared dataset."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from hsrl.data.prepared import ItemTable, Records, write_prepared

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "rl4rs"


def read_rl4rs_item_vectors(path: Path = FIXTURES / "item_info.csv") -> torch.Tensor:
    """The 40-dim ``item_vec`` column of RL4RS's item table as ``(N + 1, 40)``, row 0 zeros."""
    lines = path.read_text().splitlines()
    assert lines[0].split() == ["item_id", "item_vec", "price", "location", "special_item"]
    rows = {
        int(cols[0]): [float(v) for v in cols[1].split(",")] for cols in map(str.split, lines[1:])
    }
    features = torch.zeros(max(rows) + 1, 40)
    for item, vec in rows.items():
        features[item] = torch.tensor(vec)
    return features


@pytest.fixture(scope="session")
def rl4rs_features() -> torch.Tensor:
    return read_rl4rs_item_vectors()


def write_tiny_dataset(out: Path, features: torch.Tensor) -> Path:
    """A prepared dataset around ``features`` with a handful of records (SIDs only read items)."""
    n = features.shape[0] - 1
    records, slate_size, history = 4, 9, 5
    ids = torch.arange(records * slate_size) % n + 1
    split = Records(
        user_profile=torch.zeros(records, 3),
        history=(torch.arange(records * history) % n + 1).reshape(records, history),
        slate=ids.reshape(records, slate_size),
        response=(ids % 2).float().reshape(records, slate_size),
        session_id=torch.arange(records),
        sequence_id=torch.zeros(records, dtype=torch.long),
        timestamp=torch.arange(records),
        behavior_policy=torch.zeros(records, dtype=torch.long),
    )
    return write_prepared(
        out, ItemTable(features), {"train": split}, source="rl4rs-items-test", split_recipe="test"
    )


@pytest.fixture(scope="session")
def rl4rs_dataset(tmp_path_factory, rl4rs_features) -> Path:
    return write_tiny_dataset(tmp_path_factory.mktemp("data") / "rl4rs", rl4rs_features)


@pytest.fixture(scope="session")
def rl4rs_index(rl4rs_features):
    """A balanced 3 x 16 build of the RL4RS items (shared: tests must not mutate it)."""
    from hsrl.sid import build_sid_index

    return build_sid_index(rl4rs_features, levels=3, codes=16, balanced=True, seed=0)
