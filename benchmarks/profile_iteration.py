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

from bench_train import build_world
from common import RESULTS, hardware_name, host_info, write_result
from hsrl.replay import Batch
from hsrl.train import EnvSettings, RunConfig, Trainer, TrainSettings, build_run

PHASES = ("act", "env", "push", "sample", "update")


def profile(world, agent: str, users: int, batch: int, device: str, graphs: bool, n: int) -> dict:
    config = RunConfig(
        agent=agent,
        data=str(world["data"]),
        simulator=str(world["simulator"]),
        sid=str(world["sid"]),
        device=device,
        env=EnvSettings(num_users=users),
        train=TrainSettings(batch_size=batch, warmup=batch, tensorboard=False, cuda_graphs=graphs),
    )
    parts = build_run(config)
    cuda = parts.device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(parts, Path(tmp))
        while len(trainer.buffer) < batch * 2:
            trainer.step()
        for _ in range(10):
            trainer.step()
        agent_, env, buffer = parts.agent, parts.env, trainer.buffer
        totals = dict.fromkeys(PHASES, 0.0)
        for _ in range(n):
            marks = []
            sync()
            marks.append(time.perf_counter())
            agent_.acting(True)
            action = trainer.act(trainer.obs)
            agent_.acting(False)
            sync()
            marks.append(time.perf_counter())
            next_obs, reward, terminated, _, info = env.step(action.slate)
            sync()
            marks.append(time.perf_counter())
            buffer.push(
                Batch(
                    user_profile=trainer.obs["user_profile"],
                    history=trainer.obs["history"],
                    slate=action.slate,
                    response=info["response"],
                    reward=reward,
                    terminated=terminated.float(),
                    next_user_profile=next_obs["user_profile"],
                    next_history=next_obs["history"],
                    action=action.record,
                )
            )
            trainer.obs = next_obs
            sync()
            marks.append(time.perf_counter())
            sample = buffer.sample(batch, trainer.replay_generator)
            sync()
            marks.append(time.perf_counter())
            trainer.update(sample)
            sync()
            marks.append(time.perf_counter())
            for phase, start, end in zip(PHASES, marks, marks[1:]):
                totals[phase] += end - start
    row = {"agent": agent, "users": users, "batch": batch, "cuda_graphs": graphs and cuda}
    row.update({f"{phase}_ms": 1000 * totals[phase] / n for phase in PHASES})
    row["total_ms"] = sum(row[f"{phase}_ms"] for phase in PHASES)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--agent", default="hsrl")
    parser.add_argument("--users", type=int, default=32)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--no-graphs", action="store_true", help="eager updates on CUDA")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument(
        "--work", type=Path, default=Path(tempfile.gettempdir()) / "hsrl-bench-train"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    world = build_world(args.work, args.device)
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
