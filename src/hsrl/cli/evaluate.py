"""``hsrl evaluate``: the evaluation protocol on a trained run."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from hsrl.agents.reference import REFERENCE_POLICIES


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help="evaluate a trained run: greedy policy, fixed seeds, mean and 95%% CI",
        description="Follow cohorts of users until N have finished an episode, acting greedily, "
        "and report mean and 95%% confidence interval of total reward, depth, average reward and "
        "click rate. Results are also saved in RUN_DIR/eval/NAME.json.",
    )
    p.add_argument("run", type=Path, metavar="RUN_DIR")
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
    p.add_argument("--seed", type=int, default=0, help="evaluation seed")
    p.add_argument(
        "--policy",
        default="agent",
        choices=("agent", *REFERENCE_POLICIES),
        help="the run's agent, or a reference policy in the same setting",
    )
    p.add_argument("--device", help="override the run's device")
    p.add_argument("--name", help="result file name under RUN_DIR/eval/ (default from the options)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_evaluate)


def _evaluate(args: argparse.Namespace) -> int:
    from hsrl.evaluate import EvalSettings, evaluate_run, format_result
    from hsrl.io import write_json

    settings = EvalSettings(episodes=args.episodes, seed=args.seed)
    result = evaluate_run(
        args.run,
        settings,
        simulator=args.simulator,
        ground_truth=args.ground_truth,
        split=args.split,
        device=args.device,
        policy=args.policy,
    )
    target = (
        "truth"
        if args.ground_truth
        else ("sim-" + args.simulator.name if args.simulator else "sim")
    )
    name = args.name or f"{args.policy}_{target}_{result['evaluation']['split']}_seed{args.seed}"
    write_json(Path(args.run) / "eval" / f"{name}.json", result)
    print(json.dumps(result) if args.json else format_result(result))
    return 0
