"""How far a learned simulator can be trusted: its fidelity to a known ground truth.

For datasets with a ground truth (the built-in one), ``hsrl simulator fidelity`` measures:

- **held-out AUC** on the test split's logged slates, beside its *ceiling*: the AUC of the true
  click probabilities on the same records (responses are Bernoulli draws, so even the truth
  cannot rank them all);
- **calibration**: predicted against observed click rate in bins of predicted probability
  (a reliability table and plot), and the expected calibration error;
- **rank correlation**: per test user (at the state of a logged record), Spearman's correlation
  between the simulator's and the truth's scores of every item (position-free logits), averaged
  over users; overall and within each page row (items of one location);
- **cross-evaluation**: a policy suite (random; greedy and oracle ranking by the simulator;
  greedy and oracle ranking by the truth; any trained runs), each evaluated on the simulator and
  on the true users. Kendall's tau between the two columns says whether the simulator orders
  policies as the users do; the **transfer ratio** is the true value of the simulator's greedy
  policy over the true value of the truth's greedy policy (1 = choosing by the simulator loses
  nothing).

Kendall's tau over that suite is bounded for any simulator that is not exact: each model rates
its own greedy and oracle above the other model's (the optimiser's curse), while the users
prefer the truth's whenever the transfer ratio is below 1. Those two pairs are discordant, so
tau <= (8 - 2) / 10 = 0.6 on the five policies. ``kendall_tau_graded`` adds the truth's greedy
mixed with random slates at rates 0.25, 0.5 and 0.75: policies whose true order is known by
construction, which a faithful simulator must order too.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hsrl.errors import ConfigError, DataError
from hsrl.simulator.metrics import roc_auc

CALIBRATION_BINS = 10


def spearman_rows(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spearman's rank correlation of each row of a and b, (R, C) -> (R,) (no tie correction:
    the scores are continuous)."""
    ra = a.argsort(dim=1).argsort(dim=1).double()
    rb = b.argsort(dim=1).argsort(dim=1).double()
    ra = ra - ra.mean(dim=1, keepdim=True)
    rb = rb - rb.mean(dim=1, keepdim=True)
    return (ra * rb).sum(1) / (ra.norm(dim=1) * rb.norm(dim=1)).clamp(min=1e-12)


def kendall_tau(x: list[float], y: list[float]) -> float:
    """Kendall's tau-b of two equally long lists (ties counted as neither concordant nor not)."""
    n = len(x)
    if n != len(y) or n < 2:
        raise ConfigError("Kendall's tau needs two lists of the same length, at least 2")
    concordant = discordant = ties_x = ties_y = 0
    for i in range(n):
        for j in range(i + 1, n):
            dx, dy = x[i] - x[j], y[i] - y[j]
            if dx == 0 and dy == 0:
                continue
            if dx == 0:
                ties_x += 1
            elif dy == 0:
                ties_y += 1
            elif (dx > 0) == (dy > 0):
                concordant += 1
            else:
                discordant += 1
    denom = math.sqrt((concordant + discordant + ties_x) * (concordant + discordant + ties_y))
    return (concordant - discordant) / denom if denom else float("nan")


def calibration_table(prob: torch.Tensor, response: torch.Tensor, bins: int = CALIBRATION_BINS):
    """Rows (bin low, bin high, count, mean predicted, observed rate) and the expected
    calibration error (count-weighted mean |predicted - observed|)."""
    prob = prob.flatten().double()
    response = response.flatten().double()
    edges = torch.linspace(0, 1, bins + 1, dtype=torch.float64)
    which = torch.bucketize(prob, edges[1:-1])
    rows = []
    ece = 0.0
    for b in range(bins):
        mask = which == b
        count = int(mask.sum())
        if count == 0:
            rows.append({"low": float(edges[b]), "high": float(edges[b + 1]), "count": 0})
            continue
        predicted = float(prob[mask].mean())
        observed = float(response[mask].mean())
        ece += count * abs(predicted - observed)
        rows.append(
            {
                "low": round(float(edges[b]), 3),
                "high": round(float(edges[b + 1]), 3),
                "count": count,
                "predicted": round(predicted, 4),
                "observed": round(observed, 4),
            }
        )
    return rows, ece / max(1, prob.numel())


