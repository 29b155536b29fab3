"""Beam decoding over the SID prefix tree: agreement with exhaustive scoring, exploration."""

from __future__ import annotations

import pytest
import torch

from hsrl.agents import Catalogue, EnvSpec, HSRLAgent, HSRLConfig
from hsrl.errors import ConfigError
from hsrl.nets import StateEncoderConfig
from hsrl.nets.hierarchical_policy import item_log_probs
from hsrl.sid import build_sid_index
from hsrl.sid.beam import beam_sample, beam_search
from hsrl.slate import greedy_slate, sample_slate

LEVELS, CODES, K = 3, 8, 6


def random_index(num_items: int = 300, levels: int = LEVELS, codes: int = CODES, seed: int = 0):
    """A real SID index (k-means + collision policy) over random features: a sparse tree."""
    g = torch.Generator().manual_seed(seed)
    features = torch.randn(num_items + 1, 8, generator=g)
    features[0] = 0
    index, _ = build_sid_index(features, levels, codes, seed=seed, n_init=1)
    return index


def random_log_probs(batch: int, levels: int = LEVELS, codes: int = CODES, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return torch.log_softmax(2.0 * torch.randn(batch, levels, codes, generator=g), dim=-1)


def exhaustive_top(log_probs, index, k=K):
    return greedy_slate(item_log_probs(log_probs, index.item_sid, index.live), k)


def test_a_wide_beam_returns_the_exhaustive_greedy_slate_in_order():
    index = random_index()
    log_probs = random_log_probs(64)
    wide = CODES ** (LEVELS - 1)  # at least the number of prefixes of any level below L
    found = beam_search(log_probs, index, K, wide)
    assert torch.equal(found.items, exhaustive_top(log_probs, index))
    assert bool(found.exact.all())
    # The scores are the items' summed token log-probabilities, best first.
    tokens = index.item_sid[found.items]  # (B, K, L)
    expected = log_probs.gather(2, tokens.transpose(1, 2)).sum(1)  # (B, K)
    assert torch.allclose(found.scores, expected, atol=1e-5)
    assert torch.equal(found.sid, tokens)


def test_a_narrow_beam_is_flagged_exact_only_when_it_is():
    index = random_index()
    log_probs = random_log_probs(256, seed=3)
    found = beam_search(log_probs, index, K, K)
    exhaustive = exhaustive_top(log_probs, index)
    same = (found.items == exhaustive).all(dim=1)
    assert bool(same[found.exact].all())  # the certificate never lies
    assert bool(found.exact.any()) and not bool(same.all())  # a narrow beam can miss items
    # Whatever it returns are K distinct live items.
    assert bool(index.live[found.items].all())
    assert all(len(set(row.tolist())) == K for row in found.items)


def test_a_beam_of_k_is_exact_on_a_full_tree():
    index = random_index(num_items=4**3, levels=3, codes=4)  # every SID taken
    assert index.num_live == 4**3
    log_probs = random_log_probs(64, levels=3, codes=4, seed=5)
    found = beam_search(log_probs, index, K, K)
    assert torch.equal(found.items, exhaustive_top(log_probs, index))
    assert bool(found.exact.all())


def test_beam_follows_the_catalogue_after_items_are_retired_and_added():
    index = random_index()
    log_probs = random_log_probs(64, seed=7)
    before = exhaustive_top(log_probs, index)
    retired = torch.unique(before[:, 0])  # every user's favourite leaves
    index.retire_items(retired)
    g = torch.Generator().manual_seed(9)
    new_ids = index.add_items(torch.randn(40, 8, generator=g))
    found = beam_search(log_probs, index, K, CODES ** (LEVELS - 1))
    assert torch.equal(found.items, exhaustive_top(log_probs, index))
    assert not bool(torch.isin(found.items, retired).any())
    assert bool(torch.isin(found.items, new_ids).any())  # new items are reachable at once
    sampled = beam_sample(log_probs, index, K, K, torch.Generator().manual_seed(0))
    assert not bool(torch.isin(sampled.items, retired).any())
    assert bool(index.live[sampled.items].all())


@pytest.mark.parametrize("epsilon", [0.0, 0.3])
def test_sampled_beam_gives_k_distinct_live_items_with_their_sids(epsilon):
    index = random_index()
    index.retire_items(torch.arange(1, 301, 3))
    log_probs = random_log_probs(128, seed=11)
    found = beam_sample(log_probs, index, K, K, torch.Generator().manual_seed(1), epsilon)
    assert found.items.shape == (128, K)
    assert bool(index.live[found.items].all())
    assert all(len(set(row.tolist())) == K for row in found.items)
    assert torch.equal(index.item_sid[found.items], found.sid)
    again = beam_sample(log_probs, index, K, K, torch.Generator().manual_seed(1), epsilon)
    assert torch.equal(found.items, again.items)  # seeded
    other = beam_sample(log_probs, index, K, K, torch.Generator().manual_seed(2), epsilon)
    assert not torch.equal(found.items, other.items)  # and random


def test_sampled_beam_draws_items_without_replacement_like_exhaustive_sampling_on_a_full_tree():
    """On a full tree the tree's law is P(i | s): stochastic beam search and Gumbel-top-k over
    all items must give the same inclusion and first-draw frequencies."""
    index = random_index(num_items=16, levels=2, codes=4)
    assert index.num_live == 16
    draws, k = 20_000, 3
    log_probs = random_log_probs(1, levels=2, codes=4, seed=13).expand(draws, -1, -1)
    beam = beam_sample(log_probs, index, k, k, torch.Generator().manual_seed(3)).items
    scores = item_log_probs(log_probs, index.item_sid, index.live)
    flat = sample_slate(scores, k, torch.Generator().manual_seed(4))
    for a, b in ((beam, flat), (beam[:, :1], flat[:, :1])):
        freq_a = torch.bincount(a.flatten(), minlength=17).float() / draws
        freq_b = torch.bincount(b.flatten(), minlength=17).float() / draws
        assert (freq_a - freq_b).abs().max() < 0.025
    # The first draw follows P(i | s) itself.
    first = torch.bincount(beam[:, 0], minlength=17).float() / draws
    assert (first - scores[0].exp()).abs().max() < 0.02


def test_beam_rejects_a_beam_narrower_than_the_slate():
    index = random_index()
    with pytest.raises(ConfigError, match="beam_width"):
        beam_search(random_log_probs(2), index, K, K - 1)


def make_agent(decoding: str, index, slate: int = K, beam_width: int = 64) -> HSRLAgent:
    torch.manual_seed(0)
    features = torch.randn(index.num_items + 1, 6, generator=torch.Generator().manual_seed(2))
    features[0] = 0
    spec = EnvSpec(
        num_items=index.num_items, item_dim=6, profile_dim=3, history_length=4, slate_size=slate
    )
    config = HSRLConfig(
        encoder=StateEncoderConfig(dim=8, heads=2, feedforward=16),
        decoding=decoding,
        beam_width=beam_width,
    )
    return HSRLAgent(config, spec, Catalogue(features, sid=index)).eval()


def test_hsrl_agent_with_beam_decoding_acts_like_exhaustive_decoding():
    index = random_index()
    beam, exhaustive = make_agent("beam", index), make_agent("exhaustive", index)
    exhaustive.load_state_dict(beam.state_dict())
    g = torch.Generator().manual_seed(4)
    obs = {
        "history": torch.randint(0, 301, (32, 4), generator=g),
        "user_profile": torch.zeros(32, 3),
    }
    a, b = (
        beam.act(obs, explore=False, generator=None),
        exhaustive.act(obs, explore=False, generator=None),
    )
    assert torch.equal(a.slate, b.slate) and torch.equal(a.record, b.record)
    explored = beam.act(obs, explore=True, generator=torch.Generator().manual_seed(0))
    assert bool(index.live[explored.slate].all())
    assert all(len(set(row.tolist())) == K for row in explored.slate)
    assert torch.equal(explored.record.view(32, K, LEVELS), index.item_sid[explored.slate])


def test_hsrl_config_checks_the_decoding():
    with pytest.raises(ValueError, match="decoding"):
        HSRLConfig(decoding="nucleus")
    with pytest.raises(ConfigError, match="beam_width"):
        make_agent("beam", random_index(), slate=K, beam_width=K - 1)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_beam_on_cuda_matches_cpu():
    index = random_index()
    log_probs = random_log_probs(64, seed=17)
    on_gpu = index.to("cuda")
    wide = CODES ** (LEVELS - 1)
    cpu = beam_search(log_probs, index, K, wide)
    gpu = beam_search(log_probs.cuda(), on_gpu, K, wide)
    assert torch.equal(cpu.items, gpu.items.cpu()) and bool(gpu.exact.all())
    sampled = beam_sample(log_probs.cuda(), on_gpu, K, K, torch.Generator("cuda").manual_seed(0))
    assert sampled.items.device.type == "cuda"
    assert bool(on_gpu.live[sampled.items].all())
    assert all(len(set(row.tolist())) == K for row in sampled.items.cpu())
