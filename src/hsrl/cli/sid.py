"""``hsrl sid build`` and ``hsrl sid info``."""

from __future__ import annotations

import argparse
from pathlib import Path

from hsrl.cli._types import finite_float, seed
from hsrl.io import json_text, read_json


def register(subparsers: argparse._SubParsersAction) -> None:
    sid = subparsers.add_parser("sid", help="build and inspect semantic IDs")
    actions = sid.add_subparsers(dest="sid_command", metavar="ACTION")
    actions.required = True

    b = actions.add_parser(
        "build",
        help="fit a residual k-means codebook and give every item a distinct semantic ID",
        description="Fit an L-level residual k-means codebook of V codes per level on the item "
        "features of a prepared dataset, give every item a distinct SID (collision policy in "
        "docs/sid.md), and write the codebook, the item-to-SID table and a report.",
    )
    b.add_argument("--data", type=Path, required=True, help="prepared dataset folder")
    b.add_argument("--out", type=Path, required=True, help="SID folder to create")
    b.add_argument("--levels", type=int, default=3, help="L, tokens per SID (default 3)")
    b.add_argument("--codes", type=int, default=16, help="V, codes per level (default 16)")
    b.add_argument(
        "--balanced",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="equal-size clusters at every level (default) or plain k-means (--no-balanced)",
    )
    b.add_argument("--seed", type=seed, default=0, help="seed of the k-means initialisation")
    b.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default cpu)")
    b.add_argument(
        "--backend",
        choices=("torch", "faiss"),
        default="torch",
        help="nearest-centroid search: torch (default, CPU or CUDA) or faiss (optional extra)",
    )
    b.add_argument("--max-iter", type=int, default=30, help="k-means iterations per level cap")
    b.add_argument(
        "--tol", type=finite_float, default=1e-4, help="relative inertia change to stop at"
    )
    b.add_argument(
        "--n-init",
        type=int,
        default=None,
        help="k-means restarts per level (default: 4 for small catalogues, else 1)",
    )
    b.add_argument(
        "--max-points-per-centroid",
        type=int,
        default=512,
        help="fit each level on at most this many sampled items per code, then assign all "
        "items (default 512; 0 = fit on all items)",
    )
    b.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")
    b.add_argument("--json", action="store_true", help="print the report as one JSON object")
    b.set_defaults(func=_build)

    i = actions.add_parser("info", help="summarise a SID folder")
    i.add_argument("path", type=Path, help="SID folder from `hsrl sid build`")
    i.add_argument("--data", type=Path, help="also check it matches this prepared dataset")
    i.add_argument("--json", action="store_true", help="print one JSON object")
    i.set_defaults(func=_info)


def _build(args: argparse.Namespace) -> int:
    from hsrl.sid import build_sid_folder, format_report

    report = build_sid_folder(
        args.data,
        args.out,
        levels=args.levels,
        codes=args.codes,
        balanced=args.balanced,
        seed=args.seed,
        device=args.device,
        backend=args.backend,
        overwrite=args.overwrite,
        max_iter=args.max_iter,
        tol=args.tol,
        n_init=args.n_init,
        max_points_per_centroid=args.max_points_per_centroid,
    )
    if args.json:
        print(json_text(report))
    else:
        print(format_report(report))
        print(f"wrote {args.out}")
    return 0


def _info(args: argparse.Namespace) -> int:
    from hsrl.sid import SidIndex, format_report

    features = None
    if args.data is not None:
        from hsrl.data.prepared import load_prepared

        features = load_prepared(args.data, splits=[]).items.features
    index = SidIndex.load(args.path, features=features)
    report_path = args.path / "report.json"
    report = read_json(report_path) if report_path.is_file() else None
    info = {
        "levels": index.levels,
        "codes": index.codes,
        "feature_dim": index.feature_dim,
        "num_items": index.num_items,
        "num_live": index.num_live,
        "build": index.build,
        "changes": index.changes,
    }
    if args.json:
        print(json_text({**info, "report": report}))
        return 0
    print(
        f"{args.path}: {index.num_live} live of {index.num_items} items, "
        f"{index.levels} levels x {index.codes} codes, {index.feature_dim}-dim features"
        + (" (matches the dataset)" if features is not None else "")
    )
    if report is not None:
        try:
            print(format_report(report))
        except (KeyError, TypeError, ValueError):
            print(f"({report_path} is not a report this hsrl can summarise)")
    return 0
