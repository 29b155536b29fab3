"""Fixtures shared by every test folder: the real RL4RS fragment, raw and prepared."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"


def pytest_configure(config: pytest.Config) -> None:
    """Tests run on one torch thread: their tensors are tiny, and on a small shared machine
    two intra-op threads make them many times slower. Results do not depend on it."""
    import torch

    torch.set_num_threads(1)
    config.addinivalue_line(
        "markers", "internal_error: the test expects the CLI's internal-error handler to run"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("internal_error") is None:
            item.fixturenames.append("_no_internal_error")


@pytest.fixture
def _no_internal_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """No bad input may reach the CLI's internal-error handler: every test that makes it run
    fails, unless it is marked ``internal_error`` (the tests of the handler itself)."""
    import hsrl.cli

    def fail(exc: Exception) -> int:
        raise AssertionError(f"the CLI's internal-error handler was reached: {exc!r}") from exc

    monkeypatch.setattr(hsrl.cli, "_internal_error", fail)


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


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A small built-in dataset with a trained simulator and semantic IDs, built once per session.

    Keys: "data", "simulator", "sid". Tests must not modify these folders.
    """
    import torch

    from hsrl.data import prepare
    from hsrl.data.prepared import load_prepared
    from hsrl.sid import build_sid_index
    from hsrl.simulator.train import SimulatorTrainConfig, train_simulator

    root = tmp_path_factory.mktemp("world")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        data = prepare(
            "builtin",
            raw=None,
            out=root / "data",
            seed=0,
            options={"num_users": "80", "sessions_per_user": "2", "max_pages_per_session": "2"},
        )
        train_simulator(
            data,
            root / "simulator",
            SimulatorTrainConfig(epochs=1),
            "cpu",
            progress=False,
            log=None,
        )
        index, _ = build_sid_index(load_prepared(data, splits=[]).items.features, 3, 8, seed=0)
        index.save(root / "sid")
    finally:
        torch.set_num_threads(threads)
    return {"data": data, "simulator": root / "simulator", "sid": root / "sid"}