def _location_groups(dataset: Any) -> dict[int, torch.Tensor]:
    """Item ids of each location (page row), when the dataset has item locations."""
    location = dataset.item_locations()
    if location is None:
        return {}
    return {
        int(loc): torch.nonzero(location == loc).squeeze(1)
        for loc in torch.unique(location).tolist()
        if loc > 0
    }


@torch.no_grad()
def response_fidelity(
    data: str | Path,
    simulator: str | Path,
    *,
    split: str = "test",
    device: str | torch.device = "cpu",
    max_users: int = 2000,
) -> dict[str, Any]:
    """AUC and its ceiling, calibration, and per-user rank correlation on ``split``."""
    from hsrl.data.prepared import load_prepared, read_manifest
    from hsrl.simulator.backends import UserState
    from hsrl.simulator.env import make_backend
    from hsrl.simulator.history import fit_history

    if not read_manifest(data).get("ground_truth"):
        raise DataError(
            Path(data), "fidelity needs a dataset with a ground truth (the built-in dataset)"
        )
    dataset = load_prepared(data, splits=[split])
    records = dataset.split(split).to(device)
    sim = make_backend(dataset, records.session_id, simulator, torch.device(device))
    truth = make_backend(dataset, records.session_id, None, torch.device(device))
    history = fit_history(records.history, sim.model.config.history_length).to(device)
    index = torch.arange(len(records), device=device)
    state = UserState(index, records.session_id, records.user_profile.float(), history)

    # Held-out AUC on the logged slates, and the truth's on the same ones.
    sim_prob = torch.cat(
        [
            sim.click_probability(_rows(state, i, 4096), records.slate[i : i + 4096])
            for i in range(0, len(records), 4096)
        ]
    )
    true_prob = truth.click_probability(state, records.slate)
    response = records.response.float()
    calibration, ece = calibration_table(sim_prob.cpu(), response.cpu())

    # Rank correlation of item scores, one logged record per user (the first), up to max_users.
    first = _first_record_per_user(truth, records, max_users)
    sub = _rows(state, first, None)
    sim_scores = sim.item_logits(sub)[:, 1:]
    true_scores = truth.item_logits(sub)[:, 1:]
    overall = spearman_rows(sim_scores, true_scores)
    within = {}
    for loc, ids in _location_groups(dataset).items():
        cols = (ids - 1).to(device)
        if cols.numel() >= 3:
            within[str(loc)] = round(
                float(spearman_rows(sim_scores[:, cols], true_scores[:, cols]).mean()), 4
            )
    return {
        "split": split,
        "records": len(records),
        "auc": round(roc_auc(torch.logit(sim_prob.clamp(1e-7, 1 - 1e-7)), response), 4),
        "auc_ceiling": round(roc_auc(torch.logit(true_prob.clamp(1e-7, 1 - 1e-7)), response), 4),
        "calibration": calibration,
        "expected_calibration_error": round(ece, 4),
        "rank_correlation": round(float(overall.mean()), 4),
        "rank_correlation_std": round(float(overall.std()), 4),
        "rank_correlation_within_row": within,
        "rank_users": int(first.numel()),
    }


def _rows(state: Any, index: Any, size: int | None) -> Any:
    from hsrl.simulator.backends import UserState

    if size is not None:
        index = slice(index, index + size)
    return UserState(
        state.record[index],
        state.session_id[index],
        state.user_profile[index],
        state.history[index],
    )


def _first_record_per_user(truth: Any, records: Any, max_users: int) -> torch.Tensor:
    """Index of each true user's first record (in split order), at most ``max_users`` of them."""
    users = truth.model.user_of_session(records.session_id).cpu().numpy()
    _, first = np.unique(users, return_index=True)
    first = np.sort(first)[:max_users]
    return torch.from_numpy(first).to(records.session_id.device)


