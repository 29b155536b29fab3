"""Acting and updates replayed from CUDA graphs train exactly as eager calls do (CUDA only)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from hsrl.agents import AGENTS, agent_class
from hsrl.train import EnvSettings, RunConfig, Trainer, TrainSettings, build_run

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def dropout_free(agent: str, **options) -> dict:
    """Agent options without dropout, so eager and graphed runs draw no random masks."""
    fields = {f.name for f in dataclasses.fields(agent_class(agent).config_class)}
    options["encoder"] = {"dim": 16, "heads": 2, "feedforward": 32, "dropout": 0.0}
    if "critic_dropout" in fields:
        options["critic_dropout"] = 0.0
    return options


def trained(
    world: dict[str, Path], agent: str, graphs: bool, tmp: Path, iterations: int, **options
):
    config = RunConfig(
        agent=agent,
        data=str(world["data"]),
        simulator=str(world["simulator"]),
        sid=str(world["sid"]),
        device="cuda",
        agent_config=dropout_free(agent, **options),
        env=EnvSettings(num_users=8),
        train=TrainSettings(
            batch_size=16, warmup=16, replay_capacity=500, tensorboard=False, cuda_graphs=graphs
        ),
    )
    trainer = Trainer(build_run(config), tmp)
    for _ in range(iterations):
        trainer.step()
    return trainer


VARIANTS = [(agent, {}) for agent in sorted(AGENTS)] + [
    ("hsrl", {"decoding": "beam", "beam_width": 16}),
    ("hsrl", {"residual": "sampled"}),
    ("hsrl", {"explore_epsilon": 0.1}),
    ("ddpg", {"explore": "sample"}),
]


@pytest.mark.parametrize(("agent", "options"), VARIANTS)
def test_graphed_steps_match_eager_steps(tiny_world, tmp_path, agent, options):
    eager = trained(tiny_world, agent, False, tmp_path / "eager", 20, **options)
    graphed = trained(tiny_world, agent, True, tmp_path / "graphed", 20, **options)
    acts = 0 if agent_class(agent).offline else 1  # offline agents learn from logs only
    assert graphed.update.failed is None and graphed.act.failed is None
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


def test_graphs_are_recaptured_when_the_catalogue_changes(tiny_world, tmp_path):
    from hsrl.catalogue import ChurnSchedule, apply_change, plan_changes

    trainer = trained(tiny_world, "hsrl", True, tmp_path / "run", 12)
    catalogue = trainer.parts.catalogue
    (change,) = plan_changes(ChurnSchedule(fraction=0.2), catalogue.features, catalogue.live)
    new_ids = apply_change(change, catalogue, [trainer.parts.env])
    shown = []
    for _ in range(30):
        trainer.step()
        end = trainer.buffer.position  # the 8 users' transitions were pushed last
        shown.append(trainer.buffer.storage["slate"][end - 8 : end])
    assert trainer.update.captures == 2 and trainer.act.captures == 2
    # The replayed act graph scores the changed catalogue: new items are shown, retired never.
    slates = torch.cat(shown)
    assert torch.isin(slates, new_ids).any()
    assert not torch.isin(slates, change.retire.to(slates.device)).any()


@pytest.mark.parametrize("agent", ["hsrl", "hac"])
def test_resume_on_cuda_equals_an_uninterrupted_run(tiny_world, tmp_path, agent):
    """With dropout on: graph replays advance the CUDA and acting generators as eager calls do,
    so the random states a checkpoint saves continue the same streams."""
    from test_conformance import tiny_config  # the conformance suite's tiny runs, on CUDA

    from hsrl.train import load_checkpoint, resume, train

    def config(iterations: int) -> RunConfig:
        return dataclasses.replace(tiny_config(tiny_world, agent, iterations), device="cuda")

    straight = train(config(24), tmp_path / "straight", progress=False)
    split = train(config(12), tmp_path / "split", progress=False)
    resume(split, 12, progress=False)
    cpu = torch.device("cpu")
    a = load_checkpoint(straight / "checkpoints" / "last.pt", cpu)["agent"]["modules"]
    b = load_checkpoint(split / "checkpoints" / "last.pt", cpu)["agent"]["modules"]
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-5), key
