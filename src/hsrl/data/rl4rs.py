"""Reader of the RL4RS dataset B (slate recommendation) in its raw release format.

Files (SPEC 2.1): ``item_info.csv`` (space-separated item table) and the ``@``-separated logs
``rl4rs_b_train.csv`` / ``rl4rs_b_test.csv`` with one header row and nine columns::

    timestamp @ session_id @ sequence_id @ exposed_items @ user_feedback @ user_seqfeature @
    user_protrait @ item_feature @ behavior_policy_id

What a record becomes (see :mod:`hsrl.data.prepared`):

- ``slate``: the 9 exposed item ids; ``response``: the 9 feedback values (0/1);
- ``history``: the last ``history_length`` ids of ``user_seqfeature``, oldest first, left-padded
  with 0; a ``0`` entry means "no item" (``0`` alone is an empty history) and is dropped;
- ``user_profile``: ``log1p`` of the 42 portrait values, as the reference models use them;
- ``item_feature`` repeats the item table's vectors of the exposed items. It is checked (equal
  within 1e-3) and not stored.

Speed: the real train file has ~586k records of ~3 kB each. The file is read in blocks of whole
lines; every block is scanned with NumPy byte operations (no Python object per row): separators
are located and counted per line, the integer columns and the portrait are gathered into two
compact buffers and parsed with one ``np.fromstring`` call each, and ``item_feature`` is checked
by comparing bytes: the first occurrence of an item's text is parsed and checked against the
table numerically, every later occurrence must repeat those bytes exactly (or is parsed and
checked numerically too). When a check fails, the offending line (found by index, or by
bisection for a parse failure) is re-checked by a plain per-line parser that words the error.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from numpy.lib.stride_tricks import sliding_window_view

from hsrl.data.prepared import ItemTable, Records, records_from_numpy, write_prepared
from hsrl.data.textscan import (
    AT,
    COMMA,
    NL,
    SEMI,
    SPACE,
    CellError,
    cell_int,
    cell_list,
    cell_number,
    check_file,
    check_folder,
    check_out,
    content_end,
    count_between,
    decode_line,
    first_bad_line,
    first_index,
    left_pad_tail,
    line_bounds,
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
    "timestamp",
    "session_id",
    "sequence_id",
    "exposed_items",
    "user_feedback",
    "user_seqfeature",
    "user_protrait",
    "item_feature",
    "behavior_policy_id",
)
HEADER = "@".join(COLUMNS)
ITEM_COLUMNS = ("item_id", "item_vec", "price", "location", "special_item")
ITEM_HEADER = " ".join(ITEM_COLUMNS)
SLATE_SIZE = 9
PORTRAIT_DIM = 42
ITEM_DIM = 40
FEATURE_TOLERANCE = 1e-3
TRAIN_FILE, TEST_FILE, ITEM_FILE = "rl4rs_b_train.csv", "rl4rs_b_test.csv", "item_info.csv"
ITEM_META_FILE = "item_meta.npz"

# Blocks of this many bytes (rounded to whole lines) are scanned at once: large enough that the
# per-block overhead vanishes, small enough that the temporaries stay ~10x the block.
BLOCK_BYTES = 1 << 25


# ============================================================================ item table


def read_item_table(path: Path) -> tuple[ItemTable, dict[str, np.ndarray]]:
    """Read ``item_info.csv``: features (N + 1, 40) with padding row 0, and item meta by id.

    Item ids must be exactly 1..N (in any order). The meta arrays ``price`` (float32),
    ``location`` and ``special_item`` (int64) have N + 1 entries, entry 0 unused (0).
    """
    path = Path(path)
    data = read_bytes(path)
    body_start = _check_header(path, data, ITEM_HEADER, " ")
    body = data[body_start:].rstrip(b"\r\n")
    if not body:
        raise DataError(path, "no items after the header", 2)
    buf = np.frombuffer(body + b"\n", dtype=np.uint8)
    starts, ends = split_lines(buf)
    lines = len(starts)

    def fail(index: int, fallback: str) -> DataError:
        raw = bytes(buf[starts[index] : ends[index]])
        _check_item_line(path, raw, index + 2)
        return DataError(path, fallback, index + 2)

    spaces = np.flatnonzero(buf == SPACE)
    commas = np.flatnonzero(buf == COMMA)
    bad = (count_between(spaces, starts, ends) != 4) | (
        count_between(commas, starts, ends) != ITEM_DIM - 1
    )
    if (i := first_index(bad)) is not None:
        raise fail(i, "wrong number of columns or values")
    text = buf.copy()
    text[spaces] = COMMA
    text[buf == NL] = SPACE  # (the \n of a \r\n: whitespace, skipped by the parser)
    text[ends] = COMMA  # each line's end (\n, or the \r of \r\n) ends its last value
    values = parse_numbers(text)
    width = ITEM_DIM + 4
    if values is None or values.size != lines * width:
        raise fail(first_bad_line(text, ends, np.full(lines, width), np.float64), "not a number")
    table = values.reshape(lines, width)  # (N, 44): id, 40 features, price, location, special
    if (i := first_index(~np.isfinite(table).all(axis=1))) is not None:
        raise fail(i, "NaN or infinite value")
    # Features and price are stored as float32: a value beyond its range would become inf.
    beyond = np.abs(table[:, 1 : ITEM_DIM + 2]) > np.finfo(np.float32).max
    if (i := first_index(beyond.any(axis=1))) is not None:
        column = "item_vec" if beyond[i, :ITEM_DIM].any() else "price"
        raise DataError(
            path, f"column {column}: a value beyond the float32 range (|x| > 3.4e38)", i + 2
        )
    integral = table[:, [0, ITEM_DIM + 2, ITEM_DIM + 3]]
    if (i := first_index((integral != np.round(integral)).any(axis=1))) is not None:
        raise fail(i, "item_id, location and special_item must be integers")
    if (i := first_index((np.abs(integral) > 2**53).any(axis=1))) is not None:
        raise DataError(path, "item_id, location and special_item must be below 2^53", i + 2)
    ids = table[:, 0].astype(np.int64)
    if (i := first_index((ids < 1) | (ids > lines))) is not None:
        raise DataError(
            path, f"item_id {ids[i]} outside 1..{lines} (ids must be exactly 1..N)", i + 2
        )
    order = np.argsort(ids, kind="stable")
    duplicate = np.flatnonzero(ids[order][1:] == ids[order][:-1])
    if duplicate.size:
        i = int(order[duplicate[0] + 1])
        raise DataError(path, f"item_id {ids[i]} appears twice (ids must be exactly 1..N)", i + 2)
    features = np.zeros((lines + 1, ITEM_DIM), dtype=np.float32)  # (N + 1, F)
    features[ids] = table[:, 1 : ITEM_DIM + 1]
    meta = {
        "price": np.zeros(lines + 1, dtype=np.float32),
        "location": np.zeros(lines + 1, dtype=np.int64),
        "special_item": np.zeros(lines + 1, dtype=np.int64),
    }
    meta["price"][ids] = table[:, ITEM_DIM + 1]
    meta["location"][ids] = table[:, ITEM_DIM + 2]
    meta["special_item"][ids] = table[:, ITEM_DIM + 3]
    return ItemTable(torch.from_numpy(features)), meta


def _check_item_line(path: Path, raw: bytes, line: int) -> None:
    """Slow, exact check of one item line; raises the precise error."""
    text = decode_line(raw, path, line)
    cells = text.split(" ")
    try:
        if len(cells) != len(ITEM_COLUMNS):
            raise CellError(
                f"expected {len(ITEM_COLUMNS)} space-separated columns "
                f"({ITEM_HEADER}), found {len(cells)}"
            )
        cell_int(cells[0], "item_id")
        cell_list(cells[1], "item_vec", integer=False, expected=ITEM_DIM)
        cell_number(cells[2], "price")
        cell_int(cells[3], "location")
        cell_int(cells[4], "special_item")
    except CellError as exc:
        raise DataError(path, str(exc), line) from None


def _check_header(path: Path, data: bytes, expected: str, sep: str) -> int:
    """Check the first line is ``expected``; return the offset where the records start."""
    if not data.strip():
        raise DataError(path, "the file is empty", 1)
    newline = data.find(b"\n")
    first = data if newline < 0 else data[:newline]
    header = first.rstrip(b"\r").decode("ascii", errors="replace")
    if header != expected:
        names = expected.split(sep)
        others = {",": "','", "\t": "tab", ";": "';'", " ": "space", "@": "'@'", "|": "'|'"}
        if sep not in header:
            for other, label in others.items():
                if other != sep and header.count(other) == len(names) - 1:
                    raise DataError(
                        path,
                        f"wrong separator: the header is {label}-separated, expected "
                        f"{others[sep]}-separated columns: {expected!r}",
                        1,
                    )
        if header[:1].isdigit() or header[:1] == "-":
            raise DataError(path, f"missing header line (expected {expected!r})", 1)
        raise DataError(path, f"unexpected header {header[:200]!r}, expected {expected!r}", 1)
    return len(data) if newline < 0 else newline + 1


# ============================================================================ records


def read_records(path: Path, items: ItemTable, history_length: int = 50) -> Records:
    """Read one RL4RS log file (``rl4rs_b_train.csv`` or ``rl4rs_b_test.csv``) into records.

    Every bad input is a :class:`DataError` naming the file, the line and the problem.
    """
    path = Path(path)
    if history_length < 0:
        raise ValueError("history_length must be >= 0")
    size = check_file(path)
    end = content_end(path, size)
    with open(path, "rb") as handle:
        head = handle.readline(1 << 16)
        offset = _check_header(path, head, HEADER, "@")
        if offset >= end:
            raise DataError(path, "no records after the header", 2)
        handle.seek(offset)
        scanner = _RecordScanner(path, items, history_length)
        # One reusable buffer: read a block after the unfinished line of the previous one,
        # scan the complete lines in place, move the unfinished line to the front.
        buf = np.zeros(BLOCK_BYTES + _PAD, dtype=np.uint8)
        filled, line = 0, 2
        while offset < end:
            want = min(BLOCK_BYTES, end - offset)
            if filled + want + _PAD > len(buf):  # a line longer than a block
                buf = np.concatenate([buf[:filled], np.zeros(want + _PAD, dtype=np.uint8)])
            got = handle.readinto(memoryview(buf)[filled : filled + want])
            if not got:  # the file shrank while we read it
                break
            filled, offset = filled + got, offset + got
            tail = max(0, filled - (1 << 16))
            newlines = np.flatnonzero(buf[tail:filled] == NL)
            if not newlines.size and tail:
                tail, newlines = 0, np.flatnonzero(buf[:filled] == NL)
            if not newlines.size:
                continue
            cut = tail + int(newlines[-1]) + 1
            line += scanner.scan(buf, cut, line)
            buf[: filled - cut] = buf[cut:filled].copy()
            filled -= cut
        if filled:  # the last line (its newline was stripped as trailing)
            buf[filled] = NL
            scanner.scan(buf, filled + 1, line)
    return scanner.records()


_PAD = 1 << 12  # room after a block for the byte windows of the item_feature check


class _RecordScanner:
    """Vectorised parser of blocks of whole record lines (state: the item texts seen so far)."""

    def __init__(self, path: Path, items: ItemTable, history_length: int):
        self.path = path
        self.features = items.features.detach().cpu().numpy().astype(np.float32)  # (N + 1, F)
        self.num_items = self.features.shape[0] - 1
        self.feature_dim = self.features.shape[1]
        self.history_length = history_length
        self.parts: dict[str, list[np.ndarray]] = {key: [] for key in _RECORD_KEYS}
        # The text of each item's vector as first seen (and checked) in the file; later
        # occurrences are compared byte for byte with it.
        self.canon_row = np.full(self.num_items + 1, -1, dtype=np.int64)  # item id -> row
        self.canon_len = np.zeros(0, dtype=np.int64)  # (M,)
        self.canon_bytes = np.zeros((0, 8), dtype=np.uint8)  # (M, W), zero past each length

    # ------------------------------------------------------------------ block scan

    def scan(self, buf: np.ndarray, n: int, first_line: int) -> int:
        """Parse the lines of ``buf[:n]`` (which ends with a newline; line ``first_line``
        first) in place; return their count. ``buf`` has room for windows after ``n``."""
        if len(buf) < n + self.canon_bytes.shape[1] + 8:
            buf = np.concatenate([buf[:n], np.zeros(self.canon_bytes.shape[1] + 8, np.uint8)])
        body = buf[:n]
        # Every separator in one pass: bytes above '9' and ':' are '@', ';' (or letters of bad
        # or exponent-notation values, ignored here), plus the newlines.
        special = np.flatnonzero((body > 0x3A) | (body == NL))
        kind = body[special]
        starts, ends = line_bounds(body, special[kind == NL])
        ats, self._semis = special[kind == AT], special[kind == SEMI]
        lines = len(starts)
        self._line0, self._buf, self._n, self._starts, self._ends = first_line, buf, n, starts, ends
        if (i := first_index(ends == starts)) is not None:
            self._fail(i, "empty line")

        # Columns: exactly 8 '@' per line.
        if (i := first_index(count_between(ats, starts, ends) != len(COLUMNS) - 1)) is not None:
            self._fail(i, "wrong number of columns")
        seps = ats.reshape(lines, len(COLUMNS) - 1)  # (R, 8) positions of the '@'s

        # The line terminators end each line's last column (the slow path reads [start, end)).
        buf[ends] = AT
        ints, hist_len = self._parse_int_columns(buf, starts, ends, seps)
        portrait = self._parse_portrait(buf, seps)  # (R, 42)

        per_line = hist_len + 22  # 3 ids + 2 x 9 slate values + history + policy
        offset = np.cumsum(per_line) - per_line  # first token of each line
        k = np.arange(SLATE_SIZE)
        slate = ints[offset[:, None] + 3 + k]  # (R, K)
        response = ints[offset[:, None] + 3 + SLATE_SIZE + k]  # (R, K)
        history = ints[ranges_index(offset + 3 + 2 * SLATE_SIZE, hist_len)]  # ragged
        history_row = row_of(hist_len)

        extreme = saturated(ints)
        if extreme.any():
            token = int(np.flatnonzero(extreme)[0])
            self._fail(int(np.searchsorted(offset, token, side="right")) - 1, "integer overflow")
        if (i := first_index(((slate < 1) | (slate > self.num_items)).any(axis=1))) is not None:
            self._fail(i, "slate item id outside the item table")
        if (i := first_index(((response != 0) & (response != 1)).any(axis=1))) is not None:
            self._fail(i, "feedback not 0/1")
        bad = np.flatnonzero((history < 0) | (history > self.num_items))
        if bad.size:
            self._fail(int(history_row[bad[0]]), "history item id outside the item table")
        if (i := first_index(~np.isfinite(portrait).all(axis=1))) is not None:
            self._fail(i, "NaN or infinite portrait value")
        if (i := first_index((portrait <= -1).any(axis=1))) is not None:
            self._fail(i, "portrait value <= -1")
        self._check_item_features(seps, slate)

        kept = history != 0
        kept_len = np.bincount(history_row[kept], minlength=lines)
        parts = self.parts
        parts["history"].append(left_pad_tail(history[kept], kept_len, self.history_length))
        parts["user_profile"].append(np.log1p(portrait).astype(np.float32))
        parts["slate"].append(slate.astype(np.int32))
        parts["response"].append(response.astype(np.uint8))
        parts["timestamp"].append(ints[offset])
        parts["session_id"].append(ints[offset + 1])
        parts["sequence_id"].append(ints[offset + 2])
        parts["behavior_policy"].append(ints[offset + per_line - 1])
        return lines

    def _parse_int_columns(
        self, buf: np.ndarray, starts: np.ndarray, ends: np.ndarray, seps: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Tokens of columns 0-5 and 8 of every line as one int64 array; the history lengths."""
        lines = len(starts)
        # Per line: bytes [start, sep 5) = columns 0-5, then [sep 7, end] = "@" column 8 "@".
        range_start = np.stack([starts, seps[:, 7]], axis=1).ravel()
        range_len = np.stack([seps[:, 5] - starts, ends + 1 - seps[:, 7]], axis=1).ravel()
        text = buf[ranges_index(range_start, range_len)]
        ends_at = np.flatnonzero(text == AT).reshape(lines, 7)  # ends of columns 0-5 and 8
        cumulative = np.searchsorted(np.flatnonzero(text == COMMA), ends_at.ravel())
        commas = np.diff(cumulative, prepend=0).reshape(lines, 7)  # commas per column
        fixed = commas[:, [0, 1, 2, 3, 4, 6]] != [0, 0, 0, SLATE_SIZE - 1, SLATE_SIZE - 1, 0]
        if (i := first_index(fixed.any(axis=1))) is not None:
            self._fail(i, "wrong number of values")
        hist_len = commas[:, 5] + 1
        text[ends_at.ravel()] = COMMA
        values = parse_numbers(text, np.int64)
        if values is None or values.size != int((hist_len + 22).sum()):
            self._fail(
                first_bad_line(text, ends_at[:, 6], hist_len + 22, np.int64), "not an integer"
            )
        return values, hist_len

    def _parse_portrait(self, buf: np.ndarray, seps: np.ndarray) -> np.ndarray:
        lines = len(seps)
        text = buf[ranges_index(seps[:, 5] + 1, seps[:, 6] - seps[:, 5])]  # column 6 + its "@"
        ends_at = np.flatnonzero(text == AT)
        commas = np.diff(np.searchsorted(np.flatnonzero(text == COMMA), ends_at), prepend=0)
        if (i := first_index(commas != PORTRAIT_DIM - 1)) is not None:
            self._fail(i, "wrong portrait length")
        text[ends_at] = COMMA
        values = parse_numbers(text, np.float64)
        if values is None or values.size != lines * PORTRAIT_DIM:
            counts = np.full(lines, PORTRAIT_DIM)
            self._fail(first_bad_line(text, ends_at, counts, np.float64), "not a number")
        return values.reshape(lines, PORTRAIT_DIM)  # (R, 42)

    def _check_item_features(self, seps: np.ndarray, slate: np.ndarray) -> None:
        """``item_feature`` must repeat the table's vectors of the exposed items (see module)."""
        col_start, col_end = seps[:, 6] + 1, seps[:, 7]
        semis = self._semis
        first = np.searchsorted(semis, col_start)
        count = np.searchsorted(semis, col_end) - first
        if (i := first_index(count != SLATE_SIZE - 1)) is not None:
            self._fail(i, "wrong number of item vectors")
        inner = semis[first[:, None] + np.arange(SLATE_SIZE - 1)]  # (R, K - 1)
        seg_start = np.concatenate([col_start[:, None], inner + 1], axis=1).ravel()  # (R * K,)
        seg_len = np.concatenate([inner, col_end[:, None]], axis=1).ravel() - seg_start
        ids = slate.ravel()

        # The first occurrence of an item not seen yet is checked numerically and kept.
        unseen = np.flatnonzero(self.canon_row[ids] < 0)
        if unseen.size:
            _, first_of = np.unique(ids[unseen], return_index=True)
            new = unseen[first_of]
            self._check_numerically(new, seg_start, seg_len, ids)
            self._register(ids[new], seg_start[new], seg_len[new])

        # Every occurrence must repeat its item's kept bytes, or else parse close to the table.
        # Compared in groups of equal length, so that each comparison is one rectangular block.
        rows = self.canon_row[ids]
        differ = seg_len != self.canon_len[rows]
        same = np.flatnonzero(~differ)
        same = same[np.argsort(seg_len[same], kind="stable")]
        lengths = seg_len[same]
        bounds = np.concatenate([[0], np.flatnonzero(np.diff(lengths)) + 1, [len(same)]])
        for lo, hi in zip(bounds[:-1], bounds[1:]):
            group, width = same[lo:hi], int(lengths[lo])
            windows = sliding_window_view(self._buf, width)[seg_start[group]]  # (S, L)
            equal = (windows == self.canon_bytes[rows[group], :width]).all(axis=1)
            differ[group[~equal]] = True
        if differ.any():
            self._check_numerically(np.flatnonzero(differ), seg_start, seg_len, ids)

    def _check_numerically(
        self, which: np.ndarray, seg_start: np.ndarray, seg_len: np.ndarray, ids: np.ndarray
    ) -> None:
        """Parse the item vectors ``which`` and compare them with the table (tolerance 1e-3)."""
        text = self._buf[ranges_index(seg_start[which], seg_len[which] + 1)]  # + terminator
        ends_at = np.cumsum(seg_len[which] + 1) - 1
        text[ends_at] = COMMA
        cumulative = np.searchsorted(np.flatnonzero(text == COMMA), ends_at, side="right")
        commas = np.diff(cumulative, prepend=0)  # per vector, its terminator included
        line_of = which // SLATE_SIZE
        if (i := first_index(commas != self.feature_dim)) is not None:
            self._fail(int(line_of[i]), "wrong item vector length")
        values = parse_numbers(text, np.float64)
        if values is None or values.size != len(which) * self.feature_dim:
            counts = np.full(len(which), self.feature_dim)
            bad = first_bad_line(text, ends_at, counts, np.float64)
            self._fail(int(line_of[bad]), "item_feature holds a value that is not a number")
        vectors = values.reshape(len(which), self.feature_dim)  # (S, F)
        close = np.abs(vectors - self.features[ids[which]]) <= FEATURE_TOLERANCE  # NaN: False
        if (i := first_index(~close.all(axis=1))) is not None:
            self._fail(int(line_of[i]), "item_feature differs from the item table")

    def _register(self, ids: np.ndarray, seg_start: np.ndarray, seg_len: np.ndarray) -> None:
        width = max(self.canon_bytes.shape[1], int(-(-seg_len.max() // 8) * 8))
        if width > self.canon_bytes.shape[1]:
            grown = np.zeros((len(self.canon_bytes), width), dtype=np.uint8)
            grown[:, : self.canon_bytes.shape[1]] = self.canon_bytes
            self.canon_bytes = grown
            if len(self._buf) < self._n + width:
                wider = np.zeros(self._n + width + 8, dtype=np.uint8)
                wider[: self._n] = self._buf[: self._n]
                self._buf = wider
        column = np.arange(width)
        rows = sliding_window_view(self._buf, width)[seg_start]  # (M_new, W)
        rows[column >= seg_len[:, None]] = 0
        self.canon_row[ids] = len(self.canon_len) + np.arange(len(ids))
        self.canon_len = np.concatenate([self.canon_len, seg_len])
        self.canon_bytes = np.concatenate([self.canon_bytes, rows])

    # ------------------------------------------------------------------ errors

    def _fail(self, i: int, fallback: str) -> None:
        """Raise the exact error of line ``i`` of the block (found by the slow per-line check)."""
        line = self._line0 + i
        raw = bytes(self._buf[self._starts[i] : self._ends[i]])
        _check_record_line(self.path, raw, line, self.features)
        raise DataError(self.path, fallback, line)

    # ------------------------------------------------------------------ result

    def records(self) -> Records:
        if not self.parts["slate"]:
            raise DataError(self.path, "no records after the header", 2)
        arrays = {key: np.concatenate(parts) for key, parts in self.parts.items()}
        return records_from_numpy(arrays, where=self.path)


_RECORD_KEYS = (
    "user_profile",
    "history",
    "slate",
    "response",
    "session_id",
    "sequence_id",
    "timestamp",
    "behavior_policy",
)


def _check_record_line(path: Path, raw: bytes, line: int, features: np.ndarray) -> None:
    """Slow, exact check of one record line; raises the precise :class:`DataError`."""
    text = decode_line(raw, path, line)
    num_items = features.shape[0] - 1
    try:
        if not text.strip():
            raise CellError("empty line")
        cells = text.split("@")
        if len(cells) != len(COLUMNS):
            hint = " (is the line truncated?)" if len(cells) < len(COLUMNS) else ""
            if len(cells) == 1:
                hint = " (wrong separator? columns must be separated by '@')"
            raise CellError(
                f"expected {len(COLUMNS)} '@'-separated columns, found {len(cells)}{hint}"
            )
        for index in (0, 1, 2, 8):
            cell_int(cells[index], COLUMNS[index])
        slate = cell_list(cells[3], COLUMNS[3], integer=True, expected=SLATE_SIZE)
        for item in slate:
            if item == 0:
                raise CellError(f"column {COLUMNS[3]}: item id 0 (padding) in a slate")
            if not 1 <= item <= num_items:
                raise CellError(
                    f"column {COLUMNS[3]}: item id {item} is outside the item table (1..{num_items})"
                )
        feedback = cell_list(cells[4], COLUMNS[4], integer=True)
        if len(feedback) != len(slate):
            raise CellError(
                f"column {COLUMNS[4]}: {len(feedback)} values for {len(slate)} exposed items"
            )
        for value in feedback:
            if value not in (0, 1):
                raise CellError(f"column {COLUMNS[4]}: value {value} is not 0 or 1")
        for item in cell_list(cells[5], COLUMNS[5], integer=True):
            if not 0 <= item <= num_items:
                raise CellError(
                    f"column {COLUMNS[5]}: item id {item} is outside the item table (1..{num_items})"
                )
        portrait = cell_list(cells[6], COLUMNS[6], integer=False, expected=PORTRAIT_DIM)
        for value in portrait:
            if value <= -1:
                raise CellError(
                    f"column {COLUMNS[6]}: value {value} is <= -1 (log(x + 1) is undefined)"
                )
        vectors = cells[7].split(";")
        if len(vectors) != len(slate):
            raise CellError(
                f"column {COLUMNS[7]}: {len(vectors)} item vectors for {len(slate)} exposed items"
            )
        for slot, (item, vector) in enumerate(zip(slate, vectors), start=1):
            values = cell_list(vector, COLUMNS[7], integer=False)
            if len(values) != features.shape[1]:
                raise CellError(
                    f"column {COLUMNS[7]}: vector {slot} has {len(values)} values, "
                    f"expected {features.shape[1]}"
                )
            diff = np.abs(np.asarray(values) - features[item])
            if (diff > FEATURE_TOLERANCE).any():
                j = int(np.argmax(diff))
                raise CellError(
                    f"column {COLUMNS[7]}: vector {slot} (item {item}) differs from the item "
                    f"table at value {j + 1}: {values[j]} vs {features[item, j]:.6g}"
                )
    except CellError as exc:
        raise DataError(path, str(exc), line) from None


# ============================================================================ prepare


def prepare_rl4rs(
    raw: Path, out: Path, *, seed: int, overwrite: bool, options: Mapping[str, str]
) -> Path:
    """Prepare the RL4RS folder ``raw`` (item table + train/test logs) into ``out``.

    Options: ``history_length`` (default 50). ``seed`` is unused: reading is deterministic
    and the splits are the release's own files.
    """
    opts = reader_options(options, {"history_length": 50}, {"history_length": 1})
    raw, out = Path(raw), Path(out)
    check_folder(raw)
    check_out(out, overwrite)
    item_path, train_path, test_path = raw / ITEM_FILE, raw / TRAIN_FILE, raw / TEST_FILE
    for path in (item_path, train_path, test_path):
        check_file(path)
    items, meta = read_item_table(item_path)
    splits = {
        "train": read_records(train_path, items, opts["history_length"]),
        "test": read_records(test_path, items, opts["history_length"]),
    }
    return write_prepared(
        out,
        items,
        splits,
        source="rl4rs",
        source_files=[item_path, train_path, test_path],
        split_recipe=f"train = {TRAIN_FILE}, test = {TEST_FILE} (the release's own split; "
        "no validation split)",
        extra={
            "options": opts,
            "user_profile": "log1p of the 42 user_protrait values",
            "history": f"last {opts['history_length']} ids of user_seqfeature (0 entries dropped)",
            "item_meta": ITEM_META_FILE,
        },
        extra_arrays={ITEM_META_FILE: meta},
        overwrite=overwrite,
    )
