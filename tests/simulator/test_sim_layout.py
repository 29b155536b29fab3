"""The page layout mode: row r of the page shows only items of location r, for every policy."""

from __future__ import annotations

import itertools
import json

import pytest
import torch

from hsrl.agents.reference import expected_reward, oracle_slates
from hsrl.catalogue import ChurnSchedule, apply_change, plan_changes
from hsrl.cli import main
from hsrl.errors import ConfigError
from hsrl.simulator.env import EnvConfig, InvalidActionError, make_env
from hsrl.slate import PageLayout, greedy_slate, sample_slate, uniform_slate

INF = float("inf")


def _layout() -> PageLayout:
    # Items 1-4 are row 1, items 5-9 row 2; two slots per row.
    return PageLayout.from_locations(torch.tensor([0, 1, 1, 1, 1, 2, 2, 2, 2, 2]), 4)


def test_layout_from_locations_and_its_errors():
    layout = _layout()
    assert layout.slot_row.tolist() == [1, 1, 2, 2] and layout.num_rows == 2
    assert layout.slots_of(2).tolist() == [2, 3]
    with pytest.raises(ConfigError, match="multiple of the 2 rows"):
        PageLayout.from_locations(torch.tensor([0, 1, 1, 2, 2]), 3)
    with pytest.raises(ConfigError, match="locations 1..R"):
        PageLayout.from_locations(torch.tensor([0, 0, 0, 0]), 2)
    with pytest.raises(ConfigError, match="row 1 has 3 slots but only 2"):
        PageLayout.from_locations(torch.tensor([0, 1, 1, 2, 2, 2]), 6)


def test_slate_helpers_fill_each_row_from_its_own_items():
    layout = _layout()
    scores = torch.tensor([[-INF, 0.1, 0.9, 0.5, 0.2, 3.0, 2.0, 0.0, 1.0, -1.0]])
    # Greedy: the row's best items in the row's slots, best first, even though items of row 2
    # outscore every item of row 1.
    assert greedy_slate(scores, 4, layout).tolist() == [[2, 3, 5, 6]]
    assert greedy_slate(scores, 4).tolist() == [[5, 6, 8, 2]]
    gen = torch.Generator().manual_seed(0)
    log_probs = torch.log_softmax(scores, dim=1).expand(500, -1)
    for slate in (
        sample_slate(log_probs, 4, gen, 0.2, layout),
        uniform_slate(torch.arange(10) > 0, 500, 4, gen, layout),
    ):
        assert not bool(layout.misplaced(slate).any())
        assert all(len(set(row)) == 4 for row in slate.tolist())
    # Sampling reaches every item of a row, not only its best.
    sampled = sample_slate(log_probs, 4, gen, 0.2, layout)
    assert set(sampled[:, :2].flatten().tolist()) == {1, 2, 3, 4}