# The policy suite of the cross-evaluation: (name, policy, ranks by, random-slate rate).
SUITE = (
    ("random", "random", None, 0.0),
    ("greedy (sim)", "greedy", "sim", 0.0),
    ("oracle (sim)", "oracle", "sim", 0.0),
    ("greedy (truth)", "greedy", "truth", 0.0),
    ("oracle (truth)", "oracle", "truth", 0.0),
)
# Policies of graded quality between the truth's greedy and random: a simulator that ranks
# policies as the true users do orders them too. Reported apart (kendall_tau_graded).
GRADED = tuple((f"greedy (truth) eps={eps:g}", "greedy", "truth", eps) for eps in (0.25, 0.5, 0.75))


def cross_evaluation(
    data: str | Path,
    simulator: str | Path,
    settings: Any,
    *,
    runs: list[str | Path] = (),  # type: ignore[assignment]
    split: str | None = None,
    device: str = "cpu",
    layout: str = "free",
) -> dict[str, Any]:
    """The policy suite and ``runs``, each on the simulator and on the true users (total reward).

    Every policy acts under the page ``layout`` ("free" or "rows"); a run trained under another
    layout is refused.

    Returns ``{"rows": {name: {"sim": {...}, "truth": {...}}}, "kendall_tau", "transfer_ratio",
    ...}`` with the total-reward summaries (mean, std, ci95) of each evaluation. ``kendall_tau``
    is over :data:`SUITE` and the runs, ``kendall_tau_graded`` over those and :data:`GRADED`.
    """
    from hsrl.evaluate import evaluate_policy, evaluate_run
    from hsrl.io import read_json

    for run in runs:
        run_layout = read_json(Path(run) / "config.json").get("env", {}).get("layout", "free")
        if run_layout != layout:
            raise ConfigError(
                f"--runs {run}: the run acts under layout {run_layout!r}, the policy suite under "
                f"{layout!r} (pass --layout {run_layout})"
            )
    rows: dict[str, dict[str, Any]] = {}
    for name, policy, ranked_by, epsilon in SUITE + GRADED:
        row = {}
        for where in ("sim", "truth"):
            on_truth = where == "truth"
            # Rank by the other model than the env's only when the suite says so.
            ranker = simulator if ranked_by == "sim" and on_truth else None
            rank_by_truth = ranked_by == "truth" and not on_truth
            result = evaluate_policy(
                policy,
                data,
                settings,
                simulator=None if on_truth else simulator,
                ground_truth=on_truth,
                ranker=ranker,
                rank_by_truth=rank_by_truth,
                split=split,
                device=device,
                layout=layout,
                epsilon=epsilon,
            )
            row[where] = result["metrics"]["total_reward"]
        rows[name] = row
    for run in runs:
        name = f"{Path(run).name}"
        rows[name] = {
            where: evaluate_run(
                run,
                settings,
                simulator=None if where == "truth" else simulator,
                ground_truth=where == "truth",
                split=split,
                device=device,
            )["metrics"]["total_reward"]
            for where in ("sim", "truth")
        }
    graded = {name for name, *_ in GRADED}

    def tau(names: list[str]) -> float:
        sim_values = [rows[n]["sim"]["mean"] for n in names]
        truth_values = [rows[n]["truth"]["mean"] for n in names]
        return round(kendall_tau(sim_values, truth_values), 4)

    return {
        "rows": rows,
        "kendall_tau": tau([n for n in rows if n not in graded]),
        "kendall_tau_graded": tau(list(rows)),
        "transfer_ratio": round(transfer_ratio(rows, "greedy"), 4),
        "oracle_transfer_ratio": round(transfer_ratio(rows, "oracle"), 4),
    }


def transfer_ratio(rows: dict[str, dict[str, Any]], policy: str = "greedy") -> float:
    """True value of the policy ranking by the simulator over that of the one ranking by the
    truth (rows as in :func:`cross_evaluation`)."""
    return rows[f"{policy} (sim)"]["truth"]["mean"] / rows[f"{policy} (truth)"]["truth"]["mean"]


