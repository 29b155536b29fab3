"""Learning tests: after a modest budget on the built-in data, every RL agent beats random.

"Beats" means the agent's 95% confidence interval of total reward lies entirely above the
random policy's, over 300 test users evaluated greedily on the learned simulator. Runs are
seeded, so these tests are deterministic on a given machine.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from hsrl.evaluate import EvalSettings, evaluate_run
from hsrl.presets import merge, preset
from hsrl.train import config_from_dict, train

BUDGET = {"hsrl": 600, "a2c_flat": 600, "ddpg": 600, "behavior_ddpg": 400, "hac": 400}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from hsrl.data import prepare
    from hsrl.sid import build_sid_folder
    from hsrl.simulator.train import SimulatorTrainConfig, train_simulator

    root = tmp_path_factory.mktemp("learning")
    data = prepare("builtin", raw=None, out=root / "data", seed=0)
    train_simulator(data, root / "sim", SimulatorTrainConfig(epochs=2), progress=False, log=None)
    build_sid_folder(data, root / "sid", levels=3, codes=16, seed=0)
    return {"data": data, "simulator": root / "sim", "sid": root / "sid"}


@pytest.mark.slow
@pytest.mark.parametrize("agent", sorted(BUDGET))
def test_agent_beats_random_by_a_clear_margin(world, tmp_path, agent):
    values = merge(
        preset("builtin", agent),
        {
            "agent": agent,
            "data": str(world["data"]),
            "simulator": str(world["simulator"]),
            "sid": str(world["sid"]),
            "train": {"iterations": BUDGET[agent], "warmup": 640, "tensorboard": False},
        },
    )
    run = train(config_from_dict(values), tmp_path / "run", progress=False)
    settings = EvalSettings(episodes=300, seed=0)
    trained = evaluate_run(run, settings)["metrics"]["total_reward"]
    random = evaluate_run(run, settings, policy="random")["metrics"]["total_reward"]
    assert trained["ci95_low"] > random["ci95_high"], (trained, random)
    assert trained["mean"] > 1.3 * random["mean"]
