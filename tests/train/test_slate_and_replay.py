from __future__ import annotations

import math

import pytest
import torch

from hsrl.replay import Batch, ReplayBuffer
from hsrl.slate import greedy_slate, sample_slate, uniform_slate


def test_greedy_slate_is_top_k_and_skips_masked_items():
    scores = torch.tensor([[float("-inf"), 0.1, 0.9, 0.5, float("-inf")]])
    assert greedy_slate(scores, 2).tolist() == [[2, 3]]


def test_sampled_slates_are_distinct_live_and_follow_the_distribution():
    probs = torch.tensor([0.0, 0.7, 0.2, 0.1, 0.0])
    logp = torch.log(probs).expand(20000, 5)
    slate = sample_slate(logp, 1, torch.Generator().manual_seed(0))
    freq = torch.bincount(slate[:, 0], minlength=5).float() / 20000
    assert torch.allclose(freq, probs, atol=0.015)
    two = sample_slate(logp, 2, torch.Generator().manual_seed(1))
    assert (two[:, 0] != two[:, 1]).all() and (two != 0).all() and (two != 4).all()


def test_epsilon_mixes_in_a_uniform_law_over_live_items():
    # Item 0 is not live (-inf); items 2 and 3 are live but the policy gives them ~0 mass.
    logp = torch.log(torch.tensor([0.0, 1.0, 1e-12, 1e-12])).expand(40000, 4)
    slate = sample_slate(logp, 1, torch.Generator().manual_seed(2), epsilon=0.3)
    freq = torch.bincount(slate[:, 0], minlength=4).float() / 40000
    assert freq[0] == 0
    assert math.isclose(freq[1].item(), 0.7 + 0.1, abs_tol=0.015)
    assert math.isclose(freq[2].item(), 0.1, abs_tol=0.01)


def test_uniform_slate_only_live_items():
    live = torch.tensor([False, True, True, False, True])
    slate = uniform_slate(live, 100, 3, torch.Generator().manual_seed(0))
    assert set(slate.flatten().tolist()) == {1, 2, 4}


def make_batch(start: int, n: int) -> Batch:
    v = torch.arange(start, start + n)
    return Batch(
        user_profile=v[:, None].float(),
        history=v[:, None].repeat(1, 2),
        slate=v[:, None],
        response=torch.ones(n, 1),
        reward=v.float(),
        terminated=torch.zeros(n),
        next_user_profile=v[:, None].float(),
        next_history=v[:, None].repeat(1, 2),
        action=v[:, None],
    )


def test_replay_ring_buffer_overwrites_oldest_and_round_trips():
    buffer = ReplayBuffer(5, torch.device("cpu"))
    buffer.push(make_batch(0, 3))
    buffer.push(make_batch(3, 3))  # wraps: 5 overwrites slot 0
    assert len(buffer) == 5
    assert sorted(buffer.storage["reward"].tolist()) == [1, 2, 3, 4, 5]
    copy = ReplayBuffer(5, torch.device("cpu"))
    copy.load_state_dict(buffer.state_dict())
    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    assert torch.equal(buffer.sample(8, g1).reward, copy.sample(8, g2).reward)
    with pytest.raises(ValueError, match="capacity"):
        ReplayBuffer(4, torch.device("cpu")).load_state_dict(buffer.state_dict())
