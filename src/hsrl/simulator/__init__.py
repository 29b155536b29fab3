"""The simulator: the learned user response model, its training, and the batched environment.

- :mod:`~hsrl.simulator.response_model`: :class:`UserResponseModel` and its config;
- :mod:`~hsrl.simulator.train`: :func:`train_simulator`, :func:`load_simulator`,
  :func:`check_compatible`;
- :mod:`~hsrl.simulator.env`: :class:`RecEnv`, :class:`EnvConfig`, :func:`make_env`;
- :mod:`~hsrl.simulator.rewards`, :mod:`~hsrl.simulator.leave`, :mod:`~hsrl.simulator.history`:
  the reward functions, the leave model and the history update, each testable alone;
- :mod:`~hsrl.simulator.backends`: where click probabilities come from (learned or true users);
- :mod:`~hsrl.simulator.check`: :func:`check_env` for any env following the protocol.
"""

from hsrl.simulator.backends import GroundTruthBackend, LearnedBackend, ResponseBackend, UserState
from hsrl.simulator.check import check_env
from hsrl.simulator.env import EnvConfig, InvalidActionError, RecEnv, TensorSpec, make_env
from hsrl.simulator.metrics import roc_auc, slot_mean_auc
from hsrl.simulator.response_model import ResponseModelConfig, UserResponseModel
from hsrl.simulator.rewards import get_reward, register_reward
from hsrl.simulator.train import (
    SimulatorTrainConfig,
    check_compatible,
    dataset_fingerprint,
    load_simulator,
    save_simulator,
    train_simulator,
)

__all__ = [
    "EnvConfig",
    "GroundTruthBackend",
    "InvalidActionError",
    "LearnedBackend",
    "RecEnv",
    "ResponseBackend",
    "ResponseModelConfig",
    "SimulatorTrainConfig",
    "TensorSpec",
    "UserResponseModel",
    "UserState",
    "check_compatible",
    "check_env",
    "dataset_fingerprint",
    "get_reward",
    "load_simulator",
    "make_env",
    "register_reward",
    "roc_auc",
    "save_simulator",
    "slot_mean_auc",
    "train_simulator",
]
