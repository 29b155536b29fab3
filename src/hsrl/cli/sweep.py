"""``hsrl sweep``: many runs (agents x settings x seeds) and their evaluations from one file."""

from __future__ import annotations

import argparse
from pathlib import Path

from hsrl.cli._types import finite_float


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "sweep",
        help="train and evaluate agents x settings x seeds from a sweep file (Ray or local)",
        description="Expand a sweep file (JSON, or TOML by suffix; format in docs/experiments.md) "
        "into trials, write OUT/sweep.json, and run each unfinished trial (hsrl train, then its "
        "hsrl evaluate calls) into OUT/<trial>/. Uses Ray Tune when Ray is installed, else a "
        "local process pool. Running the same command again resumes: finished trials (all "
        "evaluation files present) are skipped, interrupted ones continue from their checkpoint.",
    )
    p.add_argument("sweep_file", type=Path, metavar="CONFIG_FILE", help="the sweep file")
    p.add_argument("--out", type=Path, required=True, help="folder for all the sweep's runs")
    p.add_argument(
        "--backend",
        choices=("auto", "ray", "local"),
        default="auto",
        help="auto (default): Ray when installed, else a local process pool",
    )
    p.add_argument(
        "--workers",
        type=int,
        help="trials at once: the local pool's size (default: CPUs / --cpus-per-trial; 0 = one "
        "at a time in this process), or a cap on Ray's concurrent trials",
    )
    p.add_argument(
        "--cpus-per-trial",
        type=finite_float,
        default=1.0,
        help="CPUs reserved per trial (Ray) and torch threads per trial (default 1)",
    )
    p.add_argument(
        "--gpus-per-trial",
        type=finite_float,
        default=0.0,
        help="Ray: GPU share per trial, e.g. 0.25 packs four trials per GPU (default 0); "
        "set the device to cuda (--device cuda) for trials to use it",
    )
    p.add_argument(
        "--address",
        help="Ray: join this cluster (e.g. auto or ray://head:10001) instead of a local instance",
    )
    p.add_argument(
        "--rerun-changed",
        action="store_true",
        help="train again trials whose run folder holds other settings (edited sweep file)",
    )
    p.add_argument("--dry-run", action="store_true", help="list the trials and stop")
    overrides = p.add_argument_group("overrides of the sweep file's base settings")
    overrides.add_argument("--data", type=Path, help="prepared dataset folder")
    overrides.add_argument("--simulator", type=Path, help="simulator folder")
    overrides.add_argument("--sid", type=Path, help="semantic-ID folder")
    overrides.add_argument("--device", help="cpu, cuda, cuda:N or auto")
    overrides.add_argument("--iterations", type=int, help="training iterations per trial")
    overrides.add_argument("--episodes", type=int, help="episodes per evaluation")
    overrides.add_argument("--seeds", help="comma-separated seeds, e.g. 0,1,2")
    overrides.add_argument("--agents", help="comma-separated agents, e.g. hsrl,hac")
    overrides.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a setting of every trial (after base.set), e.g. train.warmup=500",
    )
    p.set_defaults(func=_sweep)


def _int_list(flag: str, text: str | None) -> list[int] | None:
    from hsrl.errors import ConfigError

    if text is None:
        return None
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"{flag} {text!r}: expected comma-separated integers") from None
    if not values:
        raise ConfigError(f"{flag}: name at least one")
    return values


def _sweep(args: argparse.Namespace) -> int:
    from hsrl.errors import HsrlError
    from hsrl.sweep import expand, is_finished, load_sweep, run_sweep

    cli = {
        "data": args.data,
        "simulator": args.simulator,
        "sid": args.sid,
        "device": args.device,
        "iterations": args.iterations,
        "episodes": args.episodes,
        "seeds": _int_list("--seeds", args.seeds),
        "agents": [a.strip() for a in args.agents.split(",") if a.strip()] if args.agents else None,
        "set": args.set or None,
    }
    spec = load_sweep(args.sweep_file, cli)
    if args.dry_run:
        trials = expand(spec)
        for trial in trials:
            state = "finished" if is_finished(args.out, trial) else "to run"
            evaluations = ", ".join(e.name for e in trial.evaluations)
            print(f"{trial.name}  [{state}]  evaluations: {evaluations}")
        print(f"{len(trials)} trial(s)")
        return 0
    result = run_sweep(
        spec,
        args.out,
        backend=args.backend,
        workers=args.workers,
        cpus_per_trial=args.cpus_per_trial,
        gpus_per_trial=args.gpus_per_trial,
        address=args.address,
        rerun_changed=args.rerun_changed,
    )
    counts: dict[str, int] = {}
    for outcome in result.outcomes.values():
        counts[outcome["status"]] = counts.get(outcome["status"], 0) + 1
    summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    print(f"sweep done: {summary}. Tables and plots: hsrl report {result.out} --out REPORT_DIR")
    if result.failed:
        raise HsrlError(
            f"{len(result.failed)} trial(s) failed: {', '.join(result.failed)} "
            f"(logs in {result.out / '_sweep' / 'logs'}); run the command again to retry them"
        )
    return 0
