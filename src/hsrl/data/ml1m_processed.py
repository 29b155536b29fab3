"""Reader of the processed MovieLens-1M format of the HAC/HSRL reference implementation.

A folder with ``train.tsv`` and ``test.tsv`` (tab-separated, one header row naming the columns
``user_ID slate_of_items user_clicks user_mid user_likes user_click_history user_mid_history
user_like_history sequence_id``) and ``users_meta.npy`` / ``items_meta.npy`` (row index = id;
item row 0 = padding). List cells are Python list literals such as ``[1, 2, 3]``; they are
parsed as text (brackets, then comma-separated integers), never evaluated, and anything else
(floats, strings, nested lists, missing brackets) is an error naming the file and line.

As in the reference, ``user_mid`` is the response and ``user_mid_history`` the history (its
last ``history_length`` ids, default 50; 0 entries are padding and dropped); the user profile is
``users_meta[user_ID]`` and the item features are ``items_meta``. ``session_id`` = user_ID,
``sequence_id`` from the file, ``timestamp`` = 0 (the format has none), ``behavior_policy`` = 0.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from hsrl.data.prepared import ItemTable, Records, records_from_numpy, write_prepared
from hsrl.data.textscan import (
    COMMA,
    SPACE,
    TAB,
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
    row_of,
    saturated,
    split_lines,
)
from hsrl.errors import DataError

COLUMNS = (
    "user_ID",
    "slate_of_items",
    "user_clicks",
    "user_mid",
    "user_likes",
    "user_click_history",
    "user_mid_history",
    "user_like_history",
    "sequence_id",
)
LIST_COLUMNS = COLUMNS[1:8]
SLATE_ALIGNED = ("user_clicks", "user_mid", "user_likes")  # one value per slate item
SPLIT_FILES = {"train": "train.tsv", "test": "test.tsv"}
USERS_META, ITEMS_META = "users_meta.npy", "items_meta.npy"

_INTEGER = re.compile(r"[+-]?\d+")
_LIST_BYTES = np.zeros(256, dtype=bool)  # bytes allowed inside the brackets of a list cell
_LIST_BYTES[[ord(c) for c in "0123456789,-+ "]] = True
_LIST_CONTENT = _LIST_BYTES.copy()
_LIST_CONTENT[SPACE] = False


# ============================================================================ meta arrays


def load_meta(path: Path, what: str) -> np.ndarray:
    """A 2-D finite numeric ``.npy`` array (never unpickled)."""
    check_file(path)
    _check_npy_header(path)
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise DataError(path, f"not a readable .npy array of numbers ({exc})") from exc
    if array.ndim != 2 or array.shape[0] < 2 or array.shape[1] < 1:
        raise DataError(
            path, f"{what} must be a 2-D array (ids x features), got shape {array.shape}"
        )
    if array.dtype.kind not in "biuf":
        raise DataError(path, f"{what} must hold real numbers, not {array.dtype}")
    array = array.astype(np.float32)
    if not np.isfinite(array).all():
        row = int(np.flatnonzero(~np.isfinite(array).all(axis=1))[0])
        raise DataError(path, f"{what} row {row} holds NaN or inf")
    return array


def _check_npy_header(path: Path) -> None:
    """Refuse what is not a plain ``.npy`` file before loading it: an ``.npz`` archive under
    a ``.npy`` name, or a header claiming more data than the file holds."""
    with open(path, "rb") as handle:
        start = handle.read(6)
        if start[:2] == b"PK":
            raise DataError(path, "a .npz archive, not a .npy array")
        if start != b"\x93NUMPY":
            raise DataError(path, "not a .npy array file")
        handle.seek(0)
        try:
            version = np.lib.format.read_magic(handle)
            read = (
                np.lib.format.read_array_header_1_0
                if version == (1, 0)
                else np.lib.format.read_array_header_2_0
            )
            shape, _, dtype = read(handle)
        except (ValueError, OSError, EOFError, SyntaxError) as exc:
            raise DataError(path, f"not a readable .npy header ({exc})") from exc
        data_start = handle.tell()
    size = path.stat().st_size - data_start
    needed = int(np.prod(shape, dtype=object)) * dtype.itemsize if dtype.itemsize else 0
    if needed > size:
        raise DataError(
            path, f"the header claims shape {shape} ({needed:,} bytes) but the file holds {size:,}"
        )


# ============================================================================ tsv


def read_split(
    path: Path, *, num_users: int, num_items: int, history_length: int = 50
) -> dict[str, np.ndarray]:
    """One ``.tsv`` file as arrays: ``user`` (R,), ``slate`` (R, K), ``response`` (R, K),
    ``history`` (R, H), ``sequence`` (R,)."""
    data = read_bytes(path).rstrip(b"\r\n")
    if not data.strip():
        raise DataError(path, "the file is empty", 1)
    newline = data.find(b"\n")
    header = (data if newline < 0 else data[:newline]).rstrip(b"\r").decode("latin-1")
    names = header.split("\t")
    if sorted(names) != sorted(COLUMNS):
        if len(names) == 1:
            raise DataError(
                path, f"wrong separator: the header must be tab-separated ({header[:80]!r})", 1
            )
        missing = [c for c in COLUMNS if c not in names]
        extra = [c for c in names if c not in COLUMNS]
        raise DataError(
            path,
            "unexpected header: "
            + "; ".join(
                part
                for part in (
                    f"missing {', '.join(missing)}" if missing else "",
                    f"unknown {', '.join(repr(e) for e in extra)}" if extra else "",
                    "a column appears twice" if not missing and not extra else "",
                )
                if part
            ),
            1,
        )
    if newline < 0:
        raise DataError(path, "no records after the header", 2)
    column = {name: names.index(name) for name in COLUMNS}
    body = np.frombuffer(data[newline + 1 :] + b"\n", dtype=np.uint8).copy()
    starts, ends = split_lines(body)
    lines = len(starts)
    where = _Lines(path, body, starts, ends, num_users, num_items)

    if (i := first_index(ends == starts)) is not None:
        where.fail(i, "empty line")
    tabs = np.flatnonzero(body == TAB)
    if (i := first_index(count_between(tabs, starts, ends) != len(COLUMNS) - 1)) is not None:
        where.fail(i, "wrong number of columns")
    tab = tabs.reshape(lines, len(COLUMNS) - 1)
    cell_start = np.concatenate([starts[:, None], tab + 1], axis=1)  # (R, 9)
    cell_end = np.concatenate([tab, ends[:, None]], axis=1)

    # Scalars: user_ID and sequence_id.
    scalars = {}
    for name in ("user_ID", "sequence_id"):
        c = column[name]
        text = body[ranges_index(cell_start[:, c], cell_end[:, c] - cell_start[:, c] + 1)]
        text[np.cumsum(cell_end[:, c] - cell_start[:, c] + 1) - 1] = COMMA
        values = parse_numbers(text, np.int64)
        if values is None or values.size != lines:
            stops = np.cumsum(cell_end[:, c] - cell_start[:, c] + 1) - 1
            where.fail(first_bad_line(text, stops, np.ones(lines, np.int64), np.int64), "integer")
        if (i := first_index(saturated(values))) is not None:
            where.fail(i, f"column {name}: outside the 64-bit integer range")
        scalars[name] = values

    # Lists: "[" + integers separated by "," + "]", spaces allowed.
    commas = np.flatnonzero(body == COMMA)
    content = np.flatnonzero(_LIST_CONTENT[body])  # digits, signs, commas
    lists = {}
    for name in LIST_COLUMNS:
        c = column[name]
        lo, hi = cell_start[:, c], cell_end[:, c]
        bracketed = (
            (hi - lo >= 2) & (body[lo] == ord("[")) & (body[np.maximum(hi - 1, lo)] == ord("]"))
        )
        if (i := first_index(~bracketed)) is not None:
            where.fail(i, f"column {name}: not a list of integers like [1, 2, 3]")
        inner_len = hi - lo - 2
        allowed = _LIST_BYTES[body[ranges_index(lo + 1, inner_len)]]
        if not allowed.all():
            i = int(row_of(inner_len)[np.flatnonzero(~allowed)[0]])
            where.fail(i, f"column {name}: not a list of integers")
        count = np.where(
            count_between(content, lo + 1, hi - 1) > 0, count_between(commas, lo, hi) + 1, 0
        )
        keep = np.flatnonzero(count)
        text = body[ranges_index(lo[keep] + 1, inner_len[keep] + 1)]  # inside + "]"
        stops = np.cumsum(inner_len[keep] + 1) - 1
        text[stops] = COMMA
        values = parse_numbers(text, np.int64)
        if values is None or values.size != int(count.sum()):
            bad = first_bad_line(text, stops, count[keep], np.int64)
            where.fail(int(keep[bad]), f"column {name}: not a list of integers")
        lists[name] = (values, count)

    slate_values, slate_len = lists["slate_of_items"]
    size = int(slate_len[0])
    if size == 0:
        where.fail(0, "empty slate")
    if (i := first_index(slate_len != size)) is not None:
        raise DataError(
            path, f"column slate_of_items: {slate_len[i]} items, but {size} on line 2", i + 2
        )
    for name in SLATE_ALIGNED:
        if (i := first_index(lists[name][1] != size)) is not None:
            where.fail(i, f"{name} must hold one value per slate item")
    slate = slate_values.reshape(lines, size)  # (R, K)
    response = lists["user_mid"][0].reshape(lines, size)
    history_values, history_len = lists["user_mid_history"]
    user = scalars["user_ID"]
    checks = (
        ((user < 0) | (user >= num_users), "user_ID outside users_meta"),
        (((slate < 1) | (slate > num_items)).any(axis=1), "slate item outside items_meta"),
        (((response != 0) & (response != 1)).any(axis=1), "user_mid not 0/1"),
    )
    for bad, fallback in checks:
        if (i := first_index(bad)) is not None:
            where.fail(i, fallback)
    bad = np.flatnonzero((history_values < 0) | (history_values > num_items))
    if bad.size:
        where.fail(int(row_of(history_len)[bad[0]]), "history item outside items_meta")
    kept = history_values != 0
    kept_len = np.bincount(row_of(history_len)[kept], minlength=lines)
    return {
        "user": user,
        "slate": slate,
        "response": response,
        "history": left_pad_tail(history_values[kept], kept_len, history_length),  # (R, H)
        "sequence": scalars["sequence_id"],
    }


class _Lines:
    """The slow path: re-check one line in plain Python and raise its precise error."""

    def __init__(self, path, body, starts, ends, num_users, num_items):
        self.path, self.body, self.starts, self.ends = path, body, starts, ends
        self.num_users, self.num_items = num_users, num_items

    def fail(self, i: int, fallback: str) -> None:
        raw = bytes(self.body[self.starts[i] : self.ends[i]]).decode("latin-1")
        problem = _line_problem(raw, self.num_users, self.num_items)
        raise DataError(self.path, problem or fallback, i + 2)


def _line_problem(text: str, num_users: int, num_items: int) -> str | None:
    """The first problem of one line (the per-line rules of :func:`read_split`), or None."""
    if not text.strip():
        return "empty line"
    cells = dict(zip(COLUMNS, text.split("\t")))
    if len(text.split("\t")) != len(COLUMNS):
        return f"expected {len(COLUMNS)} tab-separated columns, found {len(text.split(chr(9)))}"
    for name in ("user_ID", "sequence_id"):
        if not _INTEGER.fullmatch(cells[name].strip()):
            return f"column {name}: {cells[name][:40]!r} is not an integer"
    values = {}
    for name in LIST_COLUMNS:
        cell = cells[name].strip()
        if len(cell) < 2 or cell[0] != "[" or cell[-1] != "]":
            return f"column {name}: {cell[:40]!r} is not a list of integers like [1, 2, 3]"
        inner = cell[1:-1]
        items = [] if not inner.strip() else [x.strip() for x in inner.split(",")]
        for item in items:
            if not _INTEGER.fullmatch(item):
                return f"column {name}: element {item[:40]!r} is not an integer"
        values[name] = [int(x) for x in items]
    if not 0 <= int(cells["user_ID"]) < num_users:
        return f"column user_ID: {cells['user_ID']} has no row in {USERS_META} (0..{num_users - 1})"
    slate = values["slate_of_items"]
    if not slate:
        return "column slate_of_items: empty slate"
    for item in slate:
        if not 1 <= item <= num_items:
            return f"column slate_of_items: item {item} has no row in {ITEMS_META} (1..{num_items})"
    for name in SLATE_ALIGNED:
        if len(values[name]) != len(slate):
            return f"column {name}: {len(values[name])} values for {len(slate)} slate items"
    for value in values["user_mid"]:
        if value not in (0, 1):
            return f"column user_mid: value {value} is not 0 or 1"
    for item in values["user_mid_history"]:
        if not 0 <= item <= num_items:
            return (
                f"column user_mid_history: item {item} has no row in {ITEMS_META} (0..{num_items})"
            )
    return None


# ============================================================================ prepare


def prepare_ml1m_processed(
    raw: Path, out: Path, *, seed: int, overwrite: bool, options: Mapping[str, str]
) -> Path:
    """Prepare a processed ML1M folder (train.tsv, test.tsv, users_meta.npy, items_meta.npy).

    Options: ``history_length`` (default 50). ``seed`` is unused (nothing is random).
    """
    opts = reader_options(options, {"history_length": 50}, {"history_length": 1})
    raw, out = Path(raw), Path(out)
    check_folder(raw)
    check_out(out, overwrite)
    paths = [
        raw / SPLIT_FILES["train"],
        raw / SPLIT_FILES["test"],
        raw / USERS_META,
        raw / ITEMS_META,
    ]
    for path in paths:
        check_file(path)
    users = load_meta(paths[2], "users_meta")
    items_meta = load_meta(paths[3], "items_meta")
    padding_replaced = bool(np.any(items_meta[0] != 0))
    items_meta[0] = 0  # row 0 is the padding item whatever the file holds there
    splits: dict[str, Records] = {}
    for (name, _), path in zip(SPLIT_FILES.items(), paths):
        arrays = read_split(
            path,
            num_users=len(users),
            num_items=len(items_meta) - 1,
            history_length=opts["history_length"],
        )
        splits[name] = records_from_numpy(
            {
                "user_profile": users[arrays["user"]],
                "history": arrays["history"],
                "slate": arrays["slate"],
                "response": arrays["response"].astype(np.uint8),
                "session_id": arrays["user"],
                "sequence_id": arrays["sequence"],
                "timestamp": np.zeros(len(arrays["user"]), dtype=np.int64),
                "behavior_policy": np.zeros(len(arrays["user"]), dtype=np.int64),
            },
            where=path,
        )
    if splits["train"].slate_size != splits["test"].slate_size:
        raise DataError(paths[1], "slates have another size than in train.tsv")
    return write_prepared(
        out,
        ItemTable(torch.from_numpy(items_meta)),
        splits,
        source="ml1m-processed",
        source_files=paths,
        split_recipe="train = train.tsv, test = test.tsv (the files' own split)",
        extra={
            "options": opts,
            "response": "user_mid",
            "history": f"last {opts['history_length']} ids of user_mid_history (0 entries dropped)",
            "user_profile": "users_meta[user_ID]",
            "item_padding_row_replaced": padding_replaced,
        },
        overwrite=overwrite,
    )
