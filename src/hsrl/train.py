"""The one training loop every agent shares.

An iteration is one environment step for all parallel users followed by one (or more) agent
updates on a replay batch. A run folder holds the run's config (JSON), its JSONL log, TensorBoard
events and checkpoints; ``resume`` continues a run from its last checkpoint so that N + M
iterations in two goes give the same parameters as N + M at once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import pickle
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from hsrl.agents import Action, Agent, Catalogue, EnvSpec, agent_class, agent_config, build_agent
from hsrl.config import from_dict, load_config, save_config, to_dict
from hsrl.device import resolve_device
from hsrl.errors import CheckpointError, ConfigError, HsrlError
from hsrl.io import file_lock, remove_stale_temporaries
from hsrl.replay import Batch, ReplayBuffer
from hsrl.runlog import RunLogger, truncate_log

CONFIG_FILE = "config.json"
CHECKPOINT_DIR = "checkpoints"
LAST_CHECKPOINT = "last.pt"
CHECKPOINT_VERSION = 1


@dataclass(frozen=True)
class EnvSettings:
    """How the training environment is built (SPEC 4)."""

    num_users: int = 32
    """Users stepping in parallel."""
    split: str = "train"
    """Which split's logged users the environment samples."""
    reward: str = "auto"
    """Reward function; 'auto' picks the dataset's default (rl4rs sweet point, or mean_with_cost)."""
    temper: float = 20.0
    """Initial patience T0 of the leave model."""
    max_steps: int = 0
    """Truncate an episode after this many steps (0: no cap)."""
    ground_truth: bool = False
    """Train against the built-in dataset's true user model instead of the learned simulator."""
    layout: str = "free"
    """'free': any item in any slot; 'rows': the dataset's page layout (row r shows only items
    of location r, as RL4RS pages do)."""


