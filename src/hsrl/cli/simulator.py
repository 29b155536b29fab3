"""``hsrl simulator train`` and ``hsrl simulator info``."""

from __future__ import annotations

import argparse
from pathlib import Path

from hsrl.cli._types import finite_float, seed
from hsrl.io import json_text


def register(subparsers: argparse._SubParsersAction) -> None:
    simulator = subparsers.add_parser("simulator", help="train and inspect user simulators")
    actions = simulator.add_subparsers(dest="simulator_command", metavar="ACTION")
    actions.required = True

    t = actions.add_parser(
        "train",
        help="fit the user response model on a prepared dataset's logged slates",
        description="Train the user response model (SPEC 3) on the train split, report the "
        "validation AUC after every epoch, keep the best epoch and save it to --out.",
    )
    t.add_argument("--data", type=Path, required=True, help="prepared dataset folder")
    t.add_argument("--out", type=Path, required=True, help="simulator folder to create")
    t.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default cpu)")
    t.add_argument("--epochs", type=int, default=2, help="training epochs (default 2)")
    t.add_argument("--batch-size", type=int, default=128, help="records per batch (default 128)")
    t.add_argument(
        "--lr", type=finite_float, default=1e-3, help="Adam learning rate (default 1e-3)"
    )
    t.add_argument("--l2", type=finite_float, default=3e-4, help="L2 coefficient (default 3e-4)")
    t.add_argument("--seed", type=seed, default=0, help="seed of initialisation and batch order")
    t.add_argument(
        "--feature-dim", type=int, default=16, help="f: size of the user, item and intent vectors"
    )
    t.add_argument(
        "--variant",
        choices=("auto", "rl4rs", "ml1m"),
        default="auto",
        help="model variant: rl4rs (intent = cross-attention of the user over the history) or "
        "ml1m (that intent fused with the user vector by a linear map); auto = ml1m for MovieLens "
        "sources, else rl4rs",
    )
    t.add_argument(
        "--position",
        choices=("auto", "slot", "none"),
        default="auto",
        help="slot: a learned logit offset per slot (position-based click model), needs logs "
        "that show items at several positions; none: the reference's position-free model; "
        "auto (default): slot when the logs identify it, else none",
    )
    t.add_argument(
        "--val-split", default=None, help="split for the validation AUC (default: val, else test)"
    )
    t.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.add_argument("--json", action="store_true", help="print the final metrics as one JSON object")
    t.set_defaults(func=_train)

    f = actions.add_parser(
        "fidelity",
        help="measure a simulator against the built-in dataset's true users",
        description="Held-out AUC beside its ceiling, calibration (with a reliability plot), the "
        "per-user rank correlation of item scores with the truth (overall and within each page "
        "row), and a cross-evaluation of reference policies and trained runs on the simulator "
        "and on the true users (Kendall's tau between the two, and the transfer ratio). Needs a "
        "dataset with a ground truth.",
    )
    f.add_argument("path", type=Path, metavar="SIM_DIR", help="simulator folder")
    f.add_argument("--data", type=Path, required=True, help="prepared dataset with a ground truth")
    f.add_argument(
        "--runs",
        type=Path,
        nargs="*",
        default=[],
        metavar="RUN_DIR",
        help="trained runs to add to the cross-evaluation",
    )
    f.add_argument("--episodes", type=int, default=1000, help="users per evaluation")
    f.add_argument("--seed", type=seed, default=0, help="evaluation seed")
    f.add_argument("--split", default="test", help="users to measure on (default test)")
    f.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default cpu)")
    f.add_argument(
        "--layout",
        choices=("free", "rows"),
        default="free",
        help="page layout the policy suite acts under: free (default) or rows (row r shows "
        "only items of location r)",
    )
    f.add_argument(
        "--out", type=Path, help="folder for fidelity.json, fidelity.md and reliability.png"
    )
    f.add_argument("--json", action="store_true", help="print one JSON object")
    f.set_defaults(func=_fidelity)

    i = actions.add_parser("info", help="show a simulator's config, dataset and metrics")
    i.add_argument("path", type=Path, help="simulator folder")
    i.add_argument("--json", action="store_true", help="print one JSON object")
    i.set_defaults(func=_info)


