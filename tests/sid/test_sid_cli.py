"""``hsrl sid build`` / ``hsrl sid info`` end to end on the real RL4RS item table."""

from __future__ import annotations

import argparse
import json
import sys

import pytest
import torch

from hsrl.errors import ConfigError, HsrlError
from hsrl.sid import SidIndex


def run_cli(argv: list[str]) -> int:
    """Parse and dispatch like ``hsrl`` does, with only the sid subcommand registered."""
    from hsrl.cli import sid

    parser = argparse.ArgumentParser(prog="hsrl")
    sid.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


def test_build_writes_index_and_report(tmp_path, rl4rs_dataset, rl4rs_features, capsys):
    out = tmp_path / "sid"
    code = run_cli(["sid", "build", "--data", str(rl4rs_dataset), "--out", str(out), "--seed", "3"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "SIDs for 283 items: 3 levels x 16 codes (balanced k-means" in printed
    assert "0 after" in printed
    names = sorted(p.name for p in out.iterdir())
    assert names == ["codebook.npz", "report.json", "report.txt", "sid_meta.json", "sid_table.npz"]
    report = json.loads((out / "report.json").read_text())
    for key in (
        "items",
        "levels",
        "codes",
        "collisions_before",
        "collisions_after",
        "build_seconds",
    ):
        assert key in report
    assert report["items"] == 283 and report["collisions_after"] == 0
    assert [row["level"] for row in report["levels_detail"]] == [1, 2, 3]
    assert all("codes_used" in r and "reconstruction_mse" in r for r in report["levels_detail"])
    assert (out / "report.txt").read_text().startswith("SIDs for 283 items")
    index = SidIndex.load(out, device="cpu", features=rl4rs_features)
    ids = torch.arange(1, 284)
    assert torch.equal(index.items_of(index.item_sid[ids]), ids)
    assert index.build["dataset"]["source"] == "rl4rs-items-test"

    # Same seed, same SIDs; an existing folder needs --overwrite.
    with pytest.raises(HsrlError, match="already exists"):
        run_cli(["sid", "build", "--data", str(rl4rs_dataset), "--out", str(out), "--seed", "3"])
    again = tmp_path / "again"
    run_cli(["sid", "build", "--data", str(rl4rs_dataset), "--out", str(again), "--seed", "3"])
    assert torch.equal(SidIndex.load(again).item_sid, index.item_sid)

    capsys.readouterr()
    assert run_cli(["sid", "info", str(out), "--data", str(rl4rs_dataset), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["num_live"] == 283 and info["report"]["collisions_after"] == 0


def test_build_options_and_json(tmp_path, rl4rs_dataset, capsys):
    out = tmp_path / "plain"
    argv = ["sid", "build", "--data", str(rl4rs_dataset), "--out", str(out), "--no-balanced"]
    argv += ["--levels", "2", "--codes", "32", "--json"]
    assert run_cli(argv) == 0
    report = json.loads(capsys.readouterr().out)  # nothing but the JSON on stdout
    assert (report["levels"], report["codes"], report["balanced"]) == (2, 32, False)
    assert SidIndex.load(out).levels == 2


def test_build_errors(tmp_path, rl4rs_dataset, monkeypatch):
    base = ["sid", "build", "--data", str(rl4rs_dataset)]
    with pytest.raises(ConfigError, match=r"283 items .* 4\^4 = 256 .* raise --codes or --levels"):
        run_cli([*base, "--out", str(tmp_path / "a"), "--levels", "4", "--codes", "4"])
    monkeypatch.setitem(sys.modules, "faiss", None)
    with pytest.raises(ConfigError, match="faiss package is not installed"):
        run_cli([*base, "--out", str(tmp_path / "b"), "--backend", "faiss"])
    with pytest.raises(HsrlError, match="not a prepared dataset"):
        run_cli(["sid", "build", "--data", str(tmp_path / "none"), "--out", str(tmp_path / "c")])
    assert not any(p.name in {"a", "b", "c"} for p in tmp_path.iterdir())  # nothing half-written


def test_hsrl_main_reports_errors_in_one_line(tmp_path, capsys):
    from hsrl.cli import main

    code = main(["sid", "build", "--data", str(tmp_path / "none"), "--out", str(tmp_path / "o")])
    assert code == 1
    err = capsys.readouterr().err
    assert err.startswith("hsrl: error: ") and "not a prepared dataset" in err


def test_zero_kmeans_iterations_are_refused(tmp_path, rl4rs_dataset):
    out = tmp_path / "sid"
    args = ["sid", "build", "--data", str(rl4rs_dataset), "--out", str(out), "--max-iter", "0"]
    with pytest.raises(ConfigError, match="--max-iter must be at least 1"):
        run_cli(args)
    assert not out.exists()
