"""Sweeps: many training runs and their evaluations from one file (``hsrl sweep``).

A sweep file (JSON, or TOML with a ``.toml`` suffix) names shared base settings, the agents, the
seeds, a grid of settings (cartesian product) and/or a list of named configurations, and the
evaluations to run after training. It expands into trials (agent x configuration x grid point x
seed); each trial is one ``hsrl train`` run in ``OUT/<trial>/`` followed by its ``hsrl
evaluate`` calls, so a sweep's output folder is exactly what ``hsrl report`` reads.

Trials run on Ray Tune when Ray is installed (a local Ray instance, or a cluster with
``address``; fractional GPUs pack several small trials per GPU), and otherwise on a local
process pool. Either way each trial is the ordinary CLI (``hsrl.cli.main``) called inside a
worker process, with one torch thread per CPU the trial is given.

Resuming is by files, not by a scheduler's state, so it works across backends and machines:

- a trial whose evaluation files all exist is finished and is never run again;
- a trial with a checkpoint short of its iteration budget is continued with
  ``hsrl train --resume`` (which gives the same result as an uninterrupted run); one with a
  complete checkpoint goes straight to its missing evaluations (older evaluation files of a
  trial that trains again are removed first);
- a trial with no readable checkpoint starts again from scratch (``--overwrite``);
- a run folder whose config.json is not the trial's config (the sweep file changed) is an
  error naming the trials, unless ``rerun_changed`` starts those trials again.

Bookkeeping lives in ``OUT/sweep.json`` (the expanded trial list, written before anything runs)
and ``OUT/_sweep/`` (each trial's train config, log and status).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import os
import re
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hsrl.errors import ConfigError, HsrlError

SWEEP_FILE = "sweep.json"
MAX_SEEDS = 10_000
MAX_TRIALS = 100_000
"""Bounds against a mistyped count: a sweep this large is a mistake, not a plan."""
BOOKKEEPING = "_sweep"
CHECKPOINT = Path("checkpoints") / "last.pt"

# Settings that are set by the sweep's structure, not by `set` or `grid`.
_STRUCTURAL = {
    "agent": "agents",
    "seed": "seeds",
    "data": "base.data",
    "simulator": "base.simulator",
    "sid": "base.sid",
}

# --- the sweep file -----------------------------------------------------------------------------
_TOP_KEYS = {
    "name": "a label for the sweep",
    "description": "free text",
    "base": "shared settings: data, simulator, sid, preset, device, iterations, ground_truth, set",
    "agents": "list of agents to train",
    "agent_set": "per-agent overrides: {agent: {key: value}}",
    "seeds": "list of training seeds, or a count n for seeds 0..n-1",
    "grid": "{setting: [values...]}: every combination is a configuration",
    "configurations": "list of {name, set, agents?}: named configurations",
    "evaluation": "episodes, seed, split, simulator, ground_truth, simulators, policies",
}
_BASE_KEYS = ("data", "simulator", "sid", "preset", "device", "iterations", "ground_truth", "set")
_EVAL_KEYS = ("episodes", "seed", "split", "simulator", "ground_truth", "simulators", "policies")
_CONFIGURATION_KEYS = ("name", "set", "agents")
_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+=-]*$")


@dataclass(frozen=True)
class EvaluationSpec:
    """Which evaluations every trial gets after training (see ``hsrl evaluate``)."""

    episodes: int = 1000
    seed: int = 0
    split: str | None = None
    """None: the test split when the dataset has one (as ``hsrl evaluate``)."""
    simulator: bool = True
    """On the run's own learned simulator."""
    ground_truth: bool = False
    """On the built-in dataset's true users."""
    simulators: dict[str, str] = field(default_factory=dict)
    """Other learned simulators by label, e.g. one trained on the test split (HAC's protocol)."""
    policies: tuple[str, ...] = ("agent",)
    """"agent", plus "random" / "greedy" reference policies (evaluated once, not per trial)."""


@dataclass(frozen=True)
class Configuration:
    name: str | None
    overrides: dict[str, Any]
    agents: tuple[str, ...] | None = None


@dataclass(frozen=True)
class SweepSpec:
    """A validated sweep file; paths are absolute."""

    source: str
    name: str
    data: str
    simulator: str | None
    sid: str | None
    preset: str | None
    device: str | None
    iterations: int | None
    ground_truth: bool
    base_set: dict[str, Any]
    agents: tuple[str, ...]
    agent_set: dict[str, dict[str, Any]]
    seeds: tuple[int, ...]
    grid: dict[str, list[Any]]
    configurations: tuple[Configuration, ...]
    evaluation: EvaluationSpec


@dataclass(frozen=True)
class Evaluation:
    """One ``hsrl evaluate`` call of a trial; ``name`` is its file under RUN_DIR/eval/."""

    name: str
    policy: str
    target: str  # "simulator", "ground_truth", or the path of another simulator
    split: str
    episodes: int
    seed: int

    def argv(self, run_dir: Path) -> list[str]:
        argv = [
            "evaluate",
            str(run_dir),
            "--episodes",
            str(self.episodes),
            "--seed",
            str(self.seed),
            "--split",
            self.split,
            "--policy",
            self.policy,
            "--name",
            self.name,
        ]
        if self.target == "ground_truth":
            argv.append("--ground-truth")
        elif self.target != "simulator":
            argv += ["--simulator", self.target]
        return argv


