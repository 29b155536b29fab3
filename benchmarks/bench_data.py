"""Benchmark of the data layer: prepare a full-size RL4RS-format dataset and load it back.

    python benchmarks/bench_data.py                       # 600k records, CPU
    python benchmarks/bench_data.py --device cuda         # also time moving the splits to the GPU
    python benchmarks/bench_data.py --records 100000 --generator synthetic

Steps: write an RL4RS-format raw folder of ``--records`` records (with the built-in generator
``hsrl.data.builtin.generate_raw`` when it is available, else by synthesising valid lines in
the RL4RS format from the packaged item table: the result says which), then, each in a fresh
subprocess so that its peak memory is its own: ``prepare_rl4rs`` (target < 60 s),
``read_records`` of the train file alone (the parser), and ``load_prepared`` (target < 1 s).
Writes ``benchmarks/results/data_<hardware>.json`` and refreshes ``benchmarks/results/data.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
PREPARE_TARGET_S = 60.0
LOAD_TARGET_S = 1.0


# ----------------------------------------------------------------------------- raw data


def synthesise_raw(out: Path, records: int, seed: int) -> dict:
    """Valid RL4RS-format files with random values: the real item table, random slates,
    feedback falling with the slot, histories of 0-60 ids, portraits like the real ones."""
    from importlib import resources

    table = Path(str(resources.files("hsrl.data") / "builtin_assets" / "item_info.csv"))
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(table, out / "item_info.csv")
    vec_text = ["0"] + [line.split(" ")[1] for line in table.read_text().splitlines()[1:]]
    num_items = len(vec_text) - 1
    rng = np.random.default_rng(seed)
    id_text = [str(i) for i in range(num_items + 1)]
    portraits = []
    for _ in range(4096):
        codes = rng.integers(0, 90000, 10)
        dense = np.where(rng.random(32) < 0.4, 0, np.round(rng.gamma(2.0, 3.0, 32), 3))
        portraits.append(",".join([str(c) for c in codes] + [f"{d:.4g}" for d in dense]))
    slot_rate = np.linspace(0.87, 0.32, 9)
    header = (
        "timestamp@session_id@sequence_id@exposed_items@user_feedback@user_seqfeature@"
        "user_protrait@item_feature@behavior_policy_id"
    )

    def write(path: Path, count: int, first_session: int) -> None:
        with open(path, "w", encoding="ascii", newline="\n") as handle:
            handle.write(header)
            done = 0
            while done < count:
                block = min(20_000, count - done)
                slates = rng.integers(1, num_items + 1, (block, 9)).tolist()
                clicks = (rng.random((block, 9)) < slot_rate).astype(int).tolist()
                lengths = rng.integers(0, 61, block).tolist()
                history = rng.integers(1, num_items + 1, (block, 60)).tolist()
                who = rng.integers(0, len(portraits), block).tolist()
                lines = []
                for j in range(block):
                    n = done + j
                    hist = ",".join([id_text[i] for i in history[j][: lengths[j]]]) or "0"
                    lines.append(
                        f"\n{500000 + n}@{first_session + n // 4}@{n % 4 + 1}@"
                        f"{','.join([id_text[i] for i in slates[j]])}@"
                        f"{','.join(map(str, clicks[j]))}@{hist}@{portraits[who[j]]}@"
                        f"{';'.join([vec_text[i] for i in slates[j]])}@1"
                    )
                handle.write("".join(lines))
                done += block
            handle.write("\n")

    test = max(1, records // 10)
    write(out / "rl4rs_b_train.csv", records - test, 1)
    write(out / "rl4rs_b_test.csv", test, (records - test) // 4 + 2)
    return {"generator": "synthetic RL4RS-format lines (benchmarks/bench_data.py)"}


def _builtin_raw(out: Path, records: int, seed: int) -> dict:
    from hsrl.data.builtin import generate_raw

    # generate_raw writes about num_users * sessions * (pages + 1) / 2 records (3, 3 by default).
    info = generate_raw(out, num_users=max(2, round(records / 6)), seed=seed)
    return {"generator": "hsrl.data.builtin.generate_raw", "generator_summary": info}


def make_raw(out: Path, records: int, seed: int, generator: str) -> dict:
    if generator in ("auto", "builtin"):
        try:
            import hsrl.data.builtin as builtin

            has_builtin = hasattr(builtin, "generate_raw")
        except ImportError:
            has_builtin = False
        if has_builtin:
            return _builtin_raw(out, records, seed)
        if generator == "builtin":
            raise SystemExit("hsrl.data.builtin.generate_raw is not available")
    return synthesise_raw(out, records, seed)


# ----------------------------------------------------------------------------- phases


def _peak_rss_mb() -> float:
    """Peak resident memory of this process. On Linux from VmHWM: ru_maxrss would also count
    the parent's memory before exec."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    scale = 1 if platform.system() == "Darwin" else 1024  # ru_maxrss: bytes on macOS, else KiB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


