"""``hsrl report``: tables and plots across runs, agents and seeds."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from hsrl.io import json_text


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "report",
        help="tables (markdown, CSV) and plots across runs, agents and seeds",
        description="Find run folders (by their config.json) under the given paths, group runs "
        "that differ only by seed, and write results.md / results.csv (mean ± std over seeds and "
        "95%% t-interval per group and evaluation setting), runs.csv, report.json, "
        "learning_curves.png and final_metrics.png to --out. Runs with missing or damaged "
        "parts are listed as warnings; the exit status is non-zero only when nothing usable "
        "remains.",
    )
    p.add_argument(
        "runs",
        nargs="+",
        type=Path,
        metavar="RUN_DIR",
        help="run folders, or folders holding run folders (e.g. a sweep's --out)",
    )
    p.add_argument("--out", type=Path, required=True, help="folder for the tables and plots")
    p.add_argument("--no-plots", action="store_true", help="tables only (no matplotlib needed)")
    p.add_argument(
        "--band",
        choices=("std", "minmax"),
        default="std",
        help="learning-curve band: ± std over seeds (default) or min-max",
    )
    p.add_argument(
        "--smooth",
        type=int,
        default=1,
        metavar="K",
        help="moving average over K log points per run before averaging seeds (default 1: none)",
    )
    p.add_argument("--dpi", type=int, default=150, help="plot resolution (default 150)")
    p.add_argument("--json", action="store_true", help="print report.json's content on stdout")
    p.set_defaults(func=_report)


def _report(args: argparse.Namespace) -> int:
    from hsrl.errors import ConfigError
    from hsrl.report import build_report

    if args.smooth < 1:
        raise ConfigError("--smooth must be at least 1")
    if not 30 <= args.dpi <= 600:
        raise ConfigError("--dpi must be between 30 and 600")
    report = build_report(
        args.runs,
        args.out,
        plots=not args.no_plots,
        band=args.band,
        smooth_window=args.smooth,
        dpi=args.dpi,
    )
    if report.skipped:
        print(
            f"hsrl report: warning: skipped {len(report.skipped)} run(s):",
            *(f"  - {s}" for s in report.skipped),
            sep="\n",
            file=sys.stderr,
        )
    if report.notes:
        print(
            f"hsrl report: warning: {len(report.notes)} part(s) of runs left out:",
            *(f"  - {s}" for s in report.notes),
            sep="\n",
            file=sys.stderr,
        )
    if args.json:
        print(json_text(json.loads((report.out / "report.json").read_text())))
        return 0
    runs = sum(len(g.runs) for g in report.groups)
    print(f"report of {runs} run(s) in {len(report.groups)} group(s): {report.out}")
    for path in report.files:
        print(f"  {path}")
    if (report.out / "results.md").is_file():
        print()
        print((report.out / "results.md").read_text(encoding="utf-8"), end="")
    else:
        print("no evaluation results: run `hsrl evaluate RUN_DIR` for the tables")
    return 0
