"""The catalogue-churn experiment (``hsrl churn``): how agents cope when items come and go.

For every trained run and every fraction f, a share f of the catalogue's items is retired and
as many new items arrive (:mod:`hsrl.catalogue`; the same items for every run of a dataset).
Each run is then evaluated with the protocol of :mod:`hsrl.evaluate` (greedy, fixed seeds,
cohorts of users) on the static catalogue and on each churned one, in up to two modes:

- ``zero-shot``: the trained policy as it is, on the changed catalogue (no retraining: HSRL reads
  the new items' SIDs, the latent agents and flat A2C score them from their features);
- ``continued``: training goes on for N more iterations from the run's last checkpoint while the
  catalogue changes (the changes spread over the first part of those iterations), then the
  policy is evaluated. The static reference is trained for the same N iterations on the
  unchanged catalogue, so both sides get the same budget.

The result is the change of every metric relative to the static catalogue, per run and per
agent, and the share of recommended slots that went to new items (a policy can keep its reward
by ignoring new items while enough old ones are left; this share shows whether it does).
Outputs (atomically, in ``--out``): ``churn.json`` (everything), ``churn.csv`` (one row per run,
mode and fraction), ``churn.md`` (tables) and ``churn.png`` (plots); with training, each
continued run's ``log.jsonl`` under ``continued/``.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from hsrl.catalogue import CatalogueChange, ChurnSchedule, apply_change, plan_changes
from hsrl.errors import ConfigError
from hsrl.evaluate import METRICS, EvalSettings, run_episodes, summarize_episodes
from hsrl.io import atomic_output_dir, write_json
from hsrl.train import (
    CHECKPOINT_DIR,
    LAST_CHECKPOINT,
    RunParts,
    Trainer,
    build_env,
    load_agent,
    load_checkpoint,
)

MODES = ("zero-shot", "continued")


@dataclass(frozen=True)
class ChurnSettings:
    fractions: tuple[float, ...] = (0.1, 0.3, 0.5)
    """Shares of the catalogue replaced (0, the static catalogue, is always evaluated)."""
    continue_iterations: int = 0
    """Also train this many more iterations through the churn (0: zero-shot only)."""
    steps: int = 1
    """Changes the replacement is split into while training continues."""
    episodes: int = 1000
    eval_seed: int = 0
    ground_truth: bool = False
    """Evaluate on the built-in dataset's true users (else the run's or --simulator's model)."""
    simulator: str | None = None
    split: str | None = None
    """Users to evaluate on (default: test when the dataset has it)."""
    noise: float = 0.5
    """New items' feature perturbation (see hsrl.catalogue)."""
    churn_seeds: tuple[int, ...] = (0,)
    """Draws of which items retire and arrive; results are averaged over them (each draw is
    its own catalogue, so the change does not hinge on one lucky or unlucky set of items)."""
    device: str | None = None
    references: bool = False
    """Also evaluate the random and myopic-greedy reference policies on each catalogue."""

    def __post_init__(self) -> None:
        if not self.fractions or any(not 0.0 < f <= 1.0 for f in self.fractions):
            raise ConfigError("--fractions: give shares in (0, 1], e.g. 0.1,0.3,0.5")
        if self.continue_iterations < 0:
            raise ConfigError("--continue-iterations must not be negative")
        if self.steps < 1 or (self.continue_iterations and self.steps > self.continue_iterations):
            raise ConfigError("--steps must be between 1 and --continue-iterations")
        if not self.churn_seeds or len(set(self.churn_seeds)) != len(self.churn_seeds):
            raise ConfigError("--churn-seeds: give distinct seeds, e.g. 0,1,2")
        if self.ground_truth and self.simulator is not None:
            raise ConfigError("give --simulator or --ground-truth, not both")

    def schedule(self, fraction: float, churn_seed: int) -> ChurnSchedule:
        """Changes at the start of continued training and then evenly over its first part."""
        every = max(self.continue_iterations // self.steps, 1)
        return ChurnSchedule(
            fraction=fraction, steps=self.steps, every=every, noise=self.noise, seed=churn_seed
        )


class _SlateCounter:
    """Wraps a policy to count how many recommended slots hold items of id >= ``first_new``."""

    def __init__(self, policy: Any, first_new: int):
        self.policy = policy
        self.first_new = first_new
        self.new = None
        self.shown = 0

    def act(self, obs: dict[str, torch.Tensor], *, explore: bool, generator: Any) -> Any:
        action = self.policy.act(obs, explore=explore, generator=generator)
        new = (action.slate >= self.first_new).sum()  # stays on the device: no sync per step
        self.new = new if self.new is None else self.new + new
        self.shown += action.slate.numel()
        return action

    def share(self) -> float:
        return float(self.new) / self.shown if self.shown else math.nan


def _split(data: str, split: str | None, fallback: str) -> str:
    from hsrl.data.prepared import read_manifest

    splits = list(read_manifest(data)["splits"])
    if split is None:
        return "test" if "test" in splits else fallback
    if split not in splits:
        raise ConfigError(f"--split {split!r}: the dataset has {', '.join(splits)}")
    return split


class ChurnTrainer(Trainer):
    """The shared training loop, with catalogue changes at scheduled iterations.

    ``at[j]`` is the iteration, counted from where this trainer starts (after a checkpoint is
    loaded), before which change j is applied to the agent's catalogue and the training env.
    Checkpoints are not written: the continued policy is evaluated in memory, and a checkpoint
    of a changed catalogue would not match the run's saved config.
    """

    def __init__(
        self, parts: RunParts, run_dir: Path, changes: list[CatalogueChange], at: list[int]
    ):
        if len(at) != len(changes):
            raise ValueError("one iteration per change")
        super().__init__(parts, run_dir)
        self.changes, self.at, self.applied = changes, at, 0
        self.origin: int | None = None

    def step(self) -> dict[str, torch.Tensor]:
        if self.origin is None:
            self.origin = self.iteration
        while self.applied < len(self.changes) and (
            self.iteration - self.origin >= self.at[self.applied]
        ):
            apply_change(self.changes[self.applied], self.parts.catalogue, [self.parts.env])
            self.applied += 1
        return super().step()

    def save_checkpoint(self) -> Path:
        return self.run_dir


def _evaluate_one(
    run_dir: Path,
    fraction: float,
    mode: str,
    settings: ChurnSettings,
    work: Path,
    policy: str = "agent",
    churn_seed: int = 0,
) -> dict[str, Any]:
    """One evaluation: the run (or a reference policy) on the catalogue churned by ``fraction``."""
    from hsrl.agents.reference import reference_policy

    started = time.perf_counter()
    parts, iteration = load_agent(run_dir, device=settings.device)
    config = parts.config
    catalogue = parts.catalogue
    first_new = catalogue.features.shape[0]  # ids >= this are new items
    schedule = settings.schedule(fraction, churn_seed)
    item_row = catalogue.layout.item_row if catalogue.layout is not None else None
    changes = (
        plan_changes(schedule, catalogue.features, catalogue.live, item_row) if fraction else []
    )
    if mode == "continued":
        parts.config = dataclasses.replace(
            config, train=dataclasses.replace(config.train, tensorboard=False)
        )
        log_dir = work / "continued" / run_dir.name / f"fraction_{fraction:g}_seed{churn_seed}"
        log_dir.mkdir(parents=True, exist_ok=True)
        at = schedule.iterations() if changes else []
        trainer = ChurnTrainer(parts, log_dir, changes, at)
        trainer.load_checkpoint_state(
            load_checkpoint(run_dir / CHECKPOINT_DIR / LAST_CHECKPOINT, parts.device)
        )
        try:
            trainer.run(trainer.iteration + settings.continue_iterations, progress=False)
        finally:
            trainer.close()
        iteration = trainer.iteration
        if trainer.applied != len(changes):  # cannot happen with a validated schedule
            raise ConfigError("the churn schedule did not finish within the continued training")
    else:
        for change in changes:
            apply_change(change, catalogue)

    split = _split(config.data, settings.split, config.env.split)
    env = build_env(
        config.data,
        settings.simulator if settings.simulator is not None else config.simulator,
        config.env,
        parts.device,
        split=split,
        num_users=min(1000, settings.episodes),
        ground_truth=settings.ground_truth,
    )
    env.set_items(catalogue.features, catalogue.live, catalogue.layout)
    parts.agent.eval()
    actor = parts.agent if policy == "agent" else reference_policy(policy, env, catalogue)
    counter = _SlateCounter(actor, first_new)
    eval_settings = EvalSettings(episodes=settings.episodes, seed=settings.eval_seed)
    episodes = run_episodes(env, counter, eval_settings)
    sid = catalogue.sid
    sid_added = [c for c in (sid.changes if sid is not None else []) if c.get("op") == "add"]
    return {
        "run": str(run_dir),
        "agent": config.agent if policy == "agent" else policy,
        "policy": policy,
        "seed": config.seed,
        "mode": mode,
        "fraction": fraction,
        "churn_seed": churn_seed if fraction else None,
        "iteration": iteration,
        "catalogue": {
            "live": int(catalogue.live.sum()),
            "retired": sum(int(c.retire.numel()) for c in changes),
            "added": sum(int(c.features.shape[0]) for c in changes),
            "changes": len(changes),
            "new_items_sid_collided": sum(int(c.get("collided", 0)) for c in sid_added)
            if sid is not None
            else None,
        },
        "new_item_share": counter.share(),
        "evaluation": {
            "simulator": "ground_truth"
            if settings.ground_truth
            else str(settings.simulator or config.simulator),
            "split": split,
            "episodes": settings.episodes,
            "seed": settings.eval_seed,
            "device": str(parts.device),
        },
        "metrics": summarize_episodes(episodes),
        "wall_s": round(time.perf_counter() - started, 2),
    }


def relative_changes(rows: list[dict[str, Any]]) -> None:
    """Add ``change`` to every row: per metric, the difference to the same run's (and mode's)
    static catalogue, absolute and relative, with a 95% half-width (independent samples)."""
    static = {(r["run"], r["policy"], r["mode"]): r for r in rows if r["fraction"] == 0.0}
    for row in rows:
        base = static.get((row["run"], row["policy"], row["mode"]))
        if base is None:
            continue
        change = {}
        for metric in METRICS:
            m, b = row["metrics"][metric], base["metrics"][metric]
            delta = m["mean"] - b["mean"]
            half = math.hypot(_half(m), _half(b))
            scale = abs(b["mean"]) if b["mean"] else math.nan
            change[metric] = {
                "delta": delta,
                "delta_ci95": half,
                "relative": delta / scale,
                "relative_ci95": half / scale,
            }
        row["change"] = change


def _half(summary: dict[str, float]) -> float:
    return (summary["ci95_high"] - summary["ci95_low"]) / 2


def run_churn(
    run_dirs: list[str | Path],
    settings: ChurnSettings,
    out: str | Path,
    *,
    overwrite: bool = False,
    plots: bool = True,
    progress: bool = True,
) -> dict[str, Any]:
    """The whole experiment (module docs); returns what ``churn.json`` holds."""
    runs = [Path(r) for r in run_dirs]
    if not runs:
        raise ConfigError("hsrl churn needs at least one RUN_DIR")
    if len({r.name for r in runs}) != len(runs):
        raise ConfigError("run folders must have distinct names (they label the results)")
    modes = ["zero-shot"] + (["continued"] if settings.continue_iterations else [])
    fractions = (0.0, *settings.fractions)
    started = time.perf_counter()
    rows: list[dict[str, Any]] = []
    with atomic_output_dir(out, overwrite=overwrite) as tmp:
        policies = [(run, "agent") for run in runs]
        if settings.references:
            policies += [(runs[0], "random"), (runs[0], "greedy")]
        jobs = [
            (run, mode, fraction, policy, seed)
            for run, policy in policies
            for mode in (modes if policy == "agent" else ["zero-shot"])
            for fraction in fractions
            for seed in (settings.churn_seeds if fraction else settings.churn_seeds[:1])
        ]
        for number, (run, mode, fraction, policy, seed) in enumerate(jobs, start=1):
            row = _evaluate_one(run, fraction, mode, settings, tmp, policy, seed)
            rows.append(row)
            if progress:
                total = row["metrics"]["total_reward"]["mean"]
                print(
                    f"[churn {number}/{len(jobs)}] {row['agent']} {run.name} {mode} "
                    f"f={fraction:g} (churn seed {seed}): total reward {total:.3f}, new-item share "
                    f"{row['new_item_share']:.3f} ({row['wall_s']:.1f} s)",
                    flush=True,
                )
        relative_changes(rows)
        result = {
            "settings": {
                **dataclasses.asdict(settings),
                "fractions": list(settings.fractions),
                "churn_seeds": list(settings.churn_seeds),
            },
            "runs": [str(r) for r in runs],
            "wall_s": round(time.perf_counter() - started, 1),
            "rows": rows,
        }
        write_json(tmp / "churn.json", result)
        (tmp / "churn.csv").write_text(csv_table(rows), encoding="utf-8")
        (tmp / "churn.md").write_text(markdown_report(result) + "\n", encoding="utf-8")
        if plots:
            plot_churn(rows, tmp / "churn.png")
    return result


# --- tables and plots ---------------------------------------------------------------------------
def csv_table(rows: list[dict[str, Any]]) -> str:
    header = ["run", "agent", "seed", "mode", "fraction", "churn_seed", "iteration"]
    header.append("new_item_share")
    for metric in METRICS:
        header += [f"{metric}_mean", f"{metric}_ci95_low", f"{metric}_ci95_high"]
        header += [f"{metric}_delta", f"{metric}_relative"]
    lines = [",".join(header)]
    for r in rows:
        cells: list[Any] = [
            r["run"],
            r["agent"],
            r["seed"],
            r["mode"],
            r["fraction"],
            "" if r["churn_seed"] is None else r["churn_seed"],
            r["iteration"],
            r["new_item_share"],
        ]
        for metric in METRICS:
            s = r["metrics"][metric]
            c = r.get("change", {}).get(metric, {})
            cells += [s["mean"], s["ci95_low"], s["ci95_high"]]
            cells += [c.get("delta", math.nan), c.get("relative", math.nan)]
        lines.append(",".join(_csv_cell(c) for c in cells))
    return "\n".join(lines) + "\n"


def _csv_cell(value: Any) -> str:
    text = f"{value:.6g}" if isinstance(value, float) else str(value)
    return f'"{text}"' if any(ch in text for ch in ',"\n') else text


def agent_summary(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per agent, mode and fraction: mean relative change of total reward over its runs and
    churn seeds (``cells`` of them), with the std across cells (one cell: its 95% half-width)."""
    groups: dict[tuple[str, str, float], list[dict[str, Any]]] = {}
    for r in rows:
        if "change" in r and r["fraction"] > 0:
            groups.setdefault((r["agent"], r["mode"], r["fraction"]), []).append(r)
    out = []
    for (agent, mode, fraction), members in groups.items():
        rel = torch.tensor([m["change"]["total_reward"]["relative"] for m in members])
        share = torch.tensor([m["new_item_share"] for m in members])
        half = members[0]["change"]["total_reward"]["relative_ci95"]
        out.append(
            {
                "agent": agent,
                "mode": mode,
                "fraction": fraction,
                "cells": len(members),
                "runs": len({m["run"] for m in members}),
                "relative": float(rel.mean()),
                # Across runs when there are several, else the one run's 95% half-width.
                "spread": float(rel.std()) if len(members) > 1 else half,
                "new_item_share": float(share.mean()),
                "total_reward": float(
                    torch.tensor([m["metrics"]["total_reward"]["mean"] for m in members]).mean()
                ),
            }
        )
    return out


def markdown_report(result: dict[str, Any]) -> str:
    rows = result["rows"]
    s = result["settings"]
    lines = [
        "# Catalogue churn",
        "",
        f"Evaluation: {s['episodes']} users per cell, seed {s['eval_seed']}, "
        + ("ground-truth users" if s["ground_truth"] else "learned simulator")
        + f"; new items: prototype + noise {s['noise']}; churn seeds "
        + ", ".join(str(seed) for seed in s["churn_seeds"])
        + (
            f"; continued training: {s['continue_iterations']} iterations, {s['steps']} change(s)"
            if s["continue_iterations"]
            else ""
        )
        + ".",
        "",
        "## Change of total reward relative to the static catalogue",
        "",
        "| agent | mode | runs x churn seeds | "
        + " | ".join(f"f = {f:g}" for f in s["fractions"])
        + " |",
        "|---|---|---|" + "---|" * len(s["fractions"]),
    ]
    summary = agent_summary(rows)
    keys = sorted({(a["agent"], a["mode"]) for a in summary}, key=_display_order)
    for agent, mode in keys:
        cells = []
        for f in s["fractions"]:
            cell = next(
                (a for a in summary if (a["agent"], a["mode"], a["fraction"]) == (agent, mode, f)),
                None,
            )
            cells.append(
                "-"
                if cell is None
                else f"{100 * cell['relative']:+.1f}% ± {100 * cell['spread']:.1f} "
                f"(new {100 * cell['new_item_share']:.0f}%)"
            )
        first = next(a for a in summary if (a["agent"], a["mode"]) == (agent, mode))
        size = f"{first['runs']} x {first['cells'] // first['runs']}"
        lines.append(f"| {agent} | {mode} | {size} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Mean relative change of total reward over the agent's runs and churn seeds, ± the std "
        "across them (a single one: its 95% half-width); in brackets the share of recommended "
        "slots that held new items (the catalogue's share of new items is f).",
        "",
        "## Every evaluation",
        "",
        "| run | agent | mode | f | churn seed | iteration | total reward | Δ total reward | "
        "depth | click rate | new-item share |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        m = r["metrics"]
        change = r.get("change", {}).get("total_reward")
        delta = (
            f"{change['delta']:+.3f} ± {change['delta_ci95']:.3f} ({100 * change['relative']:+.1f}%)"
            if change and r["fraction"]
            else "-"
        )
        lines.append(
            f"| {Path(r['run']).name} | {r['agent']} | {r['mode']} | {r['fraction']:g} | "
            f"{'-' if r['churn_seed'] is None else r['churn_seed']} | {r['iteration']} | {_mean_ci(m['total_reward'])} | {delta} | "
            f"{_mean_ci(m['depth'])} | {_mean_ci(m['click_rate'])} | "
            f"{100 * r['new_item_share']:.1f}% |"
        )
    lines += ["", "Mean ± 95% half-width over evaluated users."]
    return "\n".join(lines)


_AGENT_ORDER = (
    "hsrl",
    "hac",
    "behavior_ddpg",
    "ddpg",
    "supervised",
    "a2c_flat",
    "random",
    "greedy",
)


def _display_order(key: tuple[str, str]) -> tuple[int, str, int]:
    agent, mode = key
    rank = _AGENT_ORDER.index(agent) if agent in _AGENT_ORDER else len(_AGENT_ORDER)
    return rank, agent, MODES.index(mode)


def _mean_ci(summary: dict[str, float]) -> str:
    return f"{summary['mean']:.3f} ± {_half(summary):.3f}"


def plot_churn(rows: list[dict[str, Any]], path: Path) -> None:
    """Relative change of total reward and new-item share against the fraction replaced."""
    from hsrl.report import require_matplotlib

    plt = require_matplotlib()
    summary = agent_summary(rows)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    keys = sorted({(a["agent"], a["mode"]) for a in summary}, key=_display_order)
    colours: dict[str, Any] = {}
    for agent, mode in keys:
        points = sorted(
            (a for a in summary if (a["agent"], a["mode"]) == (agent, mode)),
            key=lambda a: a["fraction"],
        )
        x = [0.0] + [a["fraction"] for a in points]
        rel = [0.0] + [100 * a["relative"] for a in points]
        err = [0.0] + [100 * a["spread"] for a in points]
        share = [0.0] + [100 * a["new_item_share"] for a in points]
        style = "-" if mode == "zero-shot" else "--"
        colour = colours.get(agent)
        line = left.errorbar(
            x, rel, yerr=err, fmt="o" + style, capsize=3, label=f"{agent} ({mode})", color=colour
        )
        colours[agent] = line.lines[0].get_color()
        right.plot(x, share, "o" + style, color=colours[agent], label=f"{agent} ({mode})")
    left.axhline(0.0, color="grey", linewidth=0.8)
    left.set_xlabel("share of the catalogue replaced")
    left.set_ylabel("change of total reward vs static (%)")
    left.set_title("Reward under catalogue churn")
    top = max([a["fraction"] for a in summary] + [0.0])
    right.plot([0, top], [0, 100 * top], ":", color="grey", label="catalogue share of new items")
    right.set_xlabel("share of the catalogue replaced")
    right.set_ylabel("recommended slots holding new items (%)")
    right.set_title("Do the policies recommend new items?")
    for ax in (left, right):
        ax.grid(alpha=0.3)
    left.legend(fontsize=8)
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


__all__ = [
    "ChurnSettings",
    "ChurnTrainer",
    "agent_summary",
    "csv_table",
    "markdown_report",
    "plot_churn",
    "relative_changes",
    "run_churn",
]