def phase_prepare(raw: Path, out: Path) -> dict:
    from hsrl.data.rl4rs import prepare_rl4rs

    baseline = _peak_rss_mb()
    start, cpu = time.perf_counter(), time.process_time()
    prepare_rl4rs(raw, out, seed=0, overwrite=True, options={})
    return {
        "prepare_s": time.perf_counter() - start,
        "prepare_cpu_s": time.process_time() - cpu,
        "peak_rss_mb": _peak_rss_mb(),
        "import_rss_mb": baseline,
    }


def phase_parse(raw: Path) -> dict:
    from hsrl.data.rl4rs import read_item_table, read_records

    items, _ = read_item_table(raw / "item_info.csv")
    start, cpu = time.perf_counter(), time.process_time()
    records = read_records(raw / "rl4rs_b_train.csv", items)
    return {
        "parse_train_s": time.perf_counter() - start,
        "parse_train_cpu_s": time.process_time() - cpu,
        "train_records": len(records),
        "peak_rss_mb": _peak_rss_mb(),
    }


def phase_load(out: Path, device: str) -> dict:
    import torch

    from hsrl.data.prepared import load_prepared

    start = time.perf_counter()
    dataset = load_prepared(out)
    result = {"load_s": time.perf_counter() - start}
    if device != "cpu":
        start = time.perf_counter()
        moved = {name: split.to(device) for name, split in dataset.splits.items()}
        dataset.items.to(device)
        torch.cuda.synchronize()
        result["to_device_s"] = time.perf_counter() - start
        del moved
    result["peak_rss_mb"] = _peak_rss_mb()
    result["records"] = {name: len(split) for name, split in dataset.splits.items()}
    return result


def run_phase(*args: str) -> dict:
    command = [sys.executable, __file__, "--phase", *args]
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- report


def hardware_label(device: str) -> str:
    if device == "cpu":
        return "cpu"
    import torch

    name = torch.cuda.get_device_name(torch.device(device)).lower()
    for known in ("h200", "h100", "a100", "l4", "a10"):
        if known in name:
            return known
    return "cuda"


