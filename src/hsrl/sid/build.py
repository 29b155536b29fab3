"""``build_sid_index``: fit the codebook, give every item a distinct SID, and report on it.

The report says what a user needs to judge a codebook: how many items collided before the
collision policy and after it (always 0: the table is one-to-one), how evenly each level's codes
are used, how much of the feature variance each level explains, and how long it all took.
"""

from __future__ import annotations

import math
import platform
import time
from pathlib import Path
from typing import Any

import torch

from hsrl import __version__
from hsrl.device import resolve_device
from hsrl.errors import ConfigError
from hsrl.sid.codebook import ResidualCodebook, fit_residual_codebook
from hsrl.sid.collisions import check_capacity, place_items
from hsrl.sid.kmeans import make_search
from hsrl.sid.prefix import PrefixIndex, check_vocabulary, prefix_keys
from hsrl.sid.table import SidIndex, features_sha256


def build_sid_index(
    features: torch.Tensor,
    levels: int = 3,
    codes: int = 16,
    balanced: bool = True,
    seed: int = 0,
    device: torch.device | str = "cpu",
    backend: str = "torch",
    *,
    max_iter: int = 30,
    tol: float = 1e-4,
    n_init: int | None = None,
    max_points_per_centroid: int = 512,
) -> tuple[SidIndex, dict[str, Any]]:
    """Build semantic IDs for the items of ``features (N + 1, F)`` (row 0 = padding, ignored).

    ``n_init`` restarts of k-means per level (default: 4 for small catalogues, else 1); each
    level stops after ``max_iter`` iterations or when the inertia improves by less than ``tol``.
    Centroids are fitted on at most ``max_points_per_centroid * codes`` sampled items per level
    (0: all items); every item is then assigned (see :func:`hsrl.sid.kmeans.kmeans`).
    Returns the index (on ``device``) and the build report (a JSON-ready dict).
    """
    if features.ndim != 2 or features.shape[0] < 2 or features.shape[1] < 1:
        raise ConfigError(
            f"item features must be (N + 1, F) with at least one item, got {tuple(features.shape)}"
        )
    if not bool(torch.isfinite(features).all()):
        raise ConfigError("item features hold NaN or inf")
    check_vocabulary(levels, codes)
    if max_iter < 1:
        raise ConfigError(f"--max-iter must be at least 1 (k-means iterations), got {max_iter}")
    if tol < 0 or max_points_per_centroid < 0:
        raise ConfigError("--tol and --max-points-per-centroid must be >= 0")
    if n_init is not None and n_init < 1:
        raise ConfigError("--n-init must be >= 1")
    n = features.shape[0] - 1
    check_capacity(0, n, levels, codes)
    device = resolve_device(device)
    search = make_search(backend)
    x = features[1:].float().to(device)  # (N, F)
    _sync(device)
    start = time.perf_counter()
    codebook, fitted, level_info = fit_residual_codebook(
        x,
        levels,
        codes,
        balanced=balanced,
        seed=seed,
        max_iter=max_iter,
        tol=tol,
        n_init=n_init,
        max_points_per_centroid=max_points_per_centroid,
        backend=search,
    )
    _sync(device)
    fit_seconds = time.perf_counter() - start
    ids = torch.arange(1, n + 1, device=device)
    occupancy = PrefixIndex(
        torch.empty(0, dtype=torch.long, device=device),
        torch.empty(0, dtype=torch.long, device=device),
        levels,
        codes,
    )
    placement = place_items(x, fitted, ids, codebook, occupancy)
    _sync(device)
    build_seconds = time.perf_counter() - start

    item_sid = torch.cat(
        [torch.full((1, levels), -1, dtype=torch.long, device=device), placement.sid]
    )
    live = torch.ones(n + 1, dtype=torch.bool, device=device)
    live[0] = False
    config = {
        "levels": levels,
        "codes": codes,
        "balanced": balanced,
        "seed": seed,
        "backend": search.name,
        "device": str(device),
        "max_iter": max_iter,
        "tol": tol,
        "n_init": level_info[0]["n_init"],
        "max_points_per_centroid": max_points_per_centroid,
    }
    index = SidIndex(
        codebook,
        item_sid,
        live,
        feature_blocks=[{"start": 0, "stop": n + 1, "sha256": features_sha256(features)}],
        build={**config, "hsrl": __version__, "torch": torch.__version__},
    )
    report = {
        "items": n,
        "feature_dim": features.shape[1],
        **config,
        "sid_space": codes**levels,
        "collisions_before": placement.collided,
        "collisions_after": n - int(torch.unique(prefix_keys(placement.sid, codes)).numel()),
        "distinct_sids_before": int(torch.unique(prefix_keys(fitted, codes)).numel()),
        "moved_at_level": placement.moved_at_level,
        "resolution_rounds": placement.rounds,
        "levels_detail": _level_report(x, codebook, fitted, placement.sid, level_info),
        "fit_seconds": round(fit_seconds, 4),
        "resolve_seconds": round(build_seconds - fit_seconds, 4),
        "build_seconds": round(build_seconds, 4),
        "host": platform.node() or "unknown",
    }
    return index, report


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _level_report(
    x: torch.Tensor,
    codebook: ResidualCodebook,
    fitted: torch.Tensor,
    final: torch.Tensor,
    level_info: list[dict[str, Any]],
) -> list[dict[str, Any]]:
    """Per level: code usage, prefixes in use, and reconstruction error (before/after policy)."""
    variance = float(((x - x.mean(0)) ** 2).sum(1).double().mean())
    errors_final = codebook.reconstruction_errors(x, final)
    errors_fitted = codebook.reconstruction_errors(x, fitted)
    rows = []
    for level in range(codebook.levels):
        counts = torch.bincount(final[:, level], minlength=codebook.codes).double()  # (V,)
        used = counts[counts > 0]
        share = used / used.sum()
        prefixes = torch.unique(prefix_keys(final[:, : level + 1], codebook.codes)).numel()
        rows.append(
            {
                "level": level + 1,
                "codes_used": int(used.numel()),
                "items_per_code_min": int(counts.min()),
                "items_per_code_max": int(counts.max()),
                "code_perplexity": round(float(torch.exp(-(share * share.log()).sum())), 3),
                "prefixes_used": int(prefixes),
                "reconstruction_mse": errors_final[level],
                "reconstruction_mse_before_resolution": errors_fitted[level],
                "explained_variance": (1 - errors_final[level] / variance)
                if variance > 0
                else None,
                "kmeans_iterations": level_info[level]["iterations"],
                "kmeans_converged": level_info[level]["converged"],
                "kmeans_seconds": level_info[level]["seconds"],
            }
        )
    return rows


