"""``summarize`` / ``hsrl data info`` on the prepared RL4RS fragment."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hsrl.cli import main
from hsrl.data.prepared import load_prepared
from hsrl.data.summary import format_summary, summarize

# Click rate per slot of the 63 records of the fragment (SPEC 2.3 quotes 0.87 ... 0.32).
SLOT_RATES = [0.873, 0.8889, 0.8413, 0.7778, 0.746, 0.7778, 0.5714, 0.5238, 0.3175]


def test_summary_numbers(rl4rs_prepared: Path):
    summary = summarize(load_prepared(rl4rs_prepared))
    assert summary["source"] == "rl4rs" and summary["records"] == 63
    assert summary["num_items"] == 283 and summary["item_feature_dim"] == 40
    assert summary["slate_size"] == 9 and summary["history_length"] == 50
    assert (
        summary["splits"]["train"]["records"] == 46 and summary["splits"]["test"]["records"] == 17
    )
    assert (
        summary["splits"]["train"]["sessions"] == 30 and summary["splits"]["test"]["sessions"] == 10
    )
    overall = summary["overall"]
    assert overall["click_rate"] == pytest.approx(0.7019, abs=1e-4)
    assert overall["click_rate_per_slot"] == pytest.approx(SLOT_RATES, abs=1e-4)
    history = overall["history"]
    assert history["min"] == 0 and history["max"] == 50
    assert history["histogram"]["bins"] == ["0", "1-10", "11-20", "21-30", "31-40", "41-50"]
    assert sum(history["histogram"]["counts"]) == 63
    assert history["histogram"]["counts"][0] == 5  # records with an empty history
    train = summary["splits"]["train"]
    assert train["click_rate"] == pytest.approx(sum(train["click_rate_per_slot"]) / 9, abs=1e-3)
    json.dumps(summary)  # plain JSON values only


def test_format_summary_is_readable(rl4rs_prepared: Path):
    text = format_summary(summarize(load_prepared(rl4rs_prepared)))
    assert "rl4rs" in text and "283" in text
    assert "train" in text and "test" in text and "0.87" in text


def test_cli_info_json_prints_one_object(rl4rs_prepared: Path, capsys):
    assert main(["data", "info", str(rl4rs_prepared), "--json"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    assert json.loads(out)["splits"]["test"]["records"] == 17


def test_cli_info_text_and_errors(rl4rs_prepared: Path, tmp_path: Path, capsys):
    assert main(["data", "info", str(rl4rs_prepared)]) == 0
    assert "click rate per slot" in capsys.readouterr().out
    assert main(["data", "info", str(tmp_path / "missing")]) == 1
    assert "not a prepared dataset folder" in capsys.readouterr().err


def test_cli_prepare_prints_the_summary(rl4rs_raw: Path, tmp_path: Path, capsys):
    out = tmp_path / "p"
    assert main(["data", "prepare", "rl4rs", "--raw", str(rl4rs_raw), "--out", str(out)]) == 0
    assert "records      63" in capsys.readouterr().out
    assert main(["data", "prepare", "rl4rs", "--raw", str(rl4rs_raw), "--out", str(out)]) == 1
    assert "already exists" in capsys.readouterr().err
    args = ["data", "prepare", "rl4rs", "--raw", str(rl4rs_raw), "--out", str(out), "--overwrite"]
    assert main([*args, "--option", "history_length=5"]) == 0
    assert load_prepared(out).manifest["history_length"] == 5
    assert main([*args, "--option", "history_length"]) == 1
    assert "expected KEY=VALUE" in capsys.readouterr().err
