"""Same seed, same simulator, whatever the number of CPU threads that trains it."""

from __future__ import annotations

import torch

from hsrl.simulator.response_model import ResponseModelConfig
from hsrl.simulator.train import SimulatorTrainConfig, train_simulator


def test_two_threaded_training_repeats_exactly_and_restores_the_setting(tiny_world, tmp_path):
    config = SimulatorTrainConfig(
        model=ResponseModelConfig(variant="ml1m", feature_dim=16, position="auto"), epochs=1
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        weights = []
        for name in ("a", "b"):
            train_simulator(tiny_world["data"], tmp_path / name, config, progress=False, log=None)
            weights.append(torch.load(tmp_path / name / "model.pt", weights_only=True))
    finally:
        torch.set_num_threads(threads)
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    assert not torch.are_deterministic_algorithms_enabled()  # the caller's setting is back
