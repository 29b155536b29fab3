"""Training, saving, loading and guarding simulator folders; the CLI on top."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from sim_datasets import write_tiny_dataset

import hsrl.cli
from hsrl.data.prepared import load_prepared
from hsrl.errors import CheckpointError, HsrlError
from hsrl.io import read_json, write_json
from hsrl.simulator import (
    EnvConfig,
    ResponseModelConfig,
    SimulatorTrainConfig,
    UserResponseModel,
    check_compatible,
    dataset_fingerprint,
    load_simulator,
    make_env,
    roc_auc,
    save_simulator,
    train_simulator,
)
from hsrl.simulator.history import fit_history

FAST = SimulatorTrainConfig(epochs=2, batch_size=64)


@pytest.fixture(scope="module")
def trained(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("sim") / "simulator"
    metrics = train_simulator(tiny_dataset, out, FAST, progress=False, log=None)
    return out, metrics


def validation_auc(model: UserResponseModel, dataset_dir: Path, split: str = "val") -> float:
    records = load_prepared(dataset_dir, splits=[split]).split(split)
    history = fit_history(records.history, model.config.history_length)
    with torch.no_grad():
        logits = model(records.user_profile, history, records.slate)
    return roc_auc(logits, records.response)


def test_training_writes_a_complete_folder(trained, tiny_dataset):
    out, metrics = trained
    assert sorted(p.name for p in out.iterdir()) == [
        "config.json",
        "dataset.json",
        "metrics.json",
        "model.pt",
    ]
    assert [row["epoch"] for row in metrics["epochs"]] == [1, 2]
    assert metrics["val_split"] == "val"
    assert all(row["records_per_second"] > 0 for row in metrics["epochs"])
    assert read_json(out / "metrics.json") == json.loads(json.dumps(metrics))
    fingerprint = read_json(out / "dataset.json")
    assert fingerprint["num_items"] == 30 and fingerprint["user_profile_dim"] == 5
    # The saved weights are the best epoch's: their AUC is the reported best.
    model = load_simulator(out)
    assert validation_auc(model, tiny_dataset) == pytest.approx(metrics["best_val_auc"], abs=1e-6)
    best = max(row["val_auc"] for row in metrics["epochs"])
    assert metrics["best_val_auc"] == pytest.approx(best)
    # The planted click rule is learnable: far above chance on held-out records.
    assert metrics["best_val_auc"] > 0.65
    state = torch.load(out / "model.pt", weights_only=True)
    assert isinstance(state, dict) and "item_features" in state


def test_training_is_seeded(tiny_dataset, tmp_path):
    config = SimulatorTrainConfig(epochs=1, batch_size=64, seed=7)
    a = train_simulator(tiny_dataset, tmp_path / "a", config, progress=False, log=None)
    b = train_simulator(tiny_dataset, tmp_path / "b", config, progress=False, log=None)
    assert a["epochs"][0]["val_auc"] == pytest.approx(b["epochs"][0]["val_auc"], abs=1e-4)
    sa = torch.load(tmp_path / "a" / "model.pt", weights_only=True)
    sb = torch.load(tmp_path / "b" / "model.pt", weights_only=True)
    # Same seed, same weights up to the order of multi-threaded float sums in backward.
    for key in sa:
        torch.testing.assert_close(sa[key], sb[key], atol=1e-4, rtol=1e-4)


def test_save_load_gives_identical_outputs(tiny_dataset, tmp_path):
    dataset = load_prepared(tiny_dataset)
    torch.manual_seed(0)
    config = ResponseModelConfig(variant="ml1m", profile_dim=5, item_feature_dim=6)
    model = UserResponseModel(config, dataset.items.features).eval()
    save_simulator(model, tmp_path / "sim", dataset_fingerprint(dataset))
    loaded = load_simulator(tmp_path / "sim")
    records = dataset.split("val")
    args = (records.user_profile, fit_history(records.history, 50), records.slate)
    with torch.no_grad():
        assert torch.equal(model(*args), loaded(*args))
    assert loaded.config == config and not loaded.training


def test_checkpoint_from_another_dataset_is_refused(trained, tmp_path):
    out, _ = trained
    other_dims = write_tiny_dataset(tmp_path / "wide", profile_dim=7)
    with pytest.raises(CheckpointError, match="user profile size 7 .*expects 5"):
        check_compatible(load_simulator(out), load_prepared(other_dims))
    with pytest.raises(CheckpointError, match="user profile size 7"):
        make_env(other_dims, out)
    other_items = write_tiny_dataset(tmp_path / "items", num_items=40)
    with pytest.raises(CheckpointError, match="40 items .*trained on 30"):
        make_env(other_items, out)
    same_size = write_tiny_dataset(tmp_path / "reseeded", seed=9)
    with pytest.raises(CheckpointError, match="item tables differ"):
        make_env(same_size, out)
    # Scoring a new catalogue is allowed on purpose: swap the table, skip the item check.
    model = load_simulator(out)
    model.set_item_features(load_prepared(other_items).items.features)
    check_compatible(model, load_prepared(other_items), same_items=False)


def copy_of(folder: Path, tmp_path: Path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(folder, target)
    return target


def test_corrupted_checkpoints_are_refused(trained, tmp_path):
    out, _ = trained
    with pytest.raises(CheckpointError, match="not a simulator folder"):
        load_simulator(tmp_path / "missing")

    folder = copy_of(out, tmp_path)
    weights = folder / "model.pt"
    weights.write_bytes(weights.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match="corrupted"):
        load_simulator(folder)
    # A damaged file whose recorded hash was updated too still fails to load cleanly.
    meta = read_json(folder / "config.json")
    from hsrl.io import sha256_file

    meta["files"]["model.pt"] = sha256_file(weights)
    write_json(folder / "config.json", meta)
    with pytest.raises(CheckpointError, match="not a readable state dict"):
        load_simulator(folder)

    folder2 = tmp_path / "c2"
    shutil.copytree(out, folder2)
    (folder2 / "config.json").write_text("{ not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_simulator(folder2)

    folder3 = tmp_path / "c3"
    shutil.copytree(out, folder3)
    (folder3 / "model.pt").unlink()
    with pytest.raises(CheckpointError, match="model.pt: file not found"):
        load_simulator(folder3)

    folder4 = tmp_path / "c4"
    shutil.copytree(out, folder4)
    meta = read_json(folder4 / "config.json")
    meta["model"]["feature_dim"] = 32
    write_json(folder4 / "config.json", meta)
    with pytest.raises(CheckpointError, match="does not fit the model"):
        load_simulator(folder4)


def test_env_from_a_trained_simulator(trained, tiny_dataset):
    out, _ = trained
    env = make_env(tiny_dataset, out, config=EnvConfig(num_users=4), split="val")
    obs, _ = env.reset(seed=0)
    assert obs["history"].shape == (4, 50) and env.num_items == 30
    with pytest.raises(HsrlError, match="exactly one"):
        make_env(tiny_dataset, out, ground_truth=True)
    with pytest.raises(HsrlError, match="no ground-truth"):
        make_env(tiny_dataset, None, ground_truth=True)


# ------------------------------------------------------------------------------------------ CLI
def run_cli(monkeypatch, capsys, *argv: str) -> tuple[int, str, str]:
    monkeypatch.setattr(hsrl.cli, "_COMMAND_MODULES", ("simulator",))
    code = hsrl.cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_train_and_info(monkeypatch, capsys, tiny_dataset, tmp_path):
    out = tmp_path / "sim"
    args = ("simulator", "train", "--data", str(tiny_dataset), "--out", str(out))
    code, stdout, _ = run_cli(
        monkeypatch, capsys, *args, "--epochs", "1", "--no-progress", "--json"
    )
    assert code == 0
    assert json.loads(stdout)["epochs"][0]["epoch"] == 1
    code, stdout, _ = run_cli(monkeypatch, capsys, "simulator", "info", str(out))
    assert code == 0 and "val AUC" in stdout
    # An existing folder is kept unless --overwrite.
    before = (out / "model.pt").read_bytes()
    code, _, err = run_cli(monkeypatch, capsys, *args, "--epochs", "1", "--no-progress")
    assert code == 1 and "already exists" in err
    assert (out / "model.pt").read_bytes() == before


def test_cli_ml1m_variant_is_picked_from_the_source(monkeypatch, capsys, tmp_path):
    data = write_tiny_dataset(
        tmp_path / "ml1m", source="ml1m", slate_size=10, splits=("train", "test")
    )
    out = tmp_path / "sim"
    code, _, _ = run_cli(
        monkeypatch, capsys, "simulator", "train", "--data", str(data), "--out", str(out),
        "--epochs", "1", "--no-progress",
    )  # fmt: skip
    assert code == 0
    assert read_json(out / "config.json")["model"]["variant"] == "ml1m"
    assert read_json(out / "metrics.json")["val_split"] == "test"  # no "val": falls back
    assert load_simulator(out).fuse is not None


def test_cli_failures_leave_nothing_behind(monkeypatch, capsys, tiny_dataset, tmp_path):
    out = tmp_path / "sim"
    base = ("simulator", "train", "--out", str(out), "--no-progress")
    code, _, err = run_cli(monkeypatch, capsys, *base, "--data", str(tmp_path / "nope"))
    assert code == 1 and "not a prepared dataset" in err
    code, _, err = run_cli(
        monkeypatch, capsys, *base, "--data", str(tiny_dataset), "--val-split", "dev"
    )
    assert code == 1 and "dev" in err

    calls = {"n": 0}
    original = UserResponseModel.l2_penalty

    def fail_later(self):
        calls["n"] += 1
        if calls["n"] > 3:
            raise HsrlError("simulated failure during training")
        return original(self)

    monkeypatch.setattr(UserResponseModel, "l2_penalty", fail_later)
    code, _, err = run_cli(monkeypatch, capsys, *base, "--data", str(tiny_dataset))
    assert code == 1 and "simulated failure" in err
    assert list(tmp_path.iterdir()) == []  # no output, no temporary folder
