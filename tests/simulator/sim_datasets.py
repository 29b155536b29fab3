"""Tiny prepared datasets for the simulator tests, written with the real prepared format."""

from __future__ import annotations

from pathlib import Path

import torch

from hsrl.data.prepared import ItemTable, Records, write_prepared


def make_records(
    count: int,
    *,
    num_items: int,
    profile_dim: int,
    slate_size: int,
    history_length: int,
    generator: torch.Generator,
    preference: torch.Tensor | None = None,
    item_features: torch.Tensor | None = None,
) -> Records:
    """Random logged records; with ``preference`` (P, F) clicks follow a planted affinity."""
    profile = torch.rand(count, profile_dim, generator=generator)
    lengths = torch.randint(0, history_length + 1, (count,), generator=generator)
    history = torch.randint(1, num_items + 1, (count, history_length), generator=generator)
    cols = torch.arange(history_length)
    history = torch.where(cols >= history_length - lengths.unsqueeze(1), history, 0)
    slate = torch.stack(
        [torch.randperm(num_items, generator=generator)[:slate_size] + 1 for _ in range(count)]
    )
    if preference is not None and item_features is not None:
        affinity = (profile @ preference).unsqueeze(1) * item_features[slate]  # (R, K, F)
        logit = 3.0 * affinity.sum(-1) - 0.5
    else:
        logit = torch.zeros(count, slate_size)
    response = (torch.rand(count, slate_size, generator=generator) < torch.sigmoid(logit)).float()
    return Records(
        user_profile=profile,
        history=history.long(),
        slate=slate.long(),
        response=response,
        session_id=torch.arange(count, dtype=torch.long) // 3,
        sequence_id=torch.arange(count, dtype=torch.long),
        timestamp=torch.arange(count, dtype=torch.long),
        behavior_policy=torch.zeros(count, dtype=torch.long),
    )


def write_tiny_dataset(
    out: Path,
    *,
    num_items: int = 30,
    feature_dim: int = 6,
    profile_dim: int = 5,
    slate_size: int = 4,
    history_length: int = 8,
    train: int = 300,
    val: int = 120,
    source: str = "synthetic",
    seed: int = 0,
    splits: tuple[str, ...] = ("train", "val"),
) -> Path:
    generator = torch.Generator().manual_seed(seed)
    features = torch.randn(num_items + 1, feature_dim, generator=generator)
    features[0] = 0
    preference = torch.randn(profile_dim, feature_dim, generator=generator) / profile_dim
    sizes = {"train": train, "val": val, "test": val}
    records = {
        name: make_records(
            sizes[name],
            num_items=num_items,
            profile_dim=profile_dim,
            slate_size=slate_size,
            history_length=history_length,
            generator=generator,
            preference=preference,
            item_features=features,
        )
        for name in splits
    }
    return write_prepared(
        out, ItemTable(features), records, source=source, split_recipe="random (test fixture)"
    )
