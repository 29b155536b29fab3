"""Reader of MovieLens-1M (the official ``ml-1m`` folder) into slate episodes.

MovieLens may not be redistributed, so the package only reads the user's own copy:
``ratings.dat`` (``UserID::MovieID::Rating::Timestamp``), ``users.dat``
(``UserID::Gender::Age::Occupation::Zip-code``) and ``movies.dat`` (``MovieID::Title::Genres``),
``::``-separated, latin-1. The recipe (docs/data.md states it with an example) is deterministic:

1. Items: the movies that have at least one rating, re-indexed 1..N in ascending MovieID.
   Users: the users that have ratings, re-indexed 1..U in ascending UserID.
2. Each user's ratings are ordered by (timestamp, MovieID).
3. Slates: consecutive, non-overlapping windows of ``slate_size`` (K, default 10) ratings in
   that order; an incomplete last window is dropped. Response of an item: rating >=
   ``threshold`` (default 4).
4. History of a slate: the user's positively-rated items (rating >= threshold) that come before
   the slate in the user's order, the last ``history_length`` (default 50), oldest first.
5. Split by time per user over the user's n slates: the last ``v = max(1, (n + 5) // 10)``
   slates are test, the ``v`` before them validation, the rest train, when ``n >= 3``;
   users with 1 or 2 slates have all of them in train. (``(n + 5) // 10`` is 10% of n
   rounded half up, so every user with >= 3 slates has at least one slate in each split.)
6. User features (30): one-hot gender (F, M), one-hot age bucket (1, 18, 25, 35, 45, 50, 56),
   one-hot occupation (0..20).
7. Item features (18 + ``emb_dim``): multi-hot of the 18 genres, then a factorised embedding:
   the rank-``emb_dim`` (default 16) truncated SVD, computed by a seeded randomised SVD, of the
   user x item matrix of the ratings in TRAIN slates, each centred by its user's mean train
   rating (missing entries = 0). An item's embedding is its right singular vector scaled by
   sqrt(singular value), the whole block then divided by its root mean square; items without
   train ratings get zeros.

Records: ``session_id`` = user index, ``sequence_id`` = slate number within the user (1, 2,
...), ``timestamp`` = timestamp of the slate's first rating, ``behavior_policy`` = 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from hsrl.data.prepared import ItemTable, Records, records_from_numpy, write_prepared
from hsrl.data.textscan import (
    COMMA,
    INT64_MAX,
    INT64_MIN,
    NL,
    SPACE,
    check_file,
    check_folder,
    check_out,
    count_between,
    first_bad_line,
    first_index,
    left_pad_tail,
    parse_numbers,
    ranges_index,
    read_bytes,
    reader_options,
    saturated,
    split_lines,
)
from hsrl.errors import ConfigError, DataError

GENRES = (
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
)
GENDERS = ("F", "M")
AGE_BUCKETS = (1, 18, 25, 35, 45, 50, 56)
NUM_OCCUPATIONS = 21
USER_FEATURE_DIM = len(GENDERS) + len(AGE_BUCKETS) + NUM_OCCUPATIONS  # 30
RATINGS, USERS, MOVIES = "ratings.dat", "users.dat", "movies.dat"
DEFAULTS = {"slate_size": 10, "threshold": 4, "emb_dim": 16, "history_length": 50}
MINIMUM = {"slate_size": 1, "threshold": 1, "emb_dim": 0, "history_length": 1}


# ============================================================================ raw files


def read_ratings(path: Path) -> np.ndarray:
    """``ratings.dat`` as an (R, 4) int64 array: user, movie, rating (1..5), timestamp."""
    data = read_bytes(path).rstrip(b"\r\n")
    if not data.strip():
        raise DataError(path, "the file is empty", 1)

    def fail(i: int, fallback: str) -> None:
        raw = data.split(b"\n", i + 1)[i]
        _check_rating_line(path, raw.rstrip(b"\r"), i + 1)
        raise DataError(path, fallback, i + 1)

    comma = data.find(b",")  # commas stand for "::" below, so a real one is an error
    if comma >= 0:
        fail(data.count(b"\n", 0, comma), "unexpected ','")
    text = np.frombuffer(data.replace(b"::", b",") + b"\n", dtype=np.uint8).copy()
    starts, ends = split_lines(text)
    lines = len(starts)

    commas = np.flatnonzero(text == COMMA)
    if (i := first_index(count_between(commas, starts, ends) != 3)) is not None:
        fail(i, "expected 4 '::'-separated fields")
    if (i := first_index(ends == starts)) is not None:
        fail(i, "empty line")
    text[text == NL] = SPACE  # (the \n of a \r\n: whitespace, skipped by the parser)
    text[ends] = COMMA  # each line's end (\n, or the \r of \r\n) ends its last value
    values = parse_numbers(text, np.int64)
    if values is None or values.size != 4 * lines:
        fail(first_bad_line(text, ends, np.full(lines, 4), np.int64), "not an integer")
    ratings = values.reshape(lines, 4)  # (R, 4)
    if (i := first_index(saturated(ratings).any(axis=1))) is not None:
        fail(i, "a value outside the 64-bit integer range")
    bad = (ratings[:, :2] < 1).any(axis=1) | (ratings[:, 2] < 1) | (ratings[:, 2] > 5)
    bad |= ratings[:, 3] < 0
    if (i := first_index(bad)) is not None:
        fail(i, "value out of range")
    pair = ratings[:, 0] * (int(ratings[:, 1].max()) + 1) + ratings[:, 1]
    order = np.argsort(pair, kind="stable")
    repeated = np.flatnonzero(pair[order][1:] == pair[order][:-1])
    if repeated.size:
        i = int(order[repeated[0] + 1])
        raise DataError(
            path, f"user {ratings[i, 0]} rates movie {ratings[i, 1]} a second time", i + 1
        )
    return ratings


def _check_rating_line(path: Path, raw: bytes, line: int) -> None:
    text = raw.decode("latin-1")
    fields = text.split("::")
    names = ("UserID", "MovieID", "Rating", "Timestamp")
    if len(fields) != 4:
        raise DataError(
            path,
            f"expected 4 '::'-separated fields ({'::'.join(names)}), found {len(fields)}",
            line,
        )
    for name, field in zip(names, fields):
        value = field.strip()
        if not value.isascii() or not value.lstrip("-").isdigit():
            raise DataError(path, f"{name} {field!r} is not an integer", line)
    user, movie, rating, stamp = (int(f) for f in fields)
    for name, value in zip(names, (user, movie, rating, stamp)):
        if not INT64_MIN < value < INT64_MAX:
            raise DataError(path, f"{name} {value} is outside the 64-bit integer range", line)
    if user < 1 or movie < 1:
        raise DataError(path, "UserID and MovieID must be positive", line)
    if not 1 <= rating <= 5:
        raise DataError(path, f"Rating {rating} is not in 1..5", line)
    if stamp < 0:
        raise DataError(path, f"Timestamp {stamp} is negative", line)


def _dat_lines(path: Path) -> list[str]:
    text = read_bytes(path).decode("latin-1")
    lines = text.replace("\r\n", "\n").rstrip("\n").split("\n")
    if not text.strip():
        raise DataError(path, "the file is empty", 1)
    return lines


def read_users(path: Path) -> dict[int, np.ndarray]:
    """``users.dat``: UserID -> the 30 one-hot user features (gender, age bucket, occupation)."""
    users: dict[int, np.ndarray] = {}
    for number, line in enumerate(_dat_lines(path), start=1):
        fields = line.split("::")
        if len(fields) != 5:
            raise DataError(
                path,
                f"expected 5 '::'-separated fields (UserID::Gender::Age::Occupation::Zip-code), "
                f"found {len(fields)}",
                number,
            )
        user, gender, age, occupation = (f.strip() for f in fields[:4])
        if not user.isdigit() or int(user) < 1:
            raise DataError(path, f"UserID {user!r} is not a positive integer", number)
        if gender not in GENDERS:
            raise DataError(path, f"Gender {gender!r} is not F or M", number)
        if not age.isdigit() or int(age) not in AGE_BUCKETS:
            raise DataError(
                path,
                f"Age {age!r} is not one of the buckets {', '.join(map(str, AGE_BUCKETS))}",
                number,
            )
        if not occupation.isdigit() or not 0 <= int(occupation) < NUM_OCCUPATIONS:
            raise DataError(
                path, f"Occupation {occupation!r} is not in 0..{NUM_OCCUPATIONS - 1}", number
            )
        if int(user) in users:
            raise DataError(path, f"UserID {user} appears twice", number)
        features = np.zeros(USER_FEATURE_DIM, dtype=np.float32)
        features[GENDERS.index(gender)] = 1
        features[len(GENDERS) + AGE_BUCKETS.index(int(age))] = 1
        features[len(GENDERS) + len(AGE_BUCKETS) + int(occupation)] = 1
        users[int(user)] = features
    return users


def read_movies(path: Path) -> dict[int, np.ndarray]:
    """``movies.dat``: MovieID -> the multi-hot of its genres (18, in :data:`GENRES` order)."""
    movies: dict[int, np.ndarray] = {}
    for number, line in enumerate(_dat_lines(path), start=1):
        fields = line.split("::")
        if len(fields) < 3:  # titles never hold '::', but tolerate it: genres are last
            raise DataError(
                path,
                f"expected 3 '::'-separated fields (MovieID::Title::Genres), found {len(fields)}",
                number,
            )
        movie, genres = fields[0].strip(), fields[-1].strip()
        if not movie.isdigit() or int(movie) < 1:
            raise DataError(path, f"MovieID {movie!r} is not a positive integer", number)
        if int(movie) in movies:
            raise DataError(path, f"MovieID {movie} appears twice", number)
        vector = np.zeros(len(GENRES), dtype=np.float32)
        for genre in genres.split("|"):
            if genre not in GENRES:
                raise DataError(
                    path,
                    f"unknown genre {genre!r} (MovieLens-1M genres: {'|'.join(GENRES)})",
                    number,
                )
            vector[GENRES.index(genre)] = 1
        movies[int(movie)] = vector
    return movies


# ============================================================================ recipe


def build_episodes(
    ratings: np.ndarray,
    *,
    slate_size: int = 10,
    threshold: int = 4,
    history_length: int = 50,
) -> dict[str, np.ndarray]:
    """Steps 1-5 of the recipe (module docstring) on an (R, 4) ratings array, vectorised.

    Returns the movie and user ids behind the new indices (``movie_ids`` (N,), ``user_ids``
    (U,)) and, per slate: ``user`` (S,) 1-based index, ``slate`` (S, K) item ids,
    ``response`` (S, K), ``history`` (S, H), ``sequence`` (S,) 1-based, ``timestamp`` (S,),
    ``split`` (S,) 0 train / 1 val / 2 test; and ``rating_split`` (R_kept,) with
    ``rating_user``, ``rating_item``, ``rating_value`` for the ratings inside slates.
    """
    movie_ids, item = np.unique(ratings[:, 1], return_inverse=True)
    user_ids, user = np.unique(ratings[:, 0], return_inverse=True)
    item, user = item + 1, user + 1  # 1-based; 0 is padding
    order = np.lexsort((ratings[:, 1], ratings[:, 3], user))  # user, then time, then movie
    user, item = user[order], item[order]
    value, stamp = ratings[order, 2], ratings[order, 3]
    positive = value >= threshold

    per_user = np.bincount(user, minlength=len(user_ids) + 1)[1:]  # (U,)
    user_start = np.cumsum(per_user) - per_user
    position = np.arange(len(user)) - np.repeat(user_start, per_user)
    slates_of_user = per_user // slate_size
    in_slate = position < np.repeat(slates_of_user * slate_size, per_user)
    first = np.flatnonzero(in_slate & (position % slate_size == 0))  # first rating of each slate

    slate = item[in_slate].reshape(-1, slate_size)  # (S, K)
    response = positive[in_slate].reshape(-1, slate_size)
    slate_user = user[first]
    sequence = position[first] // slate_size + 1

    # History: the positives before the slate's first rating, within the same user.
    positives = np.flatnonzero(positive)
    end = np.searchsorted(positives, first)
    begin = np.searchsorted(positives, user_start[slate_user - 1])
    count = end - begin
    take = np.minimum(count, history_length)
    values = item[positives[ranges_index(end - take, take)]]
    history = left_pad_tail(values, take, history_length)  # (S, H)

    n = slates_of_user[slate_user - 1]
    held = np.where(n >= 3, np.maximum(1, (n + 5) // 10), 0)
    split = np.zeros(len(first), dtype=np.int64)
    split[sequence > n - 2 * held] = 1
    split[sequence > n - held] = 2
    return {
        "movie_ids": movie_ids,
        "user_ids": user_ids,
        "user": slate_user,
        "slate": slate,
        "response": response,
        "history": history,
        "sequence": sequence,
        "timestamp": stamp[first],
        "split": split,
        "rating_user": user[in_slate],
        "rating_item": item[in_slate],
        "rating_value": value[in_slate],
        "rating_split": np.repeat(split, slate_size),
    }


def rating_embedding(
    user: np.ndarray,
    item: np.ndarray,
    rating: np.ndarray,
    *,
    num_users: int,
    num_items: int,
    dim: int,
    seed: int,
) -> np.ndarray:
    """Item embeddings (N + 1, dim) from the user-centred rating matrix (recipe step 7)."""
    out = np.zeros((num_items + 1, dim), dtype=np.float32)
    if dim == 0 or len(rating) == 0:
        return out
    rating = rating.astype(np.float64)
    totals = np.bincount(user, weights=rating, minlength=num_users + 1)
    counts = np.bincount(user, minlength=num_users + 1)
    centred = rating - totals[user] / np.maximum(counts[user], 1)
    _, singular, vt = truncated_svd(
        user, item, centred, shape=(num_users + 1, num_items + 1), rank=dim, seed=seed
    )
    embedding = vt.T * np.sqrt(singular)  # (N + 1, dim)
    embedding[0] = 0
    rms = np.sqrt(np.mean(embedding[1:] ** 2))
    if rms > 0:
        embedding /= rms
    out[:, : embedding.shape[1]] = embedding
    return out


def truncated_svd(
    rows: np.ndarray,
    cols: np.ndarray,
    values: np.ndarray,
    *,
    shape: tuple[int, int],
    rank: int,
    seed: int,
    oversample: int = 10,
    power_iterations: int = 4,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Randomised truncated SVD (Halko et al. 2011) of a sparse matrix given as triplets.

    Returns U (m, k), s (k,), Vt (k, n) with k = min(rank, m, n). The matrix is never made
    dense: products with it are sums over its entries (``np.add.reduceat``). The sign of every
    component is fixed (largest |entry| of each right vector positive), so the result is a
    function of the data and ``seed`` only.
    """
    m, n = shape
    k = min(rank, m, n)
    width = min(k + oversample, m, n)
    values = values.astype(np.float64)

    def product_with(out_index: np.ndarray, in_index: np.ndarray, size: int):
        """x -> sum over entries e of value_e * x[in_index_e], into row out_index_e."""
        order = np.argsort(out_index, kind="stable")
        out_sorted, gather, weight = out_index[order], in_index[order], values[order, None]
        first = np.flatnonzero(np.r_[True, out_sorted[1:] != out_sorted[:-1]])
        target = out_sorted[first]

        def apply(x: np.ndarray) -> np.ndarray:
            result = np.zeros((size, x.shape[1]))
            if len(first):
                result[target] = np.add.reduceat(weight * x[gather], first, axis=0)  # (nnz, w)
            return result

        return apply

    times = product_with(rows, cols, m)  # A @ x: (n, w) -> (m, w)
    times_t = product_with(cols, rows, n)  # A.T @ y: (m, w) -> (n, w)
    rng = np.random.default_rng(seed)
    q = _orthonormal(times(rng.standard_normal((n, width))))  # (m, w)
    for _ in range(power_iterations):
        q = _orthonormal(times(_orthonormal(times_t(q))))
    small = times_t(q).T  # (w, n) = Q^T A
    u_small, singular, vt = np.linalg.svd(small, full_matrices=False)
    u = q @ u_small
    k = min(k, len(singular))  # fewer when the matrix has a lower rank
    u, singular, vt = u[:, :k], singular[:k], vt[:k]
    flip = np.sign(vt[np.arange(k), np.argmax(np.abs(vt), axis=1)])
    flip[flip == 0] = 1
    return u * flip, singular, vt * flip[:, None]


