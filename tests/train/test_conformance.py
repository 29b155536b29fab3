"""One conformance suite for every agent: smoke training, save/load, resume, determinism.

In the spirit of SB3's test_run / test_save_load and d3rlpy's shared algorithm tester: each
agent goes through the same shared training loop, checkpoints and evaluation.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from hsrl.agents import AGENTS
from hsrl.train import (
    EnvSettings,
    RunConfig,
    TrainSettings,
    load_agent,
    load_checkpoint,
    resume,
    train,
)

ALL_AGENTS = sorted(AGENTS)


def tiny_config(world: dict[str, Path], agent: str, iterations: int, seed: int = 0) -> RunConfig:
    return RunConfig(
        agent=agent,
        data=str(world["data"]),
        simulator=str(world["simulator"]),
        sid=str(world["sid"]),
        seed=seed,
        agent_config={"encoder": {"dim": 16, "heads": 2, "feedforward": 32}},
        env=EnvSettings(num_users=8),
        train=TrainSettings(
            iterations=iterations,
            batch_size=16,
            replay_capacity=500,
            warmup=24,
            log_every=5,
            checkpoint_every=100,
            tensorboard=False,
        ),
    )


def params(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(run_dir / "checkpoints" / "last.pt", torch.device("cpu"))["agent"][
        "modules"
    ]


def assert_same_params(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-6), key


@pytest.mark.parametrize("agent", ALL_AGENTS)
def test_smoke_training_writes_config_log_and_checkpoint(tiny_world, tmp_path, agent):
    run = train(tiny_config(tiny_world, agent, 10), tmp_path / "run", progress=False)
    assert (run / "config.json").is_file()
    from hsrl.runlog import read_log

    log = read_log(run / "log.jsonl")
    assert [r["iteration"] for r in log] == [5, 10]
    losses = [v for r in log for k, v in r.items() if k.startswith("loss/")]
    assert losses and all(torch.isfinite(torch.tensor(losses)))
    # Checkpoints hold tensors and plain containers only.
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert state["iteration"] == 10


@pytest.mark.parametrize("agent", ALL_AGENTS)
def test_save_load_gives_identical_actions(tiny_world, tmp_path, agent):
    config = tiny_config(tiny_world, agent, 6)
    from hsrl.train import Trainer, build_run

    parts = build_run(config)
    trainer = Trainer(parts, tmp_path / "run")
    (tmp_path / "run").mkdir()
    from hsrl.config import save_config

    save_config(config, tmp_path / "run" / "config.json")
    for _ in range(6):
        trainer.step()
    trainer.save_checkpoint()
    parts.agent.eval()
    obs = trainer.obs
    before = parts.agent.act(obs, explore=False, generator=None).slate
    loaded, iteration = load_agent(tmp_path / "run")
    assert iteration == 6
    after = loaded.agent.act(obs, explore=False, generator=None).slate
    assert torch.equal(before, after)


@pytest.mark.parametrize("agent", ALL_AGENTS)
def test_resume_equals_an_uninterrupted_run(tiny_world, tmp_path, agent):
    straight = train(tiny_config(tiny_world, agent, 16), tmp_path / "straight", progress=False)
    split = train(tiny_config(tiny_world, agent, 8), tmp_path / "split", progress=False)
    resume(split, 8, progress=False)
    assert_same_params(params(straight), params(split))
    assert (
        load_checkpoint(split / "checkpoints" / "last.pt", torch.device("cpu"))["iteration"] == 16
    )


@pytest.mark.parametrize("agent", ALL_AGENTS)
def test_training_is_deterministic_under_a_seed(tiny_world, tmp_path, agent):
    a = train(tiny_config(tiny_world, agent, 8, seed=3), tmp_path / "a", progress=False)
    b = train(tiny_config(tiny_world, agent, 8, seed=3), tmp_path / "b", progress=False)
    assert_same_params(params(a), params(b))
    c = train(tiny_config(tiny_world, agent, 8, seed=4), tmp_path / "c", progress=False)
    differs = any(not torch.equal(params(a)[k], params(c)[k]) for k in params(a))
    assert differs


@pytest.mark.parametrize(
    "ablation",
    [
        {"residual": "none"},
        {"residual": "sampled"},
        {"single_critic": True},
        {"learn_token_weights": False},
        {"decoding": "beam", "beam_width": 16},
    ],
)
def test_hsrl_ablations_train_through_the_shared_loop(tiny_world, tmp_path, ablation):
    config = tiny_config(tiny_world, "hsrl", 8)
    config = RunConfig(**{**config.__dict__, "agent_config": {**config.agent_config, **ablation}})
    run = train(config, tmp_path / "run", progress=False)
    state = params(run)
    frozen = torch.equal(state["critic.omega"], torch.zeros_like(state["critic.omega"]))
    # The level weights move only when they are learned and the multi-level critic is used.
    uses_weights = ablation.get("learn_token_weights", True) and not ablation.get("single_critic")
    assert frozen != uses_weights


def test_an_invalid_slate_in_training_raises_before_any_checkpoint(tiny_world, tmp_path):
    """The training env checks slates on the device; the error surfaces at the log window."""
    from hsrl.simulator import InvalidActionError
    from hsrl.train import Trainer, build_run

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    trainer = Trainer(build_run(tiny_config(tiny_world, "hsrl", 10)), run_dir)
    act = trainer.act

    def padding_in_slate(obs):
        action = act(obs)
        action.slate[0, 0] = 0
        return action

    trainer.act = padding_in_slate
    with pytest.raises(InvalidActionError, match="padding id 0"):
        trainer.run(10, progress=False)
    assert trainer.iteration == 5  # the first log window
    assert not (run_dir / "checkpoints").exists()


def test_hsrl_with_logged_data_learns_from_logged_batches_and_resumes_exactly(tiny_world, tmp_path):
    def config(iterations: int, logged_coef: float) -> RunConfig:
        base = tiny_config(tiny_world, "hsrl", iterations)
        agent = {**base.agent_config, "item_critic_coef": 1.0, "logged_coef": logged_coef}
        return RunConfig(**{**base.__dict__, "agent_config": agent})

    straight = train(config(16, 1.0), tmp_path / "straight", progress=False)
    split = train(config(8, 1.0), tmp_path / "split", progress=False)
    resume(split, 8, progress=False)
    assert_same_params(params(straight), params(split))
    logged = [json.loads(line) for line in (straight / "log.jsonl").read_text().splitlines()]
    assert any("loss/item_critic_logged" in line for line in logged)
    # The logged batches change what the item critic learns.
    without = train(config(16, 0.0), tmp_path / "without", progress=False)
    key = next(k for k in params(straight) if k.startswith("item_critic."))
    assert not torch.equal(params(straight)[key], params(without)[key])


def test_logged_coef_needs_the_item_critic():
    from hsrl.agents.hsrl import HSRLConfig

    with pytest.raises(ValueError, match="logged_coef needs the item critic"):
        HSRLConfig(logged_coef=1.0)
    with pytest.raises(ValueError, match="logged_coef must not be negative"):
        HSRLConfig(item_critic_coef=1.0, logged_coef=-1.0)
