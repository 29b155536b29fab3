"""Build time and peak memory of ``build_sid_index`` (codebook fit + collision policy).

    python benchmarks/bench_sid.py                        # CPU: N = 283, 3,706, 100k, 1M
    python benchmarks/bench_sid.py --device cuda          # GPU (writes sid_<gpu>.json)
    python benchmarks/bench_sid.py --sizes 283 100000 --modes plain --codes 256

N = 283 is the real RL4RS item table (tests/fixtures/rl4rs/item_info.csv); the other sizes are
a seeded 40-dim Gaussian mixture (256 components of different spreads). L = 3; V = 16 up to
10,000 items and V = 256 above (``--codes`` fixes one V for all). Every configuration runs in a
fresh child process, so its peak memory is its own: on CPU the peak resident set size of the
child (and what it held before the build: Python, torch and the features), on CUDA the peak
of ``torch.cuda.max_memory_allocated`` during the build. One untimed warm-up build on tiny
data comes first in each child.

Targets (N = 10^6, L = 3, V = 256): plain < 120 s and balanced < 300 s on the 2-core CPU;
< 10 s either way on an H200. Writes ``benchmarks/results/sid_<hardware>.json`` and refreshes
``benchmarks/results/sid.md`` from every ``sid_*.json`` there.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

from common import hardware_name

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
RL4RS_ITEMS = ROOT / "tests" / "fixtures" / "rl4rs" / "item_info.csv"
TARGETS = {("cpu", False): 120.0, ("cpu", True): 300.0, ("cuda", False): 10.0, ("cuda", True): 10.0}
TARGET_SIZE, TARGET_CODES = 1_000_000, 256


def item_features(n: int, dim: int, seed: int) -> torch.Tensor:
    """``(n + 1, dim)`` features, row 0 padding: RL4RS for n = 283, else a Gaussian mixture."""
    if n == 283 and dim == 40 and RL4RS_ITEMS.is_file():
        rows = [line.split() for line in RL4RS_ITEMS.read_text().splitlines()[1:]]
        features = torch.zeros(n + 1, dim)
        for cols in rows:
            features[int(cols[0])] = torch.tensor([float(v) for v in cols[1].split(",")])
        return features
    g = torch.Generator().manual_seed(seed)
    components = 256
    centres = torch.randn(components, dim, generator=g) * 3
    spread = torch.rand(components, generator=g) * 1.5 + 0.25
    weights = torch.rand(components, generator=g) + 0.2
    features = torch.zeros(n + 1, dim)
    step = 1 << 18
    for start in range(1, n + 1, step):
        rows = min(step, n + 1 - start)
        which = torch.multinomial(weights, rows, replacement=True, generator=g)
        noise = torch.randn(rows, dim, generator=g)
        features[start : start + rows] = centres[which] + noise * spread[which, None]
    return features


def run_one(config: dict) -> dict:
    """One timed build (in the child process)."""
    from hsrl.sid import build_sid_index

    if config.get("threads"):
        torch.set_num_threads(config["threads"])
    device = torch.device(config["device"])
    features = item_features(config["items"], config["dim"], config["seed"])
    # Warm-up: first kernel launches / thread pools, untimed.
    build_sid_index(features[:300], levels=3, codes=8, balanced=config["balanced"], device=device)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    load = os.getloadavg()[0]
    start = time.perf_counter()
    index, report = build_sid_index(
        features,
        levels=config["levels"],
        codes=config["codes"],
        balanced=config["balanced"],
        seed=config["seed"],
        device=device,
        backend=config["backend"],
    )
    seconds = time.perf_counter() - start
    result = {
        **config,
        "seconds": round(seconds, 3),
        "fit_seconds": report["fit_seconds"],
        "resolve_seconds": report["resolve_seconds"],
        "collisions_before": report["collisions_before"],
        "collisions_after": report["collisions_after"],
        "moved_at_level": report["moved_at_level"],
        "resolution_rounds": report["resolution_rounds"],
        "kmeans_iterations": [row["kmeans_iterations"] for row in report["levels_detail"]],
        "codes_used": [row["codes_used"] for row in report["levels_detail"]],
        "items_per_code_min_max_level1": [
            report["levels_detail"][0]["items_per_code_min"],
            report["levels_detail"][0]["items_per_code_max"],
        ],
        "explained_variance": [
            None if row["explained_variance"] is None else round(row["explained_variance"], 4)
            for row in report["levels_detail"]
        ],
        "load_average_at_start": round(load, 2),
        "torch_threads": torch.get_num_threads(),
        "num_live": index.num_live,
    }
    if device.type == "cuda":
        result["peak_gpu_mb"] = round((torch.cuda.max_memory_allocated(device) - base) / 2**20, 1)
    result["rss_before_build_mb"] = round(rss_before, 1)
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    parser.add_argument("--sizes", type=int, nargs="+", default=[283, 3706, 100_000, 1_000_000])
    parser.add_argument(
        "--modes", nargs="+", choices=("plain", "balanced"), default=["plain", "balanced"]
    )
    parser.add_argument("--levels", type=int, default=3)
    parser.add_argument(
        "--codes", type=int, default=None, help="V for every size (default 16 / 256)"
    )
    parser.add_argument("--dim", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--backend", choices=("torch", "faiss"), default="torch")
    parser.add_argument("--out", type=Path, default=None, help="results JSON (default by hardware)")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's)"
    )
    parser.add_argument("--note", default="", help="free text stored with the results")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_one(json.loads(args.child))))
        return

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: torch sees no CUDA device")
    hardware = hardware_name(device)
    results = []
    for n in args.sizes:
        codes = args.codes or (16 if n <= 10_000 else 256)
        for mode in args.modes:
            config = {
                "items": n,
                "dim": args.dim,
                "levels": args.levels,
                "codes": codes,
                "balanced": mode == "balanced",
                "seed": args.seed,
                "device": str(device),
                "backend": args.backend,
                "threads": args.threads,
            }
            child = subprocess.run(
                [sys.executable, __file__, "--child", json.dumps(config)],
                capture_output=True,
                text=True,
                check=False,
            )
            if child.returncode != 0:
                print(child.stderr, file=sys.stderr)
                raise SystemExit(f"benchmark child failed for {config}")
            result = json.loads(child.stdout.strip().splitlines()[-1])
            target = TARGETS.get((device.type, result["balanced"]))
            if target is not None and n == TARGET_SIZE and codes == TARGET_CODES:
                result["target_seconds"] = target
                result["meets_target"] = result["seconds"] < target
            results.append(result)
            memory = (
                f"peak GPU {result['peak_gpu_mb']} MB"
                if "peak_gpu_mb" in result
                else f"peak RSS {result['peak_rss_mb']} MB (before build {result['rss_before_build_mb']} MB)"
            )
            print(
                f"N={n:>9,} L={args.levels} V={codes:<4} {mode:<8} {result['seconds']:>8.2f} s "
                f"(k-means {result['fit_seconds']:.2f} s, collisions {result['resolve_seconds']:.2f} s; "
                f"{result['collisions_before']} collided) {memory}; iterations "
                f"{result['kmeans_iterations']}; load {result['load_average_at_start']}",
                flush=True,
            )
    payload = {
        "benchmark": "sid build (build_sid_index)",
        "hardware": hardware,
        "device_name": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "note": args.note,
        "results": results,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = args.out or RESULTS / f"sid_{hardware}.json"
    out.write_text(json.dumps(payload, indent=2) + "\n")
    (RESULTS / "sid.md").write_text(markdown_summary())
    print(f"wrote {out} and {RESULTS / 'sid.md'}")


def markdown_summary() -> str:
    lines = [
        "# SID build benchmark",
        "",
        "`python benchmarks/bench_sid.py [--device cuda]`: `build_sid_index` (k-means fit of all "
        "levels + collision policy), L = 3, 40-dim features (N = 283: the real RL4RS items; "
        "others: a seeded Gaussian mixture). Peak memory: CPU = peak RSS of a fresh process "
        "(Python + torch + features included), GPU = peak allocated during the build.",
        "",
    ]
    for path in sorted(RESULTS.glob("sid_*.json")):
        data = json.loads(path.read_text())
        lines += [
            f"## {data['hardware']} ({data['device_name']}, {data['cpu_count']} CPUs, torch "
            f"{data['torch']}, {data['date']})",
            "",
        ]
        if data.get("note"):
            lines += [data["note"], ""]
        lines += [
            "| N | V | k-means | build s | k-means s | collisions s | collided | iterations | peak memory MB | load avg | target |",
            "|---:|---:|---|---:|---:|---:|---:|---|---:|---:|---|",
        ]
        for r in data["results"]:
            memory = r.get("peak_gpu_mb", r.get("peak_rss_mb"))
            target = (
                f"< {r['target_seconds']:.0f} s: {'yes' if r['meets_target'] else 'NO'}"
                if "target_seconds" in r
                else ""
            )
            lines.append(
                f"| {r['items']:,} | {r['codes']} | {'balanced' if r['balanced'] else 'plain'} | "
                f"{r['seconds']:.2f} | {r['fit_seconds']:.2f} | {r['resolve_seconds']:.2f} | "
                f"{r['collisions_before']:,} | {'/'.join(map(str, r['kmeans_iterations']))} | "
                f"{memory} | {r['load_average_at_start']} | {target} |"
            )
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
