"""``hsrl evaluate``: the evaluation protocol on a trained run."""

from __future__ import annotations

import argparse
from pathlib import Path

from hsrl.agents.reference import REFERENCE_POLICIES
from hsrl.cli._types import finite_float, result_name, seed
from hsrl.io import json_text


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help="evaluate a trained run or a reference policy: fixed seeds, mean and 95%% CI",
        description="Follow cohorts of users until N have finished an episode, acting greedily, "
        "and report mean and 95%% confidence interval of total reward, depth, average reward and "
        "click rate. With RUN_DIR: the run's agent (or --policy in the run's setting), saved in "
        "RUN_DIR/eval/NAME.json. Without: --policy random|greedy|oracle on --data with "
        "--simulator or --ground-truth.",
    )
    p.add_argument("run", type=Path, metavar="RUN_DIR", nargs="?")
    p.add_argument("--data", type=Path, help="prepared dataset (reference policies, no RUN_DIR)")
    p.add_argument(
        "--episodes", type=int, default=1000, help="finished episodes (users) to evaluate"
    )
    which = p.add_mutually_exclusive_group()
    which.add_argument(
        "--simulator",
        type=Path,
        help="evaluate on this learned simulator (e.g. one trained on the test split)",
    )
    which.add_argument(
        "--ground-truth",
        action="store_true",
        help="evaluate on the built-in dataset's true user model",
    )
    p.add_argument("--split", help="users to evaluate on (default: test when the dataset has it)")
    p.add_argument("--seed", type=seed, default=0, help="evaluation seed")
    p.add_argument(
        "--policy",
        default="agent",
        choices=("agent", *REFERENCE_POLICIES),
        help="the run's agent, or a reference policy: random, greedy (top-K click probability) "
        "or oracle (the slate of highest expected immediate reward)",
    )
    ranking = p.add_mutually_exclusive_group()
    ranking.add_argument(
        "--ranker",
        type=Path,
        metavar="SIM_DIR",
        help="greedy/oracle rank by this simulator while acting in the evaluation env "
        "(the transfer test)",
    )
    ranking.add_argument(
        "--rank-by-truth",
        action="store_true",
        help="greedy/oracle rank by the built-in dataset's true users",
    )
    p.add_argument(
        "--epsilon",
        type=finite_float,
        default=0.0,
        help="greedy/oracle without RUN_DIR: show a uniformly random slate instead with this "
        "probability per user and step (default 0)",
    )
    p.add_argument(
        "--layout",
        choices=("free", "rows"),
        help="page layout of a reference policy without RUN_DIR: free (default) or rows (row r "
        "shows only items of location r); a run keeps its own",
    )
    p.add_argument("--device", help="override the run's device")
    p.add_argument(
        "--name",
        type=result_name,
        help="result file name under RUN_DIR/eval/ (default from the options)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_evaluate)


def _evaluate(args: argparse.Namespace) -> int:
    from hsrl.errors import ConfigError
    from hsrl.evaluate import EvalSettings, evaluate_policy, evaluate_run, format_result
    from hsrl.io import write_json

    settings = EvalSettings(episodes=args.episodes, seed=args.seed)
    if args.run is None:
        if args.data is None:
            raise ConfigError("give a RUN_DIR, or --data DATA with a reference --policy")
        if args.name:
            raise ConfigError("--name names a result file under RUN_DIR/eval/: give a RUN_DIR")
        result = evaluate_policy(
            args.policy,
            args.data,
            settings,
            simulator=args.simulator,
            ground_truth=args.ground_truth,
            ranker=args.ranker,
            rank_by_truth=args.rank_by_truth,
            split=args.split,
            device=args.device or "cpu",
            layout=args.layout or "free",
            epsilon=args.epsilon,
        )
        print(json_text(result) if args.json else format_result(result))
        return 0
    if args.data is not None:
        raise ConfigError(
            "--data is for reference policies without a RUN_DIR (a run knows its data)"
        )
    if args.epsilon:
        raise ConfigError("--epsilon is for reference policies without a RUN_DIR")
    if args.layout is not None:
        raise ConfigError(
            "--layout is for reference policies without a RUN_DIR (a run keeps its own)"
        )
    result = evaluate_run(
        args.run,
        settings,
        simulator=args.simulator,
        ground_truth=args.ground_truth,
        split=args.split,
        device=args.device,
        policy=args.policy,
        ranker=args.ranker,
        rank_by_truth=args.rank_by_truth,
    )
    target = (
        "truth"
        if args.ground_truth
        else ("sim-" + args.simulator.name if args.simulator else "sim")
    )
    rank = (
        "_rank-truth"
        if args.rank_by_truth
        else (f"_rank-{args.ranker.name}" if args.ranker else "")
    )
    name = args.name or (
        f"{args.policy}{rank}_{target}_{result['evaluation']['split']}_seed{args.seed}"
    )
    write_json(Path(args.run) / "eval" / f"{name}.json", result)
    print(json_text(result) if args.json else format_result(result))
    return 0
