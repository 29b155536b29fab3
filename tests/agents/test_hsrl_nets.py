"""The HSRL networks and update rule, checked on tiny hand-made inputs."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from hsrl.agents import Catalogue, EnvSpec, HSRLAgent, HSRLConfig
from hsrl.nets import HierarchicalPolicy, MultiLevelCritic, StateEncoder, StateEncoderConfig
from hsrl.nets.hierarchical_policy import item_log_probs, token_log_probs
from hsrl.replay import Batch

LEVELS, CODES, DIM = 3, 4, 8


def tiny_sid(num_items: int = 10) -> SimpleNamespace:
    """A one-to-one SID table: item i (1..N) gets the base-CODES digits of i - 1."""
    ids = torch.arange(num_items)
    digits = torch.stack([(ids // CODES**p) % CODES for p in reversed(range(LEVELS))], dim=1)
    item_sid = torch.cat([torch.full((1, LEVELS), -1), digits], dim=0)
    live = torch.ones(num_items + 1, dtype=torch.bool)
    live[0] = False
    return SimpleNamespace(
        levels=LEVELS, codes=CODES, item_sid=item_sid, live=live, num_items=num_items
    )


def test_policy_shapes_and_item_probabilities_sum_to_one_over_live_items():
    torch.manual_seed(0)
    policy = HierarchicalPolicy(DIM, LEVELS, CODES)
    out = policy(torch.randn(5, DIM))
    assert out.log_probs.shape == (5, LEVELS, CODES)
    assert out.contexts.shape == (5, LEVELS + 1, DIM)
    assert torch.allclose(out.log_probs.exp().sum(-1), torch.ones(5, LEVELS))
    sid = tiny_sid(10)
    live = sid.live.clone()
    live[[3, 7]] = False  # retired items get probability zero
    logp = item_log_probs(out.log_probs, sid.item_sid, live)
    probs = logp.exp()
    assert torch.allclose(probs.sum(-1), torch.ones(5), atol=1e-5)
    assert (probs[:, [0, 3, 7]] == 0).all()


def test_item_probability_is_the_product_of_token_probabilities():
    torch.manual_seed(1)
    out = HierarchicalPolicy(DIM, LEVELS, CODES)(torch.randn(2, DIM))
    # With all 64 codes present as items, renormalisation is the identity.
    sid = tiny_sid(CODES**LEVELS)
    logp = item_log_probs(out.log_probs, sid.item_sid, sid.live)
    item = 23
    z = sid.item_sid[item]
    expected = sum(out.log_probs[:, level, z[level]] for level in range(LEVELS))
    assert torch.allclose(logp[:, item], expected, atol=1e-5)


def test_residual_context_follows_the_equations():
    torch.manual_seed(2)
    policy = HierarchicalPolicy(DIM, LEVELS, CODES, temperature=0.5)
    s = torch.randn(3, DIM)
    out = policy(s)
    c = s
    for level in range(LEVELS):
        p = torch.softmax(policy.heads[level](c) / 0.5, dim=-1)
        assert torch.allclose(out.log_probs[:, level].exp(), p, atol=1e-6)
        c = policy.norms[level](c - p @ policy.token_embeddings[level].weight)
        assert torch.allclose(out.contexts[:, level + 1], c, atol=1e-5)


def test_gradients_reach_every_level_through_the_residual_chain():
    torch.manual_seed(3)
    policy = HierarchicalPolicy(DIM, LEVELS, CODES)
    s = torch.randn(4, DIM, requires_grad=True)
    out = policy(s)
    # A loss on the last level only must still train the earlier levels' heads and embeddings.
    out.log_probs[:, -1, 0].sum().backward()
    for level in range(LEVELS - 1):
        assert policy.heads[level].weight.grad.abs().sum() > 0
        assert policy.token_embeddings[level].weight.grad.abs().sum() > 0
    assert s.grad.abs().sum() > 0


def test_no_residual_ablation_reads_c0_at_every_level():
    policy = HierarchicalPolicy(DIM, LEVELS, CODES, residual="none")
    s = torch.randn(2, DIM)
    out = policy(s)
    assert all(torch.equal(out.contexts[:, level], s) for level in range(LEVELS + 1))


def test_multi_level_critic_combines_level_values_with_softmax_weights():
    torch.manual_seed(4)
    critic = MultiLevelCritic(DIM, LEVELS, hidden=(16,), dropout=0.0)
    contexts = torch.randn(6, LEVELS + 1, DIM)
    with torch.no_grad():
        critic.omega.copy_(torch.tensor([0.0, 1.0, 2.0, -1.0]))
    per_level = torch.stack([critic.value(contexts[:, i]) for i in range(LEVELS + 1)], dim=1)
    w = torch.softmax(torch.tensor([0.0, 1.0, 2.0, -1.0]), 0)
    assert torch.allclose(critic(contexts), (per_level * w).sum(-1), atol=1e-6)
    assert torch.allclose(critic.weights.sum(), torch.tensor(1.0))
    assert critic.omega.requires_grad
    frozen = MultiLevelCritic(DIM, LEVELS, learn_weights=False)
    assert not frozen.omega.requires_grad
    assert torch.allclose(frozen.weights, torch.full((LEVELS + 1,), 0.25))


def test_token_log_probs_gathers_each_level():
    log_probs = torch.log_softmax(torch.randn(2, LEVELS, CODES), -1)
    tokens = torch.tensor([[[0, 1, 2], [3, 3, 3]], [[1, 0, 0], [2, 2, 1]]])
    got = token_log_probs(log_probs, tokens)
    for b in range(2):
        for k in range(2):
            for level in range(LEVELS):
                assert got[b, k, level] == log_probs[b, level, tokens[b, k, level]]


def test_state_encoder_handles_empty_histories_and_is_causal_over_padding():
    torch.manual_seed(5)
    features = torch.randn(11, 6)
    features[0] = 0
    enc = StateEncoder(StateEncoderConfig(dim=DIM, heads=2, dropout=0.0), 6, 5, 3).eval()
    history = torch.tensor([[0, 0, 0, 0, 0], [0, 0, 1, 2, 3]])
    state = enc(history, torch.zeros(2, 3), features)
    assert state.shape == (2, DIM) and torch.isfinite(state).all()
    # Changing the features of padding-masked history slots' items does not matter: only the
    # real items (1, 2, 3) and the last position are attended to.
    other = history.clone()
    other[1, :2] = 0
    assert torch.allclose(enc(other, torch.zeros(2, 3), features), state, atol=1e-6)


@pytest.mark.parametrize("hidden", [0, 7])
def test_state_encoder_adds_the_profile_through_a_linear_map_or_an_mlp(hidden):
    torch.manual_seed(6)
    features = torch.randn(11, 6)
    features[0] = 0
    config = StateEncoderConfig(
        dim=DIM, heads=2, dropout=0.0, use_profile=True, profile_hidden=hidden
    )
    enc = StateEncoder(config, 6, 5, 3).eval()
    blind = StateEncoder(StateEncoderConfig(dim=DIM, heads=2, dropout=0.0), 6, 5, 3).eval()
    blind.load_state_dict(enc.state_dict(), strict=False)
    history = torch.tensor([[0, 0, 1, 2, 3], [0, 0, 1, 2, 3]])
    profile = torch.tensor([[0.0, 1.0, 2.0], [3.0, 0.0, 1.0]])
    state = enc(history, profile, features)
    # The state is the history's state plus the profile term, which follows the config.
    term = state - blind(history, profile, features)
    if hidden:
        first, _, last = enc.profile_proj
        assert first.out_features == hidden
        expected = last(torch.relu(first(profile)))
    else:
        expected = enc.profile_proj(profile)
    assert torch.allclose(term, expected, atol=1e-5)
    assert not torch.allclose(state[0], state[1])  # same history, other profiles
    with pytest.raises(ValueError, match="profile_hidden"):
        StateEncoderConfig(profile_hidden=-1)


def make_agent(config: HSRLConfig, num_items: int = 10, slate: int = 2) -> HSRLAgent:
    features = torch.randn(num_items + 1, 6)
    features[0] = 0
    spec = EnvSpec(
        num_items=num_items, item_dim=6, profile_dim=3, history_length=4, slate_size=slate
    )
    return HSRLAgent(config, spec, Catalogue(features, sid=tiny_sid(num_items)))


def tiny_batch(agent: HSRLAgent, n: int = 4) -> Batch:
    g = torch.Generator().manual_seed(0)
    history = torch.randint(0, 11, (n, 4), generator=g)
    slate = torch.stack([torch.randperm(10, generator=g)[:2] + 1 for _ in range(n)])
    tokens = agent.catalogue.sid.item_sid[slate].flatten(1)
    return Batch(
        user_profile=torch.randn(n, 3, generator=g),
        history=history,
        slate=slate,
        response=torch.ones(n, 2),
        reward=torch.tensor([1.0, 0.0, 0.5, -0.2]),
        terminated=torch.tensor([0.0, 1.0, 0.0, 1.0]),
        next_user_profile=torch.randn(n, 3, generator=g),
        next_history=torch.randint(0, 11, (n, 4), generator=g),
        action=tokens,
    )


def dropout_free_config(**changes) -> HSRLConfig:
    """A small HSRL config without dropout, so updates can be checked by hand."""
    encoder = StateEncoderConfig(dim=DIM, heads=2, dropout=0.0)
    return HSRLConfig(encoder=encoder, critic_dropout=0.0, critic_hidden=(16,), **changes)


@torch.no_grad()
def hand_values(agent: HSRLAgent, batch: Batch):
    """Policy output, V(s) and the TD target y = r + gamma (1 - done) V_target(s'), by hand."""
    obs = {"history": batch.history, "user_profile": batch.user_profile}
    nobs = {"history": batch.next_history, "user_profile": batch.next_user_profile}
    out = agent.policy(agent._state(obs, agent.encoder))
    v = agent.critic(out.contexts)
    nv = agent.target["critic"](
        agent.target["policy"](agent._state(nobs, agent.target["encoder"])).contexts
    )
    return out, v, batch.reward + agent.config.gamma * (1 - batch.terminated) * nv


def test_hsrl_losses_match_a_hand_computation():
    torch.manual_seed(6)
    agent = make_agent(dropout_free_config(gamma=0.9, entropy_coef=0.1))
    batch = tiny_batch(agent)
    out, v, y = hand_values(agent, batch)
    with torch.no_grad():
        critic_loss = ((v - y) ** 2).mean()
        adv = (y - v).clamp(-1, 1)
        tokens = batch.action.view(4, 2, LEVELS)
        nll = torch.zeros(4)
        for b in range(4):
            for k in range(2):
                nll[b] -= sum(out.log_probs[b, lv, tokens[b, k, lv]] for lv in range(LEVELS)) / 2
        p = out.log_probs.exp()
        entropy = -(p * out.log_probs).sum((1, 2))
        actor_loss = (adv * nll).mean() - 0.1 * entropy.mean()
    agent.train()
    metrics = agent.update(batch)
    assert torch.allclose(metrics["loss/critic"], critic_loss, atol=1e-5)
    assert torch.allclose(metrics["loss/actor"], actor_loss, atol=1e-5)


@pytest.mark.parametrize("residual", ["soft", "sampled"])
def test_item_log_prob_actor_loss_uses_the_renormalised_item_distribution(residual):
    torch.manual_seed(11)
    agent = make_agent(
        dropout_free_config(entropy_coef=0.0, residual=residual, actor_log_prob="items")
    )
    batch = tiny_batch(agent)
    retired = int(batch.slate[0, 0])
    agent.catalogue.live[retired] = False  # shown when stored, retired since
    _, v, y = hand_values(agent, batch)
    with torch.no_grad():
        obs = {"history": batch.history, "user_profile": batch.user_profile}
        scores = agent.item_scores(obs)  # what acting samples from, (B, N + 1)
        adv = (y - v).clamp(-1, 1)
        nll = torch.stack(
            [
                -torch.stack([scores[b, i] for i in batch.slate[b] if int(i) != retired]).mean()
                for b in range(4)
            ]
        )
    assert torch.allclose(scores.exp().sum(-1), torch.ones(4), atol=1e-5)
    agent.train()
    metrics = agent.update(batch)
    assert torch.isfinite(metrics["loss/actor"])
    assert torch.allclose(metrics["loss/actor"], (adv * nll).mean(), atol=1e-5)
    with pytest.raises(ValueError, match="actor_log_prob"):
        HSRLConfig(actor_log_prob="slates")


def test_reference_bootstrap_flag_uses_done_instead_of_one_minus_done():
    torch.manual_seed(7)
    base = HSRLConfig(encoder=StateEncoderConfig(dim=DIM, heads=2, dropout=0.0), critic_dropout=0.0)
    a = make_agent(base)
    b = make_agent(HSRLConfig(**{**base.__dict__, "reference_bootstrap": True}))
    b.load_state_dict(a.state_dict())
    batch = tiny_batch(a)
    batch.terminated = torch.zeros(4)  # no terminal: (1 - done) keeps V', the reference drops it
    la = a.update(batch)["loss/critic"]
    lb = b.update(batch)["loss/critic"]
    assert not torch.allclose(la, lb)


def test_act_returns_distinct_live_items_with_their_tokens():
    torch.manual_seed(8)
    agent = make_agent(HSRLConfig(encoder=StateEncoderConfig(dim=DIM, heads=2)), slate=3)
    agent.catalogue.live[5] = False
    obs = {"history": torch.randint(0, 11, (16, 4)), "user_profile": torch.randn(16, 3)}
    for explore in (False, True):
        action = agent.act(obs, explore=explore, generator=torch.Generator().manual_seed(0))
        assert action.slate.shape == (16, 3)
        assert (action.slate != 5).all() and (action.slate > 0).all()
        assert all(len(set(row.tolist())) == 3 for row in action.slate)
        assert torch.equal(
            action.record.view(16, 3, LEVELS), agent.catalogue.sid.item_sid[action.slate]
        )


def test_hsrl_needs_semantic_ids():
    from hsrl.errors import ConfigError

    spec = EnvSpec(num_items=3, item_dim=2, profile_dim=1, history_length=2, slate_size=1)
    with pytest.raises(ConfigError, match="semantic IDs"):
        HSRLAgent(HSRLConfig(), spec, Catalogue(torch.zeros(4, 2)))


def test_sampled_residual_scores_items_along_their_own_prefix():
    torch.manual_seed(9)
    from hsrl.nets.hierarchical_policy import PrefixPaths

    policy = HierarchicalPolicy(DIM, LEVELS, CODES, residual="sampled")
    sid = tiny_sid(20)
    live = sid.live.clone()
    live[4] = False
    s = torch.randn(3, DIM)
    logp = policy.tree_item_log_probs(s, PrefixPaths.build(sid.item_sid, live), live)
    assert torch.allclose(logp.exp().sum(-1), torch.ones(3), atol=1e-5)
    assert (logp[:, [0, 4]] == float("-inf")).all()
    # Unnormalised score of item i = sum_l log p_l(z_l | s, z_<l), computed by teacher forcing.
    tokens = sid.item_sid[1:].clamp(min=0).unsqueeze(0).expand(3, -1, -1)  # (3, 20, L)
    path = policy.path_log_probs(s, tokens)
    raw = path.gather(-1, tokens.unsqueeze(-1)).squeeze(-1).sum(-1)  # (3, 20)
    raw[:, 3] = float("-inf")  # item 4 is retired
    assert torch.allclose(logp[:, 1:], torch.log_softmax(raw, -1), atol=1e-5)
    # The level-2 distribution depends on the level-1 token chosen.
    a = policy.path_log_probs(s[:1], torch.tensor([[[0, 0, 0]]]))[0, 0, 1]
    b = policy.path_log_probs(s[:1], torch.tensor([[[1, 0, 0]]]))[0, 0, 1]
    assert not torch.allclose(a, b)


def test_sampled_residual_agent_acts_and_learns():
    torch.manual_seed(10)
    agent = make_agent(HSRLConfig(encoder=StateEncoderConfig(dim=DIM, heads=2), residual="sampled"))
    obs = {"history": torch.randint(0, 11, (5, 4)), "user_profile": torch.randn(5, 3)}
    action = agent.act(obs, explore=True, generator=torch.Generator().manual_seed(0))
    assert all(len(set(row.tolist())) == 2 for row in action.slate)
    before = [p.detach().clone() for p in agent.policy.parameters()]
    metrics = agent.update(tiny_batch(agent))
    assert torch.isfinite(metrics["loss/actor"])
    assert any(not torch.equal(a, b) for a, b in zip(before, agent.policy.parameters()))


def test_item_credit_adds_each_items_share_to_the_slate_advantage():
    from hsrl.simulator.rewards import get_reward

    torch.manual_seed(12)
    agent = make_agent(dropout_free_config(entropy_coef=0.0, item_credit=2.0))
    batch = tiny_batch(agent)
    batch.response = torch.tensor([[1.0, 0.0], [0.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    out, v, y = hand_values(agent, batch)
    with torch.no_grad():
        adv = (y - v).clamp(-1, 1)
        share = batch.response - batch.response.mean(dim=1, keepdim=True)
        tokens = batch.action.view(4, 2, LEVELS)
        item_nll = -torch.stack(
            [
                torch.stack(
                    [
                        sum(out.log_probs[b, lv, tokens[b, k, lv]] for lv in range(LEVELS))
                        for k in range(2)
                    ]  # fmt: skip
                )
                for b in range(4)
            ]
        )
        expected = ((adv.unsqueeze(1) + 2.0 * share) * item_nll).mean(dim=1).mean()
    agent.train()
    assert torch.allclose(agent.update(batch)["loss/actor"], expected, atol=1e-5)
    # The marginal share follows the reward's shape: under the RL4RS sweet point, with 9 of 9
    # clicks every click lowers the reward (r(9) - r(8) < 0); with 8, the one miss helps.
    marginal = make_agent(HSRLConfig(item_credit=1.0, item_credit_mode="marginal"), slate=9)
    marginal.reward_fn = get_reward("rl4rs")
    shares = marginal._item_shares(torch.tensor([[1.0] * 9, [1.0] * 8 + [0.0]]))
    assert torch.allclose(shares[0], torch.full((9,), 0.9 - (1 - abs(7.9 / 9 - 0.9))), atol=1e-5)
    assert shares[1, 8] > 0 and shares[1, 0] > shares[1, 8]
    with pytest.raises(ValueError, match="item_credit_mode"):
        HSRLConfig(item_credit_mode="slate")


def test_per_slot_chains_fill_each_slot_from_its_own_distribution():
    torch.manual_seed(13)
    agent = make_agent(dropout_free_config(per_slot=True, item_credit=1.0), slate=3)
    agent.catalogue.live[4] = False
    obs = {"history": torch.randint(0, 11, (16, 4)), "user_profile": torch.randn(16, 3)}
    scores = agent.item_scores(obs)
    assert scores.shape == (16, 3, 11)  # one item distribution per slot
    assert torch.allclose(scores.exp().sum(-1), torch.ones(16, 3), atol=1e-5)
    greedy = agent.act(obs, explore=False, generator=None).slate
    assert torch.equal(greedy[:, 0], scores[:, 0].argmax(dim=-1))  # slot 1: its own best item
    for explore in (False, True):
        slate = agent.act(obs, explore=explore, generator=torch.Generator().manual_seed(0)).slate
        assert (slate != 4).all() and (slate > 0).all()
        assert all(len(set(row.tolist())) == 3 for row in slate)
    batch = tiny_batch(agent)
    batch.slate = torch.stack([torch.randperm(10)[:3] + 1 for _ in range(4)])
    batch.action = agent.catalogue.sid.item_sid[batch.slate].flatten(1)
    batch.response = torch.ones(4, 3)
    agent.train()
    metrics = agent.update(batch)
    assert torch.isfinite(metrics["loss/actor"]) and "policy/code_usage_l1" in metrics
    with pytest.raises(ValueError, match="per_slot"):
        HSRLConfig(per_slot=True, residual="sampled")


def test_behavior_loss_raises_the_clicked_items_under_the_acting_distribution():
    torch.manual_seed(14)
    agent = make_agent(dropout_free_config(entropy_coef=0.0, behavior_coef=0.5))
    plain = HSRLAgent(dropout_free_config(entropy_coef=0.0), agent.spec, agent.catalogue)
    plain.load_state_dict(agent.state_dict())
    batch = tiny_batch(agent)
    batch.response = torch.tensor([[1.0, 0.0], [0.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    with torch.no_grad():
        obs = {"history": batch.history, "user_profile": batch.user_profile}
        scores = agent.item_scores(obs)  # log P(item | s), (B, N + 1)
        shown = scores.gather(1, batch.slate)
        clicks = batch.response.sum(dim=1).clamp(min=1)
        expected = (-(batch.response * shown).sum(dim=1) / clicks).mean()
    agent.train()
    plain.train()
    metrics = agent.update(batch)
    assert torch.allclose(metrics["loss/behavior"], expected, atol=1e-5)
    base = plain.update(batch)["loss/actor"]
    assert torch.allclose(metrics["loss/actor"], base + 0.5 * expected, atol=1e-5)

    with pytest.raises(ValueError, match="behavior_coef"):
        HSRLConfig(behavior_coef=-1.0)


def test_tree_contexts_match_each_items_path_contexts():
    torch.manual_seed(15)
    from hsrl.nets.hierarchical_policy import PrefixPaths

    policy = HierarchicalPolicy(DIM, LEVELS, CODES, residual="sampled")
    sid = tiny_sid(10)
    live = sid.live.clone()
    live[5] = False
    state = torch.randn(3, DIM)
    tree = policy.tree_contexts(state, PrefixPaths.build(sid.item_sid, live))
    items = torch.tensor([1, 2, 9, 10])
    path = policy.path_contexts(state, sid.item_sid[items].unsqueeze(0).expand(3, -1, -1))
    assert tree.shape == (3, 11, LEVELS + 1, DIM)
    assert torch.allclose(tree[:, items], path, atol=1e-5)
    assert torch.allclose(path[:, :, 0], state.unsqueeze(1).expand(3, 4, DIM))


def test_item_critic_learns_clicks_and_pulls_the_policy_towards_them():
    torch.manual_seed(16)
    config = dropout_free_config(
        entropy_coef=0.0, residual="sampled", item_critic_coef=1.0, item_critic_lr=1e-2
    )
    agent = make_agent(config)
    batch = tiny_batch(agent)
    # Item 1 is always clicked and item 2 never, whoever the user.
    batch.slate = torch.tensor([[1, 2]] * 4)
    batch.action = agent.catalogue.sid.item_sid[batch.slate].flatten(1)
    batch.response = torch.tensor([[1.0, 0.0]] * 4)
    obs = {"history": batch.history, "user_profile": batch.user_profile}
    agent.train()
    first = agent.update(batch)
    for _ in range(150):
        last = agent.update(batch)
    assert last["loss/item_critic"] < 0.5 * first["loss/item_critic"]
    agent.eval()
    with torch.no_grad():
        scores = agent.item_scores(obs)
    assert (scores[:, 1] > scores[:, 2]).all()
    assert set(agent.optimizers()) == {"actor", "critic", "item_critic"}
    with pytest.raises(ValueError, match="item_critic_coef"):
        HSRLConfig(item_critic_coef=-1.0)
    with pytest.raises(ValueError, match="item_critic_coef"):
        HSRLConfig(item_critic_coef=1.0, per_slot=True)
    with pytest.raises(ValueError, match="item_critic_lr"):
        HSRLConfig(item_critic_lr=0.0)
    with pytest.raises(ValueError, match="item_critic_hidden"):
        HSRLConfig(item_critic_hidden=(64, 0))


def test_critic_assembly_shows_the_candidate_of_highest_expected_reward():
    from hsrl.agents.reference import candidate_slates, count_reward, expected_reward
    from hsrl.simulator.rewards import get_reward

    torch.manual_seed(17)
    config = dropout_free_config(residual="sampled", item_critic_coef=1.0, slate_assembly="critic")
    agent = make_agent(config, slate=3)
    agent.reward_fn = get_reward("rl4rs")
    agent.eval()
    obs = {"history": torch.randint(0, 11, (6, 4)), "user_profile": torch.randn(6, 3)}
    slate = agent.act(obs, explore=False, generator=None).slate
    with torch.no_grad():
        state = agent._state(obs, agent.encoder)
        scores = agent._item_log_probs(state)
        q = agent._item_values(state)
    cands = candidate_slates(scores, agent.item_slot_bias.detach())
    probs = torch.sigmoid(q.unsqueeze(1).expand(-1, cands.shape[1], -1).gather(2, cands))
    values = expected_reward(probs, count_reward(agent.reward_fn, 3, probs.device))
    best = cands[torch.arange(6), values.argmax(dim=1)]
    assert torch.equal(slate, best)
    assert all(len(set(row.tolist())) == 3 for row in slate)
    explored = agent.act(obs, explore=True, generator=torch.Generator().manual_seed(1)).slate
    assert (explored > 0).all() and all(len(set(row.tolist())) == 3 for row in explored)
    with pytest.raises(ValueError, match="slate_assembly"):
        HSRLConfig(slate_assembly="critic")


def test_logged_item_critic_loss_skips_items_retired_since_the_logs():
    torch.manual_seed(17)
    config = dropout_free_config(residual="sampled", item_critic_coef=1.0, logged_coef=1.0)
    agent = make_agent(config)
    logged = tiny_batch(agent)
    logged.slate = torch.tensor([[1, 2]] * 4)
    logged.response = torch.tensor([[1.0, 0.0]] * 4)
    replay = tiny_batch(agent)  # replay holds the tokens stored when it was shown
    agent.train()
    before = agent._logged_item_critic_loss(logged)
    # Retire item 2: its logged exposures no longer count, and nothing indexes a freed SID.
    agent.catalogue.sid.item_sid[2] = -1  # what SidTable.retire_items leaves
    agent.catalogue.sid.live[2] = False
    after = agent._logged_item_critic_loss(logged)
    assert torch.isfinite(after)
    assert not torch.allclose(before, after)
    metrics = agent.update(replay, logged=logged)
    assert torch.isfinite(metrics["loss/item_critic_logged"])
