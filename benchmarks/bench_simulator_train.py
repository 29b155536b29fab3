"""Training throughput of the user response model, in records per second.

    python benchmarks/bench_simulator_train.py                    # CPU, default sizes
    python benchmarks/bench_simulator_train.py --device cuda
    python benchmarks/bench_simulator_train.py --data-users 4000 --epochs 1 --threads 1

Trains the reference configuration (f = 16, hidden 256, 2 heads, H = 50, batch 128, Adam
lr 1e-3, L2 3e-4) on a built-in dataset generated in a temporary folder, through the public
``train_simulator`` (so the number includes batching, the L2 term and the optimiser step, but
not the per-epoch validation), and reports the training records per second of each epoch
and the validation AUC. The HAC reference code trains at about 900 records/s.
Writes ``benchmarks/results/simulator_train_<hardware>.json`` and refreshes
``benchmarks/results/simulator_train.md`` from every such file.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

from bench_env import build_dataset, hardware_name

RESULTS = Path(__file__).resolve().parent / "results"
REFERENCE_RECORDS_PER_S = 900


def write_markdown() -> None:
    rows = []
    for path in sorted(RESULTS.glob("simulator_train_*.json")):
        r = json.loads(path.read_text())
        best = max(e["records_per_second"] for e in r["epochs"])
        rows.append(
            f"| {r['hardware']} | {r['threads']} | {r.get('load_average_1min_at_end', '')} | "
            f"{r['train_records']:,} | {r['batch_size']} | "
            f"{best:,.0f} | {best / REFERENCE_RECORDS_PER_S:.1f}x | {r['best_val_auc']:.3f} |"
        )
    text = [
        "# Simulator training throughput (`benchmarks/bench_simulator_train.py`)",
        "",
        f"Training records per second (best epoch; the HAC reference: about "
        f"{REFERENCE_RECORDS_PER_S} records/s).",
        "",
        "| hardware | threads | load | train records | batch | records / s | vs reference | val AUC |",
        "|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        "`load`: the shared CPU machine's 1-minute load average at the end of the run. With two",
        "torch threads on a busy 2-core machine every parallel region waits for both threads to",
        "be scheduled, hence the collapse; train with `hsrl --threads 1 simulator train` there.",
        "",
    ]
    (RESULTS / "simulator_train.md").write_text("\n".join(text))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument(
        "--data-users", type=int, default=2000, help="users of the built-in dataset"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()

    from hsrl.device import resolve_device
    from hsrl.simulator import SimulatorTrainConfig, train_simulator

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        prepared, _ = build_dataset(Path(tmp), args.data_users, None, seed=0)
        print(f"dataset built in {time.perf_counter() - start:.1f} s")
        config = SimulatorTrainConfig(epochs=args.epochs, batch_size=args.batch_size)
        metrics = train_simulator(prepared, Path(tmp) / "sim", config, device, progress=False)
    hardware = hardware_name(device)
    result = {
        "benchmark": "simulator_train",
        "hardware": hardware,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "load_average_1min_at_end": round(os.getloadavg()[0], 2),
        "torch": torch.__version__,
        "batch_size": args.batch_size,
        "train_records": metrics["train_records"],
        "val_records": metrics["val_records"],
        "val_split": metrics["val_split"],
        "best_val_auc": metrics["best_val_auc"],
        "epochs": metrics["epochs"],
    }
    print(json.dumps(result, indent=2))
    if not args.no_write:
        RESULTS.mkdir(exist_ok=True)
        name = hardware if device.type == "cuda" else f"cpu-{torch.get_num_threads()}thread"
        (RESULTS / f"simulator_train_{name}.json").write_text(json.dumps(result, indent=2) + "\n")
        write_markdown()


if __name__ == "__main__":
    main()
