"""The ``hsrl`` command: one subcommand per workflow step.

Each step's module in this package adds its parser with ``register(subparsers)`` and sets
``func`` to a handler that takes the parsed arguments and returns an exit code. Errors the user
can fix (:class:`hsrl.errors.HsrlError`) are printed as one line and exit with status 1; so
are the operating system's (a file that cannot be read or written, a full disk). Anything else
is a bug: one line asks for a report, and ``--debug`` (or ``HSRL_DEBUG=1``) shows the
traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from hsrl import __version__
from hsrl.errors import HsrlError

# Modules that contribute subcommands, in the order of the workflow.
_COMMAND_MODULES = (
    "data",
    "simulator",
    "sid",
    "train",
    "evaluate",
    "report",
    "sweep",
    "churn",
    "run",
)


def build_parser() -> argparse.ArgumentParser:
    import importlib

    parser = argparse.ArgumentParser(
        prog="hsrl",
        description="Hierarchical Semantic RL for recommendation: data, simulator, semantic IDs, "
        "training, evaluation and reports.",
    )
    parser.add_argument("--version", action="version", version=f"hsrl {__version__}")
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        metavar="N",
        help="torch CPU threads (default 0: torch's choice, one per core; on a machine busy "
        "with other work, 1 is much faster for these small networks)",
    )
    parser.add_argument(
        "--debug",
        action="store_true",
        help="show the traceback of an internal error (also: HSRL_DEBUG=1)",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for name in _COMMAND_MODULES:
        importlib.import_module(f"hsrl.cli.{name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.threads < 0:
        parser.error("--threads must be 0 or more")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    try:
        return _run_locked(args)
    except HsrlError as exc:
        print(f"hsrl: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("hsrl: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:
        if _debug(args):
            raise
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"hsrl: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 1
    except Exception as exc:
        if _debug(args):
            raise
        return _internal_error(exc)


def _internal_error(exc: Exception) -> int:
    """A bug, not a bad input: one line asking for a report (the test suite fails any test
    that gets here unless it expects it)."""
    print(
        f"hsrl: internal error ({exc.__class__.__name__}: {_first_line(exc)}); please "
        "report it, with the command; --debug shows the traceback",
        file=sys.stderr,
    )
    return 70


def _run_locked(args: argparse.Namespace) -> int:
    """Run the command holding the lock of the folder it creates (``--out``), so that a second
    writer of the same folder fails at once; ``train`` locks its run folder itself."""
    out = getattr(args, "out", None)
    if not isinstance(out, Path) or args.command == "train":
        return int(args.func(args) or 0)
    from hsrl.io import output_lock

    with output_lock(out):
        return int(args.func(args) or 0)


def _debug(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "debug", False)) or os.environ.get("HSRL_DEBUG") == "1"


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return (lines[0] if lines else "")[:300]


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
