"""Run folders are never lost or mixed: safe --overwrite, a lock per run folder, plain result
names, and no NaN or inf taken from flags or settings (issue: attack hardening)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_train_cli import train_args

from hsrl.cli import main
from hsrl.errors import HsrlError
from hsrl.train import run_lock


@pytest.mark.parametrize("name", ["../config", "/abs/x", "../../x", "a/b", ".hidden", ".."])
def test_evaluate_name_must_be_a_plain_file_name(tiny_world, tmp_path, capsys, name):
    run = tmp_path / "run"
    assert main(train_args(tiny_world, run, iterations=2)) == 0
    config = (run / "config.json").read_bytes()
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", str(run), "--episodes", "3", "--name", name])
    assert exit_info.value.code == 2
    assert "plain file name" in capsys.readouterr().err
    assert (run / "config.json").read_bytes() == config
    assert not (run / "eval").exists()


def test_a_failing_overwrite_keeps_the_old_run(tiny_world, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(train_args(tiny_world, run, iterations=2)) == 0
    before = {p.name: p.read_bytes() for p in (run / "checkpoints").iterdir()}
    args = train_args(tiny_world, run, iterations=2) + ["--overwrite"]
    args[args.index("--simulator") + 1] = str(tmp_path / "nowhere")
    assert main(args) == 1
    assert "nowhere" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in (run / "checkpoints").iterdir()} == before
    assert not list(tmp_path.glob(".run.replaced-*"))


def test_a_run_that_diverges_during_an_overwrite_puts_the_old_run_back(
    tiny_world, tmp_path, capsys
):
    run = tmp_path / "run"
    assert main(train_args(tiny_world, run, iterations=2)) == 0
    before = (run / "checkpoints" / "last.pt").read_bytes()
    args = train_args(tiny_world, run, iterations=8) + ["--overwrite"]
    args += ["--set", "agent.actor_lr=1e30", "--set", "agent.critic_lr=1e30"]
    assert main(args) == 1
    assert "diverged" in capsys.readouterr().err
    assert (run / "checkpoints" / "last.pt").read_bytes() == before
    assert not list(tmp_path.glob(".run.replaced-*"))


def test_overwrite_never_replaces_a_folder_that_is_not_a_run(tiny_world, tmp_path, capsys):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    assert main(train_args(tiny_world, folder, iterations=2) + ["--overwrite"]) == 1
    assert "not a run folder" in capsys.readouterr().err
    assert (folder / "notes.txt").read_text() == "keep me"
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert main(train_args(tiny_world, afile, iterations=2)) == 1
    assert "not a folder" in capsys.readouterr().err


def test_a_run_folder_in_use_is_refused_at_once(tiny_world, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(train_args(tiny_world, run, iterations=2)) == 0
    before = (run / "checkpoints" / "last.pt").read_bytes()
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD_LOCK, str(run)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        capsys.readouterr()
        assert main(["train", "--resume", str(run), "--iterations", "2", "--no-progress"]) == 1
        assert "in use by another hsrl process" in capsys.readouterr().err
        assert main(train_args(tiny_world, run, iterations=2) + ["--overwrite"]) == 1
        assert "in use" in capsys.readouterr().err
        assert (run / "checkpoints" / "last.pt").read_bytes() == before
    finally:
        holder.kill()
        holder.wait()
    # The holder was killed: its lock ended with it, and the run can be resumed.
    assert main(["train", "--resume", str(run), "--iterations", "2", "--no-progress"]) == 0


_HOLD_LOCK = """
import sys, time
from pathlib import Path
from hsrl.train import run_lock
with run_lock(Path(sys.argv[1])):
    print("locked", flush=True)
    time.sleep(60)
