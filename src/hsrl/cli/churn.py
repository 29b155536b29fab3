"""``hsrl churn``: evaluate trained runs while part of the catalogue is replaced."""

from __future__ import annotations

import argparse
from pathlib import Path

from hsrl.cli._types import finite_float, seed
from hsrl.errors import ConfigError
from hsrl.io import json_text


def _fractions(text: str) -> tuple[float, ...]:
    return _numbers(text, float, "shares like 0.1,0.3,0.5")


def _seeds(text: str) -> tuple[int, ...]:
    return _numbers(text, int, "seeds like 0,1,2")


def _numbers(text: str, kind: type, example: str) -> tuple:
    try:
        values = tuple(kind(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated {example}, got {text!r}"
        ) from None
    if not values:
        raise argparse.ArgumentTypeError(f"expected comma-separated {example}")
    return values


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "churn",
        help="evaluate runs while a share of the catalogue is replaced by new items",
        description="For each run, evaluate the greedy policy on the static catalogue and on "
        "catalogues where a share of the items was retired and as many new items added (the "
        "same items for every run); optionally keep training through the change first. Writes "
        "churn.json, churn.csv, churn.md and churn.png to --out.",
    )
    p.add_argument("runs", type=Path, nargs="+", metavar="RUN_DIR")
    p.add_argument("--out", type=Path, required=True, help="folder for the results")
    p.add_argument(
        "--fractions",
        type=_fractions,
        default=(0.1, 0.3, 0.5),
        help="shares of the catalogue replaced, comma-separated (default 0.1,0.3,0.5)",
    )
    p.add_argument(
        "--continue-iterations",
        type=int,
        default=0,
        metavar="N",
        help="also train N more iterations through the churn before evaluating (the static "
        "reference gets the same N iterations)",
    )
    p.add_argument(
        "--steps",
        type=int,
        default=1,
        help="with --continue-iterations: number of changes the replacement is spread over",
    )
    p.add_argument("--episodes", type=int, default=1000, help="users evaluated per catalogue")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--simulator", type=Path, help="evaluate on this learned simulator")
    which.add_argument(
        "--ground-truth", action="store_true", help="evaluate on the built-in true user model"
    )
    p.add_argument("--split", help="users to evaluate on (default: test when the dataset has it)")
    p.add_argument("--seed", type=seed, default=0, help="evaluation seed")
    p.add_argument(
        "--churn-seeds",
        type=_seeds,
        default=(0,),
        help="draws of which items retire and arrive, comma-separated; results are averaged "
        "over them (default 0)",
    )
    p.add_argument(
        "--noise",
        type=finite_float,
        default=0.5,
        help="new items' feature perturbation, in column standard deviations (default 0.5)",
    )
    p.add_argument(
        "--references",
        action="store_true",
        help="also evaluate the random and myopic-greedy policies on each catalogue",
    )
    p.add_argument("--device", help="override the runs' device")
    p.add_argument("--no-plots", action="store_true", help="tables only")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_churn)


def _churn(args: argparse.Namespace) -> int:
    from hsrl.churn import ChurnSettings, markdown_report, run_churn

    if args.episodes < 1:
        raise ConfigError("--episodes must be at least 1")
    settings = ChurnSettings(
        fractions=args.fractions,
        continue_iterations=args.continue_iterations,
        steps=args.steps,
        episodes=args.episodes,
        eval_seed=args.seed,
        ground_truth=args.ground_truth,
        simulator=str(args.simulator) if args.simulator else None,
        split=args.split,
        noise=args.noise,
        churn_seeds=args.churn_seeds,
        device=args.device,
        references=args.references,
    )
    result = run_churn(
        args.runs,
        settings,
        args.out,
        overwrite=args.overwrite,
        plots=not args.no_plots,
        progress=not args.json,
    )
    print(json_text(result) if args.json else markdown_report(result))
    return 0
