"""The MovieLens-1M recipe, checked by hand on a tiny folder in the official .dat format.

MovieLens may not be redistributed, so the test writes its own three users and 14 movies.
With slate_size=2, threshold=4, history_length=3 the expected episodes are (item ids are the
rated movies re-indexed in ascending MovieID: 1->1 2->2 3->3 5->4 7->5 10->6 11->7 13->8
17->9 19->10 21->11 24->12 29->13; movie 99 is never rated and is left out):

user 1 (F, age 1, occupation 10), ratings in (time, movie) order:
    movie 1 (3, t100), 10 (5, t100), 3 (4), 2 (2), 29 (5), 5 (4), 7 (1, dropped tail)
    slates [1, 6] [0, 1] | [3, 2] [1, 0] | [13, 4] [1, 1]; histories [] | [6] | [6, 3]
    3 slates: train, val, test
user 2 (M, 56, 16): movie 11 (4), 1 (5), 13 (5), 17 (3), 19 (4, dropped)
    slates [7, 1] [1, 1] | [8, 9] [1, 0]; histories [] | [7, 1]; 2 slates: both train
user 3 (M, 25, 15): movie 21 (2), 24 (4), 29 (1, dropped)
    slate [11, 12] [0, 1]; 1 slate: train
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from hsrl.cli import main
from hsrl.data.ml1m import (
    GENRES,
    build_episodes,
    prepare_ml1m,
    rating_embedding,
    read_ratings,
    truncated_svd,
)
from hsrl.data.prepared import load_prepared
from hsrl.errors import ConfigError, DataError

MOVIES = """1::Toy Story (1995)::Animation|Children's|Comedy
2::Jumanji (1995)::Adventure|Children's|Fantasy
3::Grumpier Old Men (1995)::Comedy|Romance
5::Father of the Bride Part II (1995)::Comedy
7::Sabrina (1995)::Comedy|Romance
10::GoldenEye (1995)::Action|Adventure|Thriller
11::American President, The (1995)::Comedy|Drama|Romance
13::Balto (1995)::Animation|Children's
17::Sense and Sensibility (1995)::Drama|Romance
19::Ace Ventura: When Nature Calls (1995)::Comedy
21::Get Shorty (1995)::Action|Comedy|Drama
24::Powder (1995)::Drama|Sci-Fi
29::Cit\u00e9 des enfants perdus, La (1995)::Adventure|Sci-Fi
99::Never Rated (2000)::Documentary
"""
USERS = """1::F::1::10::48067
2::M::56::16::70072
3::M::25::15::55117
4::F::45::7::02460
"""
# user, movie, rating, timestamp; deliberately not in time order
RATINGS = [
    (2, 11, 4, 50),
    (1, 10, 5, 100),
    (3, 29, 1, 30),
    (1, 1, 3, 100),
    (1, 3, 4, 105),
    (2, 1, 5, 55),
    (1, 2, 2, 110),
    (3, 21, 2, 10),
    (1, 29, 5, 120),
    (2, 13, 5, 60),
    (1, 5, 4, 130),
    (2, 17, 3, 70),
    (1, 7, 1, 140),
    (3, 24, 4, 20),
    (2, 19, 4, 80),
]
OPTIONS = {"slate_size": "2", "threshold": "4", "history_length": "3", "emb_dim": "2"}


def write_ml1m(folder: Path, ratings=RATINGS, movies=MOVIES, users=USERS) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "movies.dat").write_bytes(movies.encode("latin-1"))
    (folder / "users.dat").write_bytes(users.encode("latin-1"))
    text = "".join(f"{u}::{m}::{r}::{t}\n" for u, m, r, t in ratings)
    (folder / "ratings.dat").write_bytes(text.encode("latin-1") if isinstance(text, str) else text)
    return folder


@pytest.fixture
def ml1m_raw(tmp_path: Path) -> Path:
    return write_ml1m(tmp_path / "ml-1m")


@pytest.fixture
def prepared(ml1m_raw: Path, tmp_path: Path):
    out = prepare_ml1m(ml1m_raw, tmp_path / "prepared", seed=0, overwrite=False, options=OPTIONS)
    return load_prepared(out)


def test_splits_slates_responses_histories(prepared):
    train, val, test = prepared.split("train"), prepared.split("val"), prepared.split("test")
    assert (len(train), len(val), len(test)) == (4, 1, 1)
    assert train.slate.tolist() == [[1, 6], [7, 1], [8, 9], [11, 12]]
    assert train.response.tolist() == [[0, 1], [1, 1], [1, 0], [0, 1]]
    assert train.history.tolist() == [[0, 0, 0], [0, 0, 0], [0, 7, 1], [0, 0, 0]]
    assert train.session_id.tolist() == [1, 2, 2, 3]  # user index
    assert train.sequence_id.tolist() == [1, 1, 2, 1]
    assert train.timestamp.tolist() == [100, 50, 60, 10]
    assert val.slate.tolist() == [[3, 2]] and val.response.tolist() == [[1, 0]]
    assert val.history.tolist() == [[0, 0, 6]] and val.timestamp.tolist() == [105]
    assert test.slate.tolist() == [[13, 4]] and test.response.tolist() == [[1, 1]]
    assert test.history.tolist() == [[0, 6, 3]] and test.sequence_id.tolist() == [3]
    assert prepared.manifest["num_users"] == 3


def test_crlf_files_read_the_same(ml1m_raw: Path, tmp_path: Path, prepared):
    for name in ("ratings.dat", "users.dat", "movies.dat"):
        path = ml1m_raw / name
        path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))
    out = prepare_ml1m(ml1m_raw, tmp_path / "crlf", seed=0, overwrite=False, options=OPTIONS)
    again = load_prepared(out)
    assert torch.equal(again.split("train").slate, prepared.split("train").slate)
    assert torch.equal(again.items.features, prepared.items.features)


def test_user_features_are_one_hot(prepared):
    profile = prepared.split("train").user_profile  # rows: users 1, 2, 2, 3
    assert profile.shape == (4, 30)
    assert torch.all(profile.sum(dim=1) == 3)
    assert torch.nonzero(profile[0]).flatten().tolist() == [0, 2, 19]  # F, age 1, occ 10
    assert torch.nonzero(profile[1]).flatten().tolist() == [1, 8, 25]  # M, age 56, occ 16
    assert torch.nonzero(profile[3]).flatten().tolist() == [1, 4, 24]  # M, age 25, occ 15


def test_item_features_genres_and_embedding(prepared):
    features = prepared.items.features
    assert features.shape == (14, 18 + 2)
    assert torch.all(features[0] == 0)
    genres = features[:, :18]
    on = lambda item: [GENRES[j] for j in torch.nonzero(genres[item]).flatten().tolist()]  # noqa: E731
    assert on(1) == ["Animation", "Children's", "Comedy"]
    assert on(13) == ["Adventure", "Sci-Fi"]  # movie 29 (latin-1 title)
    assert on(6) == ["Action", "Adventure", "Thriller"]  # movie 10
    embedding = features[:, 18:]
    # items with no rating inside a train slate have no embedding: 2, 3, 4, 5, 10, 13
    assert torch.all(embedding[[2, 3, 4, 5, 10, 13]] == 0)
    assert torch.all(embedding[[1, 6, 7, 8, 9, 11, 12]].abs().sum(dim=1) > 0)
    assert embedding[1:].pow(2).mean().sqrt().item() == pytest.approx(1.0, rel=1e-5)


def test_embedding_is_the_documented_svd(ml1m_raw: Path):
    """V * sqrt(s) of the user-centred train matrix, RMS-normalised: recomputed densely."""
    ratings = read_ratings(ml1m_raw / "ratings.dat")
    episodes = build_episodes(ratings, slate_size=2, threshold=4, history_length=3)
    train = episodes["rating_split"] == 0
    user, item = episodes["rating_user"][train], episodes["rating_item"][train]
    value = episodes["rating_value"][train].astype(float)
    dense = np.zeros((4, 14))
    dense[user, item] = value
    for u in (1, 2, 3):
        observed = dense[u] != 0
        dense[u, observed] -= dense[u, observed].mean()
    _, s, vt = np.linalg.svd(dense)
    expected = vt[:2].T * np.sqrt(s[:2])
    expected *= np.sign(expected[np.argmax(np.abs(vt[:2]), axis=1), [0, 1]])
    expected /= np.sqrt(np.mean(expected[1:] ** 2))
    got = rating_embedding(user, item, value, num_users=3, num_items=13, dim=2, seed=0)
    assert np.allclose(got, expected, atol=1e-5)


def test_truncated_svd_matches_numpy():
    rng = np.random.default_rng(1)
    dense = np.where(rng.random((40, 30)) < 0.3, rng.normal(size=(40, 30)), 0.0)
    rows, cols = np.nonzero(dense)
    u, s, vt = truncated_svd(rows, cols, dense[rows, cols], shape=(40, 30), rank=30, seed=3)
    assert np.allclose(s, np.linalg.svd(dense, compute_uv=False), atol=1e-8)
    assert np.allclose((u * s) @ vt, dense, atol=1e-8)
    _, s5, _ = truncated_svd(rows, cols, dense[rows, cols], shape=(40, 30), rank=5, seed=3)
    assert np.allclose(s5, s[:5], rtol=1e-3)


def test_seeded_and_deterministic(ml1m_raw: Path, tmp_path: Path, prepared):
    again = prepare_ml1m(ml1m_raw, tmp_path / "again", seed=0, overwrite=False, options=OPTIONS)
    assert torch.equal(load_prepared(again).items.features, prepared.items.features)


def test_default_options_and_split_rounding(tmp_path: Path):
    """K = 10: a user with 25 slates gets 3 test, 3 val, 19 train; 2 slates: train only."""
    rng = np.random.default_rng(0)
    movies = "".join(f"{m}::Movie {m} (1999)::Drama\n" for m in range(1, 301))
    users = "".join(f"{u}::M::18::{u % 21}::00000\n" for u in range(1, 21))
    ratings = [(1, m, int(rng.integers(1, 6)), 1000 + m) for m in range(1, 256)]
    ratings += [(2, m, 5, 5000 + m) for m in range(1, 26)]
    ratings += [(u, m, int(rng.integers(1, 6)), m) for u in range(3, 21) for m in range(u, u + 10)]
    raw = write_ml1m(tmp_path / "raw", ratings=ratings, movies=movies, users=users)
    dataset = load_prepared(prepare_ml1m(raw, tmp_path / "p", seed=0, overwrite=False, options={}))
    train, val, test = (dataset.split(s) for s in ("train", "val", "test"))
    assert dataset.items.feature_dim == 18 + 16 and dataset.manifest["slate_size"] == 10
    assert (train.session_id == 1).sum() == 19 and (train.session_id == 2).sum() == 2
    assert len(train) == 19 + 2 + 18  # users 3..20: one slate each, in train
    assert val.session_id.tolist() == [1, 1, 1] and val.sequence_id.tolist() == [20, 21, 22]
    assert test.sequence_id.tolist() == [23, 24, 25]
    assert dataset.manifest["history_length"] == 50
    assert train.history_lengths().max() <= 50


BAD_CASES = [
    ("ratings.dat", "1::1::5\n", "expected 4 '::'-separated fields", 1),
    ("ratings.dat", "1::1::5::100\n1::2::6::101\n", "Rating 6 is not in 1..5", 2),
    ("ratings.dat", "1::1::5::100\n1::x::4::101\n", "MovieID 'x' is not an integer", 2),
    ("ratings.dat", "1::1::5::100\n1::2::4.5::101\n", "Rating '4.5' is not an integer", 2),
    ("ratings.dat", "1::1::5::100\n1,2,4,101\n", "expected 4 '::'-separated fields", 2),
    ("ratings.dat", "1::1::5::100\n1::1::4::101\n", "user 1 rates movie 1 a second time", 2),
    (
        "ratings.dat",
        "1::1::5::100\n2::77::4::101\n",
        "movie 77 is rated but not listed in movies.dat",
        2,
    ),
    (
        "ratings.dat",
        "1::1::5::100\n9::1::4::101\n",
        "user 9 is rated but not listed in users.dat",
        2,
    ),
    ("ratings.dat", "", "the file is empty", 1),
    ("ratings.dat", "1::1::5::100\n1::2::4::1" + "0" * 30 + "\n", "Timestamp", 2),
    ("ratings.dat", "1::1::5::100\n1::2::4::-5\n", "Timestamp", 2),
    ("users.dat", "1::X::1::10::48067\n", "Gender 'X' is not F or M", 1),
    ("users.dat", "1::F::1::10::1\n2::M::30::1::2\n", "Age '30' is not one of the buckets", 2),
    ("users.dat", "1::F::1::10::1\n2::M::18::21::2\n", "Occupation '21' is not in 0..20", 2),
    ("users.dat", "1::F::1::10\n", "expected 5 '::'-separated fields", 1),
    ("users.dat", "1::F::1::10::1\n1::M::18::2::2\n", "UserID 1 appears twice", 2),
    ("movies.dat", "1::Toy Story (1995)::Animation|Kids\n", "unknown genre 'Kids'", 1),
    ("movies.dat", "1::Toy Story (1995)\n", "expected 3 '::'-separated fields", 1),
    ("movies.dat", "a::Toy Story (1995)::Comedy\n", "MovieID 'a' is not a positive integer", 1),
]


@pytest.mark.parametrize(("file", "content", "expect", "line"), BAD_CASES)
def test_bad_input(ml1m_raw: Path, tmp_path: Path, capsys, file, content, expect, line):
    (ml1m_raw / file).write_bytes(content.encode("latin-1"))
    out = tmp_path / "out"
    with pytest.raises(DataError) as info:
        prepare_ml1m(ml1m_raw, out, seed=0, overwrite=False, options=OPTIONS)
    assert info.value.path.name == file and info.value.line == line
    assert expect in info.value.problem, str(info.value)
    args = ["data", "prepare", "ml1m", "--raw", str(ml1m_raw), "--out", str(out)]
    assert main(args + [f"--option={k}={v}" for k, v in OPTIONS.items()]) != 0
    err = capsys.readouterr().err
    assert file in err and f"line {line}" in err and expect in err
    assert not out.exists()


def test_missing_file_and_bad_options(ml1m_raw: Path, tmp_path: Path):
    with pytest.raises(ConfigError, match="unknown option"):
        prepare_ml1m(ml1m_raw, tmp_path / "o", seed=0, overwrite=False, options={"k": "3"})
    with pytest.raises(ConfigError, match="threshold"):
        prepare_ml1m(ml1m_raw, tmp_path / "o", seed=0, overwrite=False, options={"threshold": "6"})
    with pytest.raises(ConfigError, match="emb_dim"):
        prepare_ml1m(
            ml1m_raw, tmp_path / "o", seed=0, overwrite=False, options={**OPTIONS, "emb_dim": "50"}
        )
    with pytest.raises(DataError, match="no user has 10 ratings"):
        prepare_ml1m(ml1m_raw, tmp_path / "o", seed=0, overwrite=False, options={})
    (ml1m_raw / "users.dat").unlink()
    with pytest.raises(DataError, match="file not found"):
        prepare_ml1m(ml1m_raw, tmp_path / "o", seed=0, overwrite=False, options=OPTIONS)
    assert not (tmp_path / "o").exists()
