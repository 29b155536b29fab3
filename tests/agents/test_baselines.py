"""The baseline agents (DDPG, BehaviorDDPG, HAC, offline supervised, flat A2C) on tiny inputs."""

from __future__ import annotations

import math

import pytest
import torch

from hsrl.agents import AGENTS, Catalogue, EnvSpec, agent_config, build_agent
from hsrl.agents.ddpg import batch_next_obs, batch_obs
from hsrl.errors import ConfigError
from hsrl.replay import Batch

NUM_ITEMS, ITEM_DIM, PROFILE_DIM, HISTORY, SLATE, DIM = 12, 6, 3, 4, 3, 8
BASELINES = ["ddpg", "behavior_ddpg", "hac", "supervised", "a2c_flat"]
LATENT = ["ddpg", "behavior_ddpg", "hac", "supervised"]
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def tiny_config(name: str, **overrides):
    values = {"encoder": {"dim": DIM, "heads": 2, "feedforward": 16, "layers": 2, "dropout": 0.0}}
    if name != "supervised":
        values.update(critic_hidden=[16], critic_dropout=0.0)
    values.update(overrides)
    return agent_config(name, values)


def item_features(num_items: int = NUM_ITEMS, seed: int = 0) -> torch.Tensor:
    features = torch.randn(num_items + 1, ITEM_DIM, generator=torch.Generator().manual_seed(seed))
    features[0] = 0
    return features


def make_agent(name: str, device: str = "cpu", seed: int = 0, **overrides):
    torch.manual_seed(seed)
    spec = EnvSpec(
        num_items=NUM_ITEMS,
        item_dim=ITEM_DIM,
        profile_dim=PROFILE_DIM,
        history_length=HISTORY,
        slate_size=SLATE,
    )
    catalogue = Catalogue(item_features().to(device))
    return build_agent(name, tiny_config(name, **overrides), spec, catalogue).to(device)


def tiny_obs(n: int, device: str = "cpu", seed: int = 1) -> dict[str, torch.Tensor]:
    """Histories left-padded with 0 as the environment keeps them, lengths 0..H (first row: 0)."""
    g = torch.Generator().manual_seed(seed)
    items = torch.randint(1, NUM_ITEMS + 1, (n, HISTORY), generator=g)
    length = torch.randint(0, HISTORY + 1, (n, 1), generator=g)
    length[0] = 0
    history = items.masked_fill(torch.arange(HISTORY) < HISTORY - length, 0)
    return {
        "history": history.to(device),
        "user_profile": torch.randn(n, PROFILE_DIM, generator=g).to(device),
    }


def tiny_batch(agent, n: int = 5, seed: int = 2) -> Batch:
    """Transitions as the trainer stores them: the agent's own slates and action records."""
    device = agent.catalogue.device
    g = torch.Generator().manual_seed(seed)
    obs, next_obs = tiny_obs(n, device, seed), tiny_obs(n, device, seed + 100)
    if agent.offline:  # logged slates, zero action records
        slate = torch.rand(n, NUM_ITEMS, generator=g).argsort(dim=1)[:, :SLATE] + 1
        record = torch.zeros(n, 1)
    else:
        action = agent.act(obs, explore=True, generator=torch.Generator(device).manual_seed(seed))
        slate, record = action.slate.cpu(), action.record.cpu()
    return Batch(
        user_profile=obs["user_profile"],
        history=obs["history"],
        slate=slate.to(device),
        response=(torch.rand(n, SLATE, generator=g) < 0.5).float().to(device),
        reward=torch.rand(n, generator=g).to(device),
        terminated=torch.tensor([0.0, 1.0, 0.0, 0.0, 1.0][:n]).to(device),
        next_user_profile=next_obs["user_profile"],
        next_history=next_obs["history"],
        action=record.to(device),
    )