@dataclass(frozen=True)
class Trial:
    """One training run and its evaluations."""

    name: str
    agent: str
    seed: int
    variant: str
    overrides: dict[str, Any]
    config: dict[str, Any]  # the full RunConfig as `hsrl train` saves it
    evaluations: tuple[Evaluation, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "agent": self.agent,
            "seed": self.seed,
            "variant": self.variant,
            "overrides": self.overrides,
            "config": self.config,
            "evaluations": [vars(e) for e in self.evaluations],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Trial:
        return cls(
            name=data["name"],
            agent=data["agent"],
            seed=data["seed"],
            variant=data["variant"],
            overrides=data["overrides"],
            config=data["config"],
            evaluations=tuple(Evaluation(**e) for e in data["evaluations"]),
        )


def read_sweep_file(path: str | Path) -> dict[str, Any]:
    """The raw content of a JSON (or, by suffix, TOML) sweep file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: sweep file not found")
    if path.suffix.lower() == ".toml":
        try:
            import tomllib
        except ImportError:  # Python 3.10
            raise ConfigError(
                f"{path}: TOML sweep files need Python 3.11 or later (or write it as JSON)"
            ) from None
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    else:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ConfigError(
                f"{path}, line {exc.lineno}: not valid JSON ({exc.msg}, column {exc.colno})"
            ) from None
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{path}: not UTF-8 text ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a sweep file holds one object (mapping) at the top level")
    return data


class _Checker:
    """Type checks that name the field (``where``) and the file."""

    def __init__(self, source: str):
        self.source = source

    def fail(self, where: str, problem: str) -> ConfigError:
        return ConfigError(f"{self.source}: {where}: {problem}")

    def keys(self, where: str, data: Any, allowed: Sequence[str]) -> dict[str, Any]:
        if not isinstance(data, dict):
            raise self.fail(where, f"expected a mapping, got {_type_name(data)}")
        unknown = sorted(set(data) - set(allowed))
        if unknown:
            raise self.fail(
                where,
                f"unknown key(s) {', '.join(map(repr, unknown))} (known: {', '.join(allowed)})",
            )
        return data

    def string(self, where: str, value: Any, optional: bool = False) -> str | None:
        if value is None and optional:
            return None
        if not isinstance(value, str) or not value:
            raise self.fail(where, f"expected a non-empty string, got {value!r}")
        return value

    def integer(
        self, where: str, value: Any, minimum: int | None = None, maximum: int | None = None
    ) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(where, f"expected an integer, got {value!r}")
        if minimum is not None and value < minimum:
            raise self.fail(where, f"must be at least {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise self.fail(where, f"must be at most {maximum:,}, got {value:,}")
        return value

    def boolean(self, where: str, value: Any) -> bool:
        if not isinstance(value, bool):
            raise self.fail(where, f"expected true or false, got {value!r}")
        return value

    def string_list(self, where: str, value: Any) -> list[str]:
        if not isinstance(value, list) or not value:
            raise self.fail(where, f"expected a non-empty list of strings, got {value!r}")
        for i, item in enumerate(value):
            self.string(f"{where}[{i}]", item)
        if len(set(value)) != len(value):
            raise self.fail(where, "lists a value twice")
        return value

    def overrides(self, where: str, value: Any) -> dict[str, Any]:
        """A ``set`` block: {"train.batch_size": 128} or ["train.batch_size=128", ...]."""
        from hsrl.presets import parse_assignment

        if isinstance(value, list):
            out = {}
            for i, text in enumerate(value):
                if not isinstance(text, str):
                    raise self.fail(f"{where}[{i}]", f"expected 'KEY=VALUE', got {value!r}")
                try:
                    nested = parse_assignment(text)
                except ConfigError as exc:
                    raise self.fail(f"{where}[{i}]", str(exc)) from None
                key = text.partition("=")[0].strip()
                out[key] = _leaf(nested)
            value = out
        if not isinstance(value, dict):
            raise self.fail(where, f"expected a mapping of setting -> value, got {value!r}")
        for key in value:
            self.setting_key(f"{where}.{key}" if where else key, key)
        return dict(value)

    def setting_key(self, where: str, key: Any) -> None:
        if not isinstance(key, str) or not key or any(not part for part in key.split(".")):
            raise self.fail(where, f"{key!r} is not a dotted setting name like train.batch_size")
        if key in _STRUCTURAL:  # "agent.x" is an agent setting, "agent" alone is not
            raise self.fail(where, f"{key!r} is set by the sweep's {_STRUCTURAL[key]!r} field")


def _leaf(nested: dict[str, Any]) -> Any:
    while isinstance(nested, dict) and len(nested) == 1:
        nested = next(iter(nested.values()))
    return nested


def _type_name(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string"}.get(type(value), repr(value))


def parse_sweep(
    data: dict[str, Any],
    source: str | Path = "sweep",
    *,
    base_dir: str | Path | None = None,
    cli: dict[str, Any] | None = None,
) -> SweepSpec:
    """Validate a sweep file's content; relative paths are taken from ``base_dir``.

    ``cli`` holds command-line overrides of the base settings (data, simulator, sid, device,
    iterations, episodes, seeds, agents, set); their paths are relative to the current folder.
    """
    from hsrl.agents import AGENTS
    from hsrl.agents.reference import REFERENCE_POLICIES
    from hsrl.presets import PRESETS

    check = _Checker(str(source))
    check.keys("top level", data, list(_TOP_KEYS))
    base_dir = Path(base_dir) if base_dir is not None else Path.cwd()
    cli = {k: v for k, v in (cli or {}).items() if v is not None}

    base = check.keys("base", data.get("base", {}), _BASE_KEYS)

    def path(key: str, required: bool) -> str | None:
        if key in cli:
            return str(Path(cli[key]).resolve())
        value = check.string(f"base.{key}", base.get(key), optional=not required)
        if value is None:
            if required:
                raise check.fail(f"base.{key}", "missing (or pass --{key})")
            return None
        return str((base_dir / Path(value).expanduser()).resolve())

    if "data" not in base and "data" not in cli:
        raise check.fail("base.data", "missing: the prepared dataset folder (or pass --data)")
    data_dir = path("data", True)
    simulator = path("simulator", False)
    sid = path("sid", False)
    preset = check.string("base.preset", base.get("preset"), optional=True)
    if preset is not None and preset not in PRESETS:
        raise check.fail("base.preset", f"unknown preset {preset!r} (known: {', '.join(PRESETS)})")
    device = cli.get("device") or check.string("base.device", base.get("device"), optional=True)
    iterations = base.get("iterations")
    if "iterations" in cli:
        iterations = cli["iterations"]
    if iterations is not None:
        iterations = check.integer("base.iterations", iterations, minimum=1)
    ground_truth = check.boolean("base.ground_truth", base.get("ground_truth", False))
    base_set = check.overrides("base.set", base.get("set", {}))
    if cli.get("set"):
        base_set.update(check.overrides("--set", cli["set"]))

    agents_raw = cli.get("agents", data.get("agents"))
    if agents_raw is None:
        raise check.fail("agents", f"missing: list the agents to train ({', '.join(AGENTS)})")
    agents = tuple(check.string_list("agents", agents_raw))
    for i, agent in enumerate(agents):
        if agent not in AGENTS:
            raise check.fail(
                f"agents[{i}]", f"unknown agent {agent!r} (known: {', '.join(sorted(AGENTS))})"
            )

    agent_set_raw = data.get("agent_set", {})
    if not isinstance(agent_set_raw, dict):
        raise check.fail(
            "agent_set", f"expected a mapping agent -> settings, got {agent_set_raw!r}"
        )
    agent_set = {}
    for agent, overrides in agent_set_raw.items():
        if agent not in agents:
            raise check.fail(f"agent_set.{agent}", f"{agent!r} is not one of the sweep's agents")
        agent_set[agent] = check.overrides(f"agent_set.{agent}", overrides)

    seeds_raw = cli.get("seeds", data.get("seeds"))
    if seeds_raw is None:
        raise check.fail("seeds", "missing: a list of seeds, or a count (e.g. 5 for seeds 0-4)")
    if isinstance(seeds_raw, int) and not isinstance(seeds_raw, bool):
        seeds = tuple(range(check.integer("seeds", seeds_raw, minimum=1, maximum=MAX_SEEDS)))
    elif isinstance(seeds_raw, list) and seeds_raw:
        seeds = tuple(check.integer(f"seeds[{i}]", s, minimum=0) for i, s in enumerate(seeds_raw))
        if len(set(seeds)) != len(seeds):
            raise check.fail("seeds", "lists a seed twice")
    else:
        raise check.fail(
            "seeds", f"expected a non-empty list of integers or a count, got {seeds_raw!r}"
        )

    grid: dict[str, list[Any]] = {}
    if "grid" in data:
        raw_grid = data["grid"]
        if not isinstance(raw_grid, dict) or not raw_grid:
            raise check.fail("grid", "expected a non-empty mapping of setting -> list of values")
        for key, values in raw_grid.items():
            check.setting_key(f"grid.{key}", key)
            if not isinstance(values, list) or not values:
                raise check.fail(
                    f"grid.{key}", f"expected a non-empty list of values, got {values!r}"
                )
            if len({json.dumps(v, sort_keys=True) for v in values}) != len(values):
                raise check.fail(f"grid.{key}", "lists a value twice")
            grid[key] = list(values)

    configurations: list[Configuration] = []
    if "configurations" in data:
        raw = data["configurations"]
        if not isinstance(raw, list) or not raw:
            raise check.fail("configurations", "expected a non-empty list of {name, set}")
        names = set()
        for i, item in enumerate(raw):
            where = f"configurations[{i}]"
            check.keys(where, item, _CONFIGURATION_KEYS)
            name = check.string(f"{where}.name", item.get("name"))
            if not _NAME_PATTERN.match(name):
                raise check.fail(
                    f"{where}.name", f"{name!r}: use letters, digits and . _ + = - (a folder name)"
                )
            if name in names:
                raise check.fail(f"{where}.name", f"{name!r} is used twice")
            names.add(name)
            restrict = None
            if "agents" in item:
                restrict = tuple(check.string_list(f"{where}.agents", item["agents"]))
                for agent in restrict:
                    if agent not in agents:
                        raise check.fail(
                            f"{where}.agents", f"{agent!r} is not one of the sweep's agents"
                        )
            configurations.append(
                Configuration(name, check.overrides(f"{where}.set", item.get("set", {})), restrict)
            )
    if not configurations:
        configurations.append(Configuration(None, {}))

    evaluation = _parse_evaluation(check, data.get("evaluation", {}), base_dir, cli)
    for i, policy in enumerate(evaluation.policies):
        if policy != "agent" and policy not in REFERENCE_POLICIES:
            raise check.fail(
                f"evaluation.policies[{i}]",
                f"unknown policy {policy!r} (known: agent, {', '.join(REFERENCE_POLICIES)})",
            )

    spec = SweepSpec(
        source=str(source),
        name=str(data.get("name") or Path(str(source)).stem),
        data=data_dir,
        simulator=simulator,
        sid=sid,
        preset=preset,
        device=device,
        iterations=iterations,
        ground_truth=ground_truth,
        base_set=base_set,
        agents=agents,
        agent_set=agent_set,
        seeds=seeds,
        grid=grid,
        configurations=tuple(configurations),
        evaluation=evaluation,
    )
    _check_agent_keys(check, spec)
    return spec


def _parse_evaluation(
    check: _Checker, raw: Any, base_dir: Path, cli: dict[str, Any]
) -> EvaluationSpec:
    from hsrl.evaluate import MAX_EPISODES

    raw = check.keys("evaluation", raw, _EVAL_KEYS)
    episodes = cli.get("episodes", raw.get("episodes", 1000))
    simulators = raw.get("simulators", {})
    if not isinstance(simulators, dict):
        raise check.fail("evaluation.simulators", "expected a mapping label -> simulator folder")
    resolved = {}
    for label, folder in simulators.items():
        if not isinstance(label, str) or not _NAME_PATTERN.match(label):
            raise check.fail(
                f"evaluation.simulators.{label}", "labels use letters, digits and . _ + = -"
            )
        folder = check.string(f"evaluation.simulators.{label}", folder)
        resolved[label] = str((base_dir / Path(folder).expanduser()).resolve())
    policies = raw.get("policies", ["agent"])
    evaluation = EvaluationSpec(
        episodes=check.integer("evaluation.episodes", episodes, minimum=1, maximum=MAX_EPISODES),
        seed=check.integer("evaluation.seed", raw.get("seed", 0), minimum=0),
        split=check.string("evaluation.split", raw.get("split"), optional=True),
        simulator=check.boolean("evaluation.simulator", raw.get("simulator", True)),
        ground_truth=check.boolean("evaluation.ground_truth", raw.get("ground_truth", False)),
        simulators=resolved,
        policies=tuple(check.string_list("evaluation.policies", policies)),
    )
    if not (evaluation.simulator or evaluation.ground_truth or evaluation.simulators):
        raise check.fail(
            "evaluation", "no evaluation chosen: set simulator, ground_truth or simulators"
        )
    return evaluation


def _agent_fields(agent: str) -> set[str]:
    import dataclasses

    from hsrl.agents import agent_class

    return {f.name for f in dataclasses.fields(agent_class(agent).config_class)}


def _agent_key(key: str) -> str | None:
    """The agent-config field a setting names ("agent.x.y" or "agent_config.x"), else None."""
    parts = key.split(".")
    if parts[0] in ("agent", "agent_config") and len(parts) > 1:
        return parts[1]
    return None


def _applies(key: str, agent: str) -> bool:
    field_name = _agent_key(key)
    return field_name is None or field_name in _agent_fields(agent)


def _check_agent_keys(check: _Checker, spec: SweepSpec) -> None:
    """An agent setting must belong to at least one agent it is meant for."""
    blocks = [("base.set", spec.base_set, spec.agents), ("grid", spec.grid, spec.agents)]
    blocks += [(f"agent_set.{a}", o, (a,)) for a, o in spec.agent_set.items()]
    blocks += [
        (f"configurations[{i}].set", c.overrides, c.agents or spec.agents)
        for i, c in enumerate(spec.configurations)
    ]
    for where, block, agents in blocks:
        for key in block:
            field_name = _agent_key(key)
            if field_name is not None and not any(_applies(key, a) for a in agents):
                raise check.fail(
                    f"{where}.{key}",
                    f"no agent of {', '.join(agents)} has a setting {field_name!r}",
                )


def load_sweep(path: str | Path, cli: dict[str, Any] | None = None) -> SweepSpec:
    path = Path(path)
    return parse_sweep(read_sweep_file(path), path, base_dir=path.resolve().parent, cli=cli)


# --- expansion ----------------------------------------------------------------------------------
def _nested(key: str, value: Any) -> dict[str, Any]:
    parts = key.split(".")
    if parts[0] == "agent":
        parts[0] = "agent_config"
    nested: dict[str, Any] = {parts[-1]: value}
    for part in reversed(parts[:-1]):
        nested = {part: nested}
    return nested


def _value_text(value: Any) -> str:
    if isinstance(value, float):
        text = f"{value:g}"
    elif isinstance(value, (dict, list)):
        text = json.dumps(value, separators=(",", ":"), sort_keys=True)
    else:
        text = str(value)
    return re.sub(r"[^A-Za-z0-9._+=-]", "-", text)


def _short_keys(keys: Sequence[str]) -> dict[str, str]:
    out = {}
    for key in keys:
        parts = key.split(".")
        for depth in range(1, len(parts) + 1):
            tail = parts[-depth:]
            if sum(1 for k in keys if k.split(".")[-depth:] == tail) == 1:
                break
        out[key] = ".".join(tail)
    return out


def grid_points(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Every combination of the grid's values, in the order the keys and values are written."""
    if not grid:
        return [{}]
    keys = list(grid)
    return [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]


def expand(spec: SweepSpec) -> list[Trial]:
    """The sweep's trials, seed-major (all agents' first seeds come first), validated.

    Agent settings (``agent.*``) in ``set`` blocks and grids apply to the agents that have them
    and are left out for the others (a grid over HSRL's entropy coefficient does not multiply
    DDPG's runs). Later blocks win: base.set, agent_set, the configuration, the grid point.
    """
    from collections import Counter

    _check_folders(spec)
    splits = _dataset_splits(spec.data)
    short = _short_keys(list(spec.grid))
    reference_done: set[tuple[str, str]] = set()
    trials: list[Trial] = []
    for seed in spec.seeds:
        for agent in spec.agents:
            applicable = {k: v for k, v in spec.grid.items() if _applies(k, agent)}
            for configuration in spec.configurations:
                if configuration.agents and agent not in configuration.agents:
                    continue
                for point in grid_points(applicable):
                    overrides: dict[str, Any] = {}
                    blocks = (spec.base_set, spec.agent_set.get(agent, {}))
                    for block in (*blocks, configuration.overrides, point):
                        overrides.update({k: v for k, v in block.items() if _applies(k, agent)})
                    parts = [configuration.name] if configuration.name else []
                    parts += [f"{short[k]}={_value_text(v)}" for k, v in point.items()]
                    variant = "-".join(parts)
                    name = "__".join([agent, *([variant] if variant else []), f"seed{seed}"])
                    config = _trial_config(spec, agent, seed, overrides, name)
                    evaluations = _evaluations(
                        spec, config, splits, reference_done, where=f"trial {name}"
                    )
                    trials.append(Trial(name, agent, seed, variant, overrides, config, evaluations))
                    if len(trials) > MAX_TRIALS:
                        raise ConfigError(
                            f"{spec.source}: more than {MAX_TRIALS:,} trials (seeds x agents x "
                            "configurations x grid points); split the sweep"
                        )
    duplicates = sorted(n for n, count in Counter(t.name for t in trials).items() if count > 1)
    if duplicates:
        raise ConfigError(
            f"{spec.source}: trial names collide ({', '.join(duplicates)}): give the "
            "configurations distinct names or grid values that differ as text"
        )
    return trials


def _trial_config(
    spec: SweepSpec, agent: str, seed: int, overrides: dict[str, Any], name: str
) -> dict[str, Any]:
    """The trial's full RunConfig (as `hsrl train` will save it): preset, base, overrides."""
    from hsrl.agents import agent_class, agent_config
    from hsrl.config import to_dict
    from hsrl.presets import merge, preset
    from hsrl.train import config_from_dict

    values = preset(spec.preset, agent) if spec.preset else {}
    explicit: dict[str, Any] = {"data": spec.data}
    for key in ("simulator", "sid", "device"):
        if getattr(spec, key):
            explicit[key] = getattr(spec, key)
    if spec.iterations is not None:
        explicit["train"] = {"iterations": spec.iterations}
    if spec.ground_truth:
        explicit["env"] = {"ground_truth": True}
    values = merge(values, explicit)
    for key, value in overrides.items():
        values = merge(values, _nested(key, value))
    values = merge(values, {"agent": agent, "seed": seed})
    where = f"{spec.source}: trial {name}"
    config = config_from_dict(values, where=where)
    try:
        agent_config(agent, config.agent_config)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    if agent_class(agent).requires_sid and config.sid is None:
        raise ConfigError(
            f"{spec.source}: base.sid: agent {agent!r} needs semantic IDs "
            "(a folder from `hsrl sid build`)"
        )
    if not config.env.ground_truth and config.simulator is None:
        raise ConfigError(
            f"{spec.source}: base.simulator: trial {name} trains against a learned simulator; "
            "name it (or set base.ground_truth)"
        )
    return to_dict(config)


def _evaluations(
    spec: SweepSpec,
    config: dict[str, Any],
    splits: list[str],
    reference_done: set[tuple[str, str]],
    where: str,
) -> tuple[Evaluation, ...]:
    ev = spec.evaluation
    split = ev.split or ("test" if "test" in splits else config["env"]["split"])
    if split not in splits:
        raise ConfigError(
            f"{spec.source}: evaluation.split: the dataset has {', '.join(splits)}, not {split!r}"
        )
    targets: list[tuple[str, str]] = []
    if ev.simulator:
        if config.get("simulator") is None:
            raise ConfigError(
                f"{spec.source}: evaluation.simulator: {where} has no learned simulator "
                "(set base.simulator, or evaluation.simulator = false)"
            )
        targets.append(("sim", "simulator"))
    if ev.ground_truth:
        targets.append(("truth", "ground_truth"))
    targets += [(f"sim-{label}", path) for label, path in ev.simulators.items()]
    env = config["env"]
    reference_key = json.dumps([env["reward"], env["temper"], env["max_steps"]])
    out = []
    for policy in ev.policies:
        if policy != "agent":
            # Reference policies do not learn: once per environment setting is enough.
            if (policy, reference_key) in reference_done:
                continue
            reference_done.add((policy, reference_key))
        for label, target in targets:
            name = f"{policy}_{label}_{split}_seed{ev.seed}"
            out.append(Evaluation(name, policy, target, split, ev.episodes, ev.seed))
    return tuple(out)


def _dataset_splits(data: str) -> list[str]:
    from hsrl.data.prepared import read_manifest

    return list(read_manifest(data)["splits"])


def _check_folders(spec: SweepSpec) -> None:
    from hsrl.data.prepared import read_manifest

    try:
        read_manifest(spec.data)
    except HsrlError as exc:
        raise ConfigError(f"{spec.source}: base.data: {exc}") from None
    for key, folder in (("base.simulator", spec.simulator), ("base.sid", spec.sid)):
        if folder is not None and not Path(folder).is_dir():
            raise ConfigError(f"{spec.source}: {key}: folder not found: {folder}")
    for label, folder in spec.evaluation.simulators.items():
        if not Path(folder).is_dir():
            raise ConfigError(
                f"{spec.source}: evaluation.simulators.{label}: folder not found: {folder}"
            )
    needs_truth = spec.evaluation.ground_truth or spec.ground_truth
    if needs_truth and not (Path(spec.data) / "ground_truth.npz").is_file():
        raise ConfigError(
            f"{spec.source}: evaluation.ground_truth: the dataset {spec.data} has no ground "
            "truth (only the built-in dataset has true users)"
        )


# --- trial state --------------------------------------------------------------------------------
def eval_path(out: Path, trial: Trial, evaluation: Evaluation) -> Path:
    return out / trial.name / "eval" / f"{evaluation.name}.json"


def is_finished(out: Path, trial: Trial) -> bool:
    """Finished = every evaluation file of the trial exists."""
    return all(eval_path(out, trial, e).is_file() for e in trial.evaluations)


def _saved_config(run_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None


def changed_trials(out: Path, trials: Sequence[Trial]) -> list[str]:
    """Trials whose run folder holds a run of other settings (the sweep file was edited)."""
    changed = []
    for trial in trials:
        saved = _saved_config(out / trial.name)
        if saved is not None and saved != trial.config:
            changed.append(trial.name)
    return changed


def _checkpoint_iteration(path: Path) -> int | None:
    """The iteration a checkpoint was saved at, or None when it cannot be read."""
    import torch

    if not path.is_file():
        return None
    for mmap in (True, False):
        try:
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
            return int(state["iteration"])
        except Exception:  # torch raises many types for damaged files
            continue
    return None


# --- running one trial (inside a worker) ----------------------------------------------------------
def _bookkeeping(out: Path) -> Path:
    return out / BOOKKEEPING


def status_path(out: Path, name: str) -> Path:
    return _bookkeeping(out) / "status" / f"{name}.json"


def log_path(out: Path, name: str) -> Path:
    return _bookkeeping(out) / "logs" / f"{name}.log"


def set_threads(threads: int) -> None:
    """Torch (and BLAS) threads of a worker process: trials share the machine's cores."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)
    import torch

    torch.set_num_threads(threads)


def run_trial(trial_data: dict[str, Any], out: str, threads: int | None = None) -> dict[str, Any]:
    """Train (fresh, resumed or not at all) and evaluate one trial; never raises.

    Everything the CLI prints goes to the trial's log file; the outcome is also written to
    ``_sweep/status/<trial>.json`` so that the parent sees it whatever the backend.
    """
    trial = Trial.from_dict(trial_data)
    out_dir = Path(out)
    if threads is not None:
        set_threads(threads)
    log = log_path(out_dir, trial.name)
    log.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    outcome: dict[str, Any] = {"name": trial.name, "steps": [], "log": str(log)}
    global _BUSY
    with open(log, "a", encoding="utf-8") as handle:
        _BUSY = True
        try:
            with contextlib.redirect_stdout(handle), contextlib.redirect_stderr(handle):
                print(f"== {time.strftime('%Y-%m-%d %H:%M:%S')} trial {trial.name}", flush=True)
                _trial_steps(trial, out_dir, outcome["steps"])
            outcome["status"] = "finished"
        except _StepFailed as exc:
            outcome.update(status="failed", error=str(exc))
        except KeyboardInterrupt:
            handle.write("== interrupted (the next run of the sweep resumes this trial)\n")
            outcome.update(status="failed", error="interrupted")
        except BaseException as exc:  # a bug: keep the whole story in the trial's log
            handle.write(traceback.format_exc())
            outcome.update(status="failed", error=f"{type(exc).__name__}: {exc}")
        finally:
            _BUSY = False
    outcome["wall_s"] = round(time.perf_counter() - started, 2)
    from hsrl.io import write_json

    write_json(status_path(out_dir, trial.name), outcome)
    return outcome


class _StepFailed(Exception):
    pass


def _cli(argv: list[str]) -> None:
    import torch

    from hsrl import cli

    print(f"$ hsrl {' '.join(argv)}", flush=True)
    # The worker's thread count (set from --cpus-per-trial) carries into the command.
    code = cli.main(["--threads", str(torch.get_num_threads()), *argv])
    sys.stdout.flush()
    if code == 130:  # the CLI's answer to Ctrl-C: stop the trial, keep what it saved
        raise KeyboardInterrupt
    if code != 0:
        raise _StepFailed(f"`hsrl {argv[0]}` exited with status {code}")


def _trial_steps(trial: Trial, out: Path, steps: list[str]) -> None:
    from hsrl.io import write_json

    run_dir = out / trial.name
    target = int(trial.config["train"]["iterations"])
    saved = _saved_config(run_dir)
    done = _checkpoint_iteration(run_dir / CHECKPOINT) if saved == trial.config else None
    if done is None or done < target:
        for evaluation in trial.evaluations:  # results of an older checkpoint
            eval_path(out, trial, evaluation).unlink(missing_ok=True)
    if done is None:
        config_file = _bookkeeping(out) / "configs" / f"{trial.name}.json"
        write_json(config_file, trial.config)
        argv = ["train", "--agent", trial.agent, "--data", trial.config["data"]]
        argv += ["--config", str(config_file), "--out", str(run_dir), "--no-progress"]
        _cli(argv + ["--overwrite"])
        steps.append("train")
    elif done < target:
        _cli(
            ["train", "--resume", str(run_dir), "--iterations", str(target - done), "--no-progress"]
        )
        steps.append(f"resume from {done}")
    for evaluation in trial.evaluations:
        if not eval_path(out, trial, evaluation).is_file():
            _cli(evaluation.argv(run_dir))
            steps.append(f"evaluate {evaluation.name}")


_BUSY = False  # a pool worker is inside run_trial


def _on_terminate(signum: int, frame: Any) -> None:
    """A pool worker asked to stop: a running trial stops like on Ctrl-C (its status says
    interrupted, its checkpoint stays); an idle worker just exits."""
    if _BUSY:
        raise KeyboardInterrupt
    os._exit(1)


def _pool_initializer(threads: int) -> None:
    import signal

    # Ctrl-C reaches the whole process group; the parent alone decides and forwards it as
    # SIGTERM, so idle workers exit quietly and busy ones record the interruption.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _on_terminate)
    set_threads(threads)


# --- running a sweep ----------------------------------------------------------------------------
@dataclass
class SweepResult:
    out: Path
    trials: list[Trial]
    outcomes: dict[str, dict[str, Any]]  # trial name -> outcome (status: skipped/finished/failed)
    backend: str

    @property
    def failed(self) -> list[str]:
        return [n for n, o in self.outcomes.items() if o["status"] == "failed"]


def ray_available() -> bool:
    try:
        import ray  # noqa: F401
        from ray import tune  # noqa: F401
    except ImportError:
        return False
    return True


def write_sweep_json(out: Path, spec: SweepSpec, trials: Sequence[Trial]) -> None:
    import dataclasses

    from hsrl.io import write_json

    content = {
        "name": spec.name,
        "sweep_file": spec.source,
        "spec": json.loads(json.dumps(dataclasses.asdict(spec))),
        "trials": [t.to_dict() for t in trials],
    }
    with contextlib.suppress(OSError, json.JSONDecodeError):
        if json.loads((out / SWEEP_FILE).read_text(encoding="utf-8")) == content:
            return  # unchanged: keep the file (and its time stamp) as it is
    write_json(out / SWEEP_FILE, content)


def run_sweep(
    spec: SweepSpec,
    out: str | Path,
    *,
    backend: str = "auto",
    workers: int | None = None,
    cpus_per_trial: float = 1.0,
    gpus_per_trial: float = 0.0,
    address: str | None = None,
    rerun_changed: bool = False,
    echo: Callable[[str], None] = print,
) -> SweepResult:
    """Expand ``spec``, write OUT/sweep.json, run every unfinished trial, collect outcomes.

    backend: "auto" (Ray when installed, else local), "ray", or "local". ``workers`` is the
    local pool's size (0: run trials one after another in this process; None: CPUs divided by
    ``cpus_per_trial``) and, on Ray, a cap on concurrent trials (None: as the resources allow);
    ``cpus_per_trial`` is both the Ray resource and the torch thread count of a trial.
    """
    if backend not in ("auto", "ray", "local"):
        raise ConfigError(f"--backend {backend!r}: use auto, ray or local")
    if cpus_per_trial <= 0 or gpus_per_trial < 0:
        raise ConfigError("--cpus-per-trial must be positive and --gpus-per-trial not negative")
    if workers is not None and workers < 0:
        raise ConfigError("--workers must not be negative")
    if backend == "ray" and not ray_available():
        raise HsrlError("the ray backend needs Ray: pip install 'hsrl[ray]'")
    if backend == "auto":
        backend = "ray" if ray_available() else "local"
    if backend == "local" and (gpus_per_trial or address):
        echo(
            "hsrl sweep: warning: --gpus-per-trial and --address need the ray backend; "
            "running on a local process pool with each trial on its configured device"
        )
    out = Path(out).resolve()  # workers may run in another folder (Ray) or on another machine
    trials = expand(spec)
    changed = changed_trials(out, trials)
    if changed and not rerun_changed:
        listing = ", ".join(changed[:5]) + (
            f" and {len(changed) - 5} more" if len(changed) > 5 else ""
        )
        raise ConfigError(
            f"{out}: run folder(s) {listing} hold runs of other settings (was the sweep file "
            "changed?): use another --out, or --rerun-changed to train them again"
        )
    out.mkdir(parents=True, exist_ok=True)
    write_sweep_json(out, spec, trials)
    strays = _stray_runs(out, trials)
    if strays:
        echo(
            f"hsrl sweep: note: {len(strays)} run folder(s) in {out} are not trials of this sweep "
            f"(e.g. {strays[0]}); `hsrl report {out}` will include them"
        )
    outcomes: dict[str, dict[str, Any]] = {}
    pending = []
    for trial in trials:
        if trial.name in changed:
            import shutil

            shutil.rmtree(out / trial.name, ignore_errors=True)
        if is_finished(out, trial):
            outcomes[trial.name] = {"name": trial.name, "status": "skipped", "steps": []}
        else:
            pending.append(trial)
    echo(
        f"sweep {spec.name}: {len(trials)} trial(s), {len(trials) - len(pending)} already "
        f"finished, {len(pending)} to run on the {backend} backend -> {out}"
    )
    threads = max(1, int(math.floor(cpus_per_trial)))
    for trial in pending:  # a stale status must not pass for this run's
        status_path(out, trial.name).unlink(missing_ok=True)
    if pending:
        if backend == "ray":
            _run_ray(pending, out, cpus_per_trial, gpus_per_trial, address, threads, workers, echo)
        else:
            _run_local(pending, out, workers, cpus_per_trial, threads, echo)
    for trial in pending:
        outcomes[trial.name] = _read_status(out, trial)
    result = SweepResult(out, trials, {t.name: outcomes[t.name] for t in trials}, backend)
    from hsrl.io import write_json

    write_json(_bookkeeping(out) / "status.json", {"backend": backend, "trials": result.outcomes})
    return result


def _stray_runs(out: Path, trials: Sequence[Trial]) -> list[str]:
    names = {t.name for t in trials}
    return sorted(
        p.name
        for p in out.iterdir()
        if p.is_dir() and p.name not in names and (p / "config.json").is_file()
    )


def _read_status(out: Path, trial: Trial) -> dict[str, Any]:
    try:
        return json.loads(status_path(out, trial.name).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {
            "name": trial.name,
            "status": "failed",
            "steps": [],
            "error": "the worker stopped without a result (killed, out of memory, or interrupted)",
            "log": str(log_path(out, trial.name)),
        }


def _run_local(
    pending: Sequence[Trial],
    out: Path,
    workers: int | None,
    cpus_per_trial: float,
    threads: int,
    echo: Callable[[str], None],
) -> None:
    if workers is None:
        workers = max(1, int((os.cpu_count() or 1) // cpus_per_trial))
    workers = min(workers, len(pending))
    if workers == 0:
        import torch

        before = torch.get_num_threads()
        try:
            for trial in pending:
                outcome = run_trial(trial.to_dict(), str(out), threads)
                _echo_outcome(echo, outcome)
                if outcome.get("error") == "interrupted":
                    echo("hsrl sweep: interrupted; run the same command again to resume")
                    raise KeyboardInterrupt
        finally:
            torch.set_num_threads(before)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    context = multiprocessing.get_context("spawn")  # no fork of a process holding torch threads
    pool = ProcessPoolExecutor(
        max_workers=workers,
        mp_context=context,
        initializer=_pool_initializer,
        initargs=(threads,),
    )
    try:
        with _terminate_as_interrupt():
            futures = {pool.submit(run_trial, t.to_dict(), str(out)): t for t in pending}
            for future in as_completed(futures):
                try:
                    _echo_outcome(echo, future.result())
                except BrokenProcessPool:
                    echo(f"  {futures[future].name}: worker process died")
    except KeyboardInterrupt:
        # The pool offers no way to stop running tasks: signal its processes (a private
        # attribute, read defensively) so that running trials stop at once.
        for process in list((getattr(pool, "_processes", None) or {}).values()):
            with contextlib.suppress(OSError, ValueError, AttributeError):
                process.terminate()
        echo("hsrl sweep: interrupted; run the same command again to resume")
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


@contextlib.contextmanager
def _terminate_as_interrupt():
    """While the pool runs, SIGTERM to the sweep stops it like Ctrl-C (workers included)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _echo_outcome(echo: Callable[[str], None], outcome: dict[str, Any]) -> None:
    steps = ", ".join(outcome.get("steps", [])) or "-"
    text = f"  {outcome['name']}: {outcome['status']} ({steps}; {outcome.get('wall_s', 0):.1f} s)"
    if outcome["status"] == "failed":
        text += f": {outcome.get('error')} (log: {outcome.get('log')})"
    echo(text)


def _tune_trainable(config: dict[str, Any], trials: list, out: str, threads: int) -> None:
    """A Ray Tune function trainable: one sweep trial, by index into ``trials``."""
    from ray import tune

    outcome = run_trial(trials[config["index"]], out, threads)
    report = getattr(tune, "report", None)
    if report is None:  # Ray before 2.10 reported through ray.train
        from ray.train import report
    report({"finished": int(outcome["status"] == "finished"), "wall_s": outcome["wall_s"]})


def _tune_trial_name(trial: Any, names: list[str]) -> str:
    return names[trial.config["index"]]


def _run_ray(
    pending: Sequence[Trial],
    out: Path,
    cpus_per_trial: float,
    gpus_per_trial: float,
    address: str | None,
    threads: int,
    workers: int | None,
    echo: Callable[[str], None],
) -> None:
    import functools

    import ray
    from ray import tune

    started_here = not ray.is_initialized()
    if started_here:
        # A local instance unless an address is given; workers inherit this environment.
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    resources = ray.cluster_resources()
    if gpus_per_trial > 0 and resources.get("GPU", 0) < gpus_per_trial:
        raise HsrlError(
            f"--gpus-per-trial {gpus_per_trial}: the Ray cluster has {resources.get('GPU', 0)} GPU(s)"
        )
    names = [t.name for t in pending]
    trainable = tune.with_resources(
        tune.with_parameters(
            _tune_trainable, trials=[t.to_dict() for t in pending], out=str(out), threads=threads
        ),
        {"cpu": cpus_per_trial, "gpu": gpus_per_trial},
    )
    run_config_cls = getattr(tune, "RunConfig", None)
    if run_config_cls is None:  # Ray before 2.10 kept it in ray.train
        from ray.train import RunConfig as run_config_cls
    failure_cls = getattr(tune, "FailureConfig", None)
    if failure_cls is None:
        from ray.train import FailureConfig as failure_cls
    naming = functools.partial(_tune_trial_name, names=names)
    by_name = {t.name: t for t in pending}

    class EchoOutcomes(tune.Callback):
        """One line per trial as it ends (Tune's own tables are too verbose for a sweep)."""

        def on_trial_complete(self, iteration, trials, trial, **info):
            _echo_outcome(echo, _read_status(out, by_name[naming(trial)]))

        def on_trial_error(self, iteration, trials, trial, **info):
            _echo_outcome(echo, _read_status(out, by_name[naming(trial)]))

    tuner = tune.Tuner(
        trainable,
        param_space={"index": tune.grid_search(list(range(len(pending))))},
        tune_config=tune.TuneConfig(
            trial_name_creator=naming,
            trial_dirname_creator=naming,
            max_concurrent_trials=workers or None,  # else as many as the resources allow
        ),
        run_config=run_config_cls(
            name="tune",
            storage_path=str((_bookkeeping(out) / "ray").resolve()),
            failure_config=failure_cls(max_failures=0),
            callbacks=[EchoOutcomes()],
            verbose=0,
        ),
    )
    echo(
        f"Ray: {resources.get('CPU', 0):g} CPU(s), {resources.get('GPU', 0):g} GPU(s); "
        f"{cpus_per_trial:g} CPU(s) and {gpus_per_trial:g} GPU(s) per trial"
    )
    try:
        tuner.fit()
    finally:
        if started_here:
            ray.shutdown()


__all__ = [
    "Evaluation",
    "EvaluationSpec",
    "SweepResult",
    "SweepSpec",
    "Trial",
    "changed_trials",
    "expand",
    "grid_points",
    "is_finished",
    "load_sweep",
    "parse_sweep",
    "read_sweep_file",
    "run_sweep",
    "run_trial",
]
