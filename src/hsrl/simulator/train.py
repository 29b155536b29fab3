"""Training, saving and loading the user response model (``hsrl simulator train``).

A simulator folder::

    model.pt       the state dict (tensors only: loads with torch.load(weights_only=True)),
                   including the item feature table the model scores
    config.json    format version, model config, training config, sha256 of model.pt
    dataset.json   fingerprint of the dataset it was trained on (source, item count, dims,
                   sha256 of the item features)
    metrics.json   per-epoch training loss, validation AUC and throughput; the best epoch

The folder is written atomically; a failed or interrupted run leaves nothing behind.
Training follows the HAC reference: BCE on logged (slate, response) pairs plus
``l2_coef * sum_p mean(p^2)``, Adam, 2 epochs of batch 128 at lr 1e-3; after each epoch the
validation AUC is computed and the best epoch's weights are kept. One deliberate difference:
the reference applies the sigmoid twice (``BCEWithLogitsLoss(sigmoid(logit))``); we use the
logits once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from hsrl.config import from_dict, to_dict
from hsrl.data.prepared import PreparedDataset, Records, load_prepared, read_manifest
from hsrl.device import resolve_device
from hsrl.errors import CheckpointError, ConfigError, DataError, HsrlError
from hsrl.io import atomic_output_dir, read_json, sha256_file, write_json
from hsrl.simulator.history import fit_history
from hsrl.simulator.metrics import roc_auc, slot_mean_auc
from hsrl.simulator.response_model import ResponseModelConfig, UserResponseModel

FORMAT = "hsrl-simulator"
FORMAT_VERSION = 1
MODEL_FILE = "model.pt"
CONFIG_FILE = "config.json"
DATASET_FILE = "dataset.json"
METRICS_FILE = "metrics.json"


@dataclass(frozen=True)
class SimulatorTrainConfig:
    """How the response model is trained; defaults are the HAC reference's."""

    model: ResponseModelConfig = field(default_factory=ResponseModelConfig)
    epochs: int = 2
    batch_size: int = 128
    lr: float = 1e-3
    l2_coef: float = 3e-4
    """Weight of sum over parameter tensors of mean(p^2)."""
    seed: int = 0
    val_split: str | None = None
    """Split for the validation AUC; None = "val" if the dataset has one, else "test"."""
    eval_batch_size: int = 4096

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}: must be at least 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ConfigError(f"lr: must be positive, got {self.lr}")
        if not self.l2_coef >= 0:
            raise ConfigError(f"l2_coef: must be non-negative, got {self.l2_coef}")


# ---------------------------------------------------------------------- dataset fingerprint
def item_features_sha256(features: torch.Tensor) -> str:
    array = np.ascontiguousarray(features.detach().cpu().numpy(), dtype="<f4")
    return hashlib.sha256(array.tobytes()).hexdigest()


def dataset_fingerprint(dataset: PreparedDataset) -> dict[str, Any]:
    """What a simulator must agree with to be used on a dataset."""
    manifest = dataset.manifest
    return {
        "source": manifest.get("source"),
        "path": str(dataset.path),
        "num_items": dataset.items.num_items,
        "item_feature_dim": dataset.items.feature_dim,
        "user_profile_dim": manifest["user_profile_dim"],
        "slate_size": manifest["slate_size"],
        "history_length": manifest["history_length"],
        "item_features_sha256": item_features_sha256(dataset.items.features),
    }


