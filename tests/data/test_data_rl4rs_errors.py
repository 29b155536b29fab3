"""Every kind of broken RL4RS input gives one clear error: file, line, problem; no output.

The broken files are made from the real fragment by one mutation each, and every case is run
both through the library (the :class:`DataError` fields) and through ``hsrl data prepare``
(non-zero exit, the message on stderr, no ``--out`` folder and no temporary left behind).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from hsrl.cli import main
from hsrl.data import rl4rs
from hsrl.data.rl4rs import prepare_rl4rs
from hsrl.errors import DataError

TRAIN, TEST, ITEMS = "rl4rs_b_train.csv", "rl4rs_b_test.csv", "item_info.csv"


def cell(line: int, column: int, value: str) -> Callable[[list[str]], None]:
    """Set a cell of file line ``line`` (1 = header)."""

    def mutate(lines: list[str]) -> None:
        cells = lines[line - 1].split("@")
        cells[column] = value
        lines[line - 1] = "@".join(cells)

    return mutate


def edit_cell(line: int, column: int, edit: Callable[[str], str]) -> Callable[[list[str]], None]:
    def mutate(lines: list[str]) -> None:
        cells = lines[line - 1].split("@")
        cells[column] = edit(cells[column])
        lines[line - 1] = "@".join(cells)

    return mutate


def edit_list(sep: str, index: int, value: str | None) -> Callable[[str], str]:
    """Replace (or with None, drop) element ``index`` of a ``sep``-separated cell."""

    def edit(text: str) -> str:
        parts = text.split(sep)
        if value is None:
            del parts[index]
        else:
            parts[index] = value
        return sep.join(parts)

    return edit


def edit_vector(slot: int, index: int, value: str | None) -> Callable[[str], str]:
    def edit(text: str) -> str:
        vectors = text.split(";")
        vectors[slot] = edit_list(",", index, value)(vectors[slot])
        return ";".join(vectors)

    return edit


def shift_vector_value(slot: int, index: int, delta: float) -> Callable[[str], str]:
    def edit(text: str) -> str:
        vectors = text.split(";")
        values = vectors[slot].split(",")
        values[index] = f"{float(values[index]) + delta:.4f}"
        vectors[slot] = ",".join(values)
        return ";".join(vectors)

    return edit


@dataclass(frozen=True)
class Case:
    name: str
    file: str
    expect: str  # a part of the problem text
    line: int | None
    lines: Callable[[list[str]], None] | None = None  # mutate the lines in place
    text: Callable[[str], str] | None = None  # or transform the whole text

    def apply(self, raw: Path) -> None:
        path = raw / self.file
        content = path.read_text(encoding="latin-1")
        if self.lines is not None:
            lines = content.split("\n")
            self.lines(lines)
            content = "\n".join(lines)
        if self.text is not None:
            content = self.text(content)
        path.write_bytes(content.encode("latin-1"))


def _insert_blank(lines: list[str]) -> None:
    lines.insert(10, "")


def _drop_last_column(line: int) -> Callable[[list[str]], None]:
    def mutate(lines: list[str]) -> None:
        lines[line - 1] = lines[line - 1].rsplit("@", 1)[0]

    return mutate


def _tabs_on_line(line: int) -> Callable[[list[str]], None]:
    def mutate(lines: list[str]) -> None:
        lines[line - 1] = lines[line - 1].replace("@", "\t")

    return mutate


def _append(line: int, extra: str) -> Callable[[list[str]], None]:
    def mutate(lines: list[str]) -> None:
        lines[line - 1] += extra

    return mutate


def _cut_last_line_at(fraction: float) -> Callable[[str], str]:
    def transform(text: str) -> str:
        last = text.rfind("\n") + 1
        return text[: last + int((len(text) - last) * fraction)]

    return transform


def _item_line(line: int, column: int, value: str | None) -> Callable[[list[str]], None]:
    def mutate(lines: list[str]) -> None:
        cells = lines[line - 1].split(" ")
        if value is None:
            cells[1] = ",".join(cells[1].split(",")[:-1])
        else:
            cells[column] = value
        lines[line - 1] = " ".join(cells)

    return mutate


LAST_TRAIN_LINE = 47  # header + 46 records, no final newline

CASES = [
    # --- record files: cells
    Case(
        "non-numeric cell", TRAIN, "column session_id: 'abc' is not a number", 3, cell(3, 1, "abc")
    ),
    Case(
        "float in an integer column",
        TRAIN,
        "column timestamp: '530551.5' is not an integer",
        4,
        cell(4, 0, "530551.5"),
    ),
    Case(
        "integer overflow",
        TRAIN,
        "outside the 64-bit integer range",
        5,
        cell(5, 0, "99999999999999999999"),
    ),
    Case(
        "non-numeric history",
        TRAIN,
        "column user_seqfeature: 'x7' is not a number",
        6,
        edit_cell(6, 5, edit_list(",", 1, "x7")),
    ),
    Case(
        "non-numeric portrait",
        TRAIN,
        "column user_protrait: 'x.5' is not a number",
        7,
        edit_cell(7, 6, edit_list(",", 3, "x.5")),
    ),
    Case(
        "non-numeric item vector",
        TRAIN,
        "column item_feature: '0.1a' is not a number",
        8,
        edit_cell(8, 7, edit_vector(2, 5, "0.1a")),
    ),
    Case("empty cell", TRAIN, "column sequence_id: empty value", 9, cell(9, 2, "")),
    # --- record files: lengths
    Case(
        "portrait of 41",
        TRAIN,
        "column user_protrait: 41 values, expected 42",
        10,
        edit_cell(10, 6, edit_list(",", 0, None)),
    ),
    Case(
        "portrait of 43",
        TRAIN,
        "column user_protrait: 43 values, expected 42",
        11,
        edit_cell(11, 6, lambda t: t + ",1"),
    ),
    Case(
        "item vector of 39",
        TRAIN,
        "vector 3 has 39 values, expected 40",
        12,
        edit_cell(12, 7, edit_vector(2, 0, None)),
    ),
    Case(
        "8 item vectors",
        TRAIN,
        "8 item vectors for 9 exposed items",
        13,
        edit_cell(13, 7, edit_list(";", 8, None)),
    ),
    Case(
        "slate of 8",
        TRAIN,
        "column exposed_items: 8 values, expected 9",
        14,
        edit_cell(14, 3, edit_list(",", 0, None)),
    ),
    Case(
        "feedback count",
        TRAIN,
        "column user_feedback: 8 values for 9 exposed items",
        15,
        edit_cell(15, 4, edit_list(",", 0, None)),
    ),
    # --- record files: values
    Case(
        "NaN portrait",
        TRAIN,
        "column user_protrait: value 'nan' is NaN or infinite",
        16,
        edit_cell(16, 6, edit_list(",", 12, "nan")),
    ),
    Case(
        "inf in item vector",
        TRAIN,
        "column item_feature: value 'inf' is NaN or infinite",
        17,
        edit_cell(17, 7, edit_vector(0, 0, "inf")),
    ),
    Case(
        "portrait <= -1",
        TRAIN,
        "column user_protrait: value -1.0 is <= -1",
        18,
        edit_cell(18, 6, edit_list(",", 20, "-1")),
    ),
    Case(
        "item vector differs",
        TRAIN,
        "vector 2 (item",
        19,
        edit_cell(19, 7, shift_vector_value(1, 4, 0.5)),
    ),
    Case(
        "item outside the table",
        TRAIN,
        "item id 284 is outside the item table (1..283)",
        20,
        edit_cell(20, 3, edit_list(",", 4, "284")),
    ),
    Case(
        "padding id in a slate",
        TRAIN,
        "item id 0 (padding) in a slate",
        21,
        edit_cell(21, 3, edit_list(",", 0, "0")),
    ),
    Case(
        "history item outside",
        TRAIN,
        "column user_seqfeature: item id 999 is outside",
        22,
        edit_cell(22, 5, edit_list(",", 0, "999")),
    ),
    Case(
        "negative history item",
        TRAIN,
        "column user_seqfeature: item id -3 is outside",
        23,
        edit_cell(23, 5, edit_list(",", 0, "-3")),
    ),
    Case(
        "feedback not 0/1",
        TRAIN,
        "column user_feedback: value 2 is not 0 or 1",
        24,
        edit_cell(24, 4, edit_list(",", 8, "2")),
    ),
    Case("non-ascii byte", TRAIN, "is not ascii", 25, cell(25, 1, "1\u00e9")),
    # --- record files: line structure
    Case(
        "column missing",
        TRAIN,
        "expected 9 '@'-separated columns, found 8 (is the line truncated?)",
        26,
        _drop_last_column(26),
    ),
    Case("extra column", TRAIN, "found 10", 27, _append(27, "@5")),
    Case("wrong separator on a line", TRAIN, "found 1 (wrong separator?", 28, _tabs_on_line(28)),
    Case("blank line", TRAIN, "empty line", 11, _insert_blank),
    Case(
        "truncated last line",
        TRAIN,
        "found 8 (is the line truncated?)",
        LAST_TRAIN_LINE,
        text=_cut_last_line_at(0.6),
    ),
    Case(
        "truncated last value",
        TRAIN,
        "column behavior_policy_id: empty value",
        LAST_TRAIN_LINE,
        text=lambda t: t[:-1],
    ),
    Case(
        "truncated inside a number",
        TRAIN,
        "found 8",
        LAST_TRAIN_LINE,
        text=lambda t: t[: t.rfind("@") - 2],
    ),
    # --- record files: whole file
    Case("empty file", TRAIN, "the file is empty", 1, text=lambda t: ""),
    Case(
        "header only",
        TRAIN,
        "no records after the header",
        2,
        text=lambda t: t.split("\n")[0] + "\n",
    ),
    Case(
        "wrong separator in the file",
        TRAIN,
        "wrong separator: the header is tab-separated",
        1,
        text=lambda t: t.replace("@", "\t"),
    ),
    Case(
        "comma-separated file",
        TRAIN,
        "wrong separator: the header is ','-separated",
        1,
        text=lambda t: t.replace("@", ","),
    ),
    Case("missing header", TRAIN, "missing header line", 1, text=lambda t: t.split("\n", 1)[1]),
    Case(
        "renamed column",
        TRAIN,
        "unexpected header",
        1,
        text=lambda t: t.replace("user_protrait", "portrait", 1),
    ),
    Case(
        "bad test file",
        TEST,
        "item id 300 is outside",
        5,
        edit_cell(5, 3, edit_list(",", 8, "300")),
    ),
    # --- item table
    Case("duplicate item id", ITEMS, "item_id 1 appears twice", 3, _item_line(3, 0, "1")),
    Case(
        "item id outside 1..N", ITEMS, "item_id 300 outside 1..283", 284, _item_line(284, 0, "300")
    ),
    Case(
        "short item_vec",
        ITEMS,
        "column item_vec: 39 values, expected 40",
        4,
        _item_line(4, 1, None),
    ),
    Case(
        "non-numeric price",
        ITEMS,
        "column price: 'abc' is not a number",
        5,
        _item_line(5, 2, "abc"),
    ),
    Case(
        "float location",
        ITEMS,
        "column location: '1.5' is not an integer",
        6,
        _item_line(6, 3, "1.5"),
    ),
    Case("NaN item feature", ITEMS, "NaN or infinite", 7, _item_line(7, 1, ",".join(["nan"] * 40))),
    Case(
        "item feature beyond float32 (not blamed on the records)",
        ITEMS,
        "column item_vec: a value beyond the float32 range",
        8,
        _item_line(8, 1, ",".join(["1e39"] * 40)),
    ),
    Case(
        "price beyond float32",
        ITEMS,
        "column price: a value beyond the float32 range",
        9,
        _item_line(9, 2, "-5e38"),
    ),
    Case(
        "huge location",
        ITEMS,
        "must be below 2^53",
        10,
        _item_line(10, 3, "1" + "0" * 30),
    ),
    Case(
        "item table header",
        ITEMS,
        "unexpected header",
        1,
        text=lambda t: t.replace("price", "cost", 1),
    ),
    Case(
        "item table separator",
        ITEMS,
        "wrong separator: the header is tab-separated",
        1,
        text=lambda t: t.replace(" ", "\t"),
    ),
    Case("empty item table", ITEMS, "the file is empty", 1, text=lambda t: ""),
]


@pytest.fixture(params=CASES, ids=[c.name for c in CASES])
def broken(request, rl4rs_raw_copy: Path) -> tuple[Case, Path]:
    case: Case = request.param
    case.apply(rl4rs_raw_copy)
    return case, rl4rs_raw_copy


def test_library_error_names_file_line_problem(broken, tmp_path: Path):
    case, raw = broken
    out = tmp_path / "out"
    with pytest.raises(DataError) as info:
        prepare_rl4rs(raw, out, seed=0, overwrite=False, options={})
    error = info.value
    assert error.path.name == case.file
    assert error.line == case.line, str(error)
    assert case.expect in error.problem, str(error)
    assert not out.exists()


def test_cli_error_exit_and_message(broken, tmp_path: Path, capsys):
    case, raw = broken
    out = tmp_path / "out"
    code = main(["data", "prepare", "rl4rs", "--raw", str(raw), "--out", str(out)])
    captured = capsys.readouterr()
    assert code != 0
    assert captured.out == ""
    assert case.file in captured.err and case.expect in captured.err
    assert f"line {case.line}" in captured.err
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["raw"]  # no temporary folder left


def test_error_line_numbers_across_blocks(monkeypatch, rl4rs_raw_copy: Path, tmp_path: Path):
    monkeypatch.setattr(rl4rs, "BLOCK_BYTES", 4096)
    Case("late", TRAIN, "", 40, cell(40, 4, "1,1,1,1,1,1,1,1,7")).apply(rl4rs_raw_copy)
    with pytest.raises(DataError, match="value 7 is not 0 or 1") as info:
        prepare_rl4rs(rl4rs_raw_copy, tmp_path / "out", seed=0, overwrite=False, options={})
    assert info.value.line == 40


@pytest.mark.parametrize(
    ("damage", "file", "expect"),
    [
        ("remove", TRAIN, "file not found"),
        ("folder", TEST, "is a folder, expected a file"),
        ("remove", ITEMS, "file not found"),
    ],
)
def test_missing_or_wrong_kind_of_file(
    damage, file, expect, rl4rs_raw_copy: Path, tmp_path: Path, capsys
):
    path = rl4rs_raw_copy / file
    path.unlink()
    if damage == "folder":
        path.mkdir()
    with pytest.raises(DataError, match=expect) as info:
        prepare_rl4rs(rl4rs_raw_copy, tmp_path / "out", seed=0, overwrite=False, options={})
    assert info.value.path == path
    code = main(
        ["data", "prepare", "rl4rs", "--raw", str(rl4rs_raw_copy), "--out", str(tmp_path / "out")]
    )
    assert code != 0 and file in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_missing_raw_folder(tmp_path: Path, capsys):
    code = main(
        ["data", "prepare", "rl4rs", "--raw", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]
    )
    assert code != 0 and "folder not found" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_existing_output_is_kept_on_failure(rl4rs_raw_copy: Path, tmp_path: Path):
    """--overwrite replaces the old dataset only once the new one is complete."""
    out = tmp_path / "out"
    prepare_rl4rs(rl4rs_raw_copy, out, seed=0, overwrite=False, options={})
    before = sorted(p.name for p in out.iterdir())
    Case("x", TRAIN, "", 30, cell(30, 4, "9")).apply(rl4rs_raw_copy)
    with pytest.raises(DataError):
        prepare_rl4rs(rl4rs_raw_copy, out, seed=0, overwrite=True, options={})
    assert sorted(p.name for p in out.iterdir()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "raw"]
