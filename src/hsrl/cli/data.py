"""``hsrl data prepare`` and ``hsrl data info``."""

from __future__ import annotations

import argparse
from pathlib import Path

from hsrl.cli._types import seed
from hsrl.data import SOURCES, prepare
from hsrl.data.prepared import load_prepared
from hsrl.data.summary import format_summary, summarize
from hsrl.io import json_text


def register(subparsers: argparse._SubParsersAction) -> None:
    data = subparsers.add_parser("data", help="prepare and inspect datasets")
    actions = data.add_subparsers(dest="data_command", metavar="ACTION")
    actions.required = True

    p = actions.add_parser(
        "prepare",
        help="read raw logs (or generate the built-in dataset) into the prepared format",
        description="Read raw logs, validate them, and write one prepared dataset folder.",
    )
    p.add_argument("source", choices=SOURCES, help="which reader to use")
    p.add_argument("--raw", type=Path, help="folder with the raw files (not for builtin)")
    p.add_argument("--out", type=Path, required=True, help="prepared dataset folder to create")
    p.add_argument("--seed", type=seed, default=0, help="seed for generation and random splits")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")
    p.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="reader-specific option (repeatable), e.g. --option slate_size=10 for ml1m",
    )
    p.set_defaults(func=_prepare)

    i = actions.add_parser("info", help="summarise a prepared dataset")
    i.add_argument("path", type=Path, help="prepared dataset folder")
    i.add_argument("--json", action="store_true", help="print one JSON object")
    i.set_defaults(func=_info)


def parse_options(pairs: list[str]) -> dict[str, str]:
    from hsrl.errors import ConfigError

    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--option {pair!r}: expected KEY=VALUE")
        options[key.strip()] = value.strip()
    return options


def _prepare(args: argparse.Namespace) -> int:
    out = prepare(
        args.source,
        raw=args.raw,
        out=args.out,
        seed=args.seed,
        overwrite=args.overwrite,
        options=parse_options(args.option),
    )
    print(format_summary(summarize(load_prepared(out))))
    return 0


def _info(args: argparse.Namespace) -> int:
    summary = summarize(load_prepared(args.path))
    if args.json:
        print(json_text(summary))
    else:
        print(format_summary(summary))
    return 0
