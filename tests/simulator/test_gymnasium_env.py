"""The Gymnasium faces of the env: registered on `import hsrl`, Gymnasium's own checker passes,
and the vector env is the batched env itself."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

gym = pytest.importorskip("gymnasium")

import hsrl  # noqa: E402,F401  (registers hsrl/SlateRec-v0)
from hsrl.errors import ConfigError  # noqa: E402
from hsrl.simulator.env import RecEnv  # noqa: E402


@pytest.fixture
def env(tiny_world):
    env = gym.make("hsrl/SlateRec-v0", data=tiny_world["data"], simulator=tiny_world["simulator"])
    yield env
    env.close()


def test_gymnasium_env_checker_passes_without_warnings(env):
    from gymnasium.utils.env_checker import check_env

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env.unwrapped)
    assert [str(w.message) for w in caught] == []


def test_spaces_describe_profiles_histories_and_slates(env, tiny_world):
    base = env.unwrapped.rec_env
    n, k = base.num_items, base.slate_size
    assert isinstance(env.action_space, gym.spaces.MultiDiscrete)
    assert env.action_space.shape == (k,)
    assert env.action_space.start.tolist() == [1] * k
    assert (env.action_space.start + env.action_space.nvec - 1).tolist() == [n] * k
    obs, _ = env.reset(seed=0)
    assert obs["user_profile"].dtype == np.float32 and obs["history"].dtype == np.int64
    assert obs in env.observation_space


def test_an_episode_of_a_random_agent_ends_and_seeds_repeat(env):
    def episode(seed):
        obs, _ = env.reset(seed=seed)
        env.action_space.seed(seed)
        rewards, done = [], False
        while not done:
            obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
            assert obs in env.observation_space
            assert info["response"].shape == env.action_space.shape
            rewards.append(reward)
            done = terminated or truncated
        return rewards

    first = episode(5)
    assert 1 <= len(first) < 200
    assert episode(5) == first


def test_ground_truth_and_bad_settings(tiny_world):
    env = gym.make("hsrl/SlateRec-v0", data=tiny_world["data"], ground_truth=True, max_steps=2)
    env.reset(seed=1)
    env.step(env.action_space.sample())
    *_, truncated, _ = env.step(env.action_space.sample())
    assert truncated or env.unwrapped.rec_env.config.max_steps == 2
    with pytest.raises(ConfigError, match="free page layout"):
        gym.make("hsrl/SlateRec-v0", data=tiny_world["data"], ground_truth=True, layout="rows")
    with pytest.raises(ConfigError, match="exactly one"):
        gym.make("hsrl/SlateRec-v0", data=tiny_world["data"])


def test_make_vec_gives_the_batched_env_as_a_vector_env(tiny_world):
    venv = gym.make_vec(
        "hsrl/SlateRec-v0",
        num_envs=6,
        vectorization_mode="vector_entry_point",
        data=tiny_world["data"],
        simulator=tiny_world["simulator"],
    )
    assert isinstance(venv.unwrapped, gym.vector.VectorEnv)
    assert isinstance(venv.unwrapped.rec_env, RecEnv) and venv.unwrapped.rec_env.num_users == 6
    assert venv.metadata["autoreset_mode"] == gym.vector.AutoresetMode.SAME_STEP
    obs, _ = venv.reset(seed=0)
    assert obs["history"].shape == (6, venv.unwrapped.rec_env.history_length)
    assert venv.single_action_space.shape == (venv.unwrapped.rec_env.slate_size,)
    finished = 0
    for _ in range(40):
        obs, reward, terminated, truncated, info = venv.step(venv.action_space.sample())
        assert isinstance(reward, torch.Tensor) and reward.shape == (6,)
        finished += int((terminated | truncated).sum())
    assert finished > 0  # users left and were replaced in the same step
    venv.close()
