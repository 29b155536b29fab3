"""The batched environment: step semantics by hand, autoreset, records, seeding, check_env."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch

from hsrl.data.prepared import load_prepared
from hsrl.errors import ConfigError, HsrlError
from hsrl.simulator import (
    EnvConfig,
    GroundTruthBackend,
    InvalidActionError,
    LearnedBackend,
    RecEnv,
    ResponseModelConfig,
    UserResponseModel,
    UserState,
    check_env,
)
from hsrl.simulator.check import EnvCheckError

NUM_ITEMS = 30


class ItemRuleBackend:
    """Deterministic users: items 1..10 are always clicked, the others never."""

    def __init__(self, features: torch.Tensor):
        self.item_features = features
        self.calls: list[UserState] = []

    def click_probability(self, state: UserState, slate: torch.Tensor) -> torch.Tensor:
        self.calls.append(state)
        return (slate <= 10).float()


@pytest.fixture(scope="module")
def dataset(tiny_dataset: Path):
    return load_prepared(tiny_dataset)


def rule_env(dataset, **changes) -> RecEnv:
    settings = {"num_users": 6, "reward": "rl4rs", "history_length": 8} | changes
    backend = ItemRuleBackend(dataset.items.features)
    return RecEnv(backend, dataset.split("train"), EnvConfig(**settings))


def learned_env(dataset, num_users: int = 8, **changes) -> RecEnv:
    torch.manual_seed(0)
    config = ResponseModelConfig(profile_dim=5, item_feature_dim=6)
    model = UserResponseModel(config, dataset.items.features)
    return RecEnv(
        LearnedBackend(model), dataset.split("train"), EnvConfig(num_users=num_users, **changes)
    )


def two_clicks(batch: int) -> torch.Tensor:
    return torch.tensor([[1, 2, 11, 12]]).repeat(batch, 1)  # slots 1, 2 clicked


def test_episode_by_hand(dataset):
    env = rule_env(dataset)
    obs, _ = env.reset(seed=0)
    start_history = obs["history"].clone()
    for step in range(1, 8):
        obs, reward, terminated, truncated, info = env.step(two_clicks(6))
        torch.testing.assert_close(reward, torch.full((6,), 0.55))
        assert torch.equal(info["response"], torch.tensor([[1.0, 1, 0, 0]]).repeat(6, 1))
        assert not truncated.any()
        if step == 1:
            # The clicked items 1, 2 are appended in slot order.
            expected = torch.cat((start_history[:, 2:], torch.tensor([[1, 2]]).repeat(6, 1)), 1)
            assert torch.equal(obs["history"], expected)
        # Temper 20 - 2.8 * step: below 1 only at step 7.
        assert bool(terminated.all()) == (step == 7)
    episodes = env.pop_finished_episodes()
    assert torch.equal(episodes["depth"], torch.full((6,), 7))
    torch.testing.assert_close(episodes["total_reward"], torch.full((6,), 7 * 0.55))
    torch.testing.assert_close(episodes["avg_reward"], torch.full((6,), 0.55))
    torch.testing.assert_close(episodes["click_rate"], torch.full((6,), 0.5))
    assert env.pop_finished_episodes()["depth"].numel() == 0  # popped once only


def test_same_step_autoreset(dataset):
    env = rule_env(dataset)
    assert env.metadata["autoreset_mode"] == "same-step"
    env.reset(seed=1)
    for _ in range(6):
        env.step(two_clicks(6))
    obs, _, terminated, _, info = env.step(two_clicks(6))
    assert terminated.all()
    final = info["final_observation"]
    assert torch.equal(info["_final_observation"], terminated)
    # The final observation has this step's clicks; the new observation is a fresh logged user.
    assert torch.equal(final["history"][:, -2:], torch.tensor([[1, 2]]).repeat(6, 1))
    records = dataset.split("train")
    pool_history = records.history[:, -8:]
    for row in range(6):
        match = (records.user_profile == obs["user_profile"][row]).all(dim=1).nonzero()
        assert match.numel() >= 1, "the replacement user must come from the logged records"
        assert torch.equal(obs["history"][row], pool_history[match[0, 0]])
    # The new users start a new episode: temper back to T0, so 7 more steps to leave.
    for step in range(1, 8):
        _, _, terminated, _, _ = env.step(two_clicks(6))
        assert bool(terminated.any()) == (step == 7)
    assert env.pop_finished_episodes()["depth"].tolist() == [7] * 12


def test_truncation_by_max_steps(dataset):
    env = rule_env(dataset, max_steps=3)
    env.reset(seed=0)
    for step in range(1, 4):
        _, _, terminated, truncated, info = env.step(two_clicks(6))
        assert not terminated.any()
        assert bool(truncated.all()) == (step == 3)
    assert torch.equal(info["_final_observation"], truncated)
    episodes = env.pop_finished_episodes()
    assert episodes["depth"].tolist() == [3] * 6 and episodes["truncated"].all()


def test_users_finish_at_different_steps(dataset):
    env = rule_env(dataset, num_users=3)
    env.reset(seed=0)
    # user 0 always gets 2 clicks (7 steps), user 1 none (r = 0, drop 5: 4 steps), user 2 four.
    slate = torch.tensor([[1, 2, 11, 12], [11, 12, 13, 14], [1, 2, 3, 4]])
    for _ in range(7):
        env.step(slate)
    episodes = env.pop_finished_episodes()
    # rl4rs: 4 clicks -> r = 0.9, drop 1.4: temper 20 - 1.4 n < 1 at n = 14 (not yet).
    # user 1 leaves at step 4 and its replacement (also no clicks) would need 4 more.
    assert episodes["depth"].tolist() == [4, 7]
    torch.testing.assert_close(episodes["total_reward"], torch.tensor([0.0, 7 * 0.55]))


def test_invalid_actions_raise(dataset):
    env = rule_env(dataset)
    with pytest.raises(HsrlError, match="before reset"):
        env.step(two_clicks(6))
    env.reset(seed=0)
    bad = two_clicks(6)
    bad[2, 1] = 0
    with pytest.raises(InvalidActionError, match="padding id 0"):
        env.step(bad)
    bad[2, 1] = NUM_ITEMS + 1
    with pytest.raises(InvalidActionError, match=f"item id {NUM_ITEMS + 1}.*1..{NUM_ITEMS}"):
        env.step(bad)
    with pytest.raises(InvalidActionError, match="shape"):
        env.step(two_clicks(5))
    with pytest.raises(InvalidActionError, match="dtype"):
        env.step(two_clicks(6).int())
    with pytest.raises(InvalidActionError, match="torch.Tensor"):
        env.step(two_clicks(6).tolist())
    env.step(two_clicks(6))  # the env is still usable


def test_deferred_check_raises_at_the_next_pop_or_state_dict(dataset):
    env = rule_env(dataset, check_actions="deferred")
    env.reset(seed=0)
    env.step(two_clicks(6))
    assert env.pop_finished_episodes()["depth"].numel() >= 0  # valid slates: nothing raised
    bad = two_clicks(6)
    bad[4, 0] = NUM_ITEMS + 3
    env.step(bad)  # no host sync, so nothing is known yet
    env.step(two_clicks(6))
    with pytest.raises(InvalidActionError, match=f"item id {NUM_ITEMS + 3}.*deferred"):
        env.pop_finished_episodes()
    env.pop_finished_episodes()  # reported once
    bad[4, 0] = 0
    env.step(bad)
    with pytest.raises(InvalidActionError, match="padding id 0"):
        env.state_dict()
    with pytest.raises(ConfigError, match="check_actions"):
        EnvConfig(check_actions="later")


def test_determinism_under_seed(dataset):
    slates = [
        torch.randint(1, NUM_ITEMS + 1, (8, 4), generator=torch.Generator().manual_seed(t))
        for t in range(25)
    ]

    def run(seed: int) -> list[torch.Tensor]:
        env = learned_env(dataset)
        obs, _ = env.reset(seed=seed)
        out = [obs["user_profile"], obs["history"]]
        for slate in slates:
            obs, reward, terminated, _, info = env.step(slate)
            out += [obs["history"], reward, terminated, info["response"]]
        return out + list(env.pop_finished_episodes().values())

    first, again, other = run(5), run(5), run(6)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not all(torch.equal(a, b) for a, b in zip(first, other) if a.shape == b.shape)


def test_outputs_are_trainable_plain_tensors(dataset):
    env = learned_env(dataset)
    obs, _ = env.reset(seed=0)
    obs, reward, _, _, info = env.step(torch.randint(1, NUM_ITEMS + 1, (8, 4)))
    layer = torch.nn.Linear(5, 1)
    item_emb = torch.nn.Embedding(NUM_ITEMS + 1, 1)
    loss = (layer(obs["user_profile"]).squeeze(1) * reward).mean()
    loss = loss + (item_emb(obs["history"]).sum() * info["response"].mean())
    loss.backward()
    assert layer.weight.grad is not None and item_emb.weight.grad is not None


def test_state_dict_resume_continues_exactly(dataset):
    slates = [
        torch.randint(1, NUM_ITEMS + 1, (8, 4), generator=torch.Generator().manual_seed(t))
        for t in range(30)
    ]
    env = learned_env(dataset)
    env.reset(seed=3)
    for slate in slates[:10]:
        env.step(slate)
    buffer = io.BytesIO()
    torch.save(env.state_dict(), buffer)
    tail = [env.step(s)[1] for s in slates[10:]]
    episodes = env.pop_finished_episodes()

    buffer.seek(0)
    resumed = learned_env(dataset)
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    again = [resumed.step(s)[1] for s in slates[10:]]
    assert all(torch.equal(a, b) for a, b in zip(tail, again))
    for key, value in resumed.pop_finished_episodes().items():
        assert torch.equal(value, episodes[key])
    with pytest.raises(HsrlError, match="users"):
        learned_env(dataset, num_users=4).load_state_dict(env.state_dict())


def test_check_env_passes_on_learned_env(dataset):
    summary = check_env(learned_env(dataset, reward="mean_with_cost"))
    assert summary["num_users"] == 8 and summary["episodes_checked"] > 0


def test_check_env_catches_unchecked_actions(dataset):
    with pytest.raises(EnvCheckError, match="padding item id 0.*accepted"):
        check_env(learned_env(dataset, check_actions=False))


def test_check_env_catches_lost_episodes(dataset):
    class LosesEpisodes(RecEnv):
        def pop_finished_episodes(self):
            episodes = super().pop_finished_episodes()
            return {k: v[1:] for k, v in episodes.items()}

    env = learned_env(dataset)
    env.__class__ = LosesEpisodes
    with pytest.raises(EnvCheckError, match="every finished episode must be recorded"):
        check_env(env)


def test_check_env_catches_missing_autoreset_declaration(dataset):
    env = learned_env(dataset)
    env.metadata = {}
    with pytest.raises(EnvCheckError, match="autoreset_mode"):
        check_env(env)


def test_check_env_catches_in_place_observation_updates(dataset):
    class Mutates(RecEnv):
        def step(self, slate):
            result = super().step(slate)
            if getattr(self, "_last", None) is not None:
                self._last.add_(1.0)
            self._last = result[0]["user_profile"]
            return result

    env = learned_env(dataset)
    env.__class__ = Mutates
    with pytest.raises(EnvCheckError, match="in place"):
        check_env(env)


class StandInGroundTruth:
    """A stand-in with the API of hsrl.data.builtin.GroundTruthUserModel."""

    def __init__(self, features: torch.Tensor, num_users: int = 4):
        self.item_features = features
        self.num_users = num_users
        self.sessions_looked_up = 0

    def user_of_session(self, session_id: torch.Tensor) -> torch.Tensor:
        self.sessions_looked_up += session_id.numel()
        return session_id % self.num_users

    def click_probability(self, user, history, slate):
        # users 0 and 1 click everything; users 2 and 3 nothing.
        return (user < 2).float().unsqueeze(1).expand(slate.shape).clone()


def test_ground_truth_backend_adapter(dataset):
    records = dataset.split("train")
    truth = StandInGroundTruth(dataset.items.features)
    backend = GroundTruthBackend(truth, "cpu", record_sessions=records.session_id)
    looked_up = truth.sessions_looked_up
    env = RecEnv(backend, records, EnvConfig(num_users=16, reward="mean_with_cost"))
    env.reset(seed=0)
    _, reward, _, _, info = env.step(torch.randint(1, NUM_ITEMS + 1, (16, 4)))
    users = records.session_id[env.state_dict()["record"]] % 4  # users of the records sampled
    # same users as the first step (no one leaves after one step)
    assert torch.equal(info["response"][:, 0], (users < 2).float())
    torch.testing.assert_close(reward, torch.where(users < 2, 1.0, -0.1))
    assert truth.sessions_looked_up == looked_up  # looked up once, at construction
    check_env(env)
