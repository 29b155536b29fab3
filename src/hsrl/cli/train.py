"""``hsrl train``: start a run, or continue one with ``--resume``."""

from __future__ import annotations

import argparse
from pathlib import Path

from hsrl.agents import AGENTS
from hsrl.cli._types import seed
from hsrl.config import to_dict
from hsrl.errors import ConfigError
from hsrl.io import read_json
from hsrl.presets import PRESETS, merge, parse_assignment, preset


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="train an agent against a simulator (or continue a run with --resume)",
        description="Train an agent online against a learned simulator. Settings come from the "
        "defaults, then --preset, then --config, then --set, then the explicit flags.",
    )
    p.add_argument("--agent", choices=sorted(AGENTS), help="which algorithm")
    p.add_argument("--data", type=Path, help="prepared dataset folder")
    p.add_argument("--simulator", type=Path, help="simulator folder from `hsrl simulator train`")
    p.add_argument(
        "--ground-truth", action="store_true", help="train against the built-in true user model"
    )
    p.add_argument("--sid", type=Path, help="semantic-ID folder from `hsrl sid build`")
    p.add_argument(
        "--layout",
        choices=("free", "rows"),
        help="page layout: free (any item in any slot, default) or rows (row r of the page "
        "shows only items of location r, as on RL4RS pages)",
    )
    p.add_argument("--out", type=Path, help="run folder to create")
    p.add_argument("--resume", type=Path, metavar="RUN_DIR", help="continue this run")
    p.add_argument(
        "--iterations", type=int, help="iterations to train (more iterations with --resume)"
    )
    p.add_argument("--seed", type=seed)
    p.add_argument("--device", help="cpu (default), cuda, cuda:N or auto")
    p.add_argument("--preset", choices=sorted(PRESETS), help="reference settings to start from")
    p.add_argument("--config", type=Path, help="JSON file of overrides (same shape as config.json)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one setting, e.g. agent.entropy_coef=0.05 (repeatable)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing run folder")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_train)


def build_config_dict(args: argparse.Namespace) -> dict:
    values: dict = {}
    if args.preset:
        values = merge(values, preset(args.preset, args.agent))
    if args.config:
        overrides = read_json(args.config)
        if not isinstance(overrides, dict):
            raise ConfigError(f"{args.config}: expected a JSON object")
        values = merge(values, overrides)
    for assignment in args.set:
        values = merge(values, parse_assignment(assignment))
    explicit = {
        "agent": args.agent,
        "data": str(args.data.resolve()) if args.data else None,
        "simulator": str(args.simulator.resolve()) if args.simulator else None,
        "sid": str(args.sid.resolve()) if args.sid else None,
        "seed": args.seed,
        "device": args.device,
    }
    values = merge(values, {k: v for k, v in explicit.items() if v is not None})
    if args.iterations is not None:
        values = merge(values, {"train": {"iterations": args.iterations}})
    if args.ground_truth:
        values = merge(values, {"env": {"ground_truth": True}})
    if args.layout is not None:
        values = merge(values, {"env": {"layout": args.layout}})
    return values


def _train(args: argparse.Namespace) -> int:
    from hsrl.train import config_from_dict, resume, train

    if args.resume is not None:
        conflicting = [
            flag
            for flag, value in (
                ("--agent", args.agent),
                ("--data", args.data),
                ("--simulator", args.simulator),
                ("--sid", args.sid),
                ("--out", args.out),
                ("--preset", args.preset),
                ("--config", args.config),
                ("--seed", args.seed),
                ("--layout", args.layout),
            )
            if value is not None
        ] + (["--set"] if args.set else [])
        if conflicting:
            raise ConfigError(
                f"--resume continues a run with its saved config; drop {', '.join(conflicting)}"
            )
        if args.iterations is None:
            raise ConfigError("--resume needs --iterations N (how many more iterations)")
        if args.device is not None:
            from hsrl.train import load_run_config

            saved = load_run_config(args.resume).device
            if args.device != saved:
                raise ConfigError(
                    f"--resume continues the run on its own device ({saved}); drop --device "
                    f"{args.device} (a checkpoint's random states belong to one device)"
                )
        run_dir = resume(args.resume, args.iterations, progress=not args.no_progress)
        print(f"resumed {run_dir}")
        return 0
    missing = [
        f
        for f, v in (("--agent", args.agent), ("--data", args.data), ("--out", args.out))
        if v is None
    ]
    if missing:
        raise ConfigError(f"hsrl train needs {', '.join(missing)} (or --resume RUN_DIR)")
    config = config_from_dict(build_config_dict(args), where="run config")
    run_dir = train(config, args.out, overwrite=args.overwrite, progress=not args.no_progress)
    print(f"trained {config.agent} for {config.train.iterations} iterations: {run_dir}")
    return 0


__all__ = ["build_config_dict", "register", "to_dict"]
