"""The main job: every workflow step on the built-in dataset, end to end (``hsrl run``).

prepare data -> train the simulator -> build semantic IDs -> train the agent(s) -> evaluate each
agent and the reference policies (random, myopic greedy, myopic oracle) on the learned simulator
(test users) and on the ground-truth users -> a results table with the simulator's transfer
ratio (printed, and saved as results.md/.json).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hsrl.errors import ConfigError
from hsrl.io import write_json


@dataclass(frozen=True)
class PipelineConfig:
    out: str = "runs/main"
    seed: int = 0
    device: str = "cpu"
    agents: tuple[str, ...] = ("hsrl", "hac", "supervised")
    """Agents to train and compare (any of `hsrl train --agent`): by default HSRL beside the
    reference method it extends (HAC) and the offline supervised baseline."""
    iterations: int = 3_000
    """Training iterations per agent."""
    simulator_epochs: int = 5
    episodes: int = 1000
    """Finished episodes per evaluation."""
    data_options: dict[str, str] = field(default_factory=dict)
    """Options of the built-in generator (`hsrl data prepare builtin --option`), over
    MAIN_JOB_DATA."""
    simulator_variant: str = "ml1m"
    """Response model variant; "ml1m" fuses the history intent with the user vector, which
    learns the built-in users' preferences far better than "rl4rs" (docs/simulator.md)."""
    simulator_feature_dim: int = 32
    simulator_position: str = "auto"
    """The response model's position term: "slot", "none" (the reference's) or "auto" (slot
    when the logs identify it)."""
    sid_levels: int = 3
    sid_codes: int = 16
    preset: str = "builtin"


# The main job's world (docs/simulator.md, "Fidelity"): enough logged users for the simulator
# to learn each user's preferences, and a share of pages with a randomised layout so that slot
# and item effects can be told apart.
MAIN_JOB_DATA = {"num_users": "30000", "explore_percent": "20"}


def _step(name: str, started: float) -> None:
    print(f"[hsrl run] {name} ({time.perf_counter() - started:.1f} s)", flush=True)


def run_pipeline(config: PipelineConfig, *, progress: bool = True) -> dict[str, Any]:
    from hsrl.agents import AGENTS
    from hsrl.data import prepare
    from hsrl.evaluate import EvalSettings, evaluate_policy, evaluate_run
    from hsrl.presets import merge, preset
    from hsrl.sid import build_sid_folder
    from hsrl.simulator.response_model import ResponseModelConfig
    from hsrl.simulator.train import SimulatorTrainConfig, train_simulator
    from hsrl.train import config_from_dict, train

    unknown = [a for a in config.agents if a not in AGENTS]
    if unknown:
        raise ConfigError(
            f"unknown agent(s) {', '.join(unknown)} (choose from {', '.join(AGENTS)})"
        )
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    data_dir, sim_dir, sid_dir = out / "data", out / "simulator", out / "sid"

    # Steps whose output already exists are reused, so an interrupted main job picks up again.
    if not (data_dir / "manifest.json").exists():
        options = {**MAIN_JOB_DATA, **config.data_options}
        prepare("builtin", raw=None, out=data_dir, seed=config.seed, options=options)
    _step("data prepared", started)
    if not (sim_dir / "metrics.json").exists():
        train_simulator(
            data_dir,
            sim_dir,
            SimulatorTrainConfig(
                model=ResponseModelConfig(
                    variant=config.simulator_variant,  # type: ignore[arg-type]
                    feature_dim=config.simulator_feature_dim,
                    position=config.simulator_position,  # type: ignore[arg-type]
                ),
                epochs=config.simulator_epochs,
                seed=config.seed,
            ),
            config.device,
            progress=progress,
        )
    _step("simulator trained", started)
    if not (sid_dir / "report.json").exists():
        build_sid_folder(
            data_dir,
            sid_dir,
            levels=config.sid_levels,
            codes=config.sid_codes,
            seed=config.seed,
            device=config.device,
        )
    _step("semantic IDs built", started)

    results: list[dict[str, Any]] = []
    settings = EvalSettings(episodes=config.episodes, seed=config.seed)
    reference_run = None
    for agent in config.agents:
        run_dir = out / "runs" / f"{agent}_seed{config.seed}"
        values = merge(
            preset(config.preset, agent),
            {
                "agent": agent,
                "data": str(data_dir.resolve()),
                "simulator": str(sim_dir.resolve()),
                "sid": str(sid_dir.resolve()),
                "seed": config.seed,
                "device": config.device,
                "train": {"iterations": config.iterations},
            },
        )
        if not (run_dir / "checkpoints" / "last.pt").exists():
            train(config_from_dict(values), run_dir, overwrite=True, progress=progress)
        _step(f"{agent} trained", started)
        reference_run = reference_run or run_dir
        for truth in (False, True):
            results.append(evaluate_run(run_dir, settings, ground_truth=truth))
    for policy in ("random", "greedy", "oracle"):
        for truth in (False, True):
            results.append(evaluate_run(reference_run, settings, ground_truth=truth, policy=policy))
    # The transfer test: greedy by the learned simulator, acting on the true users.
    transfer = evaluate_policy(
        "greedy", data_dir, settings, ground_truth=True, ranker=sim_dir, device=config.device
    )
    truth_greedy = next(
        r
        for r in results
        if r["agent"] == "greedy" and r["evaluation"]["simulator"] == "ground_truth"
    )
    ratio = (
        transfer["metrics"]["total_reward"]["mean"]
        / truth_greedy["metrics"]["total_reward"]["mean"]
    )
    _step("evaluated", started)

    table = results_table(results) + "\n\n" + transfer_line(transfer, truth_greedy, ratio)
    summary = {
        "config": dataclasses.asdict(config),
        "wall_s": round(time.perf_counter() - started, 1),
        "results": results,
        "transfer": transfer,
        "transfer_ratio": round(ratio, 4),
    }
    summary["fidelity"], summary["plots"] = _plots(out, results, data_dir, sim_dir, config)
    write_json(out / "results.json", summary)
    (out / "results.md").write_text(table + "\n", encoding="utf-8")
    print(table)
    print("Plots: " + ", ".join(str(p) for p in summary["plots"]))
    return summary


