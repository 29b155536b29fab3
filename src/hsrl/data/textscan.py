"""Byte-level tools the text readers share: vectorised line and field scanning, number parsing.

Raw logs hold hundreds of thousands of lines of hundreds of numbers; a Python object per row or
per number makes that minutes of work. These helpers treat a block of lines as one NumPy byte
array: find the separators, count them per line, gather the bytes of chosen fields into one
buffer, and parse every number of that buffer with a single C call (``np.fromstring``).

The fast path only answers "is this block well-formed?". When it is not, the reader re-checks
the offending lines one at a time in plain Python to say which file, line, column and value is
wrong; that slow path runs only on bad input.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from hsrl.errors import ConfigError, DataError, HsrlError

NL, CR, TAB, SPACE = 10, 13, 9, 32
COMMA, AT, SEMI = ord(","), ord("@"), ord(";")
INT64_MAX = np.iinfo(np.int64).max
INT64_MIN = np.iinfo(np.int64).min


# ----------------------------------------------------------------------------- files


def check_file(path: Path) -> int:
    """Return the size of a regular file, or raise a :class:`DataError` saying what is wrong."""
    if not path.exists():
        raise DataError(path, "file not found")
    if path.is_dir():
        raise DataError(path, "is a folder, expected a file")
    if not path.is_file():
        raise DataError(path, "not a regular file")
    return path.stat().st_size


def check_folder(path: Path) -> None:
    if not path.exists():
        raise DataError(path, "folder not found")
    if not path.is_dir():
        raise DataError(path, "is a file, expected the folder holding the raw files")


def read_bytes(path: Path) -> bytes:
    check_file(path)
    try:
        return path.read_bytes()
    except OSError as exc:
        raise DataError(path, f"cannot be read ({exc.strerror or exc})") from exc


def content_end(path: Path, size: int) -> int:
    """Size of the file without its trailing line breaks (a final newline is not a blank line)."""
    if size == 0:
        return 0
    tail_len = min(size, 4096)
    with open(path, "rb") as handle:
        handle.seek(size - tail_len)
        tail = handle.read(tail_len)
    return size - (len(tail) - len(tail.rstrip(b"\r\n")))


# ----------------------------------------------------------------------------- scanning


def split_lines(buf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and end (exclusive, without ``\\r\\n``) of every line of ``buf``.

    ``buf`` must end with a newline. Returns two int64 arrays of the same length.
    """
    return line_bounds(buf, np.flatnonzero(buf == NL))


