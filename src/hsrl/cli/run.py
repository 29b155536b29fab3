"""``hsrl run``: the whole pipeline on the built-in dataset (the main job)."""

from __future__ import annotations

import argparse
from pathlib import Path

from hsrl.cli._types import seed


def register(subparsers: argparse._SubParsersAction) -> None:
    from hsrl.pipeline import PipelineConfig

    defaults = PipelineConfig()
    p = subparsers.add_parser(
        "run",
        help="run the whole pipeline on the built-in dataset (prepare, simulator, SIDs, train, evaluate)",
        description="Prepare the built-in dataset, train the user simulator, build semantic IDs, "
        "train the agent(s), evaluate them with the random and myopic-greedy reference policies on "
        "the learned simulator and on the ground-truth users, and print a results table. Steps "
        "whose output already exists in --out are reused.",
    )
    p.add_argument(
        "--out", type=Path, default=Path(defaults.out), help="output folder (default %(default)s)"
    )
    p.add_argument(
        "--agents",
        default=",".join(defaults.agents),
        help="comma-separated agents to train (default %(default)s)",
    )
    p.add_argument(
        "--iterations",
        type=int,
        default=defaults.iterations,
        help="training iterations per agent (default %(default)s)",
    )
    p.add_argument(
        "--episodes",
        type=int,
        default=defaults.episodes,
        help="evaluation episodes (default %(default)s)",
    )
    p.add_argument("--simulator-epochs", type=int, default=defaults.simulator_epochs)
    p.add_argument("--seed", type=seed, default=defaults.seed)
    p.add_argument("--device", default=defaults.device, help="cpu (default), cuda, cuda:N or auto")
    p.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="built-in generator option, e.g. num_users=500 (repeatable)",
    )
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from hsrl.cli.data import parse_options
    from hsrl.errors import ConfigError
    from hsrl.pipeline import PipelineConfig, run_pipeline

    agents = tuple(a.strip() for a in args.agents.split(",") if a.strip())
    if not agents:
        raise ConfigError("--agents: name at least one agent")
    for name in ("iterations", "episodes", "simulator_epochs"):
        if getattr(args, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be at least 1")
    config = PipelineConfig(
        out=str(args.out),
        seed=args.seed,
        device=args.device,
        agents=agents,
        iterations=args.iterations,
        simulator_epochs=args.simulator_epochs,
        episodes=args.episodes,
        data_options=parse_options(args.option),
    )
    run_pipeline(config, progress=not args.no_progress)
    return 0