def check_compatible(
    model: UserResponseModel, dataset: PreparedDataset, *, same_items: bool = True
) -> None:
    """Raise :class:`CheckpointError` if ``model`` cannot be used with ``dataset``.

    Dimensions must always agree. With ``same_items`` (the default) the item table must also be
    the one the model holds; pass False after :meth:`UserResponseModel.set_item_features` with
    the dataset's table, to score a catalogue the model was not trained on.
    """
    where = dataset.path
    problems = []
    if model.config.profile_dim != dataset.manifest["user_profile_dim"]:
        problems.append(
            f"user profile size {dataset.manifest['user_profile_dim']} "
            f"(the simulator expects {model.config.profile_dim})"
        )
    if model.config.item_feature_dim != dataset.items.feature_dim:
        problems.append(
            f"item feature size {dataset.items.feature_dim} "
            f"(the simulator expects {model.config.item_feature_dim})"
        )
    trained_slots = model.config.slate_size if model.config.position == "slot" else None
    if trained_slots is not None and trained_slots != dataset.manifest["slate_size"]:
        problems.append(
            f"slates of {dataset.manifest['slate_size']} slots (the simulator's position term "
            f"was trained on {trained_slots})"
        )
    if same_items and not problems:
        if model.num_items != dataset.items.num_items:
            problems.append(
                f"{dataset.items.num_items} items (the simulator was trained on {model.num_items})"
            )
        elif item_features_sha256(model.item_features) != item_features_sha256(
            dataset.items.features
        ):
            problems.append("other item features (the item tables differ)")
    if problems:
        trained = getattr(model, "dataset_fingerprint", None) or {}
        origin = f" (trained on {trained['path']})" if trained.get("path") else ""
        raise CheckpointError(
            f"simulator{origin} does not match the dataset {where}: it has "
            + "; ".join(problems)
            + ". Train a simulator on this dataset with `hsrl simulator train`."
        )


# ---------------------------------------------------------------------- training
@dataclass
class _Batches:
    """A split resident on the device, in model-ready form."""

    profile: torch.Tensor  # (R, P) float
    history: torch.Tensor  # (R, H) long
    slate: torch.Tensor  # (R, K) long
    response: torch.Tensor  # (R, K) float

    @classmethod
    def of(cls, records: Records, history_length: int, device: torch.device) -> _Batches:
        return cls(
            records.user_profile.to(device, torch.float32),
            fit_history(records.history, history_length).to(device),
            records.slate.to(device),
            records.response.to(device, torch.float32),
        )

    def __len__(self) -> int:
        return self.slate.shape[0]

    def take(self, index: torch.Tensor | slice) -> tuple[torch.Tensor, ...]:
        return self.profile[index], self.history[index], self.slate[index], self.response[index]


def _default_val_split(splits: dict[str, Any], path: Path) -> str:
    for name in ("val", "test"):
        if name in splits:
            return name
    raise DataError(path, f"no 'val' or 'test' split to validate on (have {', '.join(splits)})")


def resolve_model_config(
    config: ResponseModelConfig, dataset_manifest: dict[str, Any]
) -> ResponseModelConfig:
    """Fill the profile and item sizes from the dataset; a conflicting explicit size is an error."""
    dims = {
        "profile_dim": dataset_manifest["user_profile_dim"],
        "item_feature_dim": dataset_manifest["item_feature_dim"],
    }
    if config.position != "none":
        dims["slate_size"] = dataset_manifest["slate_size"]
    for name, value in dims.items():
        given = getattr(config, name)
        if given is not None and given != value:
            raise ConfigError(f"model.{name}: {given} given, but the dataset has {value}")
    return dataclasses.replace(config, **dims)


def slot_components(slate: torch.Tensor, num_items: int) -> list[list[int]]:
    """Groups of slots (1-based) linked by items logged in both, in order of their first slot.

    Slot k and slot j are linked when some item was shown in both; a group is a connected
    component of that graph. A per-slot logit offset and the items' effects can be told apart
    only within a group: between two groups, any constant moved from the slots of one group to
    the items shown there fits the logs equally well. One group means the position effect is
    identifiable (the logs show items at several positions, e.g. exploration traffic); a fixed
    layout (RL4RS: items of location r only in row r) gives one group per row.
    """
    size = slate.shape[1]
    seen = torch.zeros(size, num_items + 1, dtype=torch.bool, device=slate.device)
    seen.scatter_(1, slate.T.long(), True)
    seen[:, 0] = False
    linked = (seen.float() @ seen.float().T > 0).cpu()  # (K, K)
    reach = linked | torch.eye(size, dtype=torch.bool)
    for _ in range(size):  # transitive closure of a K x K graph
        reach = (reach.float() @ reach.float() > 0) | reach
    groups: list[list[int]] = []
    placed: set[int] = set()
    for k in range(size):
        if k not in placed:
            members = [j for j in range(size) if bool(reach[k, j])]
            placed.update(members)
            groups.append([j + 1 for j in members])
    return groups