def _plots(
    out: Path,
    results: list[dict[str, Any]],
    data_dir: Path,
    sim_dir: Path,
    config: PipelineConfig,
) -> tuple[dict[str, Any], list[str]]:
    """The main job's pictures beside results.md: learning curves of the trained agents, every
    policy on both columns, and the simulator's reliability; returns the simulator's fidelity
    summary (AUC and ceiling, calibration error, rank correlation) and the files written."""
    from hsrl.report import (
        group_runs,
        plot_learning_curves,
        plot_policy_comparison,
        read_run,
    )
    from hsrl.simulator.fidelity import plot_reliability, response_fidelity

    files = []
    runs = [read_run(out / "runs" / f"{agent}_seed{config.seed}")[0] for agent in config.agents]
    runs = [run for run in runs if run is not None]
    if runs and plot_learning_curves(group_runs(runs), out / "learning_curves.png"):
        files.append(out / "learning_curves.png")
    if plot_policy_comparison(results, out / "comparison.png"):
        files.append(out / "comparison.png")
    fidelity = response_fidelity(data_dir, sim_dir, device=config.device)
    if plot_reliability(fidelity, out / "reliability.png") is not None:
        files.append(out / "reliability.png")
    keys = ("auc", "auc_ceiling", "expected_calibration_error", "rank_correlation")
    return {key: fidelity[key] for key in keys}, [str(f) for f in files]


def transfer_line(transfer: dict[str, Any], truth_greedy: dict[str, Any], ratio: float) -> str:
    return (
        f"Transfer ratio of the learned simulator: {ratio:.3f} (on the true users, greedy by the "
        f"simulator scores {transfer['metrics']['total_reward']['mean']:.3f}, greedy by the truth "
        f"{truth_greedy['metrics']['total_reward']['mean']:.3f})."
    )


def results_table(results: list[dict[str, Any]]) -> str:
    """One row per policy; learned-simulator and ground-truth columns side by side."""
    rows: dict[str, dict[str, Any]] = {}
    for r in results:
        where = "truth" if r["evaluation"]["simulator"] == "ground_truth" else "sim"
        rows.setdefault(r["agent"], {})[where] = r["metrics"]

    def cell(metrics: dict[str, Any] | None, key: str) -> str:
        if not metrics:
            return "-"
        m = metrics[key]
        half = (m["ci95_high"] - m["ci95_low"]) / 2
        return f"{m['mean']:.3f} ± {half:.3f}"

    header = (
        "| policy | total reward (simulator) | depth (simulator) | click rate (simulator) "
        "| total reward (ground truth) | depth (ground truth) | click rate (ground truth) |"
    )
    lines = [header, "|" + "---|" * 7]
    for name, r in rows.items():
        sim, truth = r.get("sim"), r.get("truth")
        lines.append(
            f"| {name} | {cell(sim, 'total_reward')} | {cell(sim, 'depth')} | "
            f"{cell(sim, 'click_rate')} | {cell(truth, 'total_reward')} | {cell(truth, 'depth')} | "
            f"{cell(truth, 'click_rate')} |"
        )
    lines.append("")
    lines.append(
        "Mean ± half-width of the 95% confidence interval over evaluated users (test split). "
        "greedy and oracle are myopic: they rank by the model of the column they are evaluated on."
    )
    return "\n".join(lines)
