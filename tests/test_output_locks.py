"""Output folders have one writer at a time: a second `hsrl` writing the same --out fails at
once and clearly, a lock left by a killed writer is taken over, and no lock file stays behind
(issue: attack hardening)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from hsrl.cli import main
from hsrl.errors import HsrlError
from hsrl.io import file_lock, output_lock

_HOLD_OUTPUT_LOCK = """
import sys, time
from hsrl.io import output_lock
with output_lock(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(60)
"""


def _hold(out: Path) -> subprocess.Popen:
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD_OUTPUT_LOCK, str(out)], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
    return holder


def _prepare(out: Path, *extra: str) -> list[str]:
    return [
        "data",
        "prepare",
        "builtin",
        "--out",
        str(out),
        "--option",
        "num_users=20",
        *extra,
    ]


def test_a_second_writer_of_an_output_folder_fails_at_once(tmp_path, capsys):
    out = tmp_path / "data"
    holder = _hold(out)
    try:
        assert main(_prepare(out)) == 1
        err = capsys.readouterr().err
        assert "in use by another hsrl process" in err and str(out) in err
        assert len(err.strip().splitlines()) == 1
        assert not out.exists()
    finally:
        holder.kill()
        holder.wait()
    # The holder was killed: its lock ended with it, and the folder can be written.
    assert main(_prepare(out)) == 0
    assert (out / "manifest.json").is_file()
    assert not (tmp_path / ".data.lock").exists()


def test_an_overwrite_waits_for_no_one_and_keeps_the_old_folder(tmp_path, capsys):
    out = tmp_path / "data"
    assert main(_prepare(out)) == 0
    before = (out / "manifest.json").read_bytes()
    holder = _hold(out)
    try:
        assert main(_prepare(out, "--overwrite", "--seed", "3")) == 1
        assert "in use" in capsys.readouterr().err
        assert (out / "manifest.json").read_bytes() == before
    finally:
        holder.kill()
        holder.wait()


def test_report_out_is_locked_too(tmp_path, capsys):
    out = tmp_path / "report"
    holder = _hold(out)
    try:
        assert main(["report", str(tmp_path / "no-runs"), "--out", str(out)]) == 1
        assert "in use by another hsrl process" in capsys.readouterr().err
    finally:
        holder.kill()
        holder.wait()


def test_output_lock_is_exclusive_in_one_process_and_removed_on_release(tmp_path):
    out = tmp_path / "x"
    with output_lock(out), pytest.raises(HsrlError, match="in use"), output_lock(out):
        pass
    with output_lock(out), output_lock(out, reentrant=True):  # the writer's own inner take
        assert (tmp_path / ".x.lock").exists()
    assert not (tmp_path / ".x.lock").exists()


def test_a_lock_file_removed_by_its_last_holder_is_not_shared(tmp_path):
    # A taker that opened the file before the holder removed it must not believe it holds the
    # lock on the orphaned file: it takes the new file instead, which a third party then sees.
    path = tmp_path / ".lock"
    with file_lock(path, "first", remove=True):
        pass
    assert not path.exists()
    with file_lock(path, "second", remove=True):
        assert path.exists()
        with pytest.raises(HsrlError, match="third: in use"), file_lock(path, "third"):
            pass
