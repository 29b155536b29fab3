"""Training throughput of every agent: iterations per second through the shared loop.

    python benchmarks/bench_train.py                      # CPU, reference settings, all agents
    python benchmarks/bench_train.py --device cuda        # GPU (also records peak GPU memory)
    python benchmarks/bench_train.py --large              # adds 1,024 users / batch 1,024

One iteration = one environment step for all parallel users (the agent acts, the learned
simulator responds) + one agent update on a replay batch, exactly what `hsrl train` runs. The
reference settings: 32 users, batch 64, SIDs of 3 levels x 16 codes, d = 32. The world (built-in
dataset, a simulator trained for one epoch, SIDs) is built once in --work and reused.

Targets (issue 5): >= 40 it/s on the 2-core CPU, >= 256 it/s on an H200 (HSRL, reference
settings). Writes benchmarks/results/train_<hardware>.json and refreshes train.md.
"""

from __future__ import annotations

import argparse
import gc
import json
import tempfile
import time
from pathlib import Path

import torch

from common import RESULTS, hardware_name, host_info, write_result
from hsrl.agents import AGENTS
from hsrl.train import EnvSettings, RunConfig, Trainer, TrainSettings, build_run


def build_world(work: Path, device: str) -> dict[str, Path]:
    from hsrl.data import prepare
    from hsrl.data.prepared import load_prepared
    from hsrl.sid import build_sid_index
    from hsrl.simulator.train import SimulatorTrainConfig, train_simulator

    data, sim, sid = work / "data", work / "simulator", work / "sid"
    if not (data / "manifest.json").exists():
        prepare("builtin", raw=None, out=data, seed=0)
    if not (sim / "metrics.json").exists():
        train_simulator(data, sim, SimulatorTrainConfig(epochs=1), device, progress=False, log=None)
    if not sid.exists():
        index, _ = build_sid_index(load_prepared(data, splits=[]).items.features, 3, 16, seed=0)
        index.save(sid)
    return {"data": data, "simulator": sim, "sid": sid}


def add_world_arguments(parser: argparse.ArgumentParser) -> None:
    """--device, --threads and --work, shared by the training benchmarks."""
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument(
        "--work", type=Path, default=Path(tempfile.gettempdir()) / "hsrl-bench-train"
    )


def world_from_arguments(args: argparse.Namespace) -> dict[str, Path]:
    if args.threads:
        torch.set_num_threads(args.threads)
    return build_world(args.work, args.device)


def bench_config(
    world: dict[str, Path], agent: str, users: int, batch: int, device: str, graphs: bool = True
) -> RunConfig:
    """A run of ``agent`` in the benchmark world; learning starts after one batch."""
    return RunConfig(
        agent=agent,
        data=str(world["data"]),
        simulator=str(world["simulator"]),
        sid=str(world["sid"]),
        device=device,
        env=EnvSettings(num_users=users),
        train=TrainSettings(batch_size=batch, warmup=batch, tensorboard=False, cuda_graphs=graphs),
    )


def measure(
    world: dict[str, Path], agent: str, users: int, batch: int, device: str, iterations: int
) -> dict:
    config = bench_config(world, agent, users, batch, device)
    gc.collect()  # free the previous agent's run (and its CUDA graphs) before measuring memory
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    baseline = torch.cuda.memory_allocated() if torch.cuda.is_available() else 0
    parts = build_run(config)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(parts, Path(tmp))
        # Past warm-up, so every timed iteration updates (offline agents never fill the buffer).
        while not trainer.offline and len(trainer.buffer) < batch * 2:
            trainer.step()
        for _ in range(10):
            trainer.step()
        if parts.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        for _ in range(iterations):
            trainer.step()
        if parts.device.type == "cuda":
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - start
        trainer.close()
    row = {
        "agent": agent,
        "users": users,
        "batch": batch,
        "iterations": iterations,
        "iterations_per_s": iterations / elapsed,
        "user_steps_per_s": iterations * users / elapsed,
    }
    if parts.device.type == "cuda":
        # What this run added to the memory in use before it was built.
        row["peak_gpu_memory_mb"] = (torch.cuda.max_memory_allocated() - baseline) / 2**20
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_world_arguments(parser)
    parser.add_argument("--agents", default=",".join(sorted(AGENTS)))
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--large", action="store_true", help="also 1,024 users with batch 1,024")
    parser.add_argument("--only-large", action="store_true", help="only 1,024 users, batch 1,024")
    args = parser.parse_args()
    device = torch.device(args.device)
    world = world_from_arguments(args)
    settings = [] if args.only_large else [(32, 64)]
    settings += [(1024, 1024)] if args.large or args.only_large else []
    rows = []
    for users, batch in settings:
        for agent in args.agents.split(","):
            row = measure(world, agent, users, batch, args.device, args.iterations)
            rows.append(row)
            print(json.dumps(row), flush=True)
    hardware = hardware_name(device)
    suffix = f"-{torch.get_num_threads()}thread" if device.type == "cpu" else ""
    # Rows of other settings already recorded for this hardware are kept (merge by setting).
    path = RESULTS / f"train_{hardware}{suffix}.json"
    old = json.loads(path.read_text())["rows"] if path.exists() else []
    fresh = {(r["agent"], r["users"], r["batch"]) for r in rows}
    rows = [r for r in old if (r["agent"], r["users"], r["batch"]) not in fresh] + rows
    write_result(path.stem, {"host": host_info(device), "rows": rows})
    refresh_table()


def refresh_table() -> None:
    lines = [
        "# Training throughput (iterations per second)",
        "",
        "One iteration = one env step for all users + one update. Reproduce: "
        "`python benchmarks/bench_train.py [--device cuda] [--large] [--threads 1]`. On CUDA the "
        "loop acts and updates from captured CUDA graphs (the default of `hsrl train`). Peak GPU "
        "MB: what the run added to the memory in use before it was built.",
        "",
        "| hardware | agent | users | batch | it/s | user-steps/s | peak GPU MB |",
        "|---|---|---|---|---|---|---|",
    ]
    for path in sorted(RESULTS.glob("train_*.json")):
        result = json.loads(path.read_text())
        hardware = path.stem.removeprefix("train_")
        for r in result["rows"]:
            mem = f"{r['peak_gpu_memory_mb']:.0f}" if "peak_gpu_memory_mb" in r else "-"
            lines.append(
                f"| {hardware} | {r['agent']} | {r['users']} | {r['batch']} | "
                f"{r['iterations_per_s']:.1f} | {r['user_steps_per_s']:,.0f} | {mem} |"
            )
    (RESULTS / "train.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
