"""Fixtures of the simulator tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from sim_datasets import write_tiny_dataset


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_dataset(tmp_path_factory.mktemp("data") / "tiny")


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    """Run these tests on one torch thread, restored afterwards.

    The tensors here are tiny; with two intra-op threads on a shared 2-core machine every op
    pays thread hand-offs, which made the same tests up to 10x slower. Results do not depend
    on the thread count beyond float summation order.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
