"""The processed ML1M format of the HAC/HSRL reference, on a tiny folder written here."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from hsrl.cli import main
from hsrl.data.ml1m_processed import COLUMNS, prepare_ml1m_processed
from hsrl.data.prepared import load_prepared
from hsrl.errors import DataError

HEADER = "\t".join(COLUMNS)
# user_ID slate_of_items user_clicks user_mid user_likes user_click_history user_mid_history
# user_like_history sequence_id
TRAIN = [
    "1\t[1, 2, 3]\t[1, 0, 0]\t[1, 1, 0]\t[0, 0, 0]\t[]\t[]\t[]\t0",
    "1\t[4,5,6]\t[0, 0, 1]\t[0, 0, 1]\t[0, 0, 0]\t[1]\t[1, 2]\t[]\t1",
    "3\t[ 6, 1, 2 ]\t[1, 1, 1]\t[1, 1, 1]\t[1, 0, 0]\t[1, 6]\t[1, 2, 6, 0, 3]\t[2]\t0",
]
TEST = [
    "2\t[2, 4, 6]\t[0, 1, 0]\t[0, 1, 0]\t[0, 0, 0]\t[5]\t[5, 6]\t[]\t0",
    "0\t[3, 3, 5]\t[0, 0, 0]\t[0, 0, 0]\t[0, 0, 0]\t[]\t[]\t[]\t7",
]


def write_processed(folder: Path, train=TRAIN, test=TEST, items=None, users=None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train.tsv").write_text("\n".join([HEADER, *train]) + "\n")
    (folder / "test.tsv").write_text("\n".join([HEADER, *test]) + "\n")
    if users is None:
        users = np.arange(12, dtype=np.float64).reshape(4, 3)  # users 0..3, 3 features
    if items is None:
        items = np.vstack([np.zeros(4), np.arange(1, 25).reshape(6, 4) / 10])  # items 1..6
    np.save(folder / "users_meta.npy", users)
    np.save(folder / "items_meta.npy", items)
    return folder


@pytest.fixture
def raw(tmp_path: Path) -> Path:
    return write_processed(tmp_path / "processed")


def test_reads_the_reference_columns(raw: Path, tmp_path: Path):
    out = prepare_ml1m_processed(
        raw, tmp_path / "p", seed=0, overwrite=False, options={"history_length": "3"}
    )
    dataset = load_prepared(out)
    train, test = dataset.split("train"), dataset.split("test")
    assert dataset.manifest["source"] == "ml1m-processed"
    assert train.slate.tolist() == [[1, 2, 3], [4, 5, 6], [6, 1, 2]]
    assert train.response.tolist() == [[1, 1, 0], [0, 0, 1], [1, 1, 1]]  # user_mid, not clicks
    assert train.history.tolist() == [[0, 0, 0], [0, 1, 2], [2, 6, 3]]  # last 3, zeros dropped
    assert train.session_id.tolist() == [1, 1, 3] and train.sequence_id.tolist() == [0, 1, 0]
    assert train.user_profile.tolist() == [[3, 4, 5], [3, 4, 5], [9, 10, 11]]  # users_meta rows
    assert test.slate.tolist() == [[2, 4, 6], [3, 3, 5]] and test.sequence_id.tolist() == [0, 7]
    assert test.user_profile[1].tolist() == [0, 1, 2]
    assert dataset.items.features.shape == (7, 4)
    assert dataset.items.features[2].tolist() == pytest.approx([0.5, 0.6, 0.7, 0.8])
    assert dataset.manifest["item_padding_row_replaced"] is False


def test_columns_in_another_order_and_padding_row(tmp_path: Path):
    order = [8, 0, 1, 2, 3, 4, 5, 6, 7]
    rows = ["\t".join(np.array(line.split("\t"))[order]) for line in TRAIN]
    folder = write_processed(tmp_path / "raw", items=np.ones((7, 4)))
    (folder / "train.tsv").write_text("\n".join(["\t".join(np.array(COLUMNS)[order]), *rows]))
    dataset = load_prepared(
        prepare_ml1m_processed(folder, tmp_path / "p", seed=0, overwrite=False, options={})
    )
    assert dataset.split("train").slate.tolist() == [[1, 2, 3], [4, 5, 6], [6, 1, 2]]
    assert torch.all(dataset.items.features[0] == 0)  # padding row forced to zeros
    assert dataset.manifest["item_padding_row_replaced"] is True


def _with(line: int, column: int, value: str) -> list[str]:
    rows = list(TRAIN)
    cells = rows[line].split("\t")
    cells[column] = value
    rows[line] = "\t".join(cells)
    return rows


BAD_TSV = [
    (_with(0, 1, "[1.5, 2, 3]"), 2, "element '1.5' is not an integer"),
    (_with(1, 1, "(4, 5, 6)"), 3, "column slate_of_items: '(4, 5, 6)' is not a list"),
    (_with(1, 6, "['a', 2]"), 3, "column user_mid_history: element \"'a'\" is not an integer"),
    (_with(2, 6, "[1, [2]]"), 4, "column user_mid_history: element '[2]' is not an integer"),
    (_with(0, 6, "[1,, 2]"), 2, "column user_mid_history: element '' is not an integer"),
    (_with(0, 6, "__import__('os')"), 2, "is not a list of integers"),
    (_with(1, 0, "9"), 3, "column user_ID: 9 has no row in users_meta.npy"),
    (_with(1, 0, "x"), 3, "column user_ID: 'x' is not an integer"),
    (_with(2, 1, "[6, 1, 7]"), 4, "item 7 has no row in items_meta.npy"),
    (_with(2, 1, "[6, 0, 1]"), 4, "item 0 has no row in items_meta.npy"),
    (_with(0, 3, "[1, 2, 0]"), 2, "column user_mid: value 2 is not 0 or 1"),
    (_with(0, 3, "[1, 1]"), 2, "column user_mid: 2 values for 3 slate items"),
    (_with(2, 6, "[1, 99]"), 4, "column user_mid_history: item 99 has no row"),
    (_with(1, 1, "[4, 5, 6, 1]"), 3, "4 items, but 3 on line 2"),
    ([TRAIN[0], TRAIN[1].replace("\t", " ", 1)], 3, "expected 9 tab-separated columns, found 8"),
    ([TRAIN[0], "", TRAIN[1]], 3, "empty line"),
]


@pytest.mark.parametrize(("rows", "line", "expect"), BAD_TSV)
def test_bad_rows(raw: Path, tmp_path: Path, capsys, rows, line, expect):
    (raw / "train.tsv").write_text("\n".join([HEADER, *rows]) + "\n")
    out = tmp_path / "out"
    with pytest.raises(DataError) as info:
        prepare_ml1m_processed(raw, out, seed=0, overwrite=False, options={})
    assert info.value.path.name == "train.tsv" and info.value.line == line, str(info.value)
    assert expect in info.value.problem, str(info.value)
    assert main(["data", "prepare", "ml1m-processed", "--raw", str(raw), "--out", str(out)]) != 0
    err = capsys.readouterr().err
    assert "train.tsv" in err and f"line {line}" in err
    assert not out.exists()


def test_bad_header_and_files(raw: Path, tmp_path: Path):
    out = tmp_path / "out"
    (raw / "test.tsv").write_text(HEADER.replace("user_mid\t", "user_mids\t") + "\n" + TEST[0])
    with pytest.raises(DataError, match="missing user_mid; unknown 'user_mids'"):
        prepare_ml1m_processed(raw, out, seed=0, overwrite=False, options={})
    (raw / "test.tsv").write_text(HEADER.replace("\t", ",") + "\n")
    with pytest.raises(DataError, match="wrong separator"):
        prepare_ml1m_processed(raw, out, seed=0, overwrite=False, options={})
    (raw / "test.tsv").write_text(HEADER)
    with pytest.raises(DataError, match="no records after the header"):
        prepare_ml1m_processed(raw, out, seed=0, overwrite=False, options={})
    write_processed(raw)
    np.save(raw / "users_meta.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match="users_meta.npy: not a readable .npy array"):
        prepare_ml1m_processed(raw, out, seed=0, overwrite=False, options={})
    np.save(raw / "users_meta.npy", np.array([[1.0], [np.nan]]))
    with pytest.raises(DataError, match="row 1 holds NaN"):
        prepare_ml1m_processed(raw, out, seed=0, overwrite=False, options={})
    np.save(raw / "users_meta.npy", np.zeros(5))
    with pytest.raises(DataError, match="must be a 2-D array"):
        prepare_ml1m_processed(raw, out, seed=0, overwrite=False, options={})
    (raw / "items_meta.npy").unlink()
    with pytest.raises(DataError, match="items_meta.npy: file not found"):
        prepare_ml1m_processed(raw, out, seed=0, overwrite=False, options={})
    assert not out.exists()


def _npy_with_shape(path: Path, shape: tuple[int, int]) -> None:
    """A real 3 x 2 float .npy whose header claims ``shape`` (the header keeps its length)."""
    np.save(path, np.ones((3, 2)))
    raw = path.read_bytes()
    claimed = raw.replace(b"'shape': (3, 2), }", f"'shape': {shape}, }}".encode())
    end = claimed.index(b"\n")
    extra = len(claimed) - len(raw)
    path.write_bytes(claimed[: end - extra] + claimed[end:])


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: np.savez(p.with_suffix(".tmp.npz"), a=np.ones(3))
         or p.with_suffix(".tmp.npz").rename(p), "a .npz archive, not a .npy array"),
        (lambda p: np.save(p, np.ones((3, 2), dtype=np.complex64)), "not complex64"),
        (lambda p: _npy_with_shape(p, (99999, 9999)), "the header claims shape (99999, 9999)"),
        (lambda p: p.write_bytes(b"hello"), "not a .npy array file"),
    ],
)  # fmt: skip
def test_meta_arrays_that_are_not_plain_real_npy_are_refused(tmp_path: Path, make, message):
    from hsrl.data.ml1m_processed import load_meta

    path = tmp_path / "users_meta.npy"
    make(path)
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_meta(path, "users")