@dataclass(frozen=True)
class TrainSettings:
    iterations: int = 50_000
    batch_size: int = 64
    replay_capacity: int = 100_000
    warmup: int = 2_000
    """Transitions collected before learning starts."""
    updates_per_iteration: int = 1
    log_every: int = 100
    checkpoint_every: int = 5_000
    keep_checkpoints: bool = False
    """Keep every periodic checkpoint (otherwise only last.pt)."""
    tensorboard: bool = True
    cuda_graphs: bool = True
    """On CUDA, replay acting and updates from captured CUDA graphs (see hsrl.graphed); no
    effect on the CPU."""

    def __post_init__(self) -> None:
        for name in (
            "iterations",
            "batch_size",
            "replay_capacity",
            "log_every",
            "checkpoint_every",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.warmup < 0 or self.updates_per_iteration < 0:
            raise ValueError("warmup and updates_per_iteration must not be negative")
        if self.replay_capacity < max(self.warmup, self.batch_size):
            raise ValueError(
                f"replay_capacity ({self.replay_capacity}) must hold the warm-up "
                f"({self.warmup}) and one batch ({self.batch_size}), or learning never starts"
            )


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines a training run; saved as RUN_DIR/config.json."""

    agent: str
    data: str
    simulator: str | None = None
    sid: str | None = None
    seed: int = 0
    device: str = "cpu"
    agent_config: dict[str, Any] = field(default_factory=dict)
    env: EnvSettings = field(default_factory=EnvSettings)
    train: TrainSettings = field(default_factory=TrainSettings)


# --- building the pieces ------------------------------------------------------------------------
@dataclass
class RunParts:
    config: RunConfig
    device: torch.device
    env: Any
    agent: Agent
    catalogue: Catalogue
    spec: EnvSpec


def build_env(
    data: str | Path,
    simulator: str | Path | None,
    settings: EnvSettings,
    device: torch.device,
    *,
    split: str | None = None,
    num_users: int | None = None,
    ground_truth: bool | None = None,
    check_actions: bool | str = True,
):
    """The environment of a run (or of its evaluation, with split/users/simulator overridden).

    ``check_actions`` as in ``EnvConfig``: the training loop uses "deferred" (no host sync per
    step); evaluation keeps the immediate check.
    """
    from hsrl.data.prepared import read_manifest
    from hsrl.simulator.env import EnvConfig, make_env

    use_truth = settings.ground_truth if ground_truth is None else ground_truth
    if not use_truth and simulator is None:
        raise ConfigError(
            "a learned simulator is needed (--simulator DIR), or use the ground truth"
        )
    reward = settings.reward
    if reward == "auto":
        source = read_manifest(data)["source"]
        reward = "mean_with_cost" if source.startswith("ml1m") else "rl4rs"
    env_config = EnvConfig(
        num_users=settings.num_users if num_users is None else num_users,
        reward=reward,
        initial_temper=settings.temper,
        max_steps=settings.max_steps or None,
        split=settings.split if split is None else split,
        device=str(device),
        check_actions=check_actions,
        layout=settings.layout,
    )
    return make_env(
        data,
        None if use_truth else simulator,
        ground_truth=use_truth,
        config=env_config,
        device=device,
    )


def build_catalogue(env: Any, sid_dir: str | Path | None, device: torch.device) -> Catalogue:
    sid = None
    if sid_dir is not None:
        from hsrl.sid import SidIndex

        # Checks that the SIDs were built for this catalogue (count, dimension, feature hash).
        sid = SidIndex.load(sid_dir, device=device, features=env.item_features.cpu())
    return Catalogue(env.item_features, sid=sid, layout=env.layout)


def build_run(config: RunConfig) -> RunParts:
    device = resolve_device(config.device)
    cls = agent_class(config.agent)
    if cls.requires_sid and config.sid is None:
        raise ConfigError(f"agent {config.agent!r} needs --sid DIR (from `hsrl sid build`)")
    torch.manual_seed(config.seed)
    # Checking the agents' slates without a host sync lets the GPU run ahead of Python; an
    # invalid id still raises, at the next log window (Trainer.run pops episodes there).
    env = build_env(config.data, config.simulator, config.env, device, check_actions="deferred")
    catalogue = build_catalogue(env, config.sid if cls.requires_sid else None, device)
    spec = env_spec(env)
    agent = build_agent(
        config.agent, agent_config(config.agent, config.agent_config), spec, catalogue
    ).to(device)
    agent.reward_fn = env.reward_fn
    return RunParts(config, device, env, agent, catalogue, spec)


def env_spec(env: Any) -> EnvSpec:
    return EnvSpec(
        num_items=env.num_items,
        item_dim=env.item_features.shape[1],
        profile_dim=env.profile_dim,
        history_length=env.history_length,
        slate_size=env.slate_size,
    )


# --- the loop -----------------------------------------------------------------------------------
class Trainer:
    def __init__(self, parts: RunParts, run_dir: Path):
        self.parts = parts
        self.run_dir = run_dir
        cfg = parts.config
        self.settings = cfg.train
        device = parts.device
        self.buffer = ReplayBuffer(self.settings.replay_capacity, device)
        self.act_generator = torch.Generator(device=device).manual_seed(cfg.seed + 1)
        self.replay_generator = torch.Generator(device=device).manual_seed(cfg.seed + 2)
        self.iteration = 0
        self.env_steps = 0
        self.obs, _ = parts.env.reset(seed=cfg.seed)
        # What one iteration calls to act and to learn: the agent's own methods, or on CUDA
        # the same methods replayed from captured graphs (hsrl.graphed).
        self.act: Any = self._act_eagerly
        self.update: Any = parts.agent.update
        self.graphs: list[Any] = []
        # Offline agents learn from the logged records only; agents that use logged data beside
        # their replay get a logged batch with every replay batch.
        self.offline = bool(getattr(parts.agent, "offline", False))
        self.logged = None
        if self.offline or parts.agent.uses_logged_data:
            from hsrl.data.prepared import load_prepared

            split = cfg.env.split
            self.logged = load_prepared(cfg.data, splits=[split]).split(split).to(device)
        if device.type == "cuda" and self.settings.cuda_graphs:
            from hsrl.graphed import GraphedAct, GraphedUpdate, graphs_supported

            if graphs_supported():
                self.act = GraphedAct(parts.agent, self.act_generator)
                self.graphs = [self.act]
                if self.logged is None:  # updates with a logged batch stay eager
                    self.update = GraphedUpdate(parts.agent)
                    self.graphs.append(self.update)

    def close(self) -> None:
        """Release captured CUDA graphs (and the memory they hold); later steps capture anew."""
        for graphed in self.graphs:
            graphed.reset()

    # checkpoints
    def checkpoint_state(self) -> dict[str, Any]:
        state = {
            "version": CHECKPOINT_VERSION,
            "config": to_dict(self.parts.config),
            "iteration": self.iteration,
            "env_steps": self.env_steps,
            "agent": self.parts.agent.training_state(),
            "replay": self.buffer.state_dict(),
            "env": self.parts.env.state_dict(),
            "obs": dict(self.obs),
            "rng": {
                "torch": torch.get_rng_state(),
                "act": self.act_generator.get_state(),
                "replay": self.replay_generator.get_state(),
            },
        }
        if torch.cuda.is_available():
            state["rng"]["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_checkpoint_state(self, state: dict[str, Any]) -> None:
        if state.get("version") != CHECKPOINT_VERSION:
            raise CheckpointError(f"checkpoint version {state.get('version')} is not supported")
        self.iteration = int(state["iteration"])
        self.env_steps = int(state["env_steps"])
        if self.iteration < 0 or self.env_steps < 0:
            raise ValueError("negative iteration or step count")
        self.parts.agent.load_training_state(state["agent"])
        self.close()  # captured graphs read the optimiser states just replaced
        self.buffer.load_state_dict(state["replay"])
        self._check_replay()
        self.parts.env.load_state_dict(state["env"])
        self.obs = {k: v.to(self.parts.device) for k, v in state["obs"].items()}
        # Generator states are CPU byte tensors, whatever device the checkpoint was mapped to.
        rng = state["rng"]
        torch.set_rng_state(rng["torch"].cpu())
        self.act_generator.set_state(rng["act"].cpu())
        self.replay_generator.set_state(rng["replay"].cpu())
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([s.cpu() for s in rng["cuda"]])

    def _check_replay(self) -> None:
        """The restored transitions hold item ids of this catalogue, the env's slate shape and
        finite numbers (a damaged checkpoint is refused, not trained on)."""
        buffer, num_items = self.buffer, self.parts.env.num_items
        if not (0 <= buffer.size <= buffer.capacity and 0 <= buffer.position < buffer.capacity):
            raise ValueError("replay position or size out of range")
        if buffer.size == 0:
            return
        stored = {name: t[: buffer.size] for name, t in buffer.storage.items()}
        if stored["slate"].shape[1:] != (self.parts.env.slate_size,):
            raise ValueError("replay slates have another slate size")
        for name in ("slate", "history", "next_history"):
            ids = stored[name]
            if bool((ids < 0).any()) or bool((ids > num_items).any()):
                raise ValueError(f"replay {name} holds item ids outside 0..{num_items}")
        for name, values in stored.items():
            if values.is_floating_point() and not bool(torch.isfinite(values).all()):
                raise ValueError(f"replay {name} holds NaN or inf")

    def save_checkpoint(self) -> Path:
        from hsrl.io import atomic_write_bytes

        directory = self.run_dir / CHECKPOINT_DIR
        directory.mkdir(parents=True, exist_ok=True)
        import io

        buffer = io.BytesIO()
        torch.save(self.checkpoint_state(), buffer)
        data = buffer.getvalue()
        atomic_write_bytes(directory / LAST_CHECKPOINT, data)
        if self.settings.keep_checkpoints:
            atomic_write_bytes(directory / f"iter_{self.iteration:08d}.pt", data)
        return directory / LAST_CHECKPOINT

    # one iteration
    def step(self) -> dict[str, torch.Tensor]:
        if self.offline:
            return self.offline_step()
        transition = self.env_step(self.act_for_users())
        self.buffer.push(transition)
        metrics = self.learn()
        self.iteration += 1
        return metrics

    # The phases of an online iteration (benchmarks/profile_iteration.py times each one).
    def act_for_users(self) -> Action:
        """The exploring agent's slates for every user of the current observation."""
        agent = self.parts.agent
        # Acting uses the networks in eval mode (no dropout): exploration comes from the
        # agent's own sampling or noise, and acting is cheaper.
        agent.acting(True)
        action = self.act(self.obs)
        agent.acting(False)
        return action

    def env_step(self, action: Action) -> Batch:
        """Show the slates; advance the observation; the transitions to store."""
        next_obs, reward, terminated, truncated, info = self.parts.env.step(action.slate)
        final = info.get("final_observation")
        stored_next = next_obs
        if final is not None:
            done = (terminated | truncated).unsqueeze(-1)
            stored_next = {k: torch.where(done, final[k], next_obs[k]) for k in next_obs}
        transition = Batch(
            user_profile=self.obs["user_profile"],
            history=self.obs["history"],
            slate=action.slate,
            response=info["response"],
            reward=reward,
            terminated=terminated.float(),
            next_user_profile=stored_next["user_profile"],
            next_history=stored_next["history"],
            action=action.record,
        )
        self.obs = next_obs
        self.env_steps += reward.shape[0]
        return transition

    def learn(self) -> dict[str, torch.Tensor]:
        """The configured updates on replay batches, once the buffer is past warm-up."""
        metrics: dict[str, torch.Tensor] = {}
        if len(self.buffer) >= max(self.settings.warmup, 1):
            for _ in range(self.settings.updates_per_iteration):
                batch = self.buffer.sample(self.settings.batch_size, self.replay_generator)
                if self.logged is None:
                    metrics = self.update(batch)
                else:
                    metrics = self.update(batch, logged=self.logged_batch())
        return metrics

    def _act_eagerly(self, obs: dict[str, torch.Tensor]) -> Action:
        return self.parts.agent.act(obs, explore=True, generator=self.act_generator)

    def logged_batch(self) -> Batch:
        """A batch of the dataset's logged records (reward, terminated, next_* and action are
        zeros), drawn with the replay generator (so resumed runs draw the same batches)."""
        logged = self.logged
        index = torch.randint(
            0,
            len(logged),
            (self.settings.batch_size,),
            generator=self.replay_generator,
            device=self.replay_generator.device,
        ).to(self.parts.device)
        n = index.shape[0]
        zeros = torch.zeros(n, device=self.parts.device)
        return Batch(
            user_profile=logged.user_profile[index],
            history=logged.history[index],
            slate=logged.slate[index],
            response=logged.response[index],
            reward=zeros,
            terminated=zeros,
            next_user_profile=logged.user_profile[index],
            next_history=logged.history[index],
            action=zeros[:, None],
        )

    def offline_step(self) -> dict[str, torch.Tensor]:
        """Offline agents learn from the logged records only; the environment is not stepped."""
        metrics = self.update(self.logged_batch())
        self.iteration += 1
        return metrics

    def run(self, until: int, progress: bool = True) -> None:
        from tqdm.auto import tqdm

        logger = RunLogger(self.run_dir, tensorboard=self.settings.tensorboard)
        start_iteration = self.iteration
        bar = tqdm(
            total=until - start_iteration,
            disable=not progress,
            desc=f"train {self.parts.config.agent}",
            unit="it",
            dynamic_ncols=True,
        )
        window_start = time.perf_counter()
        window_iterations = 0
        losses: dict[str, list[torch.Tensor]] = {}
        self.parts.agent.train()
        try:
            while self.iteration < until:
                metrics = self.step()
                window_iterations += 1
                for key, value in metrics.items():
                    losses.setdefault(key, []).append(value)
                bar.update(1)
                last = self.iteration == until
                if self.iteration % self.settings.log_every == 0 or last:
                    elapsed = max(time.perf_counter() - window_start, 1e-9)
                    # Episodes are popped once per window: the env keeps them on the device
                    # until then, so the hot loop has no host sync for them.
                    episodes = self.parts.env.pop_finished_episodes()
                    record = self._log_record(losses, episodes, window_iterations / elapsed)
                    _check_finite_losses(record, self.run_dir)
                    logger.log(record)
                    bar.set_postfix(
                        reward=f"{record.get('episode/total_reward', math.nan):.2f}",
                        depth=f"{record.get('episode/depth', math.nan):.1f}",
                    )
                    losses = {}
                    window_start, window_iterations = time.perf_counter(), 0
                if self.iteration % self.settings.checkpoint_every == 0 or last:
                    self._check_finite_parameters()
                    self.save_checkpoint()
        finally:
            bar.close()
            logger.close()

    def _check_finite_parameters(self) -> None:
        """Refuse to checkpoint NaN or inf weights (the last good checkpoint stays)."""
        for name, tensor in self.parts.agent.state_dict().items():
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                raise HsrlError(
                    f"{self.run_dir}: training diverged by iteration {self.iteration}: {name} "
                    "holds NaN or inf (the last checkpoint, if any, is kept; try smaller "
                    "learning rates)"
                )

    def _log_record(
        self,
        losses: dict[str, list[torch.Tensor]],
        episodes: dict[str, torch.Tensor],
        iterations_per_s: float,
    ) -> dict[str, Any]:
        record: dict[str, Any] = {
            "iteration": self.iteration,
            "env_steps": self.env_steps,
            "time_s": time.time(),
            "perf/iterations_per_s": iterations_per_s,
            "perf/user_steps_per_s": iterations_per_s * self.parts.config.env.num_users,
        }
        for key, values in losses.items():
            record[key] = float(torch.stack(values).mean())
        count = next(iter(episodes.values())).numel()
        record["episode/count"] = int(count)
        if count:
            for key, values in episodes.items():
                record[f"episode/{key}"] = float(values.float().mean())
        return record


# --- entry points -------------------------------------------------------------------------------
def train(
    config: RunConfig, out: str | Path, *, overwrite: bool = False, progress: bool = True
) -> Path:
    """Start a new run in ``out`` and train it for ``config.train.iterations`` iterations.

    With ``overwrite`` an existing run there is replaced, but only once the new run's inputs
    have been checked, and it is put back if the new run fails; a folder that is not a run is
    never replaced. The run folder is locked while training (:func:`run_lock`).
    """
    run_dir = Path(out)
    if run_dir.exists() and not run_dir.is_dir():
        raise HsrlError(f"{run_dir}: exists and is not a folder")
    existing = run_dir.is_dir() and any(p.name != LOCK_FILE for p in run_dir.iterdir())
    if existing and not overwrite:
        if _stopped_before_first_checkpoint(run_dir):
            raise HsrlError(
                f"{run_dir}: a run that stopped before its first checkpoint (start it again "
                "with --overwrite)"
            )
        raise HsrlError(f"{run_dir}: already exists (use --resume to continue it, or --overwrite)")
    if existing and not (run_dir / CONFIG_FILE).is_file():
        raise HsrlError(
            f"{run_dir}: not a run folder (no {CONFIG_FILE}); --overwrite replaces only runs, "
            "so nothing was deleted"
        )
    parts = build_run(config)  # checks the data, simulator and SIDs before anything is touched
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    backup = None
    if existing:
        with run_lock(run_dir):  # nobody else is writing the old run
            backup = run_dir.with_name(f".{run_dir.name}.replaced-{os.getpid()}")
            os.replace(run_dir, backup)
    try:
        run_dir.mkdir(exist_ok=True)
        with run_lock(run_dir):
            if any(p.name != LOCK_FILE for p in run_dir.iterdir()):
                raise HsrlError(f"{run_dir}: another process started a run here")
            save_config(config, run_dir / CONFIG_FILE)
            trainer = Trainer(parts, run_dir)
            try:
                trainer.run(config.train.iterations, progress=progress)
            finally:
                trainer.close()
    except BaseException:
        if backup is not None:  # put the replaced run back
            shutil.rmtree(run_dir, ignore_errors=True)
            os.replace(backup, run_dir)
        raise
    if backup is not None:
        shutil.rmtree(backup, ignore_errors=True)
    _remove_stale_backups(run_dir)
    return run_dir


LOCK_FILE = ".lock"


def run_lock(folder: Path) -> contextlib.AbstractContextManager[None]:
    """Hold an exclusive lock on the run ``folder`` (its ``.lock`` file) or fail at once; a
    lock left by a killed run is taken over by the next one (:func:`hsrl.io.file_lock`)."""
    return file_lock(folder / LOCK_FILE, folder)


def _stopped_before_first_checkpoint(run_dir: Path) -> bool:
    return (run_dir / CONFIG_FILE).is_file() and not (
        run_dir / CHECKPOINT_DIR / LAST_CHECKPOINT
    ).is_file()


def _remove_stale_backups(run_dir: Path) -> None:
    """Runs replaced by a killed ``--overwrite`` stay hidden beside the folder (with the killed
    process's id in the name); once a run there has finished they are no longer needed."""
    remove_stale_temporaries(run_dir)


def _check_finite_losses(record: dict[str, Any], run_dir: Path) -> None:
    """Stop a run whose losses became NaN or inf, before it logs or saves anything more."""
    for key, value in record.items():
        if key.startswith("loss/") and not math.isfinite(value):
            raise HsrlError(
                f"{run_dir}: training diverged by iteration {record['iteration']}: {key} is "
                f"{value} (the last checkpoint, if any, is kept; try smaller learning rates)"
            )


def load_run_config(run_dir: str | Path) -> RunConfig:
    run_dir = Path(run_dir)
    if not (run_dir / CONFIG_FILE).is_file():
        raise HsrlError(f"{run_dir}: not a run folder (no {CONFIG_FILE})")
    return load_config(RunConfig, run_dir / CONFIG_FILE)


def load_checkpoint(path: str | Path, device: torch.device) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"{path}: not a valid hsrl checkpoint (it holds objects other than tensors and "
            "plain containers; hsrl never unpickles those)"
        ) from exc
    except Exception as exc:  # torch raises many types for damaged files
        raise CheckpointError(
            f"{path}: not a readable checkpoint ({exc.__class__.__name__}: {_short(exc)})"
        ) from exc
    if not isinstance(state, dict) or "iteration" not in state or "agent" not in state:
        raise CheckpointError(f"{path}: not an hsrl checkpoint (no iteration and agent state)")
    return state