def fidelity_report(
    data: str | Path,
    simulator: str | Path,
    settings: Any,
    *,
    runs: list[str | Path] = (),  # type: ignore[assignment]
    split: str = "test",
    device: str = "cpu",
    layout: str = "free",
) -> dict[str, Any]:
    """Everything ``hsrl simulator fidelity`` reports (module docs), as one JSON-ready dict."""
    report = response_fidelity(data, simulator, split=split, device=device)
    cross = cross_evaluation(
        data, simulator, settings, runs=runs, split=split, device=device, layout=layout
    )
    report.update(
        simulator=str(simulator),
        data=str(data),
        cross_evaluation=cross["rows"],
        kendall_tau=cross["kendall_tau"],
        kendall_tau_graded=cross["kendall_tau_graded"],
        transfer_ratio=cross["transfer_ratio"],
        oracle_transfer_ratio=cross["oracle_transfer_ratio"],
        episodes=settings.episodes,
        seed=settings.seed,
        layout=layout,
    )
    return report


def format_fidelity(report: dict[str, Any]) -> str:
    """A markdown summary of :func:`fidelity_report`."""
    within = ", ".join(
        f"row {k}: {v:.3f}" for k, v in report["rank_correlation_within_row"].items()
    )
    lines = [
        f"# Simulator fidelity: {report['simulator']} against the true users of {report['data']}",
        "",
        f"- held-out AUC ({report['split']}, {report['records']:,} records): "
        f"{report['auc']:.4f}; ceiling (true probabilities) {report['auc_ceiling']:.4f}",
        f"- expected calibration error: {report['expected_calibration_error']:.4f}",
        f"- per-user rank correlation with the truth ({report['rank_users']} users): "
        f"{report['rank_correlation']:.3f} (within rows: {within or 'n/a'})",
        f"- transfer ratio (truth value of the simulator's greedy / of the truth's greedy): "
        f"{report['transfer_ratio']:.3f}; for the oracle: {report['oracle_transfer_ratio']:.3f}",
        f"- Kendall's tau between the simulator and truth columns: {report['kendall_tau']:.3f}; "
        f"with the graded policies (eps = share of random slates): "
        f"{report['kendall_tau_graded']:.3f}",
        "",
        f"Total reward, {report['episodes']} users, seed {report['seed']}, page layout "
        f"{report.get('layout', 'free')} "
        "(mean ± half-width of the 95% interval):",
        "",
        "| policy | simulator | true users |",
        "|---|---|---|",
    ]
    for name, row in report["cross_evaluation"].items():
        cells = [
            f"{row[w]['mean']:.3f} ± {(row[w]['ci95_high'] - row[w]['ci95_low']) / 2:.3f}"
            for w in ("sim", "truth")
        ]
        lines.append(f"| {name} | {cells[0]} | {cells[1]} |")
    lines += ["", "Calibration (predicted against observed click rate):", ""]
    lines += ["| predicted in | records | mean predicted | observed |", "|---|---|---|---|"]
    for row in report["calibration"]:
        if row["count"]:
            lines.append(
                f"| [{row['low']:.1f}, {row['high']:.1f}) | {row['count']:,} | "
                f"{row['predicted']:.3f} | {row['observed']:.3f} |"
            )
    return "\n".join(lines)


def plot_reliability(report: dict[str, Any], path: Path) -> Path | None:
    """The reliability plot as a PNG (None when matplotlib is not installed)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    rows = [r for r in report["calibration"] if r["count"]]
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="perfect")
    ax.plot(
        [r["predicted"] for r in rows], [r["observed"] for r in rows], marker="o", label="simulator"
    )
    ax.set_xlabel("predicted click probability")
    ax.set_ylabel("observed click rate")
    ax.set_title(f"reliability (ECE {report['expected_calibration_error']:.3f})")
    ax.legend(loc="upper left")
    fig.tight_layout()
    import io

    from hsrl.io import atomic_write_bytes

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
    return path