@torch.no_grad()
def init_slot_bias(model: UserResponseModel, response: torch.Tensor) -> None:
    """Start the slot offsets at the logged click rate per slot, in logits around its mean (the
    position-only click model). Training then separates the slots' and the items' shares; from
    zero, Adam's small steps would need thousands of batches to reach offsets of a few logits."""
    rate = response.float().mean(dim=0).clamp(1e-3, 1 - 1e-3)  # (K,)
    logits = torch.logit(rate)
    model.slot_bias.copy_((logits - logits.mean()).to(model.slot_bias))


def check_position_identifiable(slate: torch.Tensor, num_items: int, where: Path) -> None:
    """Refuse a position-aware model on logs that cannot separate slot and item effects."""
    groups = slot_components(slate, num_items)
    if len(groups) > 1:
        shown = " ".join("{" + ",".join(map(str, g)) + "}" for g in groups)
        raise DataError(
            where,
            f"the position effect is not identifiable from these logs: the slot groups {shown} "
            "never show a common item (a fixed page layout), so a per-slot offset cannot be told "
            "apart from the items' effects; train the position-free model (--position none), or "
            "use logs with a share of randomised-layout pages",
        )


@torch.no_grad()
def evaluate_model(
    model: UserResponseModel, data: _Batches, batch_size: int = 4096
) -> dict[str, float]:
    """Pooled AUC, per-slot mean AUC and BCE of ``model`` on ``data``."""
    was_training = model.training
    model.eval()
    logits = torch.cat(
        [model(*data.take(slice(i, i + batch_size))[:3]) for i in range(0, len(data), batch_size)]
    )  # (R, K)
    model.train(was_training)
    bce = F.binary_cross_entropy_with_logits(logits, data.response).item()
    return {
        "auc": roc_auc(logits, data.response),
        "slot_mean_auc": slot_mean_auc(logits, data.response),
        "bce": bce,
    }


def _json_number(x: float) -> float | None:
    return None if isinstance(x, float) and not math.isfinite(x) else x


@contextlib.contextmanager
def _deterministic_on_cpu(device: torch.device) -> Iterator[None]:
    """On the CPU, torch's deterministic algorithms while the block runs (then the caller's
    setting again). With more than one intra-op thread, the default backward of the history
    gathers adds in a varying order, so one seed gave different simulators from run to run;
    the deterministic kernels are no slower (docs/simulator.md, "Same seed, same simulator").
    CUDA keeps its defaults (deterministic cuBLAS needs a workspace setting made before the
    process starts)."""
    if device.type != "cpu":
        yield
        return
    before = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before, warn_only=warn_only)


