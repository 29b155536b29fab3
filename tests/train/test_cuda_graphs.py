"""Acting and updates replayed from CUDA graphs train exactly as eager calls do (CUDA only)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from hsrl.agents import AGENTS, agent_class
from hsrl.train import EnvSettings, RunConfig, Trainer, TrainSettings, build_run

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def dropout_free(agent: str) -> dict:
    """Agent options without dropout, so eager and graphed runs draw no random masks."""
    fields = {f.name for f in dataclasses.fields(agent_class(agent).config_class)}
    options: dict = {"encoder": {"dim": 16, "heads": 2, "feedforward": 32, "dropout": 0.0}}
    if "critic_dropout" in fields:
        options["critic_dropout"] = 0.0
    return options


def trained(world: dict[str, Path], agent: str, graphs: bool, tmp: Path, iterations: int):
    config = RunConfig(
        agent=agent,
        data=str(world["data"]),
        simulator=str(world["simulator"]),
        sid=str(world["sid"]),
        device="cuda",
        agent_config=dropout_free(agent),
        env=EnvSettings(num_users=8),
        train=TrainSettings(
            batch_size=16, warmup=16, replay_capacity=500, tensorboard=False, cuda_graphs=graphs
        ),
    )
    trainer = Trainer(build_run(config), tmp)
    for _ in range(iterations):
        trainer.step()
    return trainer


@pytest.mark.parametrize("agent", sorted(AGENTS))
def test_graphed_updates_match_eager_updates(tiny_world, tmp_path, agent):
    eager = trained(tiny_world, agent, False, tmp_path / "eager", 20)
    graphed = trained(tiny_world, agent, True, tmp_path / "graphed", 20)
    acts = 0 if agent_class(agent).offline else 1  # offline agents learn from logs only
    assert graphed.update.captures == 1 and graphed.act.captures == acts
    a, b = eager.parts.agent.state_dict(), graphed.parts.agent.state_dict()
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-5), key


def test_graph_is_recaptured_after_loading_a_checkpoint(tiny_world, tmp_path):
    trainer = trained(tiny_world, "hsrl", True, tmp_path / "run", 12)
    assert trainer.update.captures == 1 and trainer.act.captures == 1
    state = trainer.checkpoint_state()
    trainer.load_checkpoint_state(state)
    for _ in range(6):
        trainer.step()
    assert trainer.update.captures == 2 and trainer.act.captures == 2