"""


def test_lock_is_exclusive_within_one_process_too(tmp_path):
    with run_lock(tmp_path), pytest.raises(HsrlError, match="in use"), run_lock(tmp_path):
        pass
    with run_lock(tmp_path):  # released
        pass


def test_a_run_stopped_before_its_first_checkpoint_says_how_to_start_again(
    tiny_world, tmp_path, capsys
):
    run = tmp_path / "run"
    assert main(train_args(tiny_world, run, iterations=2)) == 0
    (run / "checkpoints" / "last.pt").unlink()
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--iterations", "2", "--no-progress"]) == 1
    assert "before its first checkpoint" in capsys.readouterr().err
    assert main(train_args(tiny_world, run, iterations=2)) == 1
    assert "--overwrite" in capsys.readouterr().err
    assert main(train_args(tiny_world, run, iterations=2) + ["--overwrite"]) == 0


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_settings_are_refused(tiny_world, tmp_path, capsys, value):
    run = tmp_path / "run"
    args = train_args(tiny_world, run, iterations=2) + ["--set", f"agent.entropy_coef={value}"]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "entropy_coef" in err and "finite" in err
    assert not run.exists()
    config = tmp_path / "bad.json"
    config.write_text('{"agent_config": {"entropy_coef": NaN}}')
    assert main(train_args(tiny_world, run, iterations=2) + ["--config", str(config)]) == 1
    assert "finite" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["simulator", "train", "--data", "D", "--out", "O", "--lr", "inf"],
        ["simulator", "train", "--data", "D", "--out", "O", "--lr", "nan"],
        ["churn", "RUN", "--noise", "nan"],
        ["evaluate", "--policy", "greedy", "--data", "D", "--epsilon", "nan"],
    ],
)
def test_non_finite_flags_are_usage_errors(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert "finite number" in capsys.readouterr().err


def test_training_that_diverges_stops_with_a_clear_error(tiny_world, tmp_path, capsys):
    run = tmp_path / "run"
    args = train_args(tiny_world, run, iterations=8)
    args += ["--set", "agent.actor_lr=1e30", "--set", "agent.critic_lr=1e30"]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "diverged" in err and err.count("\n") == 1
    log = run / "log.jsonl"
    if log.exists():
        for line in log.read_text().splitlines():
            record = json.loads(line)
            assert all(v == v for k, v in record.items() if k.startswith("loss/"))


@pytest.mark.internal_error
def test_an_internal_error_is_one_line_and_debug_shows_the_traceback(monkeypatch, capsys):
    import hsrl.cli.data as data_cli

    def broken(path):
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(data_cli, "load_prepared", broken)  # a bug inside `data info`
    assert main(["data", "info", "somewhere"]) == 70
    err = capsys.readouterr().err
    assert "internal error (ZeroDivisionError: boom)" in err and err.count("\n") == 1
    with pytest.raises(ZeroDivisionError):
        main(["--debug", "data", "info", "somewhere"])


def test_an_unreadable_output_place_is_a_one_line_error(tiny_world, tmp_path, capsys):
    import os

    if os.geteuid() == 0:
        pytest.skip("root ignores file modes")
    parent = tmp_path / "locked"
    parent.mkdir()
    parent.chmod(0o500)
    try:
        assert main(train_args(tiny_world, parent / "run", iterations=2)) == 1
        err = capsys.readouterr().err
        assert err.startswith("hsrl: error:") and "Permission denied" in err
    finally:
        parent.chmod(0o700)


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_temporaries_of_killed_writers_are_removed_and_reported(tmp_path, capsys):
    from hsrl.io import atomic_output_dir, write_json

    dead = _dead_pid()
    stale = [
        tmp_path / f".out.tmp-{dead}-abc",
        tmp_path / f".out.raw-{dead}-x1",
        tmp_path / f".last.pt.tmp-{dead}-q",
    ]
    for path in stale[:2]:
        path.mkdir()
        (path / "big").write_bytes(b"0" * 100)
    stale[2].write_bytes(b"partial")
    live = tmp_path / f".out.tmp-{os.getpid()}-mine"  # a writer still running: kept
    live.mkdir()
    other = tmp_path / ".unrelated.tmp-1-x"
    other.mkdir()
    with atomic_output_dir(tmp_path / "out") as tmp:
        (tmp / "file").write_text("x")
    write_json(tmp_path / "last.pt", {"ok": 1})
    assert not any(path.exists() for path in stale)
    assert live.exists() and other.exists() and (tmp_path / "out" / "file").exists()
    err = capsys.readouterr().err
    assert err.count("left by an interrupted earlier write") == 3


def test_a_backup_left_by_a_killed_overwrite_is_removed_by_the_next_finished_run(
    tiny_world, tmp_path, capsys
):
    run = tmp_path / "run"
    backup = tmp_path / f".run.replaced-{_dead_pid()}"
    backup.mkdir()
    (backup / "config.json").write_text("{}")
    assert main(train_args(tiny_world, run, iterations=2)) == 0
    assert not backup.exists()
    assert "interrupted earlier write" in capsys.readouterr().err


def test_resume_refuses_a_config_edited_since_the_checkpoint(tiny_world, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(train_args(tiny_world, run, iterations=2)) == 0
    before = (run / "checkpoints" / "last.pt").read_bytes()
    config = json.loads((run / "config.json").read_text())
    config["train"]["batch_size"] = 32
    (run / "config.json").write_text(json.dumps(config))
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--iterations", "2", "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "train.batch_size differs" in err and err.count("\n") == 1
    assert (run / "checkpoints" / "last.pt").read_bytes() == before


def test_resume_on_another_device_is_refused(tiny_world, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(train_args(tiny_world, run, iterations=2)) == 0
    capsys.readouterr()
    args = ["train", "--resume", str(run), "--iterations", "2", "--device", "cuda"]
    assert main(args) == 1
    assert "on its own device (cpu)" in capsys.readouterr().err


def test_log_lines_past_the_last_checkpoint_are_not_repeated_after_resume(
    tiny_world, tmp_path, capsys
):
    run = tmp_path / "run"
    args = train_args(tiny_world, run, iterations=8) + ["--set", "train.checkpoint_every=100"]
    assert main(args) == 0  # checkpoint at the end only: iteration 8
    log = run / "log.jsonl"
    lines = log.read_text().splitlines()
    # As if killed after logging iterations 12 and 16 beyond the checkpoint, mid-line.
    extra = [json.dumps({**json.loads(lines[-1]), "iteration": i}) for i in (12, 16)]
    log.write_text("\n".join([*lines, *extra]) + '\n{"iteration": 2')
    assert main(["train", "--resume", str(run), "--iterations", "8", "--no-progress"]) == 0
    iterations = [json.loads(line)["iteration"] for line in log.read_text().splitlines()]
    assert iterations == sorted(set(iterations)) and iterations[-1] == 16


@pytest.mark.parametrize("payload", ["pickle", "list"])
def test_a_checkpoint_that_is_not_ours_is_one_line_and_never_unpickled(
    tiny_world, tmp_path, capsys, payload
):
    import torch

    run = tmp_path / "run"
    assert main(train_args(tiny_world, run, iterations=2)) == 0
    ckpt = run / "checkpoints" / "last.pt"
    marker = tmp_path / "unpickled"
    if payload == "pickle":
        torch.save({"iteration": 2, "agent": _Marker(str(marker))}, ckpt)
    else:
        torch.save([1, 2, 3], ckpt)
    capsys.readouterr()
    assert main(["evaluate", str(run), "--episodes", "3"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "checkpoint" in err and "weights_only" not in err
    assert not marker.exists()


class _Marker:
    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_a_replay_too_small_to_ever_learn_is_refused(tiny_world, tmp_path, capsys):
    args = train_args(tiny_world, tmp_path / "run") + ["--set", "train.replay_capacity=1"]
    assert main(args) == 1
    assert "replay_capacity (1)" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("value", ["-1", str(2**63), "1.5"])
def test_seeds_outside_the_generators_range_are_usage_errors(value, capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        main(["data", "prepare", "builtin", "--out", str(tmp_path / "x"), "--seed", value])
    assert exit_info.value.code == 2
    assert "--seed" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_a_huge_builtin_option_is_refused_before_any_work(capsys, tmp_path):
    args = ["data", "prepare", "builtin", "--out", str(tmp_path / "x")]
    assert main([*args, "--option", "history_length=100000000000"]) == 1
    assert "history_length: must be at most 10,000" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_a_deeply_nested_config_is_a_one_line_error(tiny_world, tmp_path, capsys):
    config = tmp_path / "deep.json"
    config.write_text('{"a": ' * 100_000 + "1" + "}" * 100_000)
    assert main(train_args(tiny_world, tmp_path / "run") + ["--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert "deep.json" in err and "nested too deeply" in err


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda s: s.__setitem__("iteration", -5), "negative iteration"),
        (lambda s: s["replay"]["storage"]["slate"].__setitem__((0, 0), 10**6), "slate holds"),
        (lambda s: s["replay"]["storage"]["history"].__setitem__((0, 0), -3), "history holds"),
        (lambda s: s["replay"]["storage"]["reward"].__setitem__(0, float("nan")), "reward"),
    ],
)
def test_a_damaged_checkpoint_is_refused_on_resume(tiny_world, tmp_path, capsys, damage, message):
    import torch

    run = tmp_path / "run"
    assert main(train_args(tiny_world, run, iterations=8)) == 0
    ckpt = run / "checkpoints" / "last.pt"
    state = torch.load(ckpt, weights_only=True)
    damage(state)
    torch.save(state, ckpt)
    before = ckpt.read_bytes()
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--iterations", "2", "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert ckpt.read_bytes() == before


@pytest.mark.parametrize(
    "mask, folder_mode, file_mode", [(0o022, 0o755, 0o644), (0o077, 0o700, 0o600)]
)
def test_outputs_follow_the_umask(tmp_path, mask, folder_mode, file_mode):
    import numpy as np

    from hsrl.io import atomic_output_dir, save_arrays, write_json

    old = os.umask(mask)
    try:
        with atomic_output_dir(tmp_path / "out") as tmp:
            write_json(tmp / "a.json", {"x": 1})
            save_arrays(tmp / "b.npz", x=np.ones(2))
    finally:
        os.umask(old)
    assert (tmp_path / "out").stat().st_mode & 0o777 == folder_mode
    assert (tmp_path / "out" / "a.json").stat().st_mode & 0o777 == file_mode
    assert (tmp_path / "out" / "b.npz").stat().st_mode & 0o777 == file_mode


def test_evaluate_bounds_the_episode_count(tiny_world, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(train_args(tiny_world, run, iterations=2)) == 0
    capsys.readouterr()
    assert main(["evaluate", str(run), "--episodes", str(10**12)]) == 1
    err = capsys.readouterr().err
    assert "episodes: at most 10,000,000" in err and err.count("\n") == 1
    assert not (run / "eval").exists()


def test_a_full_disk_is_one_line_and_leaves_the_old_output(tmp_path, capsys, monkeypatch):
    import errno

    import hsrl.data.prepared as prepared

    out = tmp_path / "data"
    args = ["data", "prepare", "builtin", "--out", str(out), "--option", "num_users=20"]
    assert main(args) == 0
    before = (out / "manifest.json").read_bytes()
    capsys.readouterr()

    def full(*_args, **_kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(out / "x.npz"))

    monkeypatch.setattr(prepared, "save_arrays", full)
    assert main(args + ["--overwrite", "--seed", "4"]) == 1
    err = capsys.readouterr().err
    assert err == f"hsrl: error: {out / 'x.npz'}: No space left on device\n"
    assert (out / "manifest.json").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["data"]  # no temporary left behind


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root to act as nobody"
)
def test_permission_denied_as_an_unprivileged_user_is_one_line(capsys):
    # Root ignores file modes, so the command runs with the effective user "nobody" (set back
    # afterwards). The first run, as root, imports everything the command needs.
    import pwd
    import shutil
    import tempfile

    nobody = pwd.getpwnam("nobody").pw_uid
    root = Path(tempfile.mkdtemp(prefix="hsrl-perm-"))  # pytest's tmp_path is root-only
    try:
        os.chmod(root, 0o755)
        args = ["data", "prepare", "builtin", "--option", "num_users=20", "--out"]
        assert main([*args, str(root / "warm")]) == 0
        locked = root / "locked"
        locked.mkdir()
        os.chmod(locked, 0o555)  # nobody may read it but not write into it
        capsys.readouterr()
        os.seteuid(nobody)
        try:
            code = main([*args, str(locked / "data")])
        finally:
            os.seteuid(0)
        err = capsys.readouterr().err
        assert code == 1
        assert err.startswith("hsrl: error: ") and "Permission denied" in err
        assert err.count("\n") == 1 and str(locked) in err
        assert not any(locked.iterdir())
    finally:
        shutil.rmtree(root, ignore_errors=True)