def train_simulator(
    dataset_dir: str | Path,
    out: str | Path,
    config: SimulatorTrainConfig | None = None,
    device: str | torch.device = "cpu",
    *,
    overwrite: bool = False,
    progress: bool = True,
    log: Callable[[str], None] | None = print,
) -> dict[str, Any]:
    """Train the response model on ``dataset_dir``'s train split and save it to ``out``.

    Returns the metrics written to ``metrics.json`` (per epoch: train loss, validation AUC,
    records/s; the best epoch and its AUC).
    """
    from tqdm.auto import tqdm

    config = config or SimulatorTrainConfig()
    device = resolve_device(device)
    dataset_dir = Path(dataset_dir)
    manifest = read_manifest(dataset_dir)
    val_split = config.val_split or _default_val_split(manifest["splits"], dataset_dir)
    if "train" not in manifest["splits"]:
        raise DataError(dataset_dir, "the dataset has no 'train' split")
    model_config = resolve_model_config(config.model, manifest)
    config = dataclasses.replace(config, model=model_config, val_split=val_split)
    say = log or (lambda _msg: None)

    with atomic_output_dir(out, overwrite=overwrite) as tmp:
        dataset = load_prepared(dataset_dir, splits=["train", val_split])
        h = model_config.history_length
        train = _Batches.of(dataset.split("train"), h, device)
        val = _Batches.of(dataset.split(val_split), h, device)
        if len(train) == 0 or len(val) == 0:
            raise DataError(dataset_dir, "the train and validation splits must not be empty")
        slot_groups = slot_components(train.slate, dataset.items.num_items)
        if model_config.position == "auto":
            position = "slot" if len(slot_groups) == 1 else "none"
            model_config = dataclasses.replace(
                model_config,
                position=position,
                slate_size=model_config.slate_size if position == "slot" else None,
            )
            config = dataclasses.replace(config, model=model_config)
            if position == "none":
                say(
                    "position: none (the logs show every item in one page row only, so the slot "
                    "effect cannot be told apart from the items'; see docs/simulator.md)"
                )
        if model_config.position == "slot":
            check_position_identifiable(train.slate, dataset.items.num_items, dataset_dir)
        fork_devices = [device] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=fork_devices), _deterministic_on_cpu(device):
            torch.manual_seed(config.seed)
            order_rng = torch.Generator().manual_seed(config.seed)
            model = UserResponseModel(model_config, dataset.items.features).to(device)
            if model.slot_bias is not None:
                init_slot_bias(model, train.response)
            optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
            say(
                f"training the {model_config.variant} response model "
                f"(position: {model_config.position}) on {len(train):,} records "
                f"({dataset_dir}), validating on {len(val):,} '{val_split}' records, device {device}"
            )
            epochs: list[dict[str, Any]] = []
            best_auc, best_epoch, best_state = -math.inf, 0, None
            for epoch in range(1, config.epochs + 1):
                model.train()
                order = torch.randperm(len(train), generator=order_rng).to(device)
                loss_sum = torch.zeros((), device=device)
                batches = 0
                start = time.perf_counter()
                bar = tqdm(
                    total=len(train),
                    desc=f"epoch {epoch}/{config.epochs}",
                    unit="rec",
                    unit_scale=True,
                    disable=not progress,
                    leave=False,
                )
                for i in range(0, len(train), config.batch_size):
                    profile, history, slate, response = train.take(order[i : i + config.batch_size])
                    logits = model(profile, history, slate)
                    bce = F.binary_cross_entropy_with_logits(logits, response)
                    loss = bce + config.l2_coef * model.l2_penalty()
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    loss_sum += bce.detach()
                    batches += 1
                    bar.update(slate.shape[0])
                    if batches % 50 == 0:
                        bar.set_postfix(bce=f"{(loss_sum / batches).item():.4f}")
                bar.close()
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                seconds = time.perf_counter() - start
                scores = evaluate_model(model, val, config.eval_batch_size)
                row = {
                    "epoch": epoch,
                    "train_bce": (loss_sum / batches).item(),
                    "val_auc": _json_number(scores["auc"]),
                    "val_slot_mean_auc": _json_number(scores["slot_mean_auc"]),
                    "val_bce": scores["bce"],
                    "train_seconds": seconds,
                    "records_per_second": len(train) / seconds,
                }
                if not math.isfinite(row["train_bce"]) or not all(
                    bool(torch.isfinite(v).all()) for v in model.parameters()
                ):
                    raise HsrlError(
                        f"simulator training diverged in epoch {epoch}: the loss or the weights "
                        f"became NaN or inf (lr {config.lr}; try a smaller --lr)"
                    )
                epochs.append(row)
                auc = scores["auc"] if math.isfinite(scores["auc"]) else -math.inf
                if best_state is None or auc > best_auc:
                    best_auc, best_epoch = auc, epoch
                    best_state = {
                        k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()
                    }
                say(
                    f"epoch {epoch}/{config.epochs}: train BCE {row['train_bce']:.4f}, "
                    f"val AUC {scores['auc']:.4f} (slot mean {scores['slot_mean_auc']:.4f}), "
                    f"val BCE {scores['bce']:.4f}, {row['records_per_second']:,.0f} records/s"
                )
        model.load_state_dict(best_state)  # type: ignore[arg-type]
        metrics = {
            "epochs": epochs,
            "best_epoch": best_epoch,
            "best_val_auc": _json_number(best_auc) if best_auc > -math.inf else None,
            "val_split": val_split,
            "train_records": len(train),
            "val_records": len(val),
            "device": str(device),
            "slot_groups": slot_groups,
        }
        if model.slot_bias is not None:
            metrics["slot_bias"] = [round(float(v), 4) for v in model.slot_bias.detach().cpu()]
        _write_checkpoint(tmp, model, dataset_fingerprint(dataset), config, metrics)
        say(f"best epoch {best_epoch} (val AUC {best_auc:.4f}); simulator saved to {out}")
    return metrics


