"""Sweep files: validation that names the field, grid expansion, trial names and configs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hsrl.errors import ConfigError
from hsrl.sweep import expand, grid_points, load_sweep, parse_sweep


@pytest.fixture
def folders(tmp_path: Path) -> Path:
    """Stand-ins for a prepared dataset (its manifest), a simulator and a SID folder."""
    data = tmp_path / "data"
    data.mkdir()
    manifest = {
        "format_version": 1,
        "source": "builtin",
        "num_items": 10,
        "item_feature_dim": 4,
        "slate_size": 9,
        "history_length": 10,
        "splits": {"train": {"records": 5}, "test": {"records": 5}},
    }
    (data / "manifest.json").write_text(json.dumps(manifest))
    (data / "ground_truth.npz").write_bytes(b"")
    (tmp_path / "sim").mkdir()
    (tmp_path / "sid").mkdir()
    return tmp_path


def sweep(**changes) -> dict:
    data = {
        "base": {"data": "data", "simulator": "sim", "sid": "sid", "iterations": 100},
        "agents": ["hsrl", "ddpg"],
        "seeds": [0, 1],
    }
    data.update(changes)
    return data


def parse(folders: Path, data: dict, **kwargs):
    return parse_sweep(data, "s.json", base_dir=folders, **kwargs)


def test_grid_points_are_the_cartesian_product_in_written_order():
    points = grid_points({"a": [1, 2], "b": ["x", "y", "z"]})
    assert len(points) == 6
    assert points[0] == {"a": 1, "b": "x"} and points[1] == {"a": 1, "b": "y"}
    assert points[-1] == {"a": 2, "b": "z"}
    assert grid_points({}) == [{}]


def test_expansion_agents_grid_seeds_and_agent_only_settings(folders: Path):
    spec = parse(
        folders,
        sweep(grid={"train.batch_size": [32, 64], "agent.entropy_coef": [0.1, 0.01]}),
    )
    trials = expand(spec)
    # hsrl: 2 x 2 grid points; ddpg has no entropy coefficient: 2 points; x 2 seeds.
    assert len(trials) == (4 + 2) * 2
    names = [t.name for t in trials]
    assert names[:6] == [
        "hsrl__batch_size=32-entropy_coef=0.1__seed0",
        "hsrl__batch_size=32-entropy_coef=0.01__seed0",
        "hsrl__batch_size=64-entropy_coef=0.1__seed0",
        "hsrl__batch_size=64-entropy_coef=0.01__seed0",
        "ddpg__batch_size=32__seed0",
        "ddpg__batch_size=64__seed0",
    ]
    first = trials[1].config
    assert first["agent"] == "hsrl" and first["seed"] == 0
    assert first["train"]["batch_size"] == 32 and first["train"]["iterations"] == 100
    assert first["agent_config"] == {"entropy_coef": 0.01}
    assert first["data"] == str((folders / "data").resolve())
    assert "entropy_coef" not in json.dumps(trials[4].config)
    assert {t.seed for t in trials} == {0, 1}


def test_configurations_combine_with_the_grid_and_can_be_restricted(folders: Path):
    spec = parse(
        folders,
        sweep(
            seeds=1,
            grid={"env.temper": [10.0, 20.0]},
            configurations=[
                {"name": "small", "set": {"train.batch_size": 16}},
                {"name": "greedy", "set": ["agent.temperature=0.5"], "agents": ["hsrl"]},
            ],
        ),
    )
    names = [t.name for t in expand(spec)]
    assert names == [
        "hsrl__small-temper=10__seed0",
        "hsrl__small-temper=20__seed0",
        "hsrl__greedy-temper=10__seed0",
        "hsrl__greedy-temper=20__seed0",
        "ddpg__small-temper=10__seed0",
        "ddpg__small-temper=20__seed0",
    ]
    greedy = expand(spec)[2].config
    assert greedy["agent_config"]["temperature"] == 0.5 and greedy["env"]["temper"] == 10.0


def test_preset_then_base_set_then_grid(folders: Path):
    spec = parse(
        folders,
        sweep(
            agents=["hsrl"],
            seeds=[3],
            base={
                "data": "data", "simulator": "sim", "sid": "sid", "preset": "rl4rs",
                "set": {"train.warmup": 7, "agent.gamma": 0.5},
            },
            grid={"agent.gamma": [0.7]},
        ),
    )  # fmt: skip
    (trial,) = expand(spec)
    config = trial.config
    assert config["train"]["iterations"] == 50_000  # from the preset
    assert config["train"]["warmup"] == 7  # base.set over the preset
    assert config["agent_config"]["actor_lr"] == 1e-3  # the preset's hsrl settings
    assert config["agent_config"]["gamma"] == 0.7  # the grid over base.set


def test_evaluations_per_trial_and_references_once(folders: Path):
    spec = parse(
        folders,
        sweep(
            evaluation={
                "episodes": 50,
                "ground_truth": True,
                "simulators": {"testsim": "sim"},
                "policies": ["agent", "random"],
            }
        ),
    )
    trials = expand(spec)
    names = [e.name for e in trials[0].evaluations]
    assert names == [
        "agent_sim_test_seed0",
        "agent_truth_test_seed0",
        "agent_sim-testsim_test_seed0",
        "random_sim_test_seed0",
        "random_truth_test_seed0",
        "random_sim-testsim_test_seed0",
    ]
    assert all(len(t.evaluations) == 3 for t in trials[1:])
    argv = trials[0].evaluations[1].argv(Path("/runs/x"))
    assert argv[:2] == ["evaluate", "/runs/x"] and argv[-1] == "--ground-truth"
    assert "--simulator" in trials[0].evaluations[2].argv(Path("r"))


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"agents": ["hsrl", "dqn"]}, "agents[1]: unknown agent 'dqn'"),
        ({"agents": []}, "agents: expected a non-empty list"),
        ({"seeds": "3"}, "seeds: expected a non-empty list of integers or a count"),
        ({"seeds": [0, 0]}, "seeds: lists a seed twice"),
        ({"seeds": 10**9}, "seeds: must be at most 10,000, got 1,000,000,000"),
        ({"evaluation": {"episodes": 10**12}}, "evaluation.episodes: must be at most 10,000,000"),
        ({"grid": {}}, "grid: expected a non-empty mapping"),
        ({"grid": {"train.batch_size": []}}, "grid.train.batch_size: expected a non-empty list"),
        ({"grid": {"seed": [1, 2]}}, "grid.seed: 'seed' is set by the sweep's 'seeds' field"),
        ({"grid": {"agent.no_such": [1]}}, "grid.agent.no_such: no agent of hsrl, ddpg has"),
        ({"trials": 3}, "top level: unknown key(s) 'trials'"),
        ({"base": {"data": "data", "iterations": "10"}}, "base.iterations: expected an integer"),
        ({"base": {"data": "data", "preset": "x"}}, "base.preset: unknown preset 'x'"),
        ({"base": {"simulator": "sim"}}, "base.data: missing"),
        ({"base": {"data": "data", "epochs": 3}}, "base: unknown key(s) 'epochs'"),
        ({"evaluation": {"episodes": 0}}, "evaluation.episodes: must be at least 1"),
        ({"evaluation": {"simulator": False}}, "evaluation: no evaluation chosen"),
        ({"evaluation": {"policies": ["best"]}}, "evaluation.policies[0]: unknown policy"),
        ({"configurations": [{"name": "a b"}]}, "configurations[0].name: 'a b'"),
        ({"configurations": [{"name": "a"}, {"name": "a"}]}, "configurations[1].name: 'a' is used"),
        ({"agent_set": {"hac": {}}}, "agent_set.hac: 'hac' is not one of the sweep's agents"),
    ],
)
def test_invalid_sweep_files_name_the_field(folders: Path, changes, message):
    with pytest.raises(ConfigError) as info:
        parse(folders, sweep(**changes))
    assert message in str(info.value)
    assert str(info.value).startswith("s.json: ")


def test_settings_are_validated_when_trials_are_built(folders: Path):
    spec = parse(folders, sweep(base={"data": "data", "simulator": "sim", "sid": "sid",
                                      "set": {"train.warmupp": 3}}))  # fmt: skip
    with pytest.raises(ConfigError, match=r"trial hsrl__seed0.*unknown field\(s\) warmupp"):
        expand(spec)
    spec = parse(folders, sweep(base={"data": "data", "simulator": "sim", "set": {}}))
    with pytest.raises(ConfigError, match="base.sid: agent 'hsrl' needs semantic IDs"):
        expand(spec)
    spec = parse(folders, sweep(base={"data": "nowhere", "simulator": "sim", "sid": "sid"}))
    with pytest.raises(ConfigError, match="base.data: .*nowhere"):
        expand(spec)
    (folders / "data" / "ground_truth.npz").unlink()
    spec = parse(folders, sweep(evaluation={"ground_truth": True}))
    with pytest.raises(ConfigError, match="evaluation.ground_truth: .* has no ground truth"):
        expand(spec)


def test_toml_and_json_files_and_command_line_overrides(folders: Path, tmp_path: Path):
    (folders / "s.toml").write_text(
        'agents = ["ddpg"]\nseeds = 2\n[base]\ndata = "data"\nsimulator = "sim"\n'
        '[base.set]\n"train.batch_size" = 8\n[grid]\n"env.temper" = [5.0, 6.0]\n'
    )
    spec = load_sweep(folders / "s.toml")
    assert [t.name for t in expand(spec)][:2] == ["ddpg__temper=5__seed0", "ddpg__temper=6__seed0"]
    spec = load_sweep(
        folders / "s.toml", cli={"seeds": [7], "iterations": 9, "set": ["train.warmup=3"]}
    )
    trials = expand(spec)
    assert {t.seed for t in trials} == {7}
    assert trials[0].config["train"]["iterations"] == 9 and trials[0].config["train"]["warmup"] == 3
    (folders / "bad.json").write_text('{"agents": ["ddpg"],\n "seeds": [0,]}')
    with pytest.raises(ConfigError, match=r"bad.json, line 2: not valid JSON"):
        load_sweep(folders / "bad.json")
    (folders / "bad.toml").write_text("agents = [")
    with pytest.raises(ConfigError, match="bad.toml: not valid TOML"):
        load_sweep(folders / "bad.toml")


@pytest.mark.parametrize("name", ["builtin", "rl4rs", "ml1m"])
def test_reproduction_files_are_valid_sweeps(folders: Path, name: str):
    path = Path(__file__).resolve().parents[2] / "reproductions" / f"{name}.json"
    cli = {"data": folders / "data", "simulator": folders / "sim", "sid": folders / "sid"}
    trials = expand(load_sweep(path, cli=cli))
    agents = {"hsrl", "ddpg", "behavior_ddpg", "hac", "supervised", "a2c_flat"}
    assert len(trials) == 6 * 5 and {t.agent for t in trials} == agents
    assert {t.seed for t in trials} == {0, 1, 2, 3, 4}
    assert trials[0].evaluations[0].episodes == 1000
    targets = {e.target for t in trials for e in t.evaluations}
    assert ("ground_truth" in targets) == (name == "builtin")
    iterations = {t.config["train"]["iterations"] for t in trials}
    assert iterations == ({3_000} if name == "builtin" else {50_000})
