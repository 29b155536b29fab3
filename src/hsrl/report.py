"""Tables and plots across runs, agents and seeds (``hsrl report``, SPEC 1 step 5 and 9).

A report reads run folders (found by their ``config.json``), groups the runs that differ only
by seed, and summarises them:

- **table** (``results.md``, ``results.csv``): for each group and evaluation setting (learned
  simulator or ground truth, split, policy), the mean over seeds of the per-seed mean, the std
  over seeds, and the 95% t-interval of that mean over seeds. With one seed there is no spread
  over seeds; the row says so (n = 1) and shows the run's own interval over its evaluation
  episodes instead. ``runs.csv`` keeps the per-run numbers the rows are made of.
- **learning curves** (``learning_curves.png``): episode total reward and depth from the
  training logs against iterations, mean over seeds with a band (± std or min-max).
- **final metrics** (``final_metrics.png``): each group's evaluation means with 95% interval
  bars, learned simulator and ground truth side by side.
- **training diagnostics** (``diagnostics.md``, ``diagnostics.png``), for runs whose logs hold
  them (HSRL: docs/hsrl.md, "Logged metrics"): per group, the mean over seeds of each diagnostic
  in the last log window, and its curves against iterations.

Grouping keys leave out what does not change the experiment (seed, device, logging and
checkpoint cadence, the planned iteration count: the trained iteration count comes from the
evaluation instead) and replace the data, simulator and SID paths by the identity of what they
hold (a hash of their manifest), so copies of one dataset in two places still group together
and two different datasets never do.

Runs with missing or damaged parts are used as far as they go (a run without evaluations still
gives learning curves) and every one skipped or cut is named in the report's warnings; only a
report with nothing at all to show is an error.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hsrl.errors import HsrlError
from hsrl.io import atomic_write_bytes, write_json
from hsrl.stats import summarize, t_quantile_975

METRICS = ("total_reward", "depth", "avg_reward", "click_rate")
METRIC_LABELS = {
    "total_reward": "total reward per episode",
    "depth": "depth (steps per episode)",
    "avg_reward": "average reward per step",
    "click_rate": "click rate",
}
METRIC_DECIMALS = {"total_reward": 2, "depth": 2, "avg_reward": 3, "click_rate": 3}
CURVE_METRICS = ("episode/total_reward", "episode/depth")
# Training diagnostics shown when runs log them, in display order (prefix match for the
# per-level keys: policy/entropy_l1, policy/code_usage_l2, critic/omega_l0, ...).
DIAGNOSTICS = (
    "policy/entropy",
    "policy/item_entropy",
    "policy/entropy_l",
    "policy/code_usage_l",
    "advantage/mean",
    "advantage/std",
    "critic/td_error",
    "critic/explained_variance",
    "critic/omega_l",
    "grad_norm/encoder",
    "grad_norm/policy",
    "grad_norm/critic",
)
PLOTS_HINT = "pip install 'hsrl[plots]'"

# Settings that do not change what a run measures: left out of the grouping key.
_NOT_EXPERIMENT = {
    "seed",
    "device",
    "train.iterations",
    "train.log_every",
    "train.checkpoint_every",
    "train.keep_checkpoints",
    "train.tensorboard",
}
_PATH_KEYS = ("data", "simulator", "sid")
_IDENTITY_FILES = ("manifest.json", "config.json", "sid_meta.json")


# --- loading runs -------------------------------------------------------------------------------
@dataclass
class Run:
    """One run folder as far as it could be read."""

    path: Path
    config: dict[str, Any]
    log: list[dict[str, Any]] = field(default_factory=list)
    evaluations: list[dict[str, Any]] = field(default_factory=list)

    @property
    def agent(self) -> str:
        return str(self.config.get("agent"))

    @property
    def seed(self) -> Any:
        return self.config.get("seed")


@dataclass(frozen=True)
class Skipped:
    """A run (or a part of one) left out of the report, and why."""

    path: Path
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


def _config_problem(path: Path) -> str | None:
    """Why ``path`` is not a run's config.json (None when it is one).

    A run's config names an agent; simulator folders have a config.json too.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return f"config.json is not readable JSON ({exc})"
    if not (isinstance(data, dict) and isinstance(data.get("agent"), str)):
        return "config.json is not a run config (it names no agent)"
    return None


def _is_run_config(path: Path) -> bool:
    return _config_problem(path) is None


def discover_runs(paths: Iterable[str | Path]) -> tuple[list[Path], list[Skipped]]:
    """Run folders under ``paths`` (each a run folder or a folder of them, at any depth).

    A folder counts as a run when its config.json names an agent, or, without a usable config,
    when it holds what training leaves behind (log.jsonl, eval/, checkpoints/): those are
    reported as skipped rather than silently ignored. Hidden folders are not searched.
    """
    found: list[Path] = []
    skipped: list[Skipped] = []
    seen: set[Path] = set()

    def add(folder: Path) -> None:
        key = folder.resolve()
        if key not in seen:
            seen.add(key)
            found.append(folder)

    for raw in paths:
        root = Path(raw)
        if not root.exists():
            skipped.append(Skipped(root, "does not exist"))
            continue
        if not root.is_dir():
            skipped.append(Skipped(root, "not a folder"))
            continue
        if (root / "config.json").is_file() and _is_run_config(root / "config.json"):
            add(root)
            continue
        before = len(found) + len(skipped)
        for current, dirs, _files in os.walk(root):
            folder = Path(current)
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            config = folder / "config.json"
            if config.is_file() and _is_run_config(config):
                add(folder)
                dirs[:] = []  # nothing below a run folder is another run
            elif (folder / "log.jsonl").exists() or (folder / "eval").is_dir():
                reason = (
                    _config_problem(config)
                    if config.is_file()
                    else "no config.json (cannot tell which agent and settings it ran)"
                )
                skipped.append(Skipped(folder, reason))
                dirs[:] = []
        if len(found) + len(skipped) == before:
            skipped.append(Skipped(root, "no run folders (with a config.json) found here"))
    return found, skipped


