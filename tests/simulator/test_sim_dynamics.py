"""Reward functions, the leave model and the history update, against hand-computed values."""

from __future__ import annotations

import pytest
import torch

from hsrl.errors import ConfigError
from hsrl.simulator.history import append_positive, fit_history
from hsrl.simulator.leave import temper_drop, update_temper
from hsrl.simulator.rewards import get_reward, mean_with_cost, register_reward, sweet_point


def test_mean_with_cost_by_hand():
    response = torch.tensor([[1.0, 1, 0, 0], [1, 1, 1, 1], [0, 0, 0, 0], [1, 0, 0, 0]])
    # (1 + 1 - 0.1 - 0.1) / 4 = 0.45; all clicked = 1; none = -0.1; (1 - 0.3) / 4 = 0.175
    expected = torch.tensor([0.45, 1.0, -0.1, 0.175])
    torch.testing.assert_close(mean_with_cost(response), expected)


def test_rl4rs_sweet_point_by_hand():
    response = torch.tensor([[1.0, 1, 0, 0], [1, 1, 1, 1], [0, 0, 0, 0]])
    # 1 - |0.45 - 0.9| = 0.55; 1 - |1 - 0.9| = 0.9; 1 - |-0.1 - 0.9| = 0
    torch.testing.assert_close(sweet_point(response), torch.tensor([0.55, 0.9, 0.0]))
    # The best slate is not the all-clicked one: 8 of 9 clicked is (8 - 0.1) / 9 = 0.8778.
    eight = torch.tensor([[1.0] * 8 + [0.0]])
    assert sweet_point(eight).item() == pytest.approx(1 - abs(7.9 / 9 - 0.9))
    assert sweet_point(eight).item() > sweet_point(torch.ones(1, 9)).item()


def test_reward_registry():
    assert get_reward("rl4rs") is sweet_point
    assert get_reward("mean_with_cost") is mean_with_cost
    with pytest.raises(ConfigError, match="unknown reward 'nope'"):
        get_reward("nope")

    @register_reward("test_clicks")
    def clicks(response: torch.Tensor) -> torch.Tensor:
        return response.sum(dim=1)

    assert get_reward("test_clicks") is clicks
    with pytest.raises(ConfigError, match="already registered"):
        register_reward("test_clicks")(clicks)


def test_leave_model_steps_by_hand():
    # K = 4, two clicks per step under rl4rs: r = 0.55, drop = 0.45 * 4 + 1 = 2.8.
    reward = torch.tensor([0.55])
    assert temper_drop(reward, 4).item() == pytest.approx(2.8)
    temper = torch.tensor([20.0])
    seen = []
    for _ in range(7):
        temper, left = update_temper(temper, reward, 4)
        seen.append((round(temper.item(), 4), bool(left)))
    expected_temper = [17.2, 14.4, 11.6, 8.8, 6.0, 3.2, 0.4]
    assert [t for t, _ in seen] == pytest.approx(expected_temper, abs=1e-4)
    assert [left for _, left in seen] == [False] * 6 + [True]


def test_leave_model_bad_slate_leaves_fast():
    # K = 9, nothing clicked, mean_with_cost r = -0.1: drop = 1.1 * 9 + 1 = 10.9.
    temper, left = update_temper(torch.tensor([20.0]), torch.tensor([-0.1]), 9)
    assert temper.item() == pytest.approx(9.1) and not left
    temper, left = update_temper(temper, torch.tensor([-0.1]), 9)
    assert temper.item() == pytest.approx(-1.8) and left


def test_depth_never_exceeds_initial_temper():
    temper = torch.tensor([20.0])
    best = torch.tensor([1.0])  # the highest possible reward still drains 1 per step
    steps = 0
    left = torch.tensor([False])
    while not left:
        temper, left = update_temper(temper, best, 9)
        steps += 1
    assert steps == 20


def test_history_update_by_hand():
    history = torch.tensor([[0, 0, 5, 6], [7, 8, 9, 10], [0, 0, 0, 0]])
    slate = torch.tensor([[11, 12, 13], [21, 22, 23], [31, 32, 33]])
    response = torch.tensor([[1.0, 0, 1], [1, 1, 1], [0, 0, 0]])
    new = append_positive(history, slate, response)
    expected = torch.tensor(
        [
            [5, 6, 11, 13],  # 11 and 13 clicked, in slot order: last 4 of [0, 0, 5, 6, 11, 13]
            [10, 21, 22, 23],  # a full history drops its oldest items
            [0, 0, 0, 0],  # no click: unchanged
        ]
    )
    assert torch.equal(new, expected)
    assert torch.equal(history[0], torch.tensor([0, 0, 5, 6]))  # input untouched


def test_history_update_more_clicks_than_history():
    history = torch.tensor([[1, 2]])
    slate = torch.tensor([[3, 4, 5]])
    new = append_positive(history, slate, torch.ones(1, 3))
    assert torch.equal(new, torch.tensor([[4, 5]]))


def test_history_update_matches_a_plain_loop():
    generator = torch.Generator().manual_seed(3)
    history = torch.randint(0, 50, (64, 7), generator=generator)
    slate = torch.randint(1, 50, (64, 5), generator=generator)
    response = (torch.rand(64, 5, generator=generator) < 0.5).float()
    new = append_positive(history, slate, response)
    for row in range(64):
        items = history[row].tolist() + [
            s for s, r in zip(slate[row].tolist(), response[row].tolist()) if r
        ]
        assert new[row].tolist() == items[-7:]


def test_fit_history():
    history = torch.tensor([[0, 1, 2, 3], [4, 5, 6, 7]])
    assert torch.equal(fit_history(history, 2), torch.tensor([[2, 3], [6, 7]]))
    assert torch.equal(fit_history(history, 6)[:, :2], torch.zeros(2, 2, dtype=torch.long))
    assert torch.equal(fit_history(history, 6)[:, 2:], history)
