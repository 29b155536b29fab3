"""The built-in dataset: generator output, calibration, raw format, ground-truth API."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hsrl.data import load_prepared, prepare
from hsrl.data.builtin import (
    GROUND_TRUTH_FILE,
    ITEM_FILE,
    PORTRAIT_DIM,
    RAW_HEADER,
    TEST_FILE,
    TRAIN_FILE,
    GroundTruthUserModel,
    format_rows,
    generate_raw,
    load_real_catalogue,
    synthetic_catalogue,
)
from hsrl.data.rl4rs import read_item_table, read_records
from hsrl.errors import ConfigError, DataError, HsrlError
from hsrl.io import load_arrays, save_arrays


def read_raw_lines(path):
    lines = path.read_text(encoding="ascii").splitlines()
    return lines[0], [line.split("@") for line in lines[1:]]


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    """About 3,600 records from 600 users on the real item table."""
    out = tmp_path_factory.mktemp("builtin") / "raw"
    info = generate_raw(out, num_users=600, seed=11)
    return out, info


@pytest.fixture(scope="module")
def model(raw):
    return GroundTruthUserModel.load(raw[0] / GROUND_TRUTH_FILE)


def test_same_seed_gives_identical_files_and_another_seed_does_not(tmp_path):
    first = generate_raw(tmp_path / "a", num_users=40, seed=3)
    generate_raw(tmp_path / "b", num_users=40, seed=3)
    generate_raw(tmp_path / "c", num_users=40, seed=4)
    for name in (ITEM_FILE, TRAIN_FILE, TEST_FILE):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert (tmp_path / "a" / TRAIN_FILE).read_bytes() != (tmp_path / "c" / TRAIN_FILE).read_bytes()
    a, b = (
        load_arrays(tmp_path / "a" / GROUND_TRUTH_FILE),
        load_arrays(tmp_path / "b" / GROUND_TRUTH_FILE),
    )
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    assert first["records"]["train"] > 0 and first["records"]["test"] > 0
    with pytest.raises(HsrlError, match="already exists"):
        generate_raw(tmp_path / "a", num_users=40, seed=3)


def test_logged_click_rates_match_the_real_fragment(raw):
    out, info = raw
    responses = np.array(
        [
            [int(v) for v in cells[4].split(",")]
            for name in (TRAIN_FILE, TEST_FILE)
            for cells in read_raw_lines(out / name)[1]
        ]
    )  # (R, 9)
    assert 3000 <= len(responses) <= 6000
    slot = responses.mean(axis=0)
    assert abs(responses.mean() - 0.70) <= 0.05
    assert abs(slot[0] - 0.87) <= 0.08
    assert abs(slot[8] - 0.32) <= 0.08
    assert slot[0] > slot[4] > slot[8]
    assert np.allclose(slot, info["slot_click_rate"], atol=1e-3)


def test_history_lengths_range_from_empty_to_about_sixty(raw):
    out, _ = raw
    _, rows = read_raw_lines(out / TRAIN_FILE)
    lengths = np.array([0 if c[5] == "0" else len(c[5].split(",")) for c in rows])
    assert lengths.min() == 0 and 50 <= lengths.max() <= 60
    assert 20 <= lengths.mean() <= 50


def test_raw_files_have_the_rl4rs_layout(raw):
    out, _ = raw
    catalogue = load_real_catalogue()
    assert (out / ITEM_FILE).read_bytes() == catalogue.source.read_bytes()
    header, rows = read_raw_lines(out / TRAIN_FILE)
    assert header == RAW_HEADER
    for cells in rows[:300]:
        assert len(cells) == 9
        slate = [int(v) for v in cells[3].split(",")]
        assert len(slate) == 9 and len(set(slate)) == 9
        # page rows: slots 1-3 location 1, 4-6 location 2, 7-9 location 3
        assert [int(catalogue.location[i]) for i in slate] == [1, 1, 1, 2, 2, 2, 3, 3, 3]
        assert set(cells[4].split(",")) <= {"0", "1"}
        assert cells[7].split(";") == [catalogue.vec_text[i] for i in slate]
        portrait = cells[6].split(",")
        assert len(portrait) == PORTRAIT_DIM
        assert all(v.isdigit() and int(v) >= 1000 for v in portrait[:10])
        assert all(float(v) >= 0 for v in portrait[10:])
        assert cells[8] == "1"
    # sessions are numbered in file order and pages count from 1 in each session
    sessions = [(int(c[1]), int(c[2])) for c in rows]
    assert sessions == sorted(sessions) and min(s for _, s in sessions) == 1


def test_raw_files_round_trip_through_the_rl4rs_reader(raw, model):
    out, _ = raw
    items, meta = read_item_table(out / ITEM_FILE)
    assert torch.equal(items.features, model.item_features)
    assert torch.equal(torch.from_numpy(meta["location"]), model.item_location)
    records = read_records(out / TRAIN_FILE, items, history_length=60)
    _, rows = read_raw_lines(out / TRAIN_FILE)
    assert len(records) == len(rows)
    slate = torch.tensor([[int(v) for v in c[3].split(",")] for c in rows])
    assert torch.equal(records.slate, slate)
    # the portrait in the file is the true user's, exactly (the reader applies log1p)
    user = model.user_of_session(records.session_id)
    expected = torch.log1p(model.user_profile(user).double()).float()
    assert torch.allclose(records.user_profile, expected, rtol=1e-4, atol=1e-5)
    # history: a page's history is the previous history plus that page's clicks
    same_session = (records.session_id[1:] == records.session_id[:-1]).nonzero().squeeze(1)
    for row in same_session[:200].tolist():
        clicked = records.slate[row][records.response[row] > 0]
        before, after = records.history[row], records.history[row + 1]
        joined = torch.cat((before[before > 0], clicked))[-60:]
        assert torch.equal(after[after > 0], joined)


def test_sessions_map_to_one_user_each_and_users_are_split(raw, model):
    out, info = raw
    items, _ = read_item_table(out / ITEM_FILE)
    train = read_records(out / TRAIN_FILE, items)
    test = read_records(out / TEST_FILE, items)
    train_users = set(model.user_of_session(train.session_id).tolist())
    test_users = set(model.user_of_session(test.session_id).tolist())
    assert not train_users & test_users
    assert len(train_users) == info["users"]["train"] and len(test_users) == info["users"]["test"]
    assert model.num_sessions == info["sessions"]
    with pytest.raises(HsrlError, match="session id"):
        model.user_of_session(torch.tensor([model.num_sessions + 1]))


def test_ground_truth_api_shapes_and_save_load(tmp_path, model):
    user = torch.tensor([0, 5, 9])
    history = torch.zeros(3, 50, dtype=torch.long)
    history[:, -4:] = torch.tensor([3, 50, 160, 7])
    slate = torch.tensor([[1, 2, 3, 40, 41, 42, 150, 151, 152]] * 3)
    prob = model.click_probability(user, history, slate)
    assert prob.shape == (3, 9) and prob.dtype == torch.float32
    assert bool(((prob > 0) & (prob < 1)).all())
    assert model.user_profile(user).shape == (3, PORTRAIT_DIM)
    assert model.item_features.shape == (284, 40) and model.num_users == 600
    # slate positions matter only through the slot bias, which never increases
    assert bool((model.slot_bias[1:] <= model.slot_bias[:-1]).all())
    # any history width works: only the latest entries count
    wide = torch.cat((torch.zeros(3, 30, dtype=torch.long), history), dim=1)
    assert torch.allclose(model.click_probability(user, wide, slate), prob)
    model.save(tmp_path / "gt.npz")
    again = GroundTruthUserModel.load(tmp_path / "gt.npz", device="cpu")
    assert torch.equal(again.click_probability(user, history, slate), prob)
    assert torch.equal(model.to("cpu").click_probability(user, history, slate), prob)


def test_loading_a_damaged_ground_truth_names_the_file(tmp_path, model):
    arrays = model.to_arrays()
    del arrays["user_latent"]
    save_arrays(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DataError, match="bad.npz.*user_latent"):
        GroundTruthUserModel.load(tmp_path / "bad.npz")
    arrays = model.to_arrays()
    arrays["portrait"] = arrays["portrait"][:, :10]
    save_arrays(tmp_path / "bad2.npz", **arrays)
    with pytest.raises(DataError, match="portrait"):
        GroundTruthUserModel.load(tmp_path / "bad2.npz")


def test_similar_recent_clicks_lower_the_click_probability(model):
    """Fatigue: the same candidate is less likely clicked after a run of similar items."""
    direction = model.item_direction[1:]  # (N, D)
    candidate = 100
    cosine = direction @ direction[candidate - 1]  # (N,)
    similar = cosine.argsort(descending=True)[:20] + 1  # the item itself and its neighbours
    varied = cosine.argsort()[:20] + 1
    users = torch.arange(50)
    slate = torch.full((50, 1), candidate)
    empty = torch.zeros(50, 20, dtype=torch.long)
    p_empty = model.click_probability(users, empty, slate)
    p_similar = model.click_probability(users, similar.expand(50, -1), slate)
    p_varied = model.click_probability(users, varied.expand(50, -1), slate)
    assert bool((p_similar < p_varied).all()) and bool((p_similar < p_empty).all())
    item_fatigue, boredom = model.fatigue(similar.expand(50, -1), slate)
    assert bool((item_fatigue > 0.25).all()) and bool((boredom > 0.5).all())
    # a monotone history lowers every item, a varied one much less
    other = torch.full((50, 1), int(varied[0]))
    assert bool((model.click_probability(users, similar.expand(50, -1), other) < p_empty).all())


def test_with_items_scores_new_items_from_their_features(model):
    extra = torch.randn(5, 40)
    bigger = model.with_items(torch.cat((model.item_features, extra)))
    assert bigger.num_items == model.num_items + 5 and bigger.num_users == model.num_users
    user = torch.tensor([1, 2])
    history = torch.tensor([[0, 0, 4, 5], [0, 0, 0, 9]])
    old = torch.tensor([[1, 2, 3], [4, 5, 6]])
    assert torch.allclose(
        bigger.click_probability(user, history, old), model.click_probability(user, history, old)
    )
    new = torch.tensor([[284, 285, 286], [287, 288, 1]])
    assert bigger.click_probability(user, history, new).shape == (2, 3)
    with pytest.raises(HsrlError, match="row 0"):
        model.with_items(torch.ones(10, 40))


def test_numbers_are_written_like_the_real_item_table():
    values = np.array([[0.0, -0.0, 1e-5, -1e-5, 0.5, -0.50004, 12.3456, -9.99999, 1.8061]])
    assert format_rows(values, 4) == ["0,0,0,0,0.5,-0.5,12.3456,-10,1.8061"]
    assert format_rows(values[:, 4:6], 0, " ") == ["0 -1"]
    rng = np.random.default_rng(0)
    values = rng.normal(size=(500, 6)) * np.array([1, 10, 1000, 0.01, 1e-3, 5])
    parsed = np.array([[float(v) for v in line.split(",")] for line in format_rows(values, 4)])
    assert np.allclose(parsed, np.round(values, 4), rtol=0, atol=1e-9)
    real = load_real_catalogue()
    written = ",".join(format_rows(real.features[1:], 4)).split(",")
    original = ",".join(real.vec_text[1:]).split(",")
    assert [float(a) for a in written] == [float(b) for b in original]


def test_synthetic_catalogue_scales_up_with_real_proportions(tmp_path):
    catalogue = synthetic_catalogue(10_000, seed=2)
    assert catalogue.features.shape == (10_001, 40)
    sizes = np.bincount(catalogue.location[1:], minlength=4)[1:]
    assert np.allclose(sizes / 10_000, np.array([39, 108, 136]) / 283, atol=1e-3)
    assert (np.diff(catalogue.location[1:]) >= 0).all()  # ids grouped by location
    info = generate_raw(tmp_path / "raw", num_users=40, num_items=10_000, seed=2)
    assert info["num_items"] == 10_000
    items, meta = read_item_table(tmp_path / "raw" / ITEM_FILE)
    assert torch.allclose(items.features, torch.from_numpy(catalogue.features), atol=1e-6)
    assert np.array_equal(meta["location"], catalogue.location)
    records = read_records(tmp_path / "raw" / TRAIN_FILE, items)
    slot_location = torch.from_numpy(meta["location"])[records.slate]
    assert torch.equal(
        slot_location, torch.tensor([1, 1, 1, 2, 2, 2, 3, 3, 3]).expand_as(slot_location)
    )


def test_prepare_builtin_writes_a_dataset_with_its_ground_truth(tmp_path):
    options = {"num_users": "150", "sessions_per_user": "2"}
    first = prepare("builtin", raw=None, out=tmp_path / "a", seed=7, options=options)
    prepare("builtin", raw=None, out=tmp_path / "b", seed=7, options=options)
    dataset = load_prepared(first)
    assert dataset.source == "builtin" and set(dataset.splits) == {"train", "val", "test"}
    assert dataset.manifest["generator"]["seed"] == 7
    truth = GroundTruthUserModel.load(dataset.ground_truth_path)
    assert torch.equal(truth.item_features, dataset.items.features)
    val_users = set(truth.user_of_session(dataset.split("val").session_id).tolist())
    train_users = set(truth.user_of_session(dataset.split("train").session_id).tolist())
    assert val_users and not val_users & train_users
    for name in ("items.npz", "train.npz", "val.npz", "test.npz", GROUND_TRUTH_FILE):
        a, b = load_arrays(tmp_path / "a" / name), load_arrays(tmp_path / "b" / name)
        assert all(np.array_equal(a[k], b[k]) for k in a), name
    with pytest.raises(ConfigError, match="omit --raw"):
        prepare("builtin", raw=tmp_path, out=tmp_path / "c", seed=0)
    with pytest.raises(ConfigError, match="unknown option"):
        prepare("builtin", raw=None, out=tmp_path / "c", seed=0, options={"users": "5"})
    with pytest.raises(HsrlError, match="already exists"):
        prepare("builtin", raw=None, out=first, seed=7, options=options)