def params(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def changed(before: list[torch.Tensor], module: torch.nn.Module) -> bool:
    return any(not torch.equal(a, b) for a, b in zip(before, module.parameters()))


def grads(loss: torch.Tensor, module: torch.nn.Module) -> list[torch.Tensor | None]:
    return list(
        torch.autograd.grad(loss, list(module.parameters()), allow_unused=True, retain_graph=True)
    )


def reaches(loss: torch.Tensor, module: torch.nn.Module) -> bool:
    return any(g is not None and g.abs().sum() > 0 for g in grads(loss, module))


# --- registry and configs -----------------------------------------------------------------------
def test_every_baseline_is_registered_and_only_supervised_is_offline():
    assert set(BASELINES) <= set(AGENTS)
    for name in BASELINES:
        assert AGENTS[name].name == name
        assert AGENTS[name].offline == (name == "supervised")
        assert not AGENTS[name].requires_sid
    assert not AGENTS["hsrl"].offline


@pytest.mark.parametrize(
    "name, values, message",
    [
        ("ddpg", {"hyper_head": "conv"}, "hyper_head"),
        ("ddpg", {"explore": "boltzmann"}, "explore"),
        ("ddpg", {"noise_std": -0.1}, "noise_std"),
        ("behavior_ddpg", {"behavior_lr": -1.0}, "behavior_lr"),
        ("hac", {"alignment_slate": "logged"}, "alignment_slate"),
        ("hac", {"target_tau": 0.0}, "target_tau"),
        ("a2c_flat", {"temperature": 0.0}, "temperature"),
        ("supervised", {"actor_lr": -1e-4}, "actor_lr"),
        ("supervised", {"critic_lr": 1e-3}, "critic_lr"),
    ],
)
def test_bad_config_values_name_the_field(name, values, message):
    with pytest.raises(ConfigError, match=message):
        agent_config(name, values)


def test_reference_defaults():
    ddpg, hac = agent_config("ddpg"), agent_config("hac")
    assert (ddpg.actor_lr, ddpg.critic_lr, ddpg.weight_decay) == (1e-4, 1e-3, 1e-5)
    assert (ddpg.gamma, ddpg.target_tau, ddpg.noise_std) == (0.9, 0.01, 0.1)
    assert ddpg.hyper_head == "identity" and ddpg.critic_hidden == (256, 64)
    assert (hac.behavior_lr, hac.hyper_actor_coef) == (1e-4, 0.1)
    assert agent_config("a2c_flat").hyper_head == "linear"


# --- acting -------------------------------------------------------------------------------------
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", BASELINES)
def test_act_returns_distinct_live_items(name, device):
    agent = make_agent(name, device)
    agent.catalogue.live[[4, 9]] = False  # retired items are never recommended
    obs = tiny_obs(16, device)
    for explore in (False, True):
        generator = torch.Generator(device).manual_seed(0)
        action = agent.act(obs, explore=explore, generator=generator)
        slate = action.slate.cpu()
        assert slate.shape == (16, SLATE)
        assert ((slate >= 1) & (slate <= NUM_ITEMS)).all()
        assert not torch.isin(slate, torch.tensor([4, 9])).any()
        assert (slate.sort(dim=1).values.diff(dim=1) > 0).all()  # K distinct items per user
        if name == "a2c_flat":
            assert torch.equal(action.record, action.slate)
        else:
            assert action.record.shape == (16, DIM) and action.record.is_floating_point()


@pytest.mark.parametrize("name", BASELINES)
def test_acting_in_eval_mode_with_padded_histories_is_finite(name):
    # Evaluation acts in eval mode without gradients (PyTorch's fused attention path), the way
    # target networks always run; left padding must not turn states into NaN there.
    agent = make_agent(name)
    agent.eval()
    obs = tiny_obs(16)
    assert (obs["history"] == 0).any()
    with torch.no_grad():
        state = agent.actor.state(obs, agent.catalogue.features)
    assert torch.isfinite(state).all()
    action = agent.act(obs, explore=False, generator=None)
    assert torch.isfinite(action.record.float()).all()


def test_ddpg_explores_with_gaussian_noise_of_the_configured_std():
    agent = make_agent("ddpg", noise_std=0.3)
    obs = tiny_obs(512)
    clean = agent.act(obs, explore=False, generator=None).record
    noisy = agent.act(obs, explore=True, generator=torch.Generator().manual_seed(3)).record
    noise = noisy - clean
    assert abs(noise.std().item() - 0.3) < 0.02 and abs(noise.mean().item()) < 0.02
    # Greedy acting is deterministic and follows the scores of the noise-free Z.
    scores = agent.actor.score(clean, agent.catalogue.features, agent.catalogue.live)
    slate = agent.act(obs, explore=False, generator=None).slate
    assert torch.equal(slate, scores.topk(SLATE).indices)


def test_ddpg_sampling_exploration_keeps_slates_valid():
    agent = make_agent("ddpg", explore="sample", explore_epsilon=0.5)
    g = torch.Generator().manual_seed(0)
    slates = agent.act(tiny_obs(64), explore=True, generator=g).slate
    assert (slates.sort(dim=1).values.diff(dim=1) > 0).all() and (slates > 0).all()
    # Sampling spreads over the catalogue rather than repeating one top-K.
    assert slates.unique().numel() > SLATE


@pytest.mark.parametrize("name", BASELINES)
def test_a_changed_catalogue_is_scored_without_changing_the_network(name):
    agent = make_agent(name)
    shapes = [p.shape for p in agent.parameters()]
    bigger = item_features(NUM_ITEMS + 8, seed=5)
    live = torch.zeros(NUM_ITEMS + 9, dtype=torch.bool)
    live[NUM_ITEMS + 1 :] = True  # only the 8 new items may be shown
    agent.catalogue = Catalogue(bigger, live)
    slate = agent.act(tiny_obs(6), explore=True, generator=torch.Generator().manual_seed(0)).slate
    assert (slate > NUM_ITEMS).all()
    assert [p.shape for p in agent.parameters()] == shapes


# --- learning -----------------------------------------------------------------------------------
EXPECTED_METRICS = {
    "ddpg": {"loss/critic", "loss/actor", "value/q", "action/z_norm"},
    "behavior_ddpg": {"loss/critic", "loss/actor", "value/q", "action/z_norm", "loss/behavior"},
    "hac": {
        "loss/critic",
        "loss/actor",
        "value/q",
        "action/z_norm",
        "loss/behavior",
        "loss/hyper_actor",
    },
    "supervised": {"loss/behavior"},
    "a2c_flat": {"loss/critic", "loss/actor", "value/mean", "advantage/mean", "policy/entropy"},
}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", BASELINES)
def test_update_trains_every_optimised_parameter_and_logs_detached_scalars(name, device):
    agent = make_agent(name, device)
    agent.train()
    batch = tiny_batch(agent)
    before = {
        key: params(getattr(agent, key)) for key in ("actor", "critic") if hasattr(agent, key)
    }
    targets = dict(agent.target.named_children()) if hasattr(agent, "target") else {}
    target_before = {key: params(module) for key, module in targets.items()}
    metrics = agent.update(batch)
    assert set(metrics) == EXPECTED_METRICS[name]
    for value in metrics.values():
        assert value.dim() == 0 and not value.requires_grad and torch.isfinite(value)
    for key, snapshot in before.items():
        assert changed(snapshot, getattr(agent, key)), f"{key} did not learn"
    for key, snapshot in target_before.items():
        assert changed(snapshot, targets[key]), f"target {key} was not soft-updated"
        assert not any(p.requires_grad for p in targets[key].parameters())


@pytest.mark.parametrize("name", [n for n in BASELINES if n != "supervised"])
def test_target_networks_stay_in_eval_mode_and_are_separate_copies(name):
    agent = make_agent(name)
    agent.train()
    assert agent.actor.training and not agent.target.training
    assert all(not m.training for m in agent.target.modules())
    online = {id(p) for p in agent.parameters() if p.requires_grad}
    assert online.isdisjoint(id(p) for p in agent.target.parameters())


@pytest.mark.parametrize("name", BASELINES)
def test_training_state_round_trip_restores_the_agent(name):
    agent = make_agent(name, seed=0)
    agent.train()
    agent.update(tiny_batch(agent))
    other = make_agent(name, seed=7)
    other.load_training_state(agent.training_state())
    obs = tiny_obs(8)
    agent.eval(), other.eval()
    assert torch.equal(
        agent.act(obs, explore=False, generator=None).slate,
        other.act(obs, explore=False, generator=None).slate,
    )
    for key, opt in agent.optimizers().items():
        assert (
            other.optimizers()[key].state_dict()["state"].keys() == opt.state_dict()["state"].keys()
        )


# --- DDPG ---------------------------------------------------------------------------------------
def ddpg_hand_critic_loss(agent, batch, critic_action, reference_bootstrap=False):
    features = agent.catalogue.features
    with torch.no_grad():
        s = agent.actor.state(batch_obs(batch), features)
        q = agent.critic(s, critic_action)
        s2 = agent.target["actor"].state(batch_next_obs(batch), features)
        q2 = agent.target["critic"](s2, agent.target["actor"].hyper_action(s2))
        keep = batch.terminated if reference_bootstrap else 1 - batch.terminated
        y = batch.reward + 0.9 * keep * q2
        return ((q - y) ** 2).mean()


def test_ddpg_critic_and_actor_losses_match_a_hand_computation():
    agent = make_agent("ddpg", critic_lr=0.0)  # the actor step then sees the same critic
    agent.train()
    batch = tiny_batch(agent)
    expected_critic = ddpg_hand_critic_loss(agent, batch, batch.action)
    with torch.no_grad():
        s = agent.actor.state(batch_obs(batch), agent.catalogue.features)
        expected_actor = -agent.critic(s, s).mean()  # reference head: Z = s
    metrics = agent.update(batch)
    assert torch.allclose(metrics["loss/critic"], expected_critic, atol=1e-5)
    assert torch.allclose(metrics["loss/actor"], expected_actor, atol=1e-5)


def test_reference_bootstrap_flag_uses_done_instead_of_one_minus_done():
    agent = make_agent("ddpg", reference_bootstrap=True)
    agent.train()
    batch = tiny_batch(agent)
    expected = ddpg_hand_critic_loss(agent, batch, batch.action, reference_bootstrap=True)
    fixed = ddpg_hand_critic_loss(agent, batch, batch.action, reference_bootstrap=False)
    loss = agent.update(batch)["loss/critic"]
    assert torch.allclose(loss, expected, atol=1e-5) and not torch.allclose(loss, fixed)


def test_ddpg_critic_loss_does_not_reach_the_actor_and_actor_loss_does():
    agent = make_agent("ddpg", hyper_head="mlp", tie_item_map=False)
    agent.train()
    batch = tiny_batch(agent)
    state = agent.actor.state(batch_obs(batch), agent.catalogue.features)
    critic_loss, _ = agent.critic_loss(batch, state)
    assert all(g is None for g in grads(critic_loss, agent.actor))
    assert reaches(critic_loss, agent.critic)
    actor_loss, _ = agent.actor_loss(batch, state)
    assert reaches(actor_loss, agent.actor.encoder) and reaches(actor_loss, agent.actor.head)
    # Q does not depend on the item map: DDPG's actor loss leaves it alone.
    assert all(g is None for g in grads(actor_loss, agent.actor.item_map))


def test_actor_raises_q_through_its_action_only():
    # Reference head Z = s: were the critic's state input not detached, dQ/ds would add to the
    # gradient and the actor could raise Q by moving the critic's view of the state.
    agent = make_agent("ddpg")
    agent.train()
    batch = tiny_batch(agent)
    with torch.no_grad():
        s = agent.actor.state(batch_obs(batch), agent.catalogue.features)
    state = s.clone().requires_grad_(True)
    actor_loss, _ = agent.actor_loss(batch, state)
    (got,) = torch.autograd.grad(actor_loss, state)
    z = s.clone().requires_grad_(True)
    (through_action,) = torch.autograd.grad(-agent.critic(s, z).mean(), z)
    assert torch.allclose(got, through_action, atol=1e-7)


def test_actor_step_does_not_move_the_critic():
    agent = make_agent("ddpg", critic_lr=0.0, weight_decay=0.0)
    agent.train()
    critic_before, actor_before = params(agent.critic), params(agent.actor)
    agent.update(tiny_batch(agent))
    assert not changed(critic_before, agent.critic)
    assert changed(actor_before, agent.actor)


# --- BehaviorDDPG -------------------------------------------------------------------------------
def test_behavior_bce_matches_a_hand_computation():
    agent = make_agent("behavior_ddpg", actor_lr=0.0, tie_item_map=False)
    agent.train()
    batch = tiny_batch(agent)
    features = agent.catalogue.features
    with torch.no_grad():
        z = agent.actor.state(batch_obs(batch), features)  # Z = s
        w, b = agent.actor.item_map.weight, agent.actor.item_map.bias
        expected = 0.0
        for i in range(batch.slate.shape[0]):
            for k in range(SLATE):
                logit = float(z[i] @ (w @ features[batch.slate[i, k]] + b))
                p = 1 / (1 + math.exp(-logit))
                y = float(batch.response[i, k])
                expected -= y * math.log(p) + (1 - y) * math.log(1 - p)
        expected /= batch.slate.numel()
    loss = agent.update(batch)["loss/behavior"]
    assert abs(loss.item() - expected) < 1e-5


def test_behavior_step_trains_the_actor_only_with_its_own_learning_rate():
    agent = make_agent(
        "behavior_ddpg", actor_lr=0.0, critic_lr=0.0, behavior_lr=1e-2, weight_decay=0.0
    )
    agent.train()
    batch = tiny_batch(agent)
    behavior = agent.behavior_loss(batch)
    assert reaches(behavior, agent.actor.item_map) and reaches(behavior, agent.actor.encoder)
    assert all(g is None for g in grads(behavior, agent.critic))
    actor_before, critic_before = params(agent.actor), params(agent.critic)
    agent.update(batch)
    assert changed(actor_before, agent.actor) and not changed(critic_before, agent.critic)
    # behavior_lr = 0 turns the step off.
    off = make_agent("behavior_ddpg", actor_lr=0.0, behavior_lr=0.0, weight_decay=0.0)
    off.train()
    off_before = params(off.actor)
    off.update(tiny_batch(off))
    assert not changed(off_before, off.actor)


# --- HAC ----------------------------------------------------------------------------------------
def test_hac_trains_its_critic_on_the_hyper_action_inferred_from_the_executed_slate():
    agent = make_agent("hac", critic_lr=0.0)
    agent.train()
    batch = tiny_batch(agent)
    batch.action = torch.full_like(batch.action, 1e3)  # the recorded Z must not be used
    with torch.no_grad():
        z_hat = agent.actor.item_map(agent.catalogue.features[batch.slate]).mean(dim=1)
    expected = ddpg_hand_critic_loss(agent, batch, z_hat)
    assert torch.allclose(agent.update(batch)["loss/critic"], expected, atol=1e-5)


@pytest.mark.parametrize("alignment_slate", ["executed", "greedy"])
def test_hac_hyper_actor_term_matches_a_hand_computation(alignment_slate):
    agent = make_agent("hac", alignment_slate=alignment_slate, hyper_actor_coef=0.1)
    agent.train()
    batch = tiny_batch(agent)
    features = agent.catalogue.features
    with torch.no_grad():
        z = agent.actor.state(batch_obs(batch), features)  # Z = s
        if alignment_slate == "executed":
            slate = batch.slate
        else:
            scores = agent.actor.item_map(features) @ z.T  # (N + 1, B)
            scores[~agent.catalogue.live] = -float("inf")
            slate = scores.T.topk(SLATE).indices
        z_hat = agent.actor.item_map(features[slate]).mean(dim=1)
        expected = 0.1 * ((z - z_hat) ** 2).sum() / z.numel()
    metrics = agent.update(batch)
    assert torch.allclose(metrics["loss/hyper_actor"], expected, atol=1e-6)


def test_hac_gradients_align_both_action_spaces_but_never_reach_the_critic_from_it():
    agent = make_agent("hac", hyper_head="linear", tie_item_map=False)
    agent.train()
    batch = tiny_batch(agent)
    state = agent.actor.state(batch_obs(batch), agent.catalogue.features)
    critic_loss, _ = agent.critic_loss(batch, state)
    assert all(g is None for g in grads(critic_loss, agent.actor))  # Z_hat is read detached
    z = agent.actor.hyper_action(state)
    hyper = agent.actor_regularisers(batch, z)["loss/hyper_actor"]
    for part in (agent.actor.head, agent.actor.item_map, agent.actor.encoder):
        assert reaches(hyper, part)
    assert all(g is None for g in grads(hyper, agent.critic))


# --- offline supervised -------------------------------------------------------------------------
def test_supervised_fits_logged_responses():
    agent = make_agent("supervised", actor_lr=1e-2)
    agent.train()
    batch = tiny_batch(agent, n=5)
    first = agent.update(batch)["loss/behavior"]
    for _ in range(40):
        last = agent.update(batch)["loss/behavior"]
    assert last < 0.7 * first


# --- flat A2C -----------------------------------------------------------------------------------
def test_a2c_flat_losses_match_a_hand_computation_over_live_items():
    agent = make_agent("a2c_flat", temperature=0.5)
    agent.catalogue.live[7] = False
    agent.train()
    batch = tiny_batch(agent)
    features, live = agent.catalogue.features, agent.catalogue.live
    with torch.no_grad():
        s = agent.actor.state(batch_obs(batch), features)
        w = agent.actor.head.weight @ s.T + agent.actor.head.bias[:, None]  # (d, B) = W s
        logits = (agent.actor.item_map(features) @ w).T / 0.5  # (B, N + 1)
        logits[:, ~live] = -float("inf")
        logp = torch.log_softmax(logits, dim=-1)
        v = agent.critic(s)
        s2 = agent.target["encoder"](batch.next_history, batch.next_user_profile, features)
        y = batch.reward + 0.9 * (1 - batch.terminated) * agent.target["critic"](s2)
        adv = (y - v).clamp(-1, 1)
        nll = -logp.gather(1, batch.action).mean(dim=1)
        p = logp.exp()
        entropy = -(p[:, live] * logp[:, live]).sum(dim=1)
        expected_actor = (adv * nll).mean() - 0.1 * entropy.mean()
        expected_critic = ((v - y) ** 2).mean()
    metrics = agent.update(batch)
    assert torch.allclose(metrics["loss/critic"], expected_critic, atol=1e-5)
    assert torch.allclose(metrics["loss/actor"], expected_actor, atol=1e-5)
    assert torch.allclose(metrics["policy/entropy"], entropy.mean(), atol=1e-5)


def test_a2c_flat_gradients_and_items_retired_after_recording():
    agent = make_agent("a2c_flat")
    agent.train()
    batch = tiny_batch(agent)
    critic_loss, actor_loss, _ = agent.losses(batch)
    assert all(g is None for g in grads(critic_loss, agent.actor))
    assert all(g is None for g in grads(actor_loss, agent.critic))
    assert reaches(actor_loss, agent.actor.head) and reaches(actor_loss, agent.actor.encoder)
    # An item of a replayed slate that has since been retired is skipped, not a -inf loss.
    agent.catalogue.live[batch.action[0, 0]] = False
    metrics = agent.update(batch)
    assert all(torch.isfinite(v) for v in metrics.values())
    assert all(torch.isfinite(p).all() for p in agent.parameters())