def resume(run_dir: str | Path, iterations: int, *, progress: bool = True) -> Path:
    """Continue a run for ``iterations`` more iterations from its last checkpoint."""
    if iterations < 1:
        raise ConfigError("--iterations must be at least 1")
    run_dir = Path(run_dir)
    config = load_run_config(run_dir)
    if _stopped_before_first_checkpoint(run_dir):
        raise CheckpointError(
            f"{run_dir}: the run stopped before its first checkpoint, so there is nothing to "
            "resume (start it again with train --overwrite)"
        )
    with run_lock(run_dir):
        parts = build_run(config)
        trainer = Trainer(parts, run_dir)
        state = load_checkpoint(run_dir / CHECKPOINT_DIR / LAST_CHECKPOINT, parts.device)
        _check_unchanged_config(state, config, run_dir)
        try:
            trainer.load_checkpoint_state(state)
        except (KeyError, RuntimeError, ValueError) as exc:
            raise CheckpointError(
                f"{run_dir}: checkpoint does not match the run's config ({_short(exc)})"
            ) from exc
        truncate_log(run_dir / "log.jsonl", trainer.iteration)
        try:
            trainer.run(trainer.iteration + iterations, progress=progress)
        finally:
            trainer.close()
    return run_dir


def _check_unchanged_config(state: Any, config: RunConfig, run_dir: Path) -> None:
    """Resuming continues the run that was checkpointed: a config.json edited since is refused
    (naming the first changed field), since the result would be neither run."""
    saved = state.get("config") if isinstance(state, dict) else None
    if not isinstance(saved, dict):
        return  # a checkpoint written before configs were stored in it
    now = to_dict(config)
    changed = _first_difference(saved, now)
    if changed is not None:
        raise CheckpointError(
            f"{run_dir / CONFIG_FILE}: {changed} differs from the config the checkpoint was "
            "trained with; resume continues a run unchanged (start a new run for new settings)"
        )