def _orthonormal(x: np.ndarray) -> np.ndarray:
    """Orthonormal basis of the columns of a tall ``x`` (m, w), null directions dropped.

    Through the eigen-decomposition of the small Gram matrix, twice (as CholeskyQR2): only
    matrix products touch the tall matrix, which stay fast where a multithreaded LAPACK QR
    of a tall matrix crawls on an oversubscribed CPU.
    """
    for _ in range(2):
        eigenvalues, vectors = np.linalg.eigh(x.T @ x)  # (w,), (w, w)
        keep = eigenvalues > eigenvalues.max() * 1e-12
        x = (x @ vectors[:, keep]) / np.sqrt(eigenvalues[keep])
    return x


# ============================================================================ prepare


def prepare_ml1m(
    raw: Path, out: Path, *, seed: int, overwrite: bool, options: Mapping[str, str]
) -> Path:
    """Prepare an official ``ml-1m`` folder into slate episodes (module docstring: the recipe).

    Options: ``slate_size`` (10), ``threshold`` (4), ``emb_dim`` (16), ``history_length``
    (50). ``seed`` seeds the randomised SVD of the item embedding.
    """
    opts = reader_options(options, DEFAULTS, MINIMUM)
    if opts["threshold"] > 5:
        raise ConfigError(f"--option threshold={opts['threshold']}: ratings are 1..5")
    raw, out = Path(raw), Path(out)
    check_folder(raw)
    check_out(out, overwrite)
    paths = [raw / RATINGS, raw / USERS, raw / MOVIES]
    for path in paths:
        check_file(path)
    ratings = read_ratings(paths[0])
    users = read_users(paths[1])
    movies = read_movies(paths[2])
    for column, known, path, name in ((0, users, paths[1], "user"), (1, movies, paths[2], "movie")):
        ids = np.unique(ratings[:, column])
        missing = ids[~np.isin(ids, np.fromiter(known, dtype=np.int64, count=len(known)))]
        if missing.size:
            line = int(np.flatnonzero(ratings[:, column] == missing[0])[0]) + 1
            raise DataError(
                paths[0], f"{name} {missing[0]} is rated but not listed in {path.name}", line
            )

    episodes = build_episodes(
        ratings,
        slate_size=opts["slate_size"],
        threshold=opts["threshold"],
        history_length=opts["history_length"],
    )
    if len(episodes["slate"]) == 0:
        raise DataError(paths[0], f"no user has {opts['slate_size']} ratings: no slate to build")
    num_users, num_items = len(episodes["user_ids"]), len(episodes["movie_ids"])
    if opts["emb_dim"] > min(num_users, num_items):
        raise ConfigError(
            f"--option emb_dim={opts['emb_dim']}: at most min(users, items) = "
            f"{min(num_users, num_items)}"
        )

    genres = np.zeros((num_items + 1, len(GENRES)), dtype=np.float32)
    genres[1:] = np.stack([movies[int(m)] for m in episodes["movie_ids"]])
    train = episodes["rating_split"] == 0
    embedding = rating_embedding(
        episodes["rating_user"][train],
        episodes["rating_item"][train],
        episodes["rating_value"][train],
        num_users=num_users,
        num_items=num_items,
        dim=opts["emb_dim"],
        seed=seed,
    )
    items = ItemTable(torch.from_numpy(np.concatenate([genres, embedding], axis=1)))
    profiles = np.zeros((num_users + 1, USER_FEATURE_DIM), dtype=np.float32)
    profiles[1:] = np.stack([users[int(u)] for u in episodes["user_ids"]])

    splits = {}
    for code, name in enumerate(("train", "val", "test")):
        rows = np.flatnonzero(episodes["split"] == code)
        splits[name] = _records(episodes, rows, profiles)
    return write_prepared(
        out,
        items,
        splits,
        source="ml1m",
        source_files=paths,
        split_recipe="by time per user over the user's n slates: the last max(1, (n + 5) // 10) "
        "are test, as many before them validation, the rest train (users with < 3 slates: all "
        "train)",
        extra={
            "options": opts,
            "seed": seed,
            "num_users": num_users,
            "user_profile": "one-hot gender (F, M) + age bucket (1, 18, 25, 35, 45, 50, 56) + "
            "occupation (0..20)",
            "item_features": f"multi-hot genres ({len(GENRES)}) + rank-{opts['emb_dim']} "
            "randomised SVD of the user-centred train rating matrix (V * sqrt(s), RMS-normalised)",
            "genres": list(GENRES),
            "history": f"last {opts['history_length']} positively-rated (rating >= "
            f"{opts['threshold']}) items before the slate",
        },
        extra_arrays={
            "ml1m_ids.npz": {
                "movie_id": episodes["movie_ids"].astype(np.int64),
                "user_id": episodes["user_ids"].astype(np.int64),
            }
        },
        overwrite=overwrite,
    )


def _records(episodes: dict[str, np.ndarray], rows: np.ndarray, profiles: np.ndarray) -> Records:
    user = episodes["user"][rows]
    return records_from_numpy(
        {
            "user_profile": profiles[user],
            "history": episodes["history"][rows],
            "slate": episodes["slate"][rows],
            "response": episodes["response"][rows].astype(np.uint8),
            "session_id": user.astype(np.int64),
            "sequence_id": episodes["sequence"][rows],
            "timestamp": episodes["timestamp"][rows],
            "behavior_policy": np.zeros(len(rows), dtype=np.int64),
        }
    )
