"""Throughput of the batched environment, in user-steps per second.

    python benchmarks/bench_env.py                          # CPU: 32, 1,024, 16,384 users
    python benchmarks/bench_env.py --device cuda            # GPU (writes env_<gpu>.json)
    python benchmarks/bench_env.py --users 1024 --threads 1 --steps 100

One user-step is one user shown one slate: response model (or ground truth) forward, Bernoulli
responses, reward, history update, leave model, episode records and autoreset. Slates are
random valid item ids made before timing (the agent's cost is not counted). Both response
backends are timed: the learned model (an untrained ``UserResponseModel`` of the reference
size: training changes its weights, not its cost) and the built-in ground truth.
The users come from a small built-in dataset generated in a temporary folder (``--items``
switches to a synthetic catalogue of that many items).

Targets: >= 20,000 user-steps/s with 1,024 users on the 2-core CPU; >= 1,000,000 with 16,384
users on an H200. Writes ``benchmarks/results/env_<hardware>.json`` (``env_cpu-<T>thread.json`` on CPU) and refreshes
``benchmarks/results/env.md`` from every ``env_*.json`` there.
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

from common import hardware_name

RESULTS = Path(__file__).resolve().parent / "results"
TARGETS = {("cpu", 1024): 20_000, ("cuda", 16384): 1_000_000}


def build_dataset(
    folder: Path, num_users: int, num_items: int | None, seed: int
) -> tuple[Path, Path]:
    """A prepared built-in dataset and its ground_truth.npz (prepare_builtin when available)."""
    import hsrl.data.builtin as builtin

    prepared = folder / "prepared"
    if hasattr(builtin, "prepare_builtin"):
        from hsrl.data import prepare
        from hsrl.data.prepared import load_prepared

        options = {"num_users": str(num_users)}
        if num_items is not None:
            options["num_items"] = str(num_items)
        prepare("builtin", raw=None, out=prepared, seed=seed, options=options)
        return prepared, load_prepared(prepared, splits=[]).ground_truth_path  # type: ignore[return-value]
    from hsrl.data.rl4rs import prepare_rl4rs

    raw = folder / "raw"
    builtin.generate_raw(raw, num_users=num_users, num_items=num_items, seed=seed)
    prepare_rl4rs(raw, prepared, seed=seed, overwrite=False, options={})
    return prepared, raw / builtin.GROUND_TRUTH_FILE


def make_backend(kind: str, dataset, truth_path: Path, device: torch.device):
    from hsrl.simulator import (
        GroundTruthBackend,
        LearnedBackend,
        ResponseModelConfig,
        UserResponseModel,
    )

    if kind == "learned":
        torch.manual_seed(0)
        config = ResponseModelConfig(
            profile_dim=dataset.split("train").profile_dim,
            item_feature_dim=dataset.items.feature_dim,
        )
        return LearnedBackend(UserResponseModel(config, dataset.items.features).to(device))
    from hsrl.data.builtin import GroundTruthUserModel

    truth = GroundTruthUserModel.load(truth_path, device)
    return GroundTruthBackend(truth, device, record_sessions=dataset.split("train").session_id)


def time_env(env, steps: int, warmup: int, device: torch.device) -> dict:
    generator = torch.Generator(device=device).manual_seed(0)
    shape = (env.num_users, env.slate_size)
    slates = [
        torch.randint(1, env.num_items + 1, shape, generator=generator, device=device)
        for _ in range(8)
    ]
    env.reset(seed=0)
    for t in range(warmup):
        env.step(slates[t % 8])
    env.pop_finished_episodes()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for t in range(steps):
        env.step(slates[t % 8])
    episodes = env.pop_finished_episodes()  # includes the final sync
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    return {
        "seconds": round(seconds, 4),
        "ms_per_step": round(1e3 * seconds / steps, 3),
        "user_steps_per_s": round(env.num_users * steps / seconds),
        "episodes_finished": int(episodes["depth"].numel()),
        "mean_depth_random_slates": round(float(episodes["depth"].float().mean()), 2)
        if episodes["depth"].numel()
        else None,
    }


def write_markdown() -> None:
    rows = []
    for path in sorted(RESULTS.glob("env_*.json")):
        result = json.loads(path.read_text())
        for run in result["runs"]:
            target = TARGETS.get((result["device_type"], run["users"]))
            verdict = (
                "" if target is None else ("yes" if run["user_steps_per_s"] >= target else "NO")
            )
            load = result.get("load_average_1min_at_end", "")
            rows.append(
                f"| {result['hardware']} | {result['threads']} | {load} | {run['backend']} | "
                f"{run['users']:,} | {result['num_items']:,} | {run['ms_per_step']:.2f} | "
                f"{run['user_steps_per_s']:,} | {'' if target is None else f'{target:,}'} | {verdict} |"
            )
    text = [
        "# Environment throughput (`benchmarks/bench_env.py`)",
        "",
        "User-steps per second of `RecEnv.step` with random slates (higher is better). `load` is",
        "the machine's 1-minute load average when the run ended: the CPU machine is shared.",
        "",
        "| hardware | threads | load | backend | users | items | ms / step | user-steps / s | target | met |",
        "|---|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        "On the shared 2-core CPU, torch's default of 2 intra-op threads collapses when other",
        "processes keep the cores busy (load 4-8 while measured): every parallel region waits for",
        "both threads to be scheduled. One thread (`torch.set_num_threads(1)`, or",
        "`OMP_NUM_THREADS=1`) is the setting to use there; the CPU target is met with it.",
        "",
    ]
    (RESULTS / "env.md").write_text("\n".join(text))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--users", type=int, nargs="+", default=[32, 1024, 16384])
    parser.add_argument("--backend", choices=("learned", "truth", "both"), default="both")
    parser.add_argument("--steps", type=int, default=50, help="timed steps per size")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's)"
    )
    parser.add_argument(
        "--data-users", type=int, default=2000, help="users of the built-in dataset"
    )
    parser.add_argument(
        "--items",
        type=int,
        default=None,
        help="synthetic catalogue size (default: the real 283 items)",
    )
    parser.add_argument(
        "--no-check-actions", action="store_true", help="skip the per-step item id check"
    )
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()

    from hsrl.data.prepared import load_prepared
    from hsrl.device import resolve_device
    from hsrl.simulator import EnvConfig, RecEnv

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    backends = ["learned", "truth"] if args.backend == "both" else [args.backend]
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        prepared, truth_path = build_dataset(Path(tmp), args.data_users, args.items, seed=0)
        dataset = load_prepared(prepared)
        print(
            f"dataset: {len(dataset.split('train')):,} train records, {dataset.items.num_items:,} items "
            f"({time.perf_counter() - start:.1f} s to build)"
        )
        for kind in backends:
            backend = make_backend(kind, dataset, truth_path, device)
            for users in args.users:
                config = EnvConfig(
                    num_users=users, device=str(device), check_actions=not args.no_check_actions
                )
                env = RecEnv(backend, dataset.split("train"), config)
                result = {
                    "backend": kind,
                    "users": users,
                    **time_env(env, args.steps, args.warmup, device),
                }
                runs.append(result)
                print(
                    f"{kind:8s} {users:>7,} users: {result['ms_per_step']:8.2f} ms/step "
                    f"{result['user_steps_per_s']:>12,} user-steps/s"
                )
    hardware = hardware_name(device)
    result = {
        "benchmark": "env",
        "hardware": hardware,
        "device": str(device),
        "device_type": device.type,
        "device_name": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "load_average_1min_at_end": round(os.getloadavg()[0], 2),
        "torch": torch.__version__,
        "steps": args.steps,
        "num_items": dataset.items.num_items,
        "check_actions": not args.no_check_actions,
        "runs": runs,
    }
    print(json.dumps(result, indent=2))
    if not args.no_write:
        RESULTS.mkdir(exist_ok=True)
        name = hardware if device.type == "cuda" else f"cpu-{torch.get_num_threads()}thread"
        (RESULTS / f"env_{name}.json").write_text(json.dumps(result, indent=2) + "\n")
        write_markdown()


if __name__ == "__main__":
    main()
