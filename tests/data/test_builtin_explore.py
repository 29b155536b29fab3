"""Exploration traffic in the built-in logs: a share of pages with a randomised layout."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hsrl.cli import main
from hsrl.data.prepared import load_prepared
from hsrl.io import load_arrays
from hsrl.simulator.train import slot_components


def _prepare(path, percent: int):
    argv = ["data", "prepare", "builtin", "--out", str(path), "--option", "num_users=150",
            "--option", f"explore_percent={percent}"]  # fmt: skip
    assert main(argv) == 0
    return load_prepared(path)


def test_exploration_pages_shuffle_the_layout_and_are_marked(tmp_path):
    dataset = _prepare(tmp_path / "explore", 40)
    records = dataset.split("train")
    location = torch.from_numpy(load_arrays(dataset.path / "item_meta.npz")["location"])
    row = torch.arange(9) // 3 + 1  # the page row of each slot
    in_row = location[records.slate] == row  # (R, 9)
    policy = records.behavior_policy
    assert set(policy.tolist()) == {1, 2}
    assert 0.3 < float((policy == 2).float().mean()) < 0.5
    assert bool(in_row[policy == 1].all())  # the production layout: row r = location r
    assert float(in_row[policy == 2].float().mean()) < 0.6  # randomised: about 1/3 by chance
    assert slot_components(records.slate, dataset.items.num_items) == [list(range(1, 10))]
    # The slot biases are still calibrated to the logged click rates per slot.
    rates = np.array(dataset.manifest["generator"]["slot_click_rate"])
    assert rates[0] > rates[4] > rates[8]


def test_no_exploration_keeps_the_fixed_layout(tmp_path):
    dataset = _prepare(tmp_path / "fixed", 0)
    records = dataset.split("train")
    assert set(records.behavior_policy.tolist()) == {1}
    groups = slot_components(records.slate, dataset.items.num_items)
    assert groups == [[1, 2, 3], [4, 5, 6], [7, 8, 9]]


def test_explore_percent_above_100_is_refused(tmp_path, capsys):
    argv = ["data", "prepare", "builtin", "--out", str(tmp_path / "x"),
            "--option", "explore_percent=101"]  # fmt: skip
    assert main(argv) == 1
    assert "explore_percent" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("percent", [0, 30])
def test_same_seed_same_logs(tmp_path, percent):
    a = _prepare(tmp_path / "a", percent).split("train")
    b = _prepare(tmp_path / "b", percent).split("train")
    assert torch.equal(a.slate, b.slate) and torch.equal(a.response, b.response)