def line_bounds(buf: np.ndarray, newlines: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`split_lines` given the positions of the newlines of ``buf``."""
    ends = newlines.astype(np.int64, copy=True)
    starts = np.empty_like(ends)
    if ends.size:
        starts[0] = 0
        starts[1:] = ends[:-1] + 1
        crlf = (ends > starts) & (buf[ends - 1] == CR)
        ends[crlf] -= 1
    return starts, ends


def count_between(sorted_positions: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """How many of ``sorted_positions`` fall in each half-open range ``[lo, hi)``."""
    return np.searchsorted(sorted_positions, hi) - np.searchsorted(sorted_positions, lo)


def ranges_index(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(s, s + n)`` for every (s, n), without a Python loop."""
    lengths = np.asarray(lengths, dtype=np.int64)
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    offsets = np.cumsum(lengths) - lengths
    shift = np.repeat(np.asarray(starts, dtype=np.int64) - offsets, lengths)
    return np.arange(total, dtype=np.int64) + shift


def row_of(lengths: np.ndarray) -> np.ndarray:
    """Row index of each element of a ragged array given its row lengths."""
    return np.repeat(np.arange(len(lengths), dtype=np.int64), lengths)


def saturated(values: np.ndarray) -> np.ndarray:
    """Where int64 parsing hit its limits: :func:`parse_numbers` saturates a number outside
    the 64-bit range there instead of failing, so those values were out of range in the file."""
    return (values == INT64_MAX) | (values == INT64_MIN)


def parse_numbers(data: np.ndarray | bytes, dtype: type = np.float64) -> np.ndarray | None:
    """All ``,``-separated numbers of ``data``, or ``None`` if any token is not a number.

    int64 parsing rejects ``1.5``, ``1e3``, ``nan``; float64 accepts ``nan``/``inf`` (callers
    check finiteness). An empty buffer gives an empty array.
    """
    if len(data) == 0:
        return np.zeros(0, dtype=dtype)
    try:
        return np.fromstring(data, dtype=dtype, sep=",")
    except ValueError:
        return None


def first_bad_line(text: np.ndarray, line_ends: np.ndarray, counts: np.ndarray, dtype: type) -> int:
    """Index of the first line whose numbers do not parse (``text`` failed as a whole).

    Line ``i`` of ``text`` ends with its separator at ``line_ends[i]`` and must hold
    ``counts[i]`` numbers. Halving the range each step costs about two full parses.
    """
    lo, hi = 0, len(line_ends)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        begin = 0 if lo == 0 else int(line_ends[lo - 1]) + 1
        values = parse_numbers(text[begin : int(line_ends[mid - 1]) + 1], dtype)
        if values is None or values.size != int(counts[lo:mid].sum()):
            hi = mid
        else:
            lo = mid
    return lo


def left_pad_tail(values: np.ndarray, counts: np.ndarray, length: int) -> np.ndarray:
    """Last ``length`` values of each ragged row, right-aligned in a zero-padded (R, length) array."""
    rows = len(counts)
    out = np.zeros((rows, length), dtype=np.int32)  # (R, H)
    if length == 0 or values.size == 0:
        return out
    counts = np.asarray(counts, dtype=np.int64)
    offsets = np.cumsum(counts) - counts
    take = np.minimum(counts, length)
    index = ranges_index(offsets + counts - take, take)
    row = row_of(take)
    col = length - np.repeat(take, take) + (index - np.repeat(offsets + counts - take, take))
    out[row, col] = values[index]
    return out


def first_index(mask: np.ndarray) -> int | None:
    hits = np.flatnonzero(mask)
    return int(hits[0]) if hits.size else None


# ----------------------------------------------------------------------------- slow path

_FLOAT = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_INT = re.compile(r"[+-]?\d+")
_NONFINITE = re.compile(r"[+-]?(?:nan|inf|infinity)", re.IGNORECASE)


class CellError(ValueError):
    """A cell's problem, before the reader adds file and line."""


def cell_number(token: str, column: str) -> float:
    """One decimal number of a cell, strictly (the slow path of the readers)."""
    text = token.strip()
    if not text:
        raise CellError(f"column {column}: empty value")
    if _NONFINITE.fullmatch(text):
        raise CellError(f"column {column}: value {text!r} is NaN or infinite")
    if not _FLOAT.fullmatch(text):
        raise CellError(f"column {column}: {_show(text)} is not a number")
    value = float(text)
    if not math.isfinite(value):
        raise CellError(f"column {column}: value {text!r} is NaN or infinite")
    return value


def cell_int(token: str, column: str) -> int:
    text = token.strip()
    if not text:
        raise CellError(f"column {column}: empty value")
    if not _INT.fullmatch(text):
        if _FLOAT.fullmatch(text) or _NONFINITE.fullmatch(text):
            raise CellError(f"column {column}: {_show(text)} is not an integer")
        raise CellError(f"column {column}: {_show(text)} is not a number")
    value = int(text)
    if not INT64_MIN < value < INT64_MAX:
        raise CellError(f"column {column}: {text} is outside the 64-bit integer range")
    return value


def cell_list(
    cell: str, column: str, *, sep: str = ",", integer: bool, expected: int | None = None
) -> list:
    tokens = cell.split(sep)
    if expected is not None and len(tokens) != expected:
        raise CellError(f"column {column}: {len(tokens)} values, expected {expected}")
    parse = cell_int if integer else cell_number
    return [parse(token, column) for token in tokens]


def _show(text: str, limit: int = 40) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


def decode_line(raw: bytes, path: Path, line: int, encoding: str = "ascii") -> str:
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as exc:
        raise DataError(
            path, f"byte {raw[exc.start]:#04x} at column {exc.start + 1} is not {encoding}", line
        ) from exc


# ----------------------------------------------------------------------------- options


def reader_options(
    options: Mapping[str, str], defaults: Mapping[str, int], minimum: Mapping[str, int]
) -> dict[str, int]:
    """Integer reader options (``--option key=value``) with defaults; unknown keys are an error."""
    unknown = sorted(set(options) - set(defaults))
    if unknown:
        raise ConfigError(
            f"unknown option(s) {', '.join(unknown)} (this reader takes: {', '.join(defaults)})"
        )
    values = dict(defaults)
    for key, text in options.items():
        try:
            values[key] = int(text)
        except ValueError:
            raise ConfigError(f"--option {key}={text}: expected an integer") from None
        if values[key] < minimum.get(key, 0):
            raise ConfigError(f"--option {key}={text}: must be at least {minimum.get(key, 0)}")
    return values


def check_out(out: Path, overwrite: bool) -> None:
    """Fail before the (long) parse rather than after it when the output cannot be written."""
    if out.exists() and not overwrite:
        raise HsrlError(f"{out}: already exists (choose another --out or pass --overwrite)")
    if out.exists() and not out.is_dir():
        raise HsrlError(f"{out}: exists and is not a folder")