@pytest.mark.parametrize("with_slots", [False, True])
def test_oracle_under_a_layout_matches_exhaustive_search(with_slots):
    layout = _layout()
    gen = torch.Generator().manual_seed(5)
    reward = torch.tensor([0.0, 0.3, 0.6, 1.0, 0.7])  # best at 3 clicks of 4
    for _ in range(40):
        logits = torch.randn(2, 10, generator=gen) * 2
        logits[:, 0] = -INF
        slots = torch.zeros(4)
        if with_slots:
            slots = torch.randn(4, generator=gen) * 1.5
        got = oracle_slates(logits, slots, reward, refine=9, layout=layout)
        assert not bool(layout.misplaced(got).any())
        for b in range(2):

            def value(s, b=b, logits=logits, slots=slots):
                p = torch.sigmoid(logits[b, list(s)].double() + slots.double())
                return float(expected_reward(p, reward.double()))

            best = max(
                value(first + second)
                for first in itertools.permutations([1, 2, 3, 4], 2)
                for second in itertools.permutations([5, 6, 7, 8, 9], 2)
            )
            assert value(got[b].tolist()) == pytest.approx(best, abs=1e-9)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A small built-in world with a fixed page layout (no exploration pages)."""
    root = tmp_path_factory.mktemp("layout_world")
    data, sim = root / "data", root / "sim"
    assert main(["data", "prepare", "builtin", "--out", str(data), "--option", "num_users=60"]) == 0
    assert main(["simulator", "train", "--data", str(data), "--out", str(sim), "--epochs", "1",
                 "--no-progress"]) == 0  # fmt: skip
    return data, sim


def test_env_refuses_slates_that_break_the_layout(world):
    data, sim = world
    env = make_env(data, sim, config=EnvConfig(num_users=2, layout="rows"))
    env.reset(seed=0)
    location = env.layout.item_row
    rows = [torch.nonzero(location == r).squeeze(1)[:3] for r in (1, 2, 3)]
    good = torch.cat(rows).expand(2, -1).clone()
    env.step(good)
    bad = good.clone()
    bad[1, 0], bad[1, 3] = good[1, 3], good[1, 0]  # a row-2 item in slot 1
    with pytest.raises(InvalidActionError, match="slot 1 holds item .* of row 2"):
        env.step(bad)
    deferred = make_env(data, sim, config=EnvConfig(num_users=2, layout="rows",
                                                    check_actions="deferred"))  # fmt: skip
    deferred.reset(seed=0)
    deferred.step(bad)
    with pytest.raises(InvalidActionError, match="another page row"):
        deferred.pop_finished_episodes()
    # The free env takes the same slate.
    free = make_env(data, sim, config=EnvConfig(num_users=2))
    free.reset(seed=0)
    free.step(bad)


def test_reference_policies_and_agents_act_under_the_layout(world, tmp_path, capsys):
    data, sim = world
    for policy in ("random", "greedy", "oracle"):
        for where in (["--simulator", str(sim)], ["--ground-truth"]):
            argv = ["evaluate", "--policy", policy, "--data", str(data), *where,
                    "--layout", "rows", "--episodes", "10", "--json"]  # fmt: skip
            assert main(argv) == 0  # the env's slate check would refuse a misplaced item
            result = json.loads(capsys.readouterr().out)
            assert result["evaluation"]["layout"] == "rows"
    run = tmp_path / "run"
    argv = ["train", "--agent", "ddpg", "--data", str(data), "--simulator", str(sim),
            "--layout", "rows", "--iterations", "30", "--set", "train.warmup=16",
            "--set", "train.batch_size=8", "--set", "train.log_every=10", "--out", str(run),
            "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    assert json.loads((run / "config.json").read_text())["env"]["layout"] == "rows"
    assert main(["evaluate", str(run), "--episodes", "10", "--json"]) == 0
    capsys.readouterr()
    # A run of one layout in a fidelity suite of another is refused in one line.
    assert main(["simulator", "fidelity", str(sim), "--data", str(data), "--runs", str(run),
                 "--episodes", "10"]) == 1  # fmt: skip
    err = capsys.readouterr().err
    assert "layout 'rows'" in err and err.count("\n") == 1


def test_new_items_keep_their_prototypes_row(world):
    data, sim = world
    env = make_env(data, sim, config=EnvConfig(num_users=4, layout="rows"))
    from hsrl.agents.base import Catalogue

    catalogue = Catalogue(env.item_features, layout=env.layout)
    n = env.num_items
    (change,) = plan_changes(
        ChurnSchedule(fraction=0.2, noise=0.0), catalogue.features, catalogue.live,
        catalogue.layout.item_row,
    )  # fmt: skip
    ids = apply_change(change, catalogue, [env])
    assert ids.min() == n + 1 and catalogue.layout.item_row.shape[0] == n + 1 + ids.numel()
    # noise 0: a new item is a copy of its prototype, so it has the prototype's features, and
    # the prototype's row.
    rows = catalogue.layout.item_row
    for new in ids.tolist()[:10]:
        twins = (catalogue.features[1 : n + 1] == catalogue.features[new]).all(dim=1)
        assert rows[new] in rows[1 : n + 1][twins]
    assert torch.equal(env.layout.item_row, rows)
    # A change without rows cannot apply under a layout, and changes nothing.
    (bare,) = plan_changes(ChurnSchedule(fraction=0.1), catalogue.features, catalogue.live)
    before = catalogue.features.shape[0]
    with pytest.raises(ConfigError, match="page row"):
        apply_change(bare, catalogue, [env])
    assert catalogue.features.shape[0] == before


def test_layout_on_a_dataset_without_locations(tiny_dataset, tmp_path, capsys):
    sim = tmp_path / "sim"
    assert main(["simulator", "train", "--data", str(tiny_dataset), "--out", str(sim),
                 "--epochs", "1", "--no-progress"]) == 0  # fmt: skip
    capsys.readouterr()
    argv = ["evaluate", "--policy", "greedy", "--data", str(tiny_dataset), "--simulator",
            str(sim), "--layout", "rows", "--episodes", "5"]  # fmt: skip
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "item locations" in err and "Traceback" not in err and err.count("\n") == 1
