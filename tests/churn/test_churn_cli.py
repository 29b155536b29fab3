"""`hsrl churn` end to end on the tiny built-in world, and training through catalogue changes."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from hsrl.cli import main

TINY = [
    "--set", "train.batch_size=16",
    "--set", "train.warmup=24",
    "--set", "train.log_every=4",
    "--set", "train.tensorboard=false",
    "--set", "env.num_users=8",
    "--set", "agent.encoder.dim=16",
    "--set", "agent.encoder.heads=2",
]  # fmt: skip


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny_runs(tiny_world, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("churn_runs")
    runs = {}
    for agent, extra in (("hsrl", ["--set", "agent.decoding=beam"]), ("a2c_flat", [])):
        run = root / agent
        args = [
            "train", "--agent", agent, "--data", str(tiny_world["data"]), "--simulator",
            str(tiny_world["simulator"]), "--sid", str(tiny_world["sid"]), "--out", str(run),
            "--iterations", "30", "--no-progress", *TINY, *extra,
        ]  # fmt: skip
        assert main(args) == 0
        runs[agent] = run
    return runs


@pytest.mark.slow
def test_churn_command_evaluates_static_and_churned_catalogues(tiny_runs, tmp_path, capsys):
    out = tmp_path / "churn"
    runs = [str(tiny_runs["hsrl"]), str(tiny_runs["a2c_flat"])]
    checkpoint = tiny_runs["hsrl"] / "checkpoints" / "last.pt"
    before = checkpoint.read_bytes()
    capsys.readouterr()
    args = ["churn", *runs, "--fractions", "0.5", "--episodes", "12", "--out", str(out)]
    extra = ["--continue-iterations", "6", "--steps", "2", "--churn-seeds", "0,1", "--references"]
    assert main([*args, *extra, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)  # exactly one JSON object on stdout
    assert {p.name for p in out.iterdir()} >= {"churn.json", "churn.csv", "churn.md", "churn.png"}
    assert json.loads((out / "churn.json").read_text()) == result
    rows = result["rows"]

    def cell(r):
        return (Path(r["run"]).name, r["policy"], r["mode"], r["fraction"], r["churn_seed"])

    churned = [(0.0, None), (0.5, 0), (0.5, 1)]
    expected = {
        (name, "agent", mode, f, seed)
        for name in ("hsrl", "a2c_flat")
        for mode in ("zero-shot", "continued")
        for f, seed in churned
    } | {
        ("hsrl", policy, "zero-shot", f, seed)
        for policy in ("random", "greedy")
        for f, seed in churned
    }
    assert {cell(r) for r in rows} == expected and len(rows) == len(expected)
    by_cell = {cell(r)[:4]: r for r in rows if r["churn_seed"] in (None, 0)}
    for name in ("hsrl", "a2c_flat"):
        static = by_cell[(name, "agent", "zero-shot", 0.0)]
        churned = by_cell[(name, "agent", "zero-shot", 0.5)]
        continued = by_cell[(name, "agent", "continued", 0.5)]
        assert static["new_item_share"] == 0.0 and static["catalogue"]["retired"] == 0
        assert churned["catalogue"] == continued["catalogue"]
        assert churned["catalogue"]["retired"] == churned["catalogue"]["added"] == 142  # of 283
        assert churned["catalogue"]["live"] == static["catalogue"]["live"] == 283
        assert continued["iteration"] == static["iteration"] + 6
        assert continued["catalogue"]["changes"] == 2
        assert 0.0 <= churned["new_item_share"] <= 1.0
        change = churned["change"]["total_reward"]
        delta = (
            churned["metrics"]["total_reward"]["mean"] - static["metrics"]["total_reward"]["mean"]
        )
        assert change["delta"] == pytest.approx(delta)
    # HSRL placed every new item through the collision policy of its frozen codebook.
    assert by_cell[("hsrl", "agent", "zero-shot", 0.5)]["catalogue"]["new_items_sid_collided"] >= 0
    # A uniformly random policy shows new items as often as they are in the catalogue.
    random_share = by_cell[("hsrl", "random", "zero-shot", 0.5)]["new_item_share"]
    assert random_share == pytest.approx(142 / 283, abs=0.1)
    # The static evaluation is the plain evaluation protocol: same numbers as `hsrl evaluate`.
    assert main(["evaluate", runs[0], "--episodes", "12", "--json"]) == 0
    plain = json.loads(capsys.readouterr().out)
    assert plain["metrics"] == by_cell[("hsrl", "agent", "zero-shot", 0.0)]["metrics"]
    # Continued training left the run itself untouched and logged under the results.
    assert checkpoint.read_bytes() == before
    assert (out / "continued" / "hsrl" / "fraction_0.5_seed1" / "log.jsonl").is_file()
    with open(out / "churn.csv", newline="") as handle:
        table = list(csv.DictReader(handle))
    assert len(table) == len(rows) and "total_reward_relative" in table[0]
    assert (
        "Change of total reward relative to the static catalogue" in (out / "churn.md").read_text()
    )
    # An existing --out is never replaced silently.
    assert main(args) == 1
    assert "already exists" in capsys.readouterr().err


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--fractions", "0"], "--fractions"),
        (["--fractions", "0.2,1.5"], "--fractions"),
        (["--continue-iterations", "2", "--steps", "3"], "--steps"),
        (["--episodes", "0"], "--episodes"),
    ],
)
def test_churn_rejects_bad_flags(tiny_runs, tmp_path, capsys, flags, message):
    args = ["churn", str(tiny_runs["a2c_flat"]), "--out", str(tmp_path / "o"), *flags]
    assert main(args) == 1
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_churn_needs_a_run_folder(tmp_path, capsys):
    assert main(["churn", str(tmp_path), "--out", str(tmp_path / "o")]) == 1
    assert "not a run folder" in capsys.readouterr().err


def test_training_goes_on_through_scheduled_changes(tiny_runs):
    """The churn trainer applies each change at its iteration; acting never picks a retired item
    (the environment would raise) and the catalogue ends with every change applied."""
    from hsrl.catalogue import ChurnSchedule, plan_changes
    from hsrl.churn import ChurnTrainer
    from hsrl.train import CHECKPOINT_DIR, LAST_CHECKPOINT, load_agent, load_checkpoint

    run = tiny_runs["a2c_flat"]
    parts, _ = load_agent(run)
    catalogue = parts.catalogue
    schedule = ChurnSchedule(fraction=0.3, steps=3, start=2, every=3, seed=5)
    changes = plan_changes(schedule, catalogue.features, catalogue.live)
    sizes = []

    class Watch(ChurnTrainer):
        def step(self):
            metrics = super().step()
            sizes.append(catalogue.features.shape[0])
            return metrics

    trainer = Watch(parts, run.parent / "watch", changes, schedule.iterations())
    (run.parent / "watch").mkdir(exist_ok=True)
    trainer.load_checkpoint_state(load_checkpoint(run / CHECKPOINT_DIR / LAST_CHECKPOINT, "cpu"))
    trainer.run(trainer.iteration + 10, progress=False)
    added = [c.features.shape[0] for c in changes]
    n = 284
    assert sizes == [n] * 2 + [n + added[0]] * 3 + [n + sum(added[:2])] * 3 + [n + sum(added)] * 2
    assert parts.env.num_items == catalogue.features.shape[0] - 1
    assert torch.equal(parts.env.live, catalogue.live)
    assert int(catalogue.live.sum()) == 283