def _train(args: argparse.Namespace) -> int:
    import sys

    from hsrl.config import replace
    from hsrl.data.prepared import read_manifest
    from hsrl.simulator.response_model import ResponseModelConfig
    from hsrl.simulator.train import SimulatorTrainConfig, train_simulator

    variant = args.variant
    if variant == "auto":
        source = str(read_manifest(args.data).get("source", ""))
        variant = "ml1m" if source.startswith("ml1m") else "rl4rs"
    config = replace(
        SimulatorTrainConfig(),
        model=ResponseModelConfig(
            variant=variant, position=args.position, feature_dim=args.feature_dim
        ),
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        l2_coef=args.l2,
        seed=args.seed,
        val_split=args.val_split,
    )

    def log(message: str) -> None:
        print(message, file=sys.stderr if args.json else sys.stdout, flush=True)

    metrics = train_simulator(
        args.data,
        args.out,
        config,
        args.device,
        overwrite=args.overwrite,
        progress=not args.no_progress,
        log=log,
    )
    if args.json:
        print(json_text(metrics))
    return 0


def _fidelity(args: argparse.Namespace) -> int:
    from hsrl.evaluate import EvalSettings
    from hsrl.io import atomic_write_bytes, write_json
    from hsrl.simulator.fidelity import fidelity_report, format_fidelity, plot_reliability

    report = fidelity_report(
        args.data,
        args.path,
        EvalSettings(episodes=args.episodes, seed=args.seed),
        runs=args.runs,
        split=args.split,
        device=args.device,
        layout=args.layout,
    )
    text = format_fidelity(report)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        write_json(args.out / "fidelity.json", report)
        atomic_write_bytes(args.out / "fidelity.md", (text + "\n").encode())
        plot_reliability(report, args.out / "reliability.png")
    print(json_text(report) if args.json else text)
    return 0


def _info(args: argparse.Namespace) -> int:
    from hsrl.errors import CheckpointError
    from hsrl.io import read_json
    from hsrl.simulator.train import CONFIG_FILE, DATASET_FILE, METRICS_FILE, load_simulator

    load_simulator(args.path)  # validates the whole folder
    try:
        info = {
            "path": str(args.path),
            "config": read_json(args.path / CONFIG_FILE),
            "dataset": read_json(args.path / DATASET_FILE),
            "metrics": read_json(args.path / METRICS_FILE),
        }
    except Exception as exc:  # noqa: BLE001
        raise CheckpointError(f"simulator {args.path}: {exc}") from exc
    if args.json:
        print(json_text(info))
        return 0
    model = info["config"]["model"]
    data = info["dataset"]
    metrics = info["metrics"]
    print(f"simulator {args.path}")
    print(
        f"  model     {model['variant']} variant, f={model['feature_dim']}, "
        f"hidden {model['hidden_dim']}, {model['num_heads']} heads, H={model['history_length']}, "
        f"position {model.get('position', 'none')}"
    )
    print(
        f"  dataset   {data.get('source')} at {data.get('path')}: {data.get('num_items')} items "
        f"x {data.get('item_feature_dim')} features, profile {data.get('user_profile_dim')}"
    )
    for row in metrics.get("epochs", []):
        auc = "n/a" if row.get("val_auc") is None else f"{row['val_auc']:.4f}"
        print(
            f"  epoch {row['epoch']}   train BCE {row['train_bce']:.4f}, val AUC {auc}, "
            f"{row['records_per_second']:,.0f} records/s"
        )
    if metrics.get("best_epoch"):
        auc = metrics.get("best_val_auc")
        shown = "n/a" if auc is None else f"{auc:.4f}"
        print(f"  best      epoch {metrics['best_epoch']} (val AUC {shown})")
    return 0
