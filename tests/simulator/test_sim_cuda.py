"""The simulator on a CUDA device (skipped where torch sees none)."""

from __future__ import annotations

import pytest
import torch

from hsrl.data import prepare
from hsrl.data.prepared import load_prepared
from hsrl.simulator import (
    EnvConfig,
    SimulatorTrainConfig,
    check_env,
    load_simulator,
    make_env,
    train_simulator,
)
from hsrl.simulator.history import fit_history

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


def test_train_load_and_step_on_cuda(tiny_dataset, tmp_path):
    metrics = train_simulator(
        tiny_dataset,
        tmp_path / "sim",
        SimulatorTrainConfig(epochs=1),
        "cuda",
        progress=False,
        log=None,
    )
    assert metrics["device"].startswith("cuda")
    gpu = load_simulator(tmp_path / "sim", "cuda")
    cpu = load_simulator(tmp_path / "sim", "cpu")
    records = load_prepared(tiny_dataset).split("val")
    args = (records.user_profile, fit_history(records.history, 50), records.slate)
    with torch.no_grad():
        torch.testing.assert_close(
            gpu(*(a.cuda() for a in args)).cpu(), cpu(*args), atol=1e-4, rtol=1e-4
        )

    env = make_env(tiny_dataset, tmp_path / "sim", config=EnvConfig(num_users=256), device="cuda")
    assert env.item_features.is_cuda
    obs, _ = env.reset(seed=0)
    assert obs["history"].is_cuda and obs["user_profile"].is_cuda
    check_env(env, steps=30)


def test_ground_truth_env_on_cuda(tmp_path):
    data = prepare("builtin", raw=None, out=tmp_path / "data", seed=0, options={"num_users": "100"})
    env = make_env(data, None, ground_truth=True, config=EnvConfig(num_users=512), device="cuda")
    check_env(env, steps=30)
    obs, _ = env.reset(seed=1)
    _, reward, _, _, info = env.step(torch.randint(1, env.num_items + 1, (512, 9), device="cuda"))
    assert reward.is_cuda and info["response"].is_cuda
