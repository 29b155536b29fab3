"""Fixtures shared by every test folder: the real RL4RS fragment, raw and prepared."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
RL4RS_FILES = ("item_info.csv", "rl4rs_b_train.csv", "rl4rs_b_test.csv")


@pytest.fixture(scope="session")
def rl4rs_raw() -> Path:
    """The real RL4RS fragment (46 train + 17 test records, 283 items); read-only."""
    return FIXTURES / "rl4rs"


@pytest.fixture
def rl4rs_raw_copy(tmp_path: Path, rl4rs_raw: Path) -> Path:
    """A writable copy of the RL4RS fragment, for tests that damage it."""
    out = tmp_path / "raw"
    out.mkdir()
    for name in RL4RS_FILES:
        shutil.copyfile(rl4rs_raw / name, out / name)
    return out


@pytest.fixture(scope="session")
def rl4rs_prepared(tmp_path_factory: pytest.TempPathFactory, rl4rs_raw: Path) -> Path:
    """The fragment prepared once per session (do not modify it)."""
    from hsrl.data.rl4rs import prepare_rl4rs

    out = tmp_path_factory.mktemp("rl4rs") / "prepared"
    return prepare_rl4rs(rl4rs_raw, out, seed=0, overwrite=False, options={})