def write_markdown() -> None:
    def cell(r: dict, key: str, digits: int) -> str:
        if key not in r:
            return "-"
        return f"{r[key]['median']:.{digits}f} ({r[key]['best']:.{digits}f})"

    rows = []
    for path in sorted(RESULTS.glob("data_*.json")):
        r = json.loads(path.read_text())
        rows.append(
            f"| {r['hardware']} ({r['cpu_count']} cores, load {r['load_average_1min']:.1f}) | "
            f"{r['records_total']:,} | {r['raw_mb']:.0f} | {cell(r, 'prepare_s', 1)} | "
            f"{cell(r, 'prepare_cpu_s', 1)} | {cell(r, 'parse_train_s', 1)} | "
            f"{r['train_mb'] / r['parse_train_s']['best']:.0f} | {r['peak_rss_prepare_mb']:.0f} | "
            f"{cell(r, 'load_s', 2)} | {cell(r, 'to_device_s', 2)} | {r['generator']} |"
        )
    text = (
        "# Data layer benchmark (`benchmarks/bench_data.py`)\n\n"
        f"Targets: prepare < {PREPARE_TARGET_S:.0f} s for ~600k RL4RS records, "
        f"load < {LOAD_TARGET_S:.0f} s. Each phase runs in a fresh process, several times; "
        "cells are median (best) over the runs. Wall-clock seconds except the CPU column "
        "(process CPU time, which a busy shared machine inflates less). Peak RSS includes "
        "the ~220 MB of the imports (torch).\n\n"
        "| machine | records | raw MB | prepare s | prepare CPU s | parse train s | "
        "parse MB/s (best) | peak RSS prepare MB | load s | to device s | raw data from |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n"
    )
    (RESULTS / "data.md").write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=600_000)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (load phase)")
    parser.add_argument("--generator", choices=("auto", "builtin", "synthetic"), default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, help="where raw + prepared go (default: tmp)")
    parser.add_argument("--raw", type=Path, help="use this RL4RS-format folder, do not generate")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each phase (best/median)")
    parser.add_argument("--no-write", action="store_true", help="print only, write no results")
    parser.add_argument("--phase", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.phase:
        kind, *rest = args.phase
        if kind == "prepare":
            print(json.dumps(phase_prepare(Path(rest[0]), Path(rest[1]))))
        elif kind == "parse":
            print(json.dumps(phase_parse(Path(rest[0]))))
        else:
            print(json.dumps(phase_load(Path(rest[0]), rest[1])))
        return

    work = Path(tempfile.mkdtemp(prefix="bench_data_", dir=args.workdir))
    raw, out = args.raw or work / "raw", work / "prepared"
    try:
        if args.raw:  # a folder this script made before (--keep) says how it was made
            note = args.raw / "GENERATOR.json"
            made = json.loads(note.read_text()) if note.exists() else {"generator": str(args.raw)}
        else:
            start = time.perf_counter()
            made = make_raw(raw, args.records, args.seed, args.generator)
            made["generate_s"] = time.perf_counter() - start
            (raw / "GENERATOR.json").write_text(json.dumps(made, default=str))
        raw_bytes = sum(p.stat().st_size for p in raw.glob("*.csv"))
        train_mb = (raw / "rl4rs_b_train.csv").stat().st_size / 2**20
        print(f"raw data: {raw_bytes / 2**20:.0f} MB ({made['generator']})")
        runs: dict[str, list[dict]] = {"prepare": [], "parse": [], "load": []}
        for repeat in range(args.repeat):  # interleaved, so a busy spell hits every phase
            runs["prepare"].append(run_phase("prepare", str(raw), str(out)))
            runs["parse"].append(run_phase("parse", str(raw)))
            runs["load"].append(run_phase("load", str(out), args.device))
            p, q, r = (runs[k][-1] for k in ("prepare", "parse", "load"))
            print(
                f"run {repeat + 1}: prepare_rl4rs {p['prepare_s']:.2f} s (CPU {p['prepare_cpu_s']:.2f}), "
                f"read_records(train) {q['parse_train_s']:.2f} s (CPU {q['parse_train_cpu_s']:.2f}), "
                f"load_prepared {r['load_s']:.3f} s"
                + (f", to {args.device} {r['to_device_s']:.3f} s" if "to_device_s" in r else "")
            )
        prepared_mb = sum(p.stat().st_size for p in out.iterdir()) / 2**20
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"kept {work}")

    def stat(phase: str, key: str) -> dict[str, float]:
        values = [run[key] for run in runs[phase]]
        return {"best": min(values), "median": float(np.median(values)), "all": values}

    loaded = runs["load"][0]
    result = {
        "hardware": hardware_label(args.device),
        "device": args.device,
        "cpu_count": os.cpu_count(),
        "load_average_1min": os.getloadavg()[0],
        "python": platform.python_version(),
        "numpy": np.__version__,
        "records_total": sum(loaded["records"].values()),
        "records": loaded["records"],
        "raw_mb": raw_bytes / 2**20,
        "train_mb": train_mb,
        "prepared_mb": prepared_mb,
        "repeats": args.repeat,
        "prepare_s": stat("prepare", "prepare_s"),
        "prepare_cpu_s": stat("prepare", "prepare_cpu_s"),
        "prepare_target_s": PREPARE_TARGET_S,
        "peak_rss_prepare_mb": max(r["peak_rss_mb"] for r in runs["prepare"]),
        "rss_after_imports_mb": runs["prepare"][0]["import_rss_mb"],
        "parse_train_s": stat("parse", "parse_train_s"),
        "parse_train_cpu_s": stat("parse", "parse_train_cpu_s"),
        "peak_rss_parse_mb": max(r["peak_rss_mb"] for r in runs["parse"]),
        "load_s": stat("load", "load_s"),
        "load_target_s": LOAD_TARGET_S,
        "peak_rss_load_mb": max(r["peak_rss_mb"] for r in runs["load"]),
        **({"to_device_s": stat("load", "to_device_s")} if "to_device_s" in loaded else {}),
        **made,
    }
    result["prepare_ok"] = result["prepare_s"]["median"] < PREPARE_TARGET_S
    result["load_ok"] = result["load_s"]["median"] < LOAD_TARGET_S
    print(json.dumps(result, indent=2))
    if not args.no_write:
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / f"data_{result['hardware']}.json").write_text(
            json.dumps(result, indent=2) + "\n"
        )
        write_markdown()


if __name__ == "__main__":
    main()
