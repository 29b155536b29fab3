"""Where one training iteration's time goes: acting, env step, replay push/sample, update.

    python benchmarks/profile_iteration.py                       # CPU, HSRL, reference settings
    python benchmarks/profile_iteration.py --device cuda         # GPU, update from a CUDA graph
    python benchmarks/profile_iteration.py --device cuda --no-graphs

Each phase is timed with a device synchronisation around it, so the phases add up to a little
more than the unsynchronised iteration that bench_train.py measures. Prints one JSON line of
milliseconds per phase; writes benchmarks/results/profile_<hardware>.json.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from bench_train import add_world_arguments, bench_config, world_from_arguments
from common import RESULTS, hardware_name, host_info, write_result
from hsrl.train import Trainer, build_run

PHASES = ("act", "env", "push", "sample", "update")


def profile(world, agent: str, users: int, batch: int, device: str, graphs: bool, n: int) -> dict:
    parts = build_run(bench_config(world, agent, users, batch, device, graphs))
    cuda = parts.device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(parts, Path(tmp))
        while len(trainer.buffer) < batch * 2:
            trainer.step()
        for _ in range(10):
            trainer.step()
        totals = dict.fromkeys(PHASES, 0.0)
        marks: list[float] = []

        def mark() -> None:
            sync()
            marks.append(time.perf_counter())

        for _ in range(n):
            marks.clear()
            mark()
            action = trainer.act_for_users()
            mark()
            transition = trainer.env_step(action)
            mark()
            trainer.buffer.push(transition)
            mark()
            sample = trainer.buffer.sample(batch, trainer.replay_generator)
            mark()
            trainer.update(sample)
            mark()
            for phase, start, end in zip(PHASES, marks, marks[1:]):
                totals[phase] += end - start
        trainer.close()
    row = {"agent": agent, "users": users, "batch": batch, "cuda_graphs": graphs and cuda}
    row.update({f"{phase}_ms": 1000 * totals[phase] / n for phase in PHASES})
    row["total_ms"] = sum(row[f"{phase}_ms"] for phase in PHASES)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_world_arguments(parser)
    parser.add_argument("--agent", default="hsrl")
    parser.add_argument("--users", type=int, default=32)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--no-graphs", action="store_true", help="eager steps on CUDA")
    args = parser.parse_args()
    world = world_from_arguments(args)
    row = profile(
        world,
        args.agent,
        args.users,
        args.batch,
        args.device,
        not args.no_graphs,
        args.iterations,
    )
    print(json.dumps(row), flush=True)
    device = torch.device(args.device)
    path = RESULTS / f"profile_{hardware_name(device)}.json"
    old = json.loads(path.read_text())["rows"] if path.exists() else []
    same = ("agent", "users", "batch", "cuda_graphs")
    rows = [r for r in old if any(r.get(k) != row[k] for k in same)] + [row]
    write_result(path.stem, {"host": host_info(device), "rows": rows})


if __name__ == "__main__":
    main()