def read_run(path: Path) -> tuple[Run | None, list[Skipped]]:
    """Read a run's config, log and evaluations; problems become notes, never exceptions."""
    notes: list[Skipped] = []
    config_path = path / "config.json"
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None, [Skipped(path, "no config.json")]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return None, [Skipped(path, f"config.json is not readable JSON ({exc})")]
    if not isinstance(config, dict) or not isinstance(config.get("agent"), str):
        return None, [Skipped(path, "config.json does not name an agent: not a run config")]
    run = Run(path=path, config=config)
    run.log, log_note = _read_log(path / "log.jsonl")
    if log_note:
        notes.append(Skipped(path, log_note))
    run.evaluations, eval_notes = _read_evaluations(path / "eval")
    notes.extend(eval_notes)
    if not run.evaluations and not any(_curve_points(run.log, m) for m in CURVE_METRICS):
        notes.append(Skipped(path, "nothing to report (no evaluation results, no episodes logged)"))
        return None, notes
    if not run.evaluations:
        notes.append(
            Skipped(path, "no evaluation results (eval/ missing or empty): learning curves only")
        )
    return run, notes


def _read_log(path: Path) -> tuple[list[dict[str, Any]], str | None]:
    """The log's records by iteration; a resumed run's repeated iterations keep the latest."""
    from hsrl.runlog import read_log

    if not path.is_file():
        return [], f"no training log ({path.name})"
    try:
        text = path.read_text(encoding="utf-8")
        records = read_log(path)
    except (OSError, UnicodeDecodeError, HsrlError) as exc:
        return [], f"training log ({path.name}) is unreadable, ignored: {exc}"
    note = None
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        note = f"training log ({path.name}) is empty"
    elif len(records) < len(lines):
        note = f"last line of the training log ({path.name}) is cut short, ignored"
    by_iteration: dict[int, dict[str, Any]] = {}
    for record in records:
        if isinstance(record, dict) and isinstance(record.get("iteration"), (int, float)):
            by_iteration[int(record["iteration"])] = record
    return [by_iteration[i] for i in sorted(by_iteration)], note


def _read_evaluations(folder: Path) -> tuple[list[dict[str, Any]], list[Skipped]]:
    if not folder.is_dir():
        return [], []
    results, notes = [], []
    for path in sorted(folder.glob("*.json")):
        try:
            result = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            notes.append(Skipped(path, f"not readable JSON, ignored ({exc})"))
            continue
        problem = _evaluation_problem(result)
        if problem:
            notes.append(Skipped(path, f"not an evaluation result, ignored ({problem})"))
            continue
        result["_file"] = str(path)
        results.append(result)
    return results, notes


def _evaluation_problem(result: Any) -> str | None:
    if not isinstance(result, dict):
        return "not a JSON object"
    if not isinstance(result.get("evaluation"), dict) or not isinstance(
        result.get("metrics"), dict
    ):
        return "no 'evaluation' or 'metrics' section"
    for metric, stats in result["metrics"].items():
        if not isinstance(stats, dict) or not all(
            isinstance(stats.get(k), (int, float)) for k in ("mean", "n")
        ):
            return f"metric {metric!r} lacks mean and n"
    return None


# --- grouping -----------------------------------------------------------------------------------
def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dict -> {"a.b.c": value}; lists become JSON text so they can be compared."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, name + "."))
        elif isinstance(value, list):
            flat[name] = json.dumps(value, sort_keys=True)
        else:
            flat[name] = value
    return flat


_identity_cache: dict[str, tuple[str, str]] = {}