def _first_difference(a: Any, b: Any, where: str = "") -> str | None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            found = _first_difference(a.get(key), b.get(key), f"{where}.{key}" if where else key)
            if found is not None:
                return found
        return None
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        a, b = list(a), list(b)
    return None if a == b else (where or "the config")


def load_agent(run_dir: str | Path, device: str | torch.device | None = None):
    """Rebuild a trained agent (and its run parts) from a run folder, ready to act."""
    config = load_run_config(run_dir)
    if device is not None:
        config = dataclasses.replace(config, device=str(device))
    parts = build_run(config)
    state = load_checkpoint(Path(run_dir) / CHECKPOINT_DIR / LAST_CHECKPOINT, parts.device)
    try:
        parts.agent.load_training_state(state["agent"])
    except (KeyError, RuntimeError, ValueError) as exc:
        raise CheckpointError(
            f"{run_dir}: checkpoint does not match the run's agent ({_short(exc)})"
        ) from exc
    parts.agent.eval()
    return parts, int(state["iteration"])


def _short(exc: Exception) -> str:
    """First line of a (possibly very long) state-dict error."""
    text = str(exc).strip().splitlines()
    first = text[0] if text else exc.__class__.__name__
    return first if len(first) < 300 else first[:300] + "..."


def config_from_dict(data: dict[str, Any], where: str = "config") -> RunConfig:
    return from_dict(RunConfig, data, where)


__all__ = [
    "EnvSettings",
    "RunConfig",
    "TrainSettings",
    "Trainer",
    "build_run",
    "config_from_dict",
    "load_agent",
    "load_run_config",
    "resume",
    "to_dict",
    "train",
]
