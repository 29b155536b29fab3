"""The simulator on real data formats: the RL4RS fragment and the built-in dataset's ground truth."""

from __future__ import annotations

import math
from pathlib import Path

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
    roc_auc,
    slot_mean_auc,
    train_simulator,
)
from hsrl.simulator.history import fit_history

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "rl4rs"


def test_rl4rs_fragment_smoke(tmp_path):
    data = prepare("rl4rs", raw=FIXTURE, out=tmp_path / "rl4rs")
    metrics = train_simulator(
        data, tmp_path / "sim", SimulatorTrainConfig(epochs=1), progress=False, log=None
    )
    assert metrics["val_split"] == "test" and metrics["train_records"] == 46
    assert math.isfinite(metrics["best_val_auc"])
    model = load_simulator(tmp_path / "sim")
    assert model.config.variant == "rl4rs" and model.config.profile_dim == 42
    assert model.num_items == 283 and model.config.item_feature_dim == 40
    env = make_env(data, tmp_path / "sim", config=EnvConfig(num_users=16), split="test")
    summary = check_env(env, steps=30)
    assert summary["slate_size"] == 9 and summary["num_items"] == 283


@pytest.fixture(scope="module")
def builtin(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict]:
    folder = tmp_path_factory.mktemp("builtin")
    data = prepare("builtin", raw=None, out=folder / "data", seed=0, options={"num_users": "400"})
    config = SimulatorTrainConfig(epochs=2, seed=0)
    metrics = train_simulator(data, folder / "sim", config, progress=False, log=None)
    return data, folder / "sim", metrics


@pytest.mark.slow
def test_builtin_simulator_learns_the_true_users(builtin):
    """The learned simulator's validation AUC is far above chance, below the true model's.

    The ceiling is the AUC of the true click probabilities on the same validation records
    (0.855 here: clicks are Bernoulli draws, so even the truth cannot rank them all); chance is
    0.5. Measured with 400 users (1,700 training records, 202 validation records), 2 epochs,
    training seeds 0-3: pooled AUC 0.706, 0.709, 0.668, 0.701; within-slot mean AUC 0.577,
    0.584, 0.577, 0.576 (ceiling 0.809). The bar is 40 % of the way from chance to the ceiling
    (0.642), below the worst seed by 0.026 (about two standard errors of an AUC on 202
    records) and above what a constant or random scorer gets (0.5); the within-slot bar 0.53
    checks that users and items are modelled, not only the slot order (the model cannot see
    the slot; a slot-only scorer has pooled AUC 0.72 on these records but within-slot 0.5).
    With the default 2,000 users the same training reaches 0.762 (ceiling 0.852).
    """
    data, sim, metrics = builtin
    dataset = load_prepared(data)
    assert metrics["val_split"] == "val"
    from hsrl.data.builtin import GroundTruthUserModel

    truth = GroundTruthUserModel.load(dataset.ground_truth_path)
    records = dataset.split("val")
    p_true = truth.click_probability(
        truth.user_of_session(records.session_id), records.history, records.slate
    )
    ceiling = roc_auc(p_true, records.response)
    learned = metrics["best_val_auc"]
    assert 0.8 < ceiling < 0.9
    assert learned >= 0.5 + 0.4 * (ceiling - 0.5), (learned, ceiling)
    assert learned < ceiling
    model = load_simulator(sim)
    with torch.no_grad():
        logits = model(records.user_profile, fit_history(records.history, 50), records.slate)
    # Within a slot too, the model ranks clicks above non-clicks better than chance.
    assert slot_mean_auc(logits, records.response) > 0.53


@pytest.mark.slow
def test_ground_truth_env_uses_the_true_click_model(builtin):
    data, sim, _ = builtin
    env = make_env(data, None, ground_truth=True, config=EnvConfig(num_users=64))
    check_env(env, steps=30)
    from hsrl.data.builtin import GroundTruthUserModel

    truth = GroundTruthUserModel.load(load_prepared(data, splits=[]).ground_truth_path)
    obs, _ = env.reset(seed=0)
    state = env.state_dict()
    sessions = load_prepared(data, splits=["train"]).split("train").session_id[state["record"]]
    slate = torch.randint(1, env.num_items + 1, (64, env.slate_size))
    _, _, _, _, info = env.step(slate)
    expected = truth.click_probability(truth.user_of_session(sessions), obs["history"], slate)
    torch.testing.assert_close(info["click_probability"], expected)
    # The learned simulator runs on the same users and items.
    learned = make_env(data, sim, config=EnvConfig(num_users=64))
    assert learned.num_items == env.num_items and learned.profile_dim == env.profile_dim