def folder_identity(path: str | None) -> tuple[str, str]:
    """(identity, display name) of a data/simulator/SID folder: a hash of its manifest-like file.

    Falls back to the path itself when the folder or its manifest cannot be read (a run copied
    from another machine still groups with its seeds, which share the same path).
    """
    if path is None:
        return ("none", "none")
    if path in _identity_cache:
        return _identity_cache[path]
    folder = Path(path)
    identity = (f"path:{path}", folder.name or str(folder))
    for name in _IDENTITY_FILES:
        try:
            content = json.loads((folder / name).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            continue
        if isinstance(content, dict):
            content.pop("created_by", None)
            digest = hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()
            identity = (f"{name}:{digest[:16]}", folder.name or str(folder))
            break
    _identity_cache[path] = identity
    return identity


def complete_config(config: dict[str, Any]) -> dict[str, Any]:
    """The run's config with every default filled in (the agent's too), so that a setting left
    at its default and the same value written out group together. A config this version cannot
    read (an older or newer run) is used as it is."""
    from hsrl.agents import agent_config
    from hsrl.config import to_dict
    from hsrl.errors import ConfigError
    from hsrl.train import config_from_dict

    try:
        full = to_dict(config_from_dict(config))
        full["agent_config"] = to_dict(agent_config(full["agent"], full["agent_config"]))
    except (ConfigError, TypeError, ValueError):
        return config
    return full


def experiment_settings(config: dict[str, Any]) -> dict[str, Any]:
    """The settings that define a run's experiment (its config minus seed, paths, cadence)."""
    flat = {
        k: v
        for k, v in flatten(complete_config(config)).items()
        if k not in _NOT_EXPERIMENT and k not in _PATH_KEYS
    }
    for key in _PATH_KEYS:
        value = config.get(key)
        flat[key] = folder_identity(value if isinstance(value, str) else None)[0]
    return flat


@dataclass
class Group:
    """Runs of one experiment (same agent and settings), one per seed."""

    key: tuple
    agent: str
    settings: dict[str, Any]
    runs: list[Run] = field(default_factory=list)
    label: str = ""
    display: dict[str, str] = field(default_factory=dict)  # path keys -> folder names


def group_runs(runs: Sequence[Run]) -> list[Group]:
    """Group runs by agent and experiment settings; give each group a readable label."""
    groups: dict[tuple, Group] = {}
    for run in runs:
        settings = experiment_settings(run.config)
        key = tuple(sorted((k, json.dumps(v)) for k, v in settings.items()))
        if key not in groups:
            display = {}
            for name in _PATH_KEYS:
                value = run.config.get(name)
                display[name] = folder_identity(value if isinstance(value, str) else None)[1]
            groups[key] = Group(key, run.agent, settings, display=display)
        groups[key].runs.append(run)
    ordered = sorted(groups.values(), key=lambda g: (_agent_order(g.agent), g.key))
    _label_groups(ordered)
    return ordered


_AGENT_ORDER = ("hsrl", "hac", "behavior_ddpg", "ddpg", "a2c_flat", "supervised")


def _agent_order(agent: str) -> tuple[int, str]:
    return (_AGENT_ORDER.index(agent) if agent in _AGENT_ORDER else len(_AGENT_ORDER), agent)


def _short_names(keys: Sequence[str]) -> dict[str, str]:
    """Each dotted key by its last part, or by more parts where the last one is ambiguous."""
    names = {}
    for key in keys:
        parts = key.split(".")
        for depth in range(1, len(parts) + 1):
            short = ".".join(parts[-depth:])
            if sum(1 for other in keys if other.split(".")[-depth:] == parts[-depth:]) == 1:
                break
        names[key] = short
    return names


def _label_groups(groups: Sequence[Group]) -> None:
    """Label = agent name plus the settings that tell it apart from the same agent's groups.

    Settings that differ across all groups (e.g. the dataset in a report over two sweeps) are
    shown for every group that has a sibling of the same agent or when datasets differ.
    """
    datasets = {g.settings["data"] for g in groups}
    by_agent: dict[str, list[Group]] = {}
    for g in groups:
        by_agent.setdefault(g.agent, []).append(g)
    for agent, members in by_agent.items():
        keys = sorted({k for g in members for k in g.settings})
        differing = [
            k
            for k in keys
            if k != "data" and len({json.dumps(g.settings.get(k)) for g in members}) > 1
        ]
        short = _short_names(differing)
        for g in members:
            parts = []
            if len(datasets) > 1:
                parts.append(f"data={g.display['data']}")
            for k in differing:
                if k in _PATH_KEYS:
                    parts.append(f"{k}={g.display[k]}")
                else:
                    parts.append(f"{short[k]}={_format_value(g.settings.get(k))}")
            g.label = f"{agent} ({', '.join(parts)})" if parts else agent
    seen: dict[str, int] = {}
    for g in groups:  # never two groups with one label
        seen[g.label] = seen.get(g.label, 0) + 1
        if seen[g.label] > 1:
            g.label = f"{g.label} #{seen[g.label]}"


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if value is None:
        return "none"
    return str(value)


# --- aggregation --------------------------------------------------------------------------------
@dataclass(frozen=True)
class EvalSetting:
    """Where and how a policy was evaluated: one section of the table."""

    target: str  # "simulator", "ground_truth" or "simulator:<identity>"
    target_label: str  # "learned simulator", "ground truth", "simulator <name>"
    split: str

    @property
    def title(self) -> str:
        return f"{self.target_label}, {self.split} split"


@dataclass
class RunResult:
    """One run's numbers in one evaluation setting (several result files pooled)."""

    run: Run
    policy: str
    setting: EvalSetting
    iteration: int | None
    episodes: int
    metrics: dict[str, dict[str, float]]  # metric -> summarize() of the run's episodes
    files: list[str]


@dataclass
class Row:
    """One line of the results table: a group (or a reference policy) in one setting."""

    label: str
    agent: str
    policy: str
    setting: EvalSetting
    results: list[RunResult]
    stats: dict[str, dict[str, float]]  # metric -> mean, std, n, ci95_low, ci95_high
    ci_over: str  # "seeds" or "episodes" (one seed)

    @property
    def seeds(self) -> int:
        return len(self.results)

    @property
    def iterations(self) -> list[int]:
        return sorted({r.iteration for r in self.results if r.iteration is not None})

    @property
    def episodes(self) -> list[int]:
        return sorted({r.episodes for r in self.results})


def pool_summaries(parts: Sequence[dict[str, float]]) -> dict[str, float]:
    """Combine summaries of disjoint samples into the summary of all of them (exact).

    A run evaluated twice in the same setting (say, two evaluation seeds) counts once, with
    all its episodes: the pooled mean and sample std follow from each part's n, mean and std.
    """
    parts = [p for p in parts if p.get("n", 0) > 0]
    if len(parts) == 1:
        return dict(parts[0])
    n = sum(int(p["n"]) for p in parts)
    if n == 0:
        return summarize([])
    mean = sum(p["n"] * p["mean"] for p in parts) / n
    squares = 0.0
    for p in parts:
        var = p["std"] ** 2 if p["n"] > 1 and _finite(p.get("std")) else 0.0
        squares += (p["n"] - 1) * var + p["n"] * (p["mean"] - mean) ** 2
    std = math.sqrt(squares / (n - 1)) if n > 1 else math.nan
    half = t_quantile_975(n - 1) * std / math.sqrt(n) if n > 1 else math.nan
    return {"mean": mean, "std": std, "n": n, "ci95_low": mean - half, "ci95_high": mean + half}


def across_seeds(results: Sequence[RunResult], metric: str) -> tuple[dict[str, float], str]:
    """Mean, std and 95% t-interval over seeds of the per-seed means.

    With a single seed there is no spread over seeds: std is NaN and the interval is the run's
    own interval over its evaluation episodes (second value "episodes").
    """
    values = [r.metrics[metric]["mean"] for r in results if metric in r.metrics]
    if len(values) == 1:
        single = next(r.metrics[metric] for r in results if metric in r.metrics)
        return (
            {
                "mean": float(single["mean"]),
                "std": math.nan,
                "n": 1,
                "ci95_low": float(single.get("ci95_low", math.nan)),
                "ci95_high": float(single.get("ci95_high", math.nan)),
            },
            "episodes",
        )
    return summarize(values), "seeds"


def _setting_of(result: dict[str, Any], run: Run) -> EvalSetting:
    evaluation = result["evaluation"]
    simulator = evaluation.get("simulator")
    split = str(evaluation.get("split", "?"))
    if simulator == "ground_truth":
        return EvalSetting("ground_truth", "ground truth", split)
    own = run.config.get("simulator")
    if simulator is None or (isinstance(own, str) and _same_path(simulator, own)):
        return EvalSetting("simulator", "learned simulator", split)
    identity, name = folder_identity(str(simulator))
    return EvalSetting(f"simulator:{identity}", f"simulator {name}", split)


def _same_path(a: str, b: str) -> bool:
    try:
        return Path(a).resolve() == Path(b).resolve()
    except OSError:
        return a == b


def run_results(run: Run) -> list[RunResult]:
    """A run's evaluations, one per (policy, setting); repeats in one setting are pooled."""
    buckets: dict[tuple[str, EvalSetting], list[dict[str, Any]]] = {}
    for result in run.evaluations:
        policy = str(result.get("policy", "agent"))
        buckets.setdefault((policy, _setting_of(result, run)), []).append(result)
    out = []
    for (policy, setting), results in buckets.items():
        metrics = {}
        for metric in METRICS:
            parts = [r["metrics"][metric] for r in results if metric in r["metrics"]]
            if parts:
                metrics[metric] = pool_summaries(parts)
        iterations = {r.get("iteration") for r in results}
        out.append(
            RunResult(
                run=run,
                policy=policy,
                setting=setting,
                # A reference policy does not train: the run's iteration says nothing about it.
                iteration=None
                if policy != "agent"
                else max((i for i in iterations if isinstance(i, int)), default=None),
                episodes=int(sum(r["evaluation"].get("episodes", 0) for r in results)),
                metrics=metrics,
                files=[r["_file"] for r in results],
            )
        )
    return out


def _reference_key(run: Run, policy: str) -> tuple:
    """Reference policies (random, greedy) do not depend on the run's agent: group them by the
    dataset and the environment settings that shape an evaluation."""
    env = run.config.get("env") if isinstance(run.config.get("env"), dict) else {}
    data = run.config.get("data")
    return (
        policy,
        folder_identity(data if isinstance(data, str) else None)[0],
        json.dumps({k: env.get(k) for k in ("reward", "temper", "max_steps")}, sort_keys=True),
    )


def build_rows(groups: Sequence[Group]) -> list[Row]:
    """The table's rows: every group in every setting it was evaluated in, then references."""
    agent_rows: dict[tuple[int, EvalSetting], list[RunResult]] = {}
    reference: dict[tuple[tuple, EvalSetting], list[RunResult]] = {}
    for index, group in enumerate(groups):
        for run in group.runs:
            for result in run_results(run):
                if result.policy == "agent":
                    agent_rows.setdefault((index, result.setting), []).append(result)
                else:
                    key = (_reference_key(run, result.policy), result.setting)
                    reference.setdefault(key, []).append(result)
    rows = []
    for (index, setting), results in agent_rows.items():
        group = groups[index]
        rows.append(_make_row(group.label, group.agent, "agent", setting, results))
    ref_keys = sorted({k for k, _ in reference}, key=str)
    for (key, setting), results in reference.items():
        policy = key[0]
        siblings = [k for k in ref_keys if k[0] == policy]
        details = []
        if len({k[1] for k in siblings}) > 1:
            data = results[0].run.config.get("data")
            details.append(f"data={folder_identity(data if isinstance(data, str) else None)[1]}")
        envs = [json.loads(k[2]) for k in siblings]
        mine = json.loads(key[2])
        for name in sorted(mine):
            if len({json.dumps(e.get(name)) for e in envs}) > 1:
                details.append(f"{name}={_format_value(mine[name])}")
        label = f"{policy} (reference{''.join(', ' + d for d in details)})"
        rows.append(_make_row(label, policy, policy, setting, results))
    order = {g.label: i for i, g in enumerate(groups)}
    rows.sort(
        key=lambda r: (
            r.setting.target != "simulator",
            r.setting.target != "ground_truth",
            r.setting.target,
            r.setting.split,
            r.policy != "agent",
            order.get(r.label, len(order)),
            r.label,
        )
    )
    return rows


def _make_row(
    label: str, agent: str, policy: str, setting: EvalSetting, results: list[RunResult]
) -> Row:
    stats, ci_over = {}, "seeds"
    for metric in METRICS:
        if any(metric in r.metrics for r in results):
            stats[metric], ci_over = across_seeds(results, metric)
    return Row(label, agent, policy, setting, results, stats, ci_over)


# --- learning curves ----------------------------------------------------------------------------
def _curve_points(log: Sequence[dict[str, Any]], metric: str) -> list[tuple[float, float]]:
    points = []
    for record in log:
        value = record.get(metric)
        if isinstance(value, (int, float)) and math.isfinite(value):
            points.append((float(record["iteration"]), float(value)))
    return points


@dataclass
class Curve:
    """A group's learning curve: per-iteration mean and spread over the seeds that reach it."""

    iterations: list[float]
    mean: list[float]
    std: list[float]
    low: list[float]
    high: list[float]
    count: list[int]
    runs: int


def smooth(values: Sequence[float], window: int) -> list[float]:
    """Trailing moving average over ``window`` log records (1 or less: unchanged)."""
    if window <= 1:
        return list(values)
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def learning_curve(runs: Sequence[Run], metric: str, window: int = 1) -> Curve | None:
    """Mean over seeds of ``metric`` against iterations.

    Runs logged at different iterations are put on the union of their iterations by linear
    interpolation inside each run's own range (never extrapolated): a seed counts at an
    iteration only if it was trained that far.
    """
    import numpy as np

    series = []
    for run in runs:
        points = _curve_points(run.log, metric)
        if points:
            x = np.array([p[0] for p in points])
            y = np.array(smooth([p[1] for p in points], window))
            series.append((x, y))
    if not series:
        return None
    grid = np.unique(np.concatenate([x for x, _ in series]))
    values = np.full((len(series), grid.size), np.nan)
    for row, (x, y) in enumerate(series):
        inside = (grid >= x[0]) & (grid <= x[-1])
        values[row, inside] = np.interp(grid[inside], x, y)
    present = ~np.isnan(values)
    count = present.sum(axis=0)  # (T,) seeds that reach each iteration
    filled = np.where(present, values, 0.0)
    mean = filled.sum(axis=0) / count
    squares = np.where(present, (values - mean) ** 2, 0.0).sum(axis=0)
    std = np.sqrt(squares / np.maximum(count - 1, 1)) * (count > 1)
    low = np.where(present, values, np.inf).min(axis=0)
    high = np.where(present, values, -np.inf).max(axis=0)
    return Curve(
        iterations=grid.tolist(),
        mean=mean.tolist(),
        std=std.tolist(),
        low=low.tolist(),
        high=high.tolist(),
        count=count.astype(int).tolist(),
        runs=len(series),
    )


# --- tables -------------------------------------------------------------------------------------
def _cell(stats: dict[str, float] | None, metric: str, one_seed: bool) -> str:
    if not stats:
        return "-"
    d = METRIC_DECIMALS[metric]
    low, high = stats.get("ci95_low", math.nan), stats.get("ci95_high", math.nan)
    interval = f"[{low:.{d}f}, {high:.{d}f}]" if _finite(low) and _finite(high) else "[n/a]"
    if one_seed:
        return f"{stats['mean']:.{d}f} {interval}†"
    return f"{stats['mean']:.{d}f} ± {stats['std']:.{d}f} {interval}"


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _span(values: Sequence[int]) -> str:
    if not values:
        return "-"
    return str(values[0]) if len(values) == 1 else f"{values[0]}-{values[-1]}"


def markdown_table(rows: Sequence[Row]) -> str:
    """One section per evaluation setting; one line per group (agents first, then references)."""
    lines = ["# Results", ""]
    sections: dict[EvalSetting, list[Row]] = {}
    for row in rows:
        sections.setdefault(row.setting, []).append(row)
    header = (
        "| group | seeds | iterations | episodes | "
        + " | ".join(METRIC_LABELS[m] for m in METRICS)
        + " |"
    )
    one_seed_used = False
    for setting, members in sections.items():
        lines += [f"## {setting.title}", "", header, "|" + "---|" * (4 + len(METRICS))]
        for row in members:
            one_seed = row.ci_over == "episodes"
            one_seed_used |= one_seed
            cells = [_cell(row.stats.get(m), m, one_seed) for m in METRICS]
            lines.append(
                f"| {row.label} | {row.seeds} | {_span(row.iterations)} | "
                f"{_span(row.episodes)} | " + " | ".join(cells) + " |"
            )
        lines.append("")
    lines.append(
        "Each cell: mean over seeds of the per-seed mean ± std over seeds "
        "[95% t-interval of the mean over seeds]."
    )
    if one_seed_used:
        lines.append(
            "† one seed (n = 1): no spread over seeds; the interval is the run's own 95% "
            "interval over its evaluation episodes."
        )
    return "\n".join(lines) + "\n"


def _csv_text(header: list[str], records: Iterable[list[Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for record in records:
        writer.writerow(["" if _is_nan(v) else v for v in record])
    return buffer.getvalue()


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def rows_csv(rows: Sequence[Row]) -> str:
    header = [
        "group",
        "agent",
        "policy",
        "evaluation",
        "split",
        "seeds",
        "iterations",
        "episodes",
        "ci_over",
    ]
    for m in METRICS:
        header += [f"{m}_mean", f"{m}_std", f"{m}_ci95_low", f"{m}_ci95_high"]
    records = []
    for row in rows:
        record = [
            row.label,
            row.agent,
            row.policy,
            row.setting.target_label,
            row.setting.split,
            row.seeds,
            _span(row.iterations),
            _span(row.episodes),
            row.ci_over,
        ]
        for m in METRICS:
            s = row.stats.get(m, {})
            record += [s.get(k, math.nan) for k in ("mean", "std", "ci95_low", "ci95_high")]
        records.append(record)
    return _csv_text(header, records)


def runs_csv(rows: Sequence[Row]) -> str:
    header = ["group", "run", "seed", "policy", "evaluation", "split", "iteration", "episodes"]
    for m in METRICS:
        header += [f"{m}_mean", f"{m}_ci95_low", f"{m}_ci95_high"]
    records = []
    for row in rows:
        for r in row.results:
            record = [
                row.label,
                str(r.run.path),
                r.run.seed,
                r.policy,
                r.setting.target_label,
                r.setting.split,
                r.iteration,
                r.episodes,
            ]
            for m in METRICS:
                s = r.metrics.get(m, {})
                record += [s.get(k, math.nan) for k in ("mean", "ci95_low", "ci95_high")]
            records.append(record)
    return _csv_text(header, records)


# --- plots --------------------------------------------------------------------------------------
def require_matplotlib():
    """pyplot on the Agg backend (files only, no display), or a clear error naming the extra."""
    try:
        import matplotlib
    except ImportError:
        raise HsrlError(
            f"plots need matplotlib: {PLOTS_HINT} (or pass --no-plots for tables only)"
        ) from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


_STYLE = {
    "font.size": 11,
    "axes.titlesize": 13,
    "axes.labelsize": 11,
    "legend.fontsize": 9,
    "xtick.labelsize": 10,
    "ytick.labelsize": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
}


def _colors(n: int) -> list:
    plt = require_matplotlib()
    cmap = plt.get_cmap("tab10" if n <= 10 else "tab20")
    return [cmap(i % cmap.N) for i in range(n)]


def plot_learning_curves(
    groups: Sequence[Group],
    path: Path,
    *,
    band: str = "std",
    window: int = 1,
    dpi: int = 150,
) -> bool:
    """Episode total reward and depth against iterations, one line per group; False if no data."""
    plt = require_matplotlib()
    curves = []
    for group in groups:
        per_metric = {m: learning_curve(group.runs, m, window) for m in CURVE_METRICS}
        if any(c is not None for c in per_metric.values()):
            curves.append((group, per_metric))
    if not curves:
        return False
    without = [g.label for g in groups if all(g is not c[0] for c in curves)]
    colors = _colors(len(curves))
    band_text = "± std over seeds" if band == "std" else "min-max over seeds"
    with plt.rc_context(_STYLE):
        fig, axes = plt.subplots(1, 2, figsize=(13, 5.2), constrained_layout=True)
        titles = {
            "episode/total_reward": ("Total reward per episode", METRIC_LABELS["total_reward"]),
            "episode/depth": ("Episode depth", METRIC_LABELS["depth"]),
        }
        for ax, metric in zip(axes, CURVE_METRICS):
            for color, (group, per_metric) in zip(colors, curves):
                curve = per_metric[metric]
                if curve is None:
                    continue
                label = f"{group.label}, {curve.runs} seed{'s' if curve.runs > 1 else ''}"
                few = len(curve.iterations) <= 25  # show where the log points are
                ax.plot(
                    curve.iterations,
                    curve.mean,
                    color=color,
                    lw=1.8,
                    marker="o" if few else None,
                    ms=3.5,
                    label=label,
                )
                if curve.runs > 1:
                    if band == "std":
                        lo = [m - s for m, s in zip(curve.mean, curve.std)]
                        hi = [m + s for m, s in zip(curve.mean, curve.std)]
                    else:
                        lo, hi = curve.low, curve.high
                    ax.fill_between(curve.iterations, lo, hi, color=color, alpha=0.18, lw=0)
            title, ylabel = titles[metric]
            ax.set_title(title)
            ax.set_xlabel("iterations")
            ax.set_ylabel(ylabel)
            ax.ticklabel_format(axis="x", style="plain")
        handles, labels = axes[0].get_legend_handles_labels()
        if not handles:
            handles, labels = axes[1].get_legend_handles_labels()
        fig.legend(
            handles,
            labels,
            loc="outside lower center",
            ncols=min(3, len(labels)),
            frameon=False,
        )
        smooth_text = f", moving average over {window} log points" if window > 1 else ""
        fig.suptitle(
            f"Training curves: mean over seeds, band {band_text}{smooth_text}", fontsize=12
        )
        if without:  # offline agents (supervised) never finish an episode while training
            fig.text(
                0.995,
                0.005,
                f"no training episodes logged: {', '.join(without)}",
                ha="right",
                va="bottom",
                fontsize=8,
                color="0.4",
            )
        _save(fig, path, dpi)
        plt.close(fig)
    return True


def diagnostic_keys(groups: Sequence[Group]) -> list[str]:
    """The diagnostics (:data:`DIAGNOSTICS`) that any run of ``groups`` logs, in display order."""
    logged: set[str] = set()
    for group in groups:
        for run in group.runs:
            for record in run.log:
                logged.update(record)
    keys = []
    for pattern in DIAGNOSTICS:
        if pattern.endswith("_l"):
            keys += sorted(
                k for k in logged if k.startswith(pattern) and k[len(pattern) :].isdigit()
            )
        elif pattern in logged:
            keys.append(pattern)
    return keys


def diagnostics_table(groups: Sequence[Group]) -> str | None:
    """Markdown: per group, the mean over seeds of each diagnostic in its runs' last log record
    that has it (None when no run logs diagnostics)."""
    keys = diagnostic_keys(groups)
    if not keys:
        return None
    lines = ["| diagnostic | " + " | ".join(g.label for g in groups) + " |"]
    lines.append("|---" * (len(groups) + 1) + "|")
    for key in keys:
        cells = []
        for group in groups:
            values = []
            for run in group.runs:
                last = [r[key] for r in run.log if _finite(r.get(key))]
                if last:
                    values.append(float(last[-1]))
            cells.append(f"{sum(values) / len(values):.3f}" if values else "-")
        lines.append(f"| `{key}` | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_diagnostics(
    groups: Sequence[Group], path: Path, *, window: int = 1, dpi: int = 150
) -> bool:
    """One panel per diagnostic against iterations, one line per group; False if none logged."""
    keys = diagnostic_keys(groups)
    if not keys:
        return False
    plt = require_matplotlib()
    colors = _colors(len(groups))
    columns = 4
    rows_n = math.ceil(len(keys) / columns)
    with plt.rc_context(_STYLE):
        fig, axes = plt.subplots(
            rows_n, columns, figsize=(16, 3.2 * rows_n), constrained_layout=True, squeeze=False
        )
        for ax, key in zip(axes.flat, keys):
            for color, group in zip(colors, groups):
                curve = learning_curve(group.runs, key, window)
                if curve is not None:
                    ax.plot(curve.iterations, curve.mean, color=color, lw=1.5, label=group.label)
            ax.set_title(key, fontsize=10)
            ax.set_xlabel("iterations")
            ax.ticklabel_format(axis="x", style="plain")
        for ax in list(axes.flat)[len(keys) :]:
            ax.axis("off")
        handles, labels = axes.flat[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside lower center", ncols=min(4, len(labels)),
                   frameon=False)  # fmt: skip
        fig.suptitle("Training diagnostics: mean over seeds", fontsize=12)
        _save(fig, path, dpi)
        plt.close(fig)
    return True


def plot_final_metrics(
    rows: Sequence[Row],
    path: Path,
    *,
    metrics: Sequence[str] = ("total_reward", "depth"),
    dpi: int = 150,
) -> bool:
    """Each group's evaluation mean with its 95% interval, settings side by side per group."""
    plt = require_matplotlib()
    rows = [r for r in rows if any(m in r.stats for m in metrics)]
    if not rows:
        return False
    labels: list[str] = []
    for r in rows:
        if r.label not in labels:
            labels.append(r.label)
    settings: list[EvalSetting] = []
    for r in rows:
        if r.setting not in settings:
            settings.append(r.setting)
    colors = _colors(len(settings))
    # Settings of one group are stacked top to bottom in legend order, within +-0.3 of its row.
    spread = min(0.6, 0.22 * (len(settings) - 1))
    offsets = [spread / 2 - i * spread / max(len(settings) - 1, 1) for i in range(len(settings))]
    counts = {}
    for label in labels:
        n = max(r.seeds for r in rows if r.label == label)
        unit = "run" if any(r.policy != "agent" for r in rows if r.label == label) else "seed"
        counts[label] = f"{n} {unit}{'s' if n > 1 else ''}"
    height = 1.9 + len(labels) * (0.32 + 0.16 * len(settings))
    any_single = False
    with plt.rc_context(_STYLE):
        fig, axes = plt.subplots(
            1,
            len(metrics),
            figsize=(5.2 * len(metrics) + 2.2, height),
            sharey=True,
            constrained_layout=True,
            squeeze=False,
        )
        for ax, metric in zip(axes[0], metrics):
            for s_index, setting in enumerate(settings):
                for r in rows:
                    if r.setting != setting or metric not in r.stats:
                        continue
                    s = r.stats[metric]
                    y = len(labels) - 1 - labels.index(r.label) + offsets[s_index]
                    lo, hi = s.get("ci95_low", math.nan), s.get("ci95_high", math.nan)
                    err = (
                        [[s["mean"] - lo], [hi - s["mean"]]]
                        if _finite(lo) and _finite(hi)
                        else None
                    )
                    single = r.ci_over == "episodes"
                    any_single |= single
                    ax.errorbar(
                        s["mean"],
                        y,
                        xerr=err,
                        fmt="o",
                        ms=7,
                        capsize=4,
                        lw=1.6,
                        color=colors[s_index],
                        mfc="white" if single else colors[s_index],
                        mew=1.6,
                    )
            ax.set_title(METRIC_LABELS[metric][0].upper() + METRIC_LABELS[metric][1:])
            ax.set_xlabel(f"{METRIC_LABELS[metric]} (mean, 95% CI)")
            ax.grid(axis="y", alpha=0)
            for boundary in range(len(labels) - 1):
                ax.axhline(boundary + 0.5, color="0.85", lw=0.8, zorder=0)
        axes[0][0].set_yticks(range(len(labels)))
        axes[0][0].set_yticklabels([f"{label}\n{counts[label]}" for label in reversed(labels)])
        axes[0][0].set_ylim(-0.7, len(labels) - 0.3)
        from matplotlib.lines import Line2D

        handles = [
            Line2D([], [], color=c, marker="o", lw=1.6, label=s.title)
            for c, s in zip(colors, settings)
        ]
        if any_single:
            handles.append(
                Line2D(
                    [],
                    [],
                    color="grey",
                    marker="o",
                    mfc="white",
                    lw=0,
                    label="hollow: one seed (CI over episodes)",
                )
            )
        fig.legend(
            handles=handles,
            loc="outside lower center",
            ncols=min(4, len(handles)),
            frameon=False,
        )
        fig.suptitle("Final evaluation: mean over seeds with 95% confidence interval", fontsize=12)
        _save(fig, path, dpi)
        plt.close(fig)
    return True


def plot_policy_comparison(results: Sequence[dict[str, Any]], path: Path, dpi: int = 150) -> bool:
    """Total reward of every policy on the learned simulator and on the true users, side by
    side, with the 95% interval over evaluated users; False if there is nothing to draw.

    ``results`` are evaluation results (``hsrl evaluate --json``); a result whose
    ``evaluation.simulator`` is "ground_truth" goes to the true-user bar.
    """
    plt = require_matplotlib()
    table: dict[str, dict[str, dict[str, float]]] = {}
    for result in results:
        where = "truth" if result["evaluation"]["simulator"] == "ground_truth" else "sim"
        table.setdefault(result["agent"], {})[where] = result["metrics"]["total_reward"]
    if not table:
        return False
    names = list(table)
    columns = (("sim", "learned simulator"), ("truth", "true users"))
    width = 0.38
    with plt.rc_context(_STYLE):
        fig, ax = plt.subplots(
            figsize=(max(6.0, 1.1 * len(names) + 2), 4.6), constrained_layout=True
        )
        for offset, ((key, label), color) in zip((-width / 2, width / 2), zip(columns, _colors(2))):
            xs, means, errors = [], [], [[], []]
            for i, name in enumerate(names):
                stats = table[name].get(key)
                if stats is None or not _finite(stats.get("mean")):
                    continue
                xs.append(i + offset)
                means.append(stats["mean"])
                low, high = stats.get("ci95_low"), stats.get("ci95_high")
                errors[0].append(stats["mean"] - low if _finite(low) else 0.0)
                errors[1].append(high - stats["mean"] if _finite(high) else 0.0)
            ax.bar(xs, means, width, yerr=errors, capsize=3, color=color, label=label)
        ax.set_xticks(range(len(names)), names)
        ax.set_ylabel(METRIC_LABELS["total_reward"])
        ax.set_title("Every policy on the learned simulator and on the true users")
        ax.legend(frameon=False, title="error bars: 95% interval over users", title_fontsize=8)
        _save(fig, path, dpi)
        plt.close(fig)
    return True


def _save(fig, path: Path, dpi: int) -> None:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    atomic_write_bytes(path, buffer.getvalue())


# --- the whole report ---------------------------------------------------------------------------
@dataclass
class Report:
    """What ``build_report`` wrote and what it left out."""

    out: Path
    groups: list[Group]
    rows: list[Row]
    files: list[Path]
    skipped: list[Skipped]  # whole runs left out
    notes: list[Skipped]  # parts of runs left out (the run is still used)


def build_report(
    paths: Sequence[str | Path],
    out: str | Path,
    *,
    plots: bool = True,
    band: str = "std",
    smooth_window: int = 1,
    dpi: int = 150,
) -> Report:
    """Read runs under ``paths``, write tables (and plots) to ``out``.

    Raises :class:`HsrlError` only when no run has anything to report (the message lists
    every run skipped and why); otherwise skipped runs are in ``Report.skipped``.
    """
    if band not in ("std", "minmax"):
        raise HsrlError(f"--band {band!r}: use std or minmax")
    if plots:
        require_matplotlib()  # fail before reading anything when the extra is missing
    folders, skipped = discover_runs(paths)
    runs: list[Run] = []
    notes: list[Skipped] = []
    for folder in folders:
        run, run_notes = read_run(folder)
        if run is None:
            # The run-level reason goes last; earlier notes explain it.
            reasons = [n.reason if n.path == folder else str(n) for n in run_notes]
            skipped.append(Skipped(folder, "; ".join(reasons)))
        else:
            runs.append(run)
            notes.extend(run_notes)
    if not runs:
        listing = "\n".join(f"  - {s}" for s in skipped) or "  (no paths given)"
        raise HsrlError(f"nothing to report: no usable run was found\n{listing}")
    groups = group_runs(runs)
    rows = build_rows(groups)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = []
    if rows:
        atomic_write_bytes(out / "results.md", markdown_table(rows).encode())
        atomic_write_bytes(out / "results.csv", rows_csv(rows).encode())
        atomic_write_bytes(out / "runs.csv", runs_csv(rows).encode())
        files += [out / "results.md", out / "results.csv", out / "runs.csv"]
    diagnostics = diagnostics_table(groups)
    if diagnostics is not None:
        atomic_write_bytes(out / "diagnostics.md", diagnostics.encode())
        files.append(out / "diagnostics.md")
    if plots:
        if plot_diagnostics(groups, out / "diagnostics.png", window=smooth_window, dpi=dpi):
            files.append(out / "diagnostics.png")
        if plot_learning_curves(
            groups, out / "learning_curves.png", band=band, window=smooth_window, dpi=dpi
        ):
            files.append(out / "learning_curves.png")
        if plot_final_metrics(rows, out / "final_metrics.png", dpi=dpi):
            files.append(out / "final_metrics.png")
    write_json(out / "report.json", _report_json(groups, rows, skipped, notes))
    files.append(out / "report.json")
    return Report(out, groups, rows, files, skipped, notes)


def _json_number(value: Any) -> Any:
    return None if _is_nan(value) else value


def _report_json(
    groups: Sequence[Group], rows: Sequence[Row], skipped: Sequence[Skipped], notes: Sequence
) -> dict[str, Any]:
    return {
        "groups": [
            {
                "label": g.label,
                "agent": g.agent,
                "runs": [str(r.path) for r in g.runs],
                "seeds": [r.seed for r in g.runs],
                "settings": g.settings,
            }
            for g in groups
        ],
        "rows": [
            {
                "group": r.label,
                "agent": r.agent,
                "policy": r.policy,
                "evaluation": r.setting.target_label,
                "split": r.setting.split,
                "seeds": r.seeds,
                "iterations": r.iterations,
                "episodes": r.episodes,
                "ci_over": r.ci_over,
                "metrics": {
                    m: {k: _json_number(v) for k, v in s.items()} for m, s in r.stats.items()
                },
                "runs": [
                    {
                        "run": str(x.run.path),
                        "seed": x.run.seed,
                        "iteration": x.iteration,
                        "metrics": {m: _json_number(s["mean"]) for m, s in x.metrics.items()},
                    }
                    for x in r.results
                ],
            }
            for r in rows
        ],
        "skipped": [{"path": str(s.path), "reason": s.reason} for s in skipped],
        "notes": [{"path": str(s.path), "reason": s.reason} for s in notes],
    }


__all__ = [
    "METRICS",
    "Curve",
    "EvalSetting",
    "Group",
    "Report",
    "Row",
    "Run",
    "RunResult",
    "Skipped",
    "across_seeds",
    "build_report",
    "build_rows",
    "discover_runs",
    "experiment_settings",
    "group_runs",
    "learning_curve",
    "markdown_table",
    "plot_final_metrics",
    "plot_diagnostics",
    "plot_learning_curves",
    "plot_policy_comparison",
    "pool_summaries",
    "read_run",
    "rows_csv",
    "smooth",
]
