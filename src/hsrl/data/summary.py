"""What a prepared dataset holds, in numbers: for ``hsrl data info`` and for reports.

:func:`summarize` returns plain JSON-ready values (no tensors), so ``hsrl data info --json``
can print it as is; :func:`format_summary` renders the same dict as a short text block.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch

from hsrl.data.prepared import PreparedDataset, Records

HISTOGRAM_BINS = 5  # non-empty history lengths are split in this many equal ranges


def summarize(dataset: PreparedDataset) -> dict[str, Any]:
    """Counts, dimensions, click rates (overall and per slot) and history lengths per split."""
    manifest = dataset.manifest
    history_length = int(manifest["history_length"])
    splits = {
        name: _split_summary(records, history_length) for name, records in dataset.splits.items()
    }
    everything = _merge(list(dataset.splits.values()))
    summary: dict[str, Any] = {
        "path": str(dataset.path),
        "source": dataset.source,
        "format_version": manifest["format_version"],
        "num_items": dataset.items.num_items,
        "item_feature_dim": dataset.items.feature_dim,
        "user_profile_dim": int(manifest["user_profile_dim"]),
        "slate_size": int(manifest["slate_size"]),
        "history_length": history_length,
        "records": sum(s["records"] for s in splits.values()),
        "split_recipe": manifest.get("split_recipe", ""),
        "overall": _split_summary(everything, history_length) if everything is not None else None,
        "splits": splits,
    }
    return summary


def _merge(parts: list[Records]) -> Records | None:
    if not parts:
        return None
    if len(parts) == 1:
        return parts[0]
    return Records(
        **{
            f.name: torch.cat([getattr(p, f.name) for p in parts])
            for f in dataclasses.fields(Records)
        }
    )


def _split_summary(records: Records, history_length: int) -> dict[str, Any]:
    count = len(records)
    out: dict[str, Any] = {
        "records": count,
        "sessions": int(torch.unique(records.session_id).numel()) if count else 0,
        "distinct_items_shown": int(torch.unique(records.slate).numel()) if count else 0,
    }
    if count == 0:
        out.update(click_rate=None, click_rate_per_slot=[], history=None)
        return out
    response = records.response.double()  # (R, K)
    out["click_rate"] = _round(response.mean().item())
    out["click_rate_per_slot"] = [_round(v) for v in response.mean(dim=0).tolist()]
    out["history"] = _history_summary(records.history_lengths(), history_length)
    return out


def _history_summary(lengths: torch.Tensor, history_length: int) -> dict[str, Any]:
    """min/median/mean/max and a coarse histogram: empty, then equal ranges up to the cap."""
    values = lengths.double()
    width = max(1, math.ceil(history_length / HISTOGRAM_BINS))
    labels, counts = ["0"], [int((lengths == 0).sum())]
    for lo in range(1, history_length + 1, width):
        hi = min(lo + width - 1, history_length)
        labels.append(f"{lo}" if lo == hi else f"{lo}-{hi}")
        counts.append(int(((lengths >= lo) & (lengths <= hi)).sum()))
    return {
        "min": int(lengths.min()),
        "median": _round(values.median().item()),
        "mean": _round(values.mean().item()),
        "max": int(lengths.max()),
        "histogram": {"bins": labels, "counts": counts},
    }


def _round(value: float, digits: int = 4) -> float:
    return round(float(value), digits)


def format_summary(summary: dict[str, Any]) -> str:
    """The summary as a readable text block (what ``hsrl data info`` prints)."""
    lines = [
        f"dataset      {summary['path']}",
        f"source       {summary['source']} (format version {summary['format_version']})",
        f"items        {summary['num_items']:,} with {summary['item_feature_dim']} features",
        f"users        profile of {summary['user_profile_dim']} values",
        f"slates       {summary['slate_size']} items, history of up to "
        f"{summary['history_length']} items",
        f"records      {summary['records']:,}",
    ]
    if summary.get("split_recipe"):
        lines.append(f"split        {summary['split_recipe']}")
    lines.append("")
    header = (
        f"{'split':<8} {'records':>10} {'sessions':>9} {'click':>6}  history min/median/mean/max"
    )
    lines.append(header)
    rows = list(summary["splits"].items())
    if summary.get("overall") is not None and len(rows) > 1:
        rows.append(("all", summary["overall"]))
    for name, split in rows:
        if split["records"] == 0:
            lines.append(f"{name:<8} {0:>10}")
            continue
        h = split["history"]
        lines.append(
            f"{name:<8} {split['records']:>10,} {split['sessions']:>9,} "
            f"{split['click_rate']:>6.3f}  {h['min']}/{h['median']:g}/{h['mean']:.1f}/{h['max']}"
        )
    overall = summary.get("overall")
    if overall and overall["records"]:
        lines.append("")
        slots = " ".join(f"{v:.2f}" for v in overall["click_rate_per_slot"])
        lines.append(f"click rate per slot   {slots}")
        hist = overall["history"]["histogram"]
        total = max(1, overall["records"])
        cells = "  ".join(
            f"{label}: {100 * count / total:.0f}%"
            for label, count in zip(hist["bins"], hist["counts"])
        )
        lines.append(f"history lengths       {cells}")
    return "\n".join(lines)
