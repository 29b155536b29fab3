"""The RL4RS reader on the real fragment: exact values, agreement with a plain re-parse,
the prepared folder, and the input variations it must accept."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from hsrl.data import rl4rs
from hsrl.data.prepared import load_prepared
from hsrl.data.rl4rs import prepare_rl4rs, read_item_table, read_records
from hsrl.io import load_arrays


def plain_parse(path: Path, history_length: int = 50) -> dict[str, np.ndarray]:
    """An independent, obvious (slow) reading of a record file, to compare the reader with."""
    rows = path.read_text().splitlines()[1:]
    out: dict[str, list] = {
        k: [] for k in ("ts", "session", "seq", "slate", "fb", "hist", "prof", "pol")
    }
    for row in rows:
        cells = row.split("@")
        out["ts"].append(int(cells[0]))
        out["session"].append(int(cells[1]))
        out["seq"].append(int(cells[2]))
        out["slate"].append([int(x) for x in cells[3].split(",")])
        out["fb"].append([int(x) for x in cells[4].split(",")])
        ids = [int(x) for x in cells[5].split(",") if int(x) != 0][-history_length:]
        out["hist"].append([0] * (history_length - len(ids)) + ids)
        out["prof"].append([math.log1p(float(x)) for x in cells[6].split(",")])
        out["pol"].append(int(cells[8]))
    return {k: np.array(v) for k, v in out.items()}


@pytest.fixture(scope="module")
def items(rl4rs_raw: Path):
    return read_item_table(rl4rs_raw / "item_info.csv")


def test_item_table_real_values(items):
    table, meta = items
    assert table.features.shape == (284, 40)
    assert table.features.dtype == torch.float32
    assert torch.all(table.features[0] == 0)
    assert table.features[1, 0].item() == pytest.approx(-0.2137)
    assert table.features[1, 39].item() == pytest.approx(1.2644)
    assert table.features[283].abs().sum() > 0
    assert meta["price"][1] == pytest.approx(7.0) and meta["price"][2] == pytest.approx(13.1)
    assert meta["price"][1:].min() == pytest.approx(7.0)
    assert meta["price"][1:].max() == pytest.approx(1478.1)
    assert np.bincount(meta["location"][1:]).tolist() == [0, 39, 108, 136]
    assert np.bincount(meta["special_item"][1:]).tolist() == [164, 6, 113]
    assert meta["location"][[1, 39, 40, 147, 148, 283]].tolist() == [1, 1, 2, 2, 3, 3]


def test_item_table_any_order(tmp_path: Path, rl4rs_raw: Path, items):
    lines = (rl4rs_raw / "item_info.csv").read_text().splitlines()
    path = tmp_path / "item_info.csv"
    path.write_text("\n".join([lines[0], *reversed(lines[1:])]) + "\n")
    table, meta = read_item_table(path)
    assert torch.equal(table.features, items[0].features)
    assert np.array_equal(meta["location"], items[1]["location"])


def test_item_table_crlf(tmp_path: Path, rl4rs_raw: Path, items):
    path = tmp_path / "item_info.csv"
    path.write_bytes((rl4rs_raw / "item_info.csv").read_bytes().replace(b"\n", b"\r\n") + b"\r\n")
    table, meta = read_item_table(path)
    assert torch.equal(table.features, items[0].features)
    assert np.array_equal(meta["special_item"], items[1]["special_item"])


def test_train_records_exact_values(rl4rs_raw: Path, items):
    records = read_records(rl4rs_raw / "rl4rs_b_train.csv", items[0])
    assert len(records) == 46
    assert records.slate_size == 9 and records.history_length == 50 and records.profile_dim == 42
    assert records.slate[0].tolist() == [28, 32, 5, 77, 130, 76, 196, 199, 172]
    assert records.response[0].tolist() == [1.0] * 9
    assert records.history[0].tolist() == [0] * 50  # user_seqfeature "0": empty
    assert records.user_profile[0, 0].item() == pytest.approx(math.log1p(64054), rel=1e-6)
    assert records.user_profile[0, 10].item() == pytest.approx(math.log1p(3.054), rel=1e-6)
    assert records.timestamp[0].item() == 530551
    assert records.session_id[:3].tolist() == [1, 1, 2]
    assert records.sequence_id[:3].tolist() == [1, 2, 1]
    assert records.behavior_policy.unique().tolist() == [1]
    # third record: 27 earlier items, the last of them 199
    assert records.history_lengths()[2].item() == 27
    assert records.history[2, -1].item() == 199 and records.history[2, -28].item() == 0
    assert records.response[2].tolist() == [1, 1, 1, 1, 1, 1, 0, 1, 0]
    # the longest histories (59 ids) are cut to their last 50
    assert records.history_lengths().max().item() == 50


def test_records_equal_plain_parse(rl4rs_raw: Path, items):
    for name, count in (("rl4rs_b_train.csv", 46), ("rl4rs_b_test.csv", 17)):
        records = read_records(rl4rs_raw / name, items[0])
        expected = plain_parse(rl4rs_raw / name)
        assert len(records) == count
        assert records.slate.tolist() == expected["slate"].tolist()
        assert records.response.long().tolist() == expected["fb"].tolist()
        assert records.history.tolist() == expected["hist"].tolist()
        assert np.allclose(records.user_profile.numpy(), expected["prof"], rtol=1e-6)
        assert records.timestamp.tolist() == expected["ts"].tolist()
        assert records.session_id.tolist() == expected["session"].tolist()
        assert records.sequence_id.tolist() == expected["seq"].tolist()
        assert records.behavior_policy.tolist() == expected["pol"].tolist()


def test_history_length_option(rl4rs_raw: Path, items):
    records = read_records(rl4rs_raw / "rl4rs_b_train.csv", items[0], history_length=10)
    expected = plain_parse(rl4rs_raw / "rl4rs_b_train.csv", history_length=10)
    assert records.history.shape == (46, 10)
    assert records.history.tolist() == expected["hist"].tolist()


def test_small_blocks_give_the_same_records(monkeypatch, rl4rs_raw: Path, items):
    """Lines split across read blocks, carried over, and numbered across blocks."""
    whole = read_records(rl4rs_raw / "rl4rs_b_train.csv", items[0])
    monkeypatch.setattr(rl4rs, "BLOCK_BYTES", 5000)  # about 1.5 lines per block
    split = read_records(rl4rs_raw / "rl4rs_b_train.csv", items[0])
    for key in ("slate", "response", "history", "user_profile", "session_id", "timestamp"):
        assert torch.equal(getattr(whole, key), getattr(split, key)), key


def test_crlf_and_trailing_newlines_are_accepted(tmp_path: Path, rl4rs_raw: Path, items):
    text = (rl4rs_raw / "rl4rs_b_test.csv").read_text()
    path = tmp_path / "rl4rs_b_test.csv"
    path.write_bytes(text.replace("\n", "\r\n").encode() + b"\r\n\r\n")
    a = read_records(path, items[0])
    b = read_records(rl4rs_raw / "rl4rs_b_test.csv", items[0])
    assert torch.equal(a.slate, b.slate) and torch.equal(a.history, b.history)
    assert torch.equal(a.behavior_policy, b.behavior_policy)


def test_item_vectors_may_be_formatted_differently(tmp_path: Path, rl4rs_raw: Path, items):
    """The item_feature text need not repeat the table byte for byte: equal within 1e-3."""
    lines = (rl4rs_raw / "rl4rs_b_test.csv").read_text().splitlines()
    cells = lines[3].split("@")
    vectors = cells[7].split(";")
    values = [float(v) for v in vectors[4].split(",")]
    values[0] += 0.0004
    vectors[4] = ",".join(f"{v:.6f}" for v in values)
    cells[7] = ";".join(vectors)
    lines[3] = "@".join(cells)
    path = tmp_path / "rl4rs_b_test.csv"
    path.write_text("\n".join(lines))
    records = read_records(path, items[0])
    assert len(records) == 17


def test_zero_entries_in_history_are_dropped(tmp_path: Path, rl4rs_raw: Path, items):
    lines = (rl4rs_raw / "rl4rs_b_test.csv").read_text().splitlines()
    cells = lines[1].split("@")
    cells[5] = "0,5,0,7"
    lines[1] = "@".join(cells)
    path = tmp_path / "rl4rs_b_test.csv"
    path.write_text("\n".join(lines))
    records = read_records(path, items[0])
    assert records.history[0, -3:].tolist() == [0, 5, 7]
    assert records.history_lengths()[0].item() == 2


def test_prepare_writes_a_complete_dataset(rl4rs_prepared: Path, rl4rs_raw: Path, items):
    dataset = load_prepared(rl4rs_prepared)
    manifest = dataset.manifest
    assert manifest["source"] == "rl4rs"
    assert manifest["splits"] == {"train": {"records": 46}, "test": {"records": 17}}
    assert manifest["num_items"] == 283 and manifest["item_feature_dim"] == 40
    assert manifest["user_profile_dim"] == 42 and manifest["slate_size"] == 9
    assert "test" in manifest["split_recipe"] and "train" in manifest["split_recipe"]
    hashes = {f["name"]: f["sha256"] for f in manifest["source_files"]}
    for name in ("item_info.csv", "rl4rs_b_train.csv", "rl4rs_b_test.csv"):
        assert hashes[name] == hashlib.sha256((rl4rs_raw / name).read_bytes()).hexdigest()
    # the published checksums of the fragment (tests/fixtures/rl4rs/SOURCE.md)
    assert hashes["rl4rs_b_train.csv"].startswith("5da1b783cdaa")
    assert torch.equal(dataset.items.features, items[0].features)
    meta = load_arrays(rl4rs_prepared / manifest["item_meta"])
    assert np.array_equal(meta["location"], items[1]["location"])
    train = read_records(rl4rs_raw / "rl4rs_b_train.csv", items[0])
    assert torch.equal(dataset.split("train").slate, train.slate)
    assert torch.equal(dataset.split("train").user_profile, train.user_profile)


def test_prepare_options(tmp_path: Path, rl4rs_raw: Path):
    from hsrl.errors import ConfigError

    out = prepare_rl4rs(
        rl4rs_raw, tmp_path / "p", seed=0, overwrite=False, options={"history_length": "20"}
    )
    assert load_prepared(out).split("test").history.shape == (17, 20)
    with pytest.raises(ConfigError, match="unknown option"):
        prepare_rl4rs(
            rl4rs_raw, tmp_path / "q", seed=0, overwrite=False, options={"slate_size": "9"}
        )
    with pytest.raises(ConfigError, match="integer"):
        prepare_rl4rs(
            rl4rs_raw, tmp_path / "q", seed=0, overwrite=False, options={"history_length": "x"}
        )


def test_prepare_refuses_to_overwrite_unless_asked(tmp_path: Path, rl4rs_raw: Path):
    from hsrl.errors import HsrlError

    out = prepare_rl4rs(rl4rs_raw, tmp_path / "p", seed=0, overwrite=False, options={})
    with pytest.raises(HsrlError, match="already exists"):
        prepare_rl4rs(rl4rs_raw, out, seed=0, overwrite=False, options={})
    prepare_rl4rs(rl4rs_raw, out, seed=0, overwrite=True, options={})
    assert len(load_prepared(out).split("train")) == 46
