"""Scale benchmark: HSRL on synthetic catalogues of 10^3 to 10^6 (10^7) items.

    python benchmarks/bench_scale.py                              # CPU: 10^3, 10^4, 10^5
    python benchmarks/bench_scale.py --device cuda --sizes 1000 10000 100000 1000000 10000000
    python benchmarks/bench_scale.py --sizes 1000000 --skip-train --users 1024

Per catalogue size N, in a fresh child process (so peak memory is that size's own):

1. item features: the built-in generator's synthetic catalogue (``synthetic_catalogue``: real
   RL4RS items as prototypes, perturbed continuous columns; built in chunks of 10^6 above that),
   or ``--features mixture`` (a seeded Gaussian mixture, much faster to make at 10^7);
2. SID build: ``build_sid_index`` with L levels of V codes, V the smallest power of two with
   V^L >= 2N unless ``--codes`` is given (plain k-means by default; ``--balanced``);
3. slate selection for ``--users`` users (default 1,024), K = 9, from an HSRL policy (untrained,
   d = 32, history H = 50): per call, median and 90th percentile over ``--repeats`` calls, each
   synchronised: decoding only (from the policy's ``(B, L, V)`` log-probabilities) exhaustively
   (``item_log_probs`` + top-K over all N) and by beam search (greedy, and the sampled beam used
   for exploration), and the full ``act`` (state encoder + policy + decoding) both ways. Also the
   share of users whose beam slate equals the exhaustive one and the share certified exact;
4. training: iterations per second of the shared training loop (``hsrl.train.Trainer.step``:
   act with exploration, env step, replay push, one HSRL update on a batch of 64) with 32 users
   stepping against the built-in ground-truth user model over the same N items, for beam and
   exhaustive decoding, after a warm-up;
5. peak memory: on CUDA ``max_memory_allocated`` per phase and over the child; on CPU the
   child's peak resident set size (Python, torch and data included).

Exhaustive decoding materialises (B, N + 1) scores several times; a size where B (N + 1)
exceeds ``--max-exhaustive`` elements is skipped for it (reported as such). Targets (H200):
beam slates for 1,024 users out of 10^6 items under 5 ms; training iterations per second at
10^6 items within a factor of 2 of those at 10^3. Writes
``benchmarks/results/scale_<hardware>.json`` and refreshes ``benchmarks/results/scale.md``
from every ``scale_*.json`` there.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, hardware_name, host_info  # noqa: E402

TARGET_LATENCY_MS = 5.0
TARGET_TRAIN_RATIO = 2.0
SLATE, HISTORY, DIM = 9, 50, 40
CHUNK = 1_000_000


# --- the child: one catalogue size ------------------------------------------------------------
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def make_features(n: int, kind: str, seed: int) -> torch.Tensor:
    """(N + 1, 40) item features, row 0 the zero padding row."""
    if kind == "mixture":
        g = torch.Generator().manual_seed(seed)
        centres = torch.randn(256, DIM, generator=g)
        spread = torch.rand(256, generator=g) * 0.6 + 0.2
        features = torch.zeros(n + 1, DIM)
        for start in range(1, n + 1, CHUNK):
            rows = min(CHUNK, n + 1 - start)
            which = torch.randint(256, (rows,), generator=g)
            noise = torch.randn(rows, DIM, generator=g)
            features[start : start + rows] = centres[which] + noise * spread[which, None]
        return features
    from hsrl.data.builtin import synthetic_catalogue

    parts = [torch.zeros(1, DIM)]
    for chunk, start in enumerate(range(0, n, CHUNK)):
        rows = min(CHUNK, n - start)
        catalogue = synthetic_catalogue(rows, seed=seed + chunk)
        parts.append(torch.from_numpy(catalogue.features[1:]))
        del catalogue
    return torch.cat(parts)


def timed(fn, repeats: int, device: torch.device) -> dict[str, float]:
    """Latency of ``fn()`` in ms: median, 90th percentile and min over ``repeats`` calls."""
    for _ in range(3):
        fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append((time.perf_counter() - start) * 1e3)
    times.sort()
    return {
        "median_ms": round(statistics.median(times), 4),
        "p90_ms": round(times[min(len(times) - 1, math.ceil(0.9 * len(times)) - 1)], 4),
        "min_ms": round(times[0], 4),
    }


def make_agent(config: dict, index, features: torch.Tensor, decoding: str, profile_dim: int):
    from hsrl.agents import Catalogue, EnvSpec, HSRLAgent, HSRLConfig

    spec = EnvSpec(
        num_items=index.num_items,
        item_dim=DIM,
        profile_dim=profile_dim,
        history_length=HISTORY,
        slate_size=SLATE,
    )
    hsrl_config = HSRLConfig(decoding=decoding, beam_width=config["beam_width"])
    torch.manual_seed(0)
    agent = HSRLAgent(hsrl_config, spec, Catalogue(features, sid=index))
    return agent.to(features.device)


def slate_latency(config: dict, index, features: torch.Tensor, device: torch.device) -> dict:
    from hsrl.nets.hierarchical_policy import item_log_probs
    from hsrl.sid.beam import beam_sample, beam_search
    from hsrl.slate import greedy_slate

    n, users, width, repeats = (
        index.num_items,
        config["users"],
        config["beam_width"],
        config["repeats"],
    )
    g = torch.Generator().manual_seed(1)
    history = torch.randint(1, n + 1, (users, HISTORY), generator=g).to(device)
    obs = {"history": history, "user_profile": torch.zeros(users, 42, device=device)}
    agent = make_agent(config, index, features, "beam", 42).eval()
    with torch.no_grad():
        log_probs = agent.policy(agent.encoder(history, obs["user_profile"], features)).log_probs
    generator = torch.Generator(device=device).manual_seed(0)
    out: dict = {"users": users, "beam_width": width}
    _reset_peak(device)
    out["policy_forward"] = timed(
        lambda: agent.policy(agent.encoder(history, obs["user_profile"], features)), repeats, device
    )
    out["decode_beam"] = timed(lambda: beam_search(log_probs, index, SLATE, width), repeats, device)
    out["decode_beam_sample"] = timed(
        lambda: beam_sample(log_probs, index, SLATE, width, generator), repeats, device
    )
    out["act_beam"] = timed(lambda: agent.act(obs, explore=False, generator=None), repeats, device)
    out["act_beam_explore"] = timed(
        lambda: agent.act(obs, explore=True, generator=generator), repeats, device
    )
    out["peak_mb_beam"] = _peak_mb(device)
    found = beam_search(log_probs, index, SLATE, width)
    out["beam_certified_exact_share"] = round(float(found.exact.float().mean()), 4)
    elements = users * (n + 1)
    if elements > config["max_exhaustive"]:
        out["exhaustive"] = f"skipped: B (N + 1) = {elements:.3g} > --max-exhaustive"
        return out
    _reset_peak(device)

    def exhaustive():
        scores = item_log_probs(log_probs, index.item_sid, index.live)
        return greedy_slate(scores, SLATE)

    try:
        out["decode_exhaustive"] = timed(exhaustive, max(3, repeats // 4), device)
        best = exhaustive()
        out["beam_widths"] = {}
        for w in config["agreement_widths"]:
            wide = beam_search(log_probs, index, SLATE, w)
            out["beam_widths"][str(w)] = {
                "decode": timed(
                    lambda w=w: beam_search(log_probs, index, SLATE, w),
                    max(3, repeats // 4),
                    device,
                ),
                "equals_exhaustive_share": round(
                    float((wide.items == best).all(dim=1).float().mean()), 4
                ),
                "certified_exact_share": round(float(wide.exact.float().mean()), 4),
            }
        agent.config = dataclasses.replace(agent.config, decoding="exhaustive")
        out["act_exhaustive"] = timed(
            lambda: agent.act(obs, explore=False, generator=None), max(3, repeats // 4), device
        )
        out["peak_mb_exhaustive"] = _peak_mb(device)
        same = (exhaustive() == found.items).all(dim=1)
        out["beam_equals_exhaustive_share"] = round(float(same.float().mean()), 4)
    except torch.OutOfMemoryError:
        out["exhaustive"] = "out of memory"
    return out


def training_rate(config: dict, index, features: torch.Tensor, device: torch.device) -> dict:
    """Iterations per second of the shared loop against the ground truth over these items."""
    from hsrl.agents import Catalogue
    from hsrl.data.builtin import GroundTruthUserModel
    from hsrl.data.prepared import load_prepared
    from hsrl.simulator.backends import GroundTruthBackend
    from hsrl.simulator.env import EnvConfig, RecEnv
    from hsrl.train import RunConfig, RunParts, Trainer, TrainSettings, env_spec

    dataset = load_prepared(config["world"], splits=["train"])
    records = dataset.split("train")
    truth = GroundTruthUserModel.load(dataset.ground_truth_path, device).with_items(features)
    backend = GroundTruthBackend(truth, device, record_sessions=records.session_id.to(device))
    env_config = EnvConfig(num_users=32, history_length=HISTORY, device=str(device))
    settings = TrainSettings(
        iterations=10**9, batch_size=64, warmup=256, tensorboard=False, checkpoint_every=10**9
    )
    out: dict = {}
    for decoding in config["train_decodings"]:
        elements = 32 * (features.shape[0])
        if decoding == "exhaustive" and elements > config["max_exhaustive"]:
            out[decoding] = "skipped"
            continue
        env = RecEnv(backend, records, env_config, device=device)
        agent = make_agent(config, index, features, decoding, records.profile_dim)
        run = RunConfig(agent="hsrl", data=str(config["world"]), device=str(device), train=settings)
        catalogue: Catalogue = agent.catalogue
        parts = RunParts(run, device, env, agent, catalogue, env_spec(env))
        with tempfile.TemporaryDirectory() as folder:
            trainer = Trainer(parts, Path(folder))
            agent.train()
            for _ in range(settings.warmup // 32 + 5):  # fill the warm-up, then some updates
                trainer.step()
            _sync(device)
            _reset_peak(device)
            iterations = config["train_iterations"]
            start = time.perf_counter()
            for _ in range(iterations):
                trainer.step()
            _sync(device)
            seconds = time.perf_counter() - start
        out[decoding] = {
            "iterations_per_s": round(iterations / seconds, 2),
            "iterations": iterations,
            "peak_mb": _peak_mb(device),
        }
    return out


def run_child(config: dict) -> dict:
    from hsrl.sid import build_sid_index

    if config.get("threads"):
        torch.set_num_threads(config["threads"])
    device = torch.device(config["device"])
    n = config["items"]
    result: dict = {"items": n, "levels": config["levels"], "codes": config["codes"]}
    start = time.perf_counter()
    features = make_features(n, config["features"], config["seed"])
    result["features_s"] = round(time.perf_counter() - start, 2)
    features = features.to(device)
    # Warm-up of kernels and thread pools on a tiny build, untimed.
    build_sid_index(features[:300], levels=3, codes=8, device=device, n_init=1)
    _sync(device)
    _reset_peak(device)
    start = time.perf_counter()
    index, report = build_sid_index(
        features,
        levels=config["levels"],
        codes=config["codes"],
        balanced=config["balanced"],
        seed=config["seed"],
        device=device,
    )
    _sync(device)
    result["sid"] = {
        "build_s": round(time.perf_counter() - start, 3),
        "balanced": config["balanced"],
        "collisions_before": report["collisions_before"],
        "peak_mb": _peak_mb(device),
    }
    print(f"  N={n:,}: SID build {result['sid']['build_s']:.2f} s", file=sys.stderr, flush=True)
    result["slates"] = slate_latency(config, index, features, device)
    print(f"  N={n:,}: slates done", file=sys.stderr, flush=True)
    if not config["skip_train"]:
        result["train"] = training_rate(config, index, features, device)
    result["peak_mb_total"] = (
        round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
        if device.type == "cuda"
        else _peak_mb(device)
    )
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    result["load_average"] = round(os.getloadavg()[0], 2)
    return result


# --- the parent --------------------------------------------------------------------------------
def default_codes(n: int, levels: int) -> int:
    """Smallest power of two V with V^L >= 2N: room for the collision policy."""
    codes = 2
    while codes**levels < 2 * n:
        codes *= 2
    return codes


def make_world(folder: Path) -> Path:
    """A small built-in dataset: its users and ground-truth user model drive the training env."""
    from hsrl.data import prepare

    options = {"num_users": "200", "sessions_per_user": "2", "max_pages_per_session": "2"}
    return prepare("builtin", raw=None, out=folder / "data", seed=0, options=options)


def _ms(entry) -> str:
    return f"{entry['median_ms']:.2f}" if isinstance(entry, dict) else "-"


def markdown(results: list[dict]) -> str:
    lines = [
        "# Scale benchmark",
        "",
        "`python benchmarks/bench_scale.py [--device cuda] [--sizes ...]`: HSRL on synthetic "
        "catalogues (the built-in generator's synthetic items), L = 3 levels, V = smallest power "
        "of two with V^L >= 2N. Slate latency = median ms per call for a batch of users "
        "(K = 9): decoding only (from the policy's log-probabilities), and the full `act` "
        "(state encoder + policy + decoding). Training = iterations per second of the shared "
        "loop (32 users against the ground-truth users, batch 64, one update per iteration). "
        "Peak memory: GPU = max allocated, CPU = peak RSS of the size's own process.",
        "",
    ]
    results = sorted(results, key=lambda r: (r["hardware"], min(s["items"] for s in r["sizes"])))
    for result in results:
        info = result["host"]
        lines += [
            f"## {result.get('label', result['hardware'])} ({info.get('gpu', info['machine'])}, "
            f"torch {info['torch']}, {info['torch_threads']} threads)",
            "",
            *([result["note"], ""] if result.get("note") else []),
            "| N | V | SID build (s) | users | decode exhaustive | decode beam | beam sample | "
            "act exhaustive | act beam | beam = exhaustive | train it/s beam | "
            "train it/s exhaustive | peak memory (MB) |",
            "|" + "---|" * 13,
        ]
        for row in result["sizes"]:
            s, t = row["slates"], row.get("train", {})

            def rate(key: str, t=t) -> str:
                entry = t.get(key)
                return f"{entry['iterations_per_s']:.1f}" if isinstance(entry, dict) else "-"

            same = s.get("beam_equals_exhaustive_share")
            lines.append(
                f"| {row['items']:,} | {row['codes']} | {row['sid']['build_s']:.2f} | {s['users']} | "
                f"{_ms(s.get('decode_exhaustive'))} | {_ms(s['decode_beam'])} | "
                f"{_ms(s['decode_beam_sample'])} | {_ms(s.get('act_exhaustive'))} | "
                f"{_ms(s['act_beam'])} | {'-' if same is None else f'{100 * same:.0f}%'} | "
                f"{rate('beam')} | {rate('exhaustive')} | {row['peak_mb_total']:,.0f} |"
            )
        widths = [
            (row["items"], w, entry)
            for row in result["sizes"]
            for w, entry in row["slates"].get("beam_widths", {}).items()
        ]
        if widths:
            lines += [
                "",
                "Beam width against exhaustive decoding (same untrained policy, so the token "
                "distributions are nearly uniform and the top items nearly tied: the hardest "
                "case for a narrow beam):",
                "",
                "| N | beam width | decode (ms) | slate = exhaustive | certified exact |",
                "|---|---|---|---|---|",
            ]
            for n, w, entry in widths:
                lines.append(
                    f"| {n:,} | {w} | {_ms(entry['decode'])} | "
                    f"{100 * entry['equals_exhaustive_share']:.0f}% | "
                    f"{100 * entry['certified_exact_share']:.0f}% |"
                )
        targets = result.get("targets", {})
        if targets:
            lines += ["", "Targets (set for one H200):"]
            for name, target in targets.items():
                lines.append(f"- {name}: {target}")
        lines.append("")
    return "\n".join(lines)


def evaluate_targets(sizes: list[dict]) -> dict:
    by_n = {row["items"]: row for row in sizes}
    targets = {}
    big = by_n.get(1_000_000)
    if big is not None and big["slates"]["users"] == 1024:
        act = big["slates"]["act_beam"]["median_ms"]
        decode = big["slates"]["decode_beam"]["median_ms"]
        targets["1,024 users from 10^6 items with beam decoding < 5 ms"] = (
            f"act {act:.2f} ms (decode alone {decode:.2f} ms): "
            + ("met" if act < TARGET_LATENCY_MS else "not met")
        )
    small = by_n.get(1_000)
    if big is not None and small is not None:
        for decoding in ("beam", "exhaustive"):
            a = small.get("train", {}).get(decoding)
            b = big.get("train", {}).get(decoding)
            if isinstance(a, dict) and isinstance(b, dict):
                ratio = a["iterations_per_s"] / b["iterations_per_s"]
                targets[f"training it/s at 10^3 / at 10^6 items ({decoding}) <= 2"] = (
                    f"{a['iterations_per_s']:.1f} / {b['iterations_per_s']:.1f} = {ratio:.2f}: "
                    + ("met" if ratio <= TARGET_TRAIN_RATIO else "not met")
                )
    return targets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    parser.add_argument("--levels", type=int, default=3)
    parser.add_argument("--codes", type=int, default=None, help="V for every size (default: auto)")
    parser.add_argument("--balanced", action="store_true", help="balanced k-means for the SIDs")
    parser.add_argument("--features", choices=("builtin", "mixture"), default="builtin")
    parser.add_argument("--users", type=int, default=1024, help="users per slate batch")
    parser.add_argument("--beam-width", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=20, help="timed calls per latency")
    parser.add_argument(
        "--agreement-widths",
        type=int,
        nargs="*",
        default=[16, 64, 256],
        help="beam widths whose slates are compared with exhaustive decoding",
    )
    parser.add_argument("--train-iterations", type=int, default=50)
    parser.add_argument(
        "--train-decodings",
        nargs="+",
        choices=("beam", "exhaustive"),
        default=["beam", "exhaustive"],
    )
    parser.add_argument("--skip-train", action="store_true")
    parser.add_argument(
        "--max-exhaustive",
        type=float,
        default=None,
        help="largest B (N + 1) scored exhaustively (default 1.1e8 on CPU, 2.1e9 on CUDA)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--out", type=Path, default=None, help="results JSON (default by hardware)")
    parser.add_argument("--note", default="", help="free text stored with the results")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_child(json.loads(args.child))))
        return

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: torch sees no CUDA device")
    if args.threads:
        torch.set_num_threads(args.threads)
    hardware = hardware_name(device)
    max_exhaustive = args.max_exhaustive or (2.1e9 if device.type == "cuda" else 1.1e8)
    sizes = []
    with tempfile.TemporaryDirectory() as folder:
        world = make_world(Path(folder))
        for n in args.sizes:
            config = {
                "items": n,
                "levels": args.levels,
                "codes": args.codes or default_codes(n, args.levels),
                "balanced": args.balanced,
                "features": args.features,
                "users": args.users,
                "beam_width": args.beam_width,
                "agreement_widths": args.agreement_widths,
                "repeats": args.repeats,
                "train_iterations": args.train_iterations,
                "train_decodings": args.train_decodings,
                "skip_train": args.skip_train,
                "max_exhaustive": max_exhaustive,
                "seed": args.seed,
                "device": str(device),
                "threads": args.threads,
                "world": str(world),
            }
            child = subprocess.run(
                [sys.executable, __file__, "--child", json.dumps(config)],
                stdout=subprocess.PIPE,
                text=True,
                check=False,
            )
            if child.returncode != 0:
                raise SystemExit(f"benchmark child failed for N = {n}")
            row = json.loads(child.stdout.strip().splitlines()[-1])
            sizes.append(row)
            s, t = row["slates"], row.get("train", {})
            print(
                f"N={n:>10,} V={row['codes']:<4} SID {row['sid']['build_s']:7.2f} s | "
                f"{s['users']} users: decode exhaustive {_ms(s.get('decode_exhaustive'))} ms, "
                f"beam {_ms(s['decode_beam'])} ms, beam sample {_ms(s['decode_beam_sample'])} ms; "
                f"act exhaustive {_ms(s.get('act_exhaustive'))} ms, act beam {_ms(s['act_beam'])} ms; "
                f"train it/s {json.dumps({k: v['iterations_per_s'] if isinstance(v, dict) else v for k, v in t.items()})}; "
                f"peak {row['peak_mb_total']:,.0f} MB",
                flush=True,
            )
    result = {
        "benchmark": "scale",
        "hardware": hardware,
        "host": host_info(device),
        "note": args.note,
        "settings": {
            "levels": args.levels,
            "features": args.features,
            "balanced": args.balanced,
            "users": args.users,
            "beam_width": args.beam_width,
            "slate_size": SLATE,
            "repeats": args.repeats,
            "train_iterations": args.train_iterations,
            "max_exhaustive": max_exhaustive,
        },
        "sizes": sizes,
    }
    result["targets"] = evaluate_targets(sizes)
    for name, verdict in result["targets"].items():
        print(f"target {name}: {verdict}")
    out = args.out or RESULTS / f"scale_{hardware}.json"
    result["label"] = out.stem.removeprefix("scale_")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    every = [json.loads(p.read_text()) for p in sorted(RESULTS.glob("scale_*.json"))]
    (RESULTS / "scale.md").write_text(markdown(every), encoding="utf-8")
    print(f"wrote {out} and {RESULTS / 'scale.md'}")


if __name__ == "__main__":
    main()