# ---------------------------------------------------------------------- saving and loading
def _write_checkpoint(
    folder: Path,
    model: UserResponseModel,
    fingerprint: dict[str, Any],
    training: SimulatorTrainConfig | None,
    metrics: dict[str, Any] | None,
) -> None:
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    torch.save(state, folder / MODEL_FILE)
    write_json(
        folder / CONFIG_FILE,
        {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "model": to_dict(model.config),
            "training": None if training is None else to_dict(training),
            "files": {MODEL_FILE: sha256_file(folder / MODEL_FILE)},
        },
    )
    write_json(folder / DATASET_FILE, fingerprint)
    write_json(folder / METRICS_FILE, metrics or {})


def save_simulator(
    model: UserResponseModel,
    out: str | Path,
    fingerprint: dict[str, Any],
    *,
    training: SimulatorTrainConfig | None = None,
    metrics: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write ``model`` as a simulator folder (atomically), e.g. after training it by hand."""
    with atomic_output_dir(out, overwrite=overwrite) as tmp:
        _write_checkpoint(tmp, model, fingerprint, training, metrics)
    return Path(out)


def load_simulator(path: str | Path, device: str | torch.device = "cpu") -> UserResponseModel:
    """Load a simulator folder in evaluation mode; any damage is a :class:`CheckpointError`.

    The model's ``dataset_fingerprint`` attribute holds ``dataset.json``; use
    :func:`check_compatible` before running it on a dataset.
    """
    path = Path(path)
    device = resolve_device(device)
    if not path.is_dir():
        raise CheckpointError(
            f"{path}: not a simulator folder (train one with `hsrl simulator train`)"
        )
    try:
        meta = read_json(path / CONFIG_FILE)
        fingerprint = read_json(path / DATASET_FILE)
    except DataError as exc:
        raise CheckpointError(f"simulator {path}: {exc}") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{path / CONFIG_FILE}: not an hsrl simulator config")
    if meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path / CONFIG_FILE}: simulator format version {meta.get('format_version')!r} is not "
            f"supported (this hsrl reads {FORMAT_VERSION}); train the simulator again"
        )
    try:
        config = from_dict(
            ResponseModelConfig, meta.get("model"), where=f"{path / CONFIG_FILE}: model"
        )
    except HsrlError as exc:
        raise CheckpointError(str(exc)) from exc
    weights = path / MODEL_FILE
    if not weights.is_file():
        raise CheckpointError(f"{weights}: file not found")
    expected = (meta.get("files") or {}).get(MODEL_FILE)
    if expected != sha256_file(weights):
        raise CheckpointError(f"{weights}: corrupted (its sha256 does not match {CONFIG_FILE})")
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure to read is a damaged file
        raise CheckpointError(f"{weights}: not a readable state dict ({exc})") from exc
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{weights}: not a state dict of tensors")
    features = state.get("item_features")
    if features is None or features.ndim != 2:
        raise CheckpointError(f"{weights}: no (N + 1, F) item_features table")
    try:
        model = UserResponseModel(config, features)
        model.load_state_dict(state)
    except (RuntimeError, HsrlError) as exc:
        raise CheckpointError(
            f"{weights}: does not fit the model in {CONFIG_FILE} ({exc})"
        ) from exc
    if not all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point()):
        raise CheckpointError(f"{weights}: holds NaN or inf weights")
    if isinstance(fingerprint, dict) and fingerprint.get("item_features_sha256") not in (
        None,
        item_features_sha256(features),
    ):
        raise CheckpointError(f"{path / DATASET_FILE}: item table hash does not match {MODEL_FILE}")
    model.dataset_fingerprint = fingerprint if isinstance(fingerprint, dict) else {}
    model.simulator_path = path
    return model.to(device).eval()
