"""Gymnasium faces of the recommendation environment (needs the ``gymnasium`` package).

One environment id, :data:`hsrl.GYMNASIUM_ENV_ID`, is registered when ``hsrl`` is imported and Gymnasium is
installed (``hsrl/__init__.py``), with two entry points:

- ``gymnasium.make("hsrl/SlateRec-v0", data=DIR, simulator=DIR)`` (or ``ground_truth=True``)
  gives :class:`SlateRecEnv`, one user at a time with NumPy observations;
- ``gymnasium.make_vec("hsrl/SlateRec-v0", num_envs=N, vectorization_mode="vector_entry_point",
  data=..., simulator=...)`` gives :class:`SlateRecVectorEnv`, the batched device-resident
  :class:`~hsrl.simulator.env.RecEnv` itself behind Gymnasium's ``VectorEnv`` interface, with
  torch tensors in and out (no copy of the step logic, no NumPy round trip).

Spaces: the observation is ``Dict(user_profile=Box(P,) float32, history=MultiDiscrete(H) of
item ids 0..N)`` (0 pads the history); the action is the slate, ``MultiDiscrete(K)`` of item ids
1..N (``start=1``). Both envs use the free page layout (any item in any slot).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from gymnasium.vector import AutoresetMode

from hsrl.errors import ConfigError
from hsrl.simulator.env import EnvConfig, RecEnv, make_env


def _make_rec_env(
    data: str | Path,
    simulator: str | Path | None,
    ground_truth: bool,
    num_users: int,
    split: str | None,
    device: str,
    options: dict[str, Any],
) -> RecEnv:
    if options.get("layout", "free") != "free":
        raise ConfigError("the Gymnasium envs use the free page layout (layout='free')")
    config = EnvConfig(num_users=num_users, device=device, **options)
    return make_env(data, simulator, ground_truth=ground_truth, split=split, config=config)


def _spaces(env: RecEnv) -> tuple[spaces.Dict, spaces.MultiDiscrete]:
    """Single-user observation and action spaces of ``env``."""
    n, h, k = env.num_items, env.history_length, env.slate_size
    # Users are drawn from the split's logged records: their profiles bound the observations.
    low, high = env.profile_bounds()
    high = torch.where(high > low, high, low + 1.0)  # a constant column: a unit-wide box
    observation = spaces.Dict(
        {
            "user_profile": spaces.Box(low.cpu().numpy(), high.cpu().numpy(), dtype=np.float32),
            "history": spaces.MultiDiscrete(np.full(h, n + 1), dtype=np.int64),
        }
    )
    action = spaces.MultiDiscrete(np.full(k, n), dtype=np.int64, start=np.ones(k, np.int64))
    return observation, action


class SlateRecEnv(gym.Env):
    """One simulated user at a time: ``reset`` draws a user from the split's logged records,
    ``step(slate)`` shows K item ids and returns the click-based reward; the episode ends when
    the leave model makes the user leave (terminated) or after ``max_steps`` (truncated).

    ``info`` holds the per-slot ``response`` and ``click_probability`` (NumPy arrays).
    Keyword options other than the ones named are :class:`~hsrl.simulator.env.EnvConfig`
    fields (``reward``, ``max_steps``, ``history_length``, ``initial_temper``, ...).
    """

    metadata = {"render_modes": []}

    def __init__(
        self,
        data: str | Path,
        simulator: str | Path | None = None,
        *,
        ground_truth: bool = False,
        split: str | None = None,
        device: str = "cpu",
        **options: Any,
    ):
        self._env = _make_rec_env(data, simulator, ground_truth, 1, split, device, options)
        self.observation_space, self.action_space = _spaces(self._env)

    @property
    def rec_env(self) -> RecEnv:
        """The underlying batched env (one user)."""
        return self._env

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        super().reset(seed=seed)
        obs, _ = self._env.reset(seed=seed)  # a seed restarts the env's own generator
        return self._numpy(obs), {}

    def step(self, action: Any) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        slate = torch.as_tensor(np.asarray(action), dtype=torch.long, device=self._env.device)
        if slate.shape != (self._env.slate_size,):
            raise ValueError(
                f"action: shape {tuple(slate.shape)}, expected ({self._env.slate_size},) item ids"
            )
        obs, reward, terminated, truncated, info = self._env.step(slate.unsqueeze(0))
        ended, cut = bool(terminated[0]), bool(truncated[0])
        if ended or cut:  # the batched env already replaced the user; Gymnasium wants the last view
            obs = info["final_observation"]
        extra = {
            "response": info["response"][0].cpu().numpy(),
            "click_probability": info["click_probability"][0].cpu().numpy(),
        }
        return self._numpy(obs), float(reward[0]), ended, cut, extra

    @staticmethod
    def _numpy(obs: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
        return {
            "user_profile": obs["user_profile"][0].cpu().numpy().astype(np.float32),
            "history": obs["history"][0].cpu().numpy().astype(np.int64),
        }


class SlateRecVectorEnv(gym.vector.VectorEnv):
    """``num_envs`` users stepped together by one :class:`~hsrl.simulator.env.RecEnv`.

    Observations, rewards and flags are torch tensors on the env's ``device``, and ``step``
    takes a (num_envs, K) long tensor (a NumPy array is converted). Finished users are replaced
    in the same step (``autoreset_mode`` SAME_STEP); their last observation is in
    ``info["final_observation"]``, as in the batched env.
    """

    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP, "render_modes": []}

    def __init__(
        self,
        data: str | Path,
        simulator: str | Path | None = None,
        *,
        num_envs: int = 32,
        ground_truth: bool = False,
        split: str | None = None,
        device: str = "cpu",
        **options: Any,
    ):
        self._env = _make_rec_env(data, simulator, ground_truth, num_envs, split, device, options)
        self.num_envs = num_envs
        self.single_observation_space, self.single_action_space = _spaces(self._env)
        self.observation_space = gym.vector.utils.batch_space(
            self.single_observation_space, num_envs
        )
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, num_envs)

    @property
    def rec_env(self) -> RecEnv:
        return self._env

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        if seed is not None:
            self.action_space.seed(seed)
        return self._env.reset(seed=seed, options=options)

    def step(self, actions: Any) -> tuple[Any, ...]:
        if not isinstance(actions, torch.Tensor):
            actions = torch.as_tensor(np.asarray(actions), dtype=torch.long)
        return self._env.step(actions.to(self._env.device, torch.long))