def format_report(report: dict[str, Any]) -> str:
    """A short human-readable summary of a build report."""
    kind = "balanced" if report["balanced"] else "plain"
    lines = [
        f"SIDs for {report['items']} items: {report['levels']} levels x {report['codes']} codes "
        f"({kind} k-means, {report['backend']} on {report['device']}, seed {report['seed']})",
        f"collisions: {report['collisions_before']} before resolution, "
        f"{report['collisions_after']} after"
        + (
            " (moved at level "
            + ", ".join(f"{i + 1}: {c}" for i, c in enumerate(report["moved_at_level"]) if c)
            + ")"
            if report["collisions_before"]
            else ""
        ),
        "level  codes used  items/code (min-max)  perplexity  prefixes  recon. MSE  explained var.",
    ]
    for row in report["levels_detail"]:
        explained = row["explained_variance"]
        lines.append(
            f"{row['level']:>5}  {row['codes_used']:>4} / {report['codes']:<4}  "
            f"{row['items_per_code_min']:>8} - {row['items_per_code_max']:<10}  "
            f"{row['code_perplexity']:>10.2f}  {row['prefixes_used']:>8}  "
            f"{row['reconstruction_mse']:>10.4g}  "
            + ("n/a" if explained is None or math.isnan(explained) else f"{explained:>13.1%}")
        )
    lines.append(
        f"built in {report['build_seconds']:.2f} s (k-means {report['fit_seconds']:.2f} s, "
        f"collision policy {report['resolve_seconds']:.2f} s)"
    )
    return "\n".join(lines)


def build_sid_folder(
    data: str | Path,
    out: str | Path,
    *,
    levels: int = 3,
    codes: int = 16,
    balanced: bool = True,
    seed: int = 0,
    device: torch.device | str = "cpu",
    backend: str = "torch",
    overwrite: bool = False,
    **fit_options: Any,
) -> dict[str, Any]:
    """Build SIDs for a prepared dataset's items and write the folder ``out`` atomically.

    The folder holds the index files, ``report.json`` and ``report.txt``; returns the report.
    """
    from hsrl.data.prepared import load_prepared
    from hsrl.io import atomic_output_dir, atomic_write_bytes, write_json

    dataset = load_prepared(data, splits=[])
    index, report = build_sid_index(
        dataset.items.features,
        levels=levels,
        codes=codes,
        balanced=balanced,
        seed=seed,
        device=device,
        backend=backend,
        **fit_options,
    )
    report["dataset"] = {"path": str(data), "source": dataset.manifest.get("source")}
    index.build["dataset"] = report["dataset"]
    with atomic_output_dir(out, overwrite=overwrite) as tmp:
        index.write_files(tmp)
        write_json(tmp / "report.json", report)
        atomic_write_bytes(tmp / "report.txt", (format_report(report) + "\n").encode())
    return report
