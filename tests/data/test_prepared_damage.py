"""A damaged prepared folder is refused with a one-line error naming the file and what is
wrong, never a traceback and never silently reinterpreted (issue: attack hardening)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from hsrl.cli import main
from hsrl.data.prepared import load_prepared


@pytest.fixture
def damaged(tmp_path, rl4rs_prepared):
    copy = tmp_path / "prepared"
    shutil.copytree(rl4rs_prepared, copy)
    return copy


def _edit_split(folder, name, **changes):
    path = folder / f"{name}.npz"
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays.update({k: f(arrays[k]) for k, f in changes.items()})
    np.savez(path, **arrays)


def _set_first(value, dtype=None):
    def change(array):
        array = array.astype(dtype) if dtype is not None else array.copy()
        array.flat[0] = value
        return array

    return change


@pytest.mark.parametrize(
    "change, message",
    [
        ({"slate": _set_first(-7)}, "slate holds item ids outside"),
        ({"slate": _set_first(10**6)}, "slate holds item ids outside"),
        ({"history": _set_first(-1)}, "history holds item ids outside"),
        ({"slate": _set_first(0)}, "padding id 0"),
        ({"response": _set_first(7)}, "other than 0 and 1"),
        ({"slate": _set_first(1.5, np.float64)}, "not integers"),
        ({"user_profile": _set_first(np.nan)}, "NaN or inf"),
        ({"user_profile": _set_first(1j, np.complex64)}, "not reals"),
    ],
)
def test_damaged_records_are_refused(damaged, capsys, change, message):
    _edit_split(damaged, "train", **change)
    with pytest.raises(Exception, match=message):
        load_prepared(damaged)
    assert main(["data", "info", str(damaged), "--json"]) == 1
    err = capsys.readouterr().err
    assert message in err and "train.npz" in err and err.count("\n") == 1


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("num_items", None, "'num_items' must be a positive integer"),
        ("num_items", "283", "'num_items' must be a positive integer"),
        ("slate_size", 0, "'slate_size' must be a positive integer"),
        ("splits", {}, "'splits' must name at least one split"),
        ("splits", {"../x": {"records": 1}}, "not a plain name"),
        ("splits", {"train": {"records": -1}}, "splits.train.records"),
    ],
)
def test_a_damaged_manifest_names_the_field(damaged, capsys, field, value, message):
    manifest = json.loads((damaged / "manifest.json").read_text())
    if value is None:
        del manifest[field]
    else:
        manifest[field] = value
    (damaged / "manifest.json").write_text(json.dumps(manifest))
    assert main(["data", "info", str(damaged), "--json"]) == 1
    err = capsys.readouterr().err
    assert message in err and "manifest.json" in err and err.count("\n") == 1


def test_nan_item_features_are_refused(damaged, capsys):
    path = damaged / "items.npz"
    with np.load(path) as npz:
        features = npz["item_features"].copy()
    features[1, 0] = np.nan
    np.savez(path, item_features=features)
    assert main(["data", "info", str(damaged)]) == 1
    err = capsys.readouterr().err
    assert "items.npz" in err and "NaN or inf" in err
