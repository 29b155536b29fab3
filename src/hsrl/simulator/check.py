"""``check_env``: does an environment keep the batched-env contract the agents rely on?

The contract (what :class:`~hsrl.simulator.env.RecEnv` does, and what a user's own env must do
to be trained and evaluated by hsrl):

- attributes ``num_users`` (B), ``slate_size`` (K), ``num_items`` (N), ``device``,
  ``item_features`` ((N + 1, F) float tensor on ``device``, row 0 = padding, all zeros) and
  ``metadata["autoreset_mode"] == "same-step"``;
- ``reset(seed=...) -> (obs, info)`` with ``obs = {"user_profile": (B, P) float32,
  "history": (B, H) int64 item ids in 0..N}`` on ``device``;
- ``step(slate (B, K) int64) -> (obs, reward (B,) float, terminated (B,) bool, truncated (B,)
  bool, info)`` with ``info["response"]`` (B, K) float 0/1 and, for users who finished,
  their last observation in ``info["final_observation"]`` (rows where
  ``info["_final_observation"]``), after which the row holds a new user (same-step autoreset);
- the same seed and the same slates give the same outputs;
- returned tensors are not changed by later steps and are not inference tensors;
- ``pop_finished_episodes()`` returns ``total_reward``, ``depth``, ``avg_reward`` and
  ``click_rate`` of every episode finished since the last call, step by step and, within a
  step, in user order;
- a slate with the padding id 0, an id above N, a wrong shape or dtype raises an
  :class:`~hsrl.errors.HsrlError`.

:func:`check_env` runs random slates through the env and raises :class:`EnvCheckError` on the
first violation, with a message that says what was expected.
"""

from __future__ import annotations

from typing import Any

import torch

from hsrl.errors import HsrlError


class EnvCheckError(HsrlError):
    """An environment breaks the batched-env contract."""


def _fail(what: str, problem: str) -> EnvCheckError:
    return EnvCheckError(f"check_env: {what}: {problem}")


def _check_tensor(
    what: str,
    value: Any,
    shape: tuple[int, ...],
    dtype: torch.dtype | None,
    device: torch.device,
    *,
    floating: bool = False,
    low: float | None = None,
    high: float | None = None,
) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise _fail(what, f"expected a torch.Tensor, got {type(value).__name__}")
    if tuple(value.shape) != shape:
        raise _fail(what, f"shape {tuple(value.shape)}, expected {shape}")
    if dtype is not None and value.dtype != dtype:
        raise _fail(what, f"dtype {value.dtype}, expected {dtype}")
    if floating and not value.is_floating_point():
        raise _fail(what, f"dtype {value.dtype}, expected a floating-point tensor")
    if value.device != device:
        raise _fail(what, f"on {value.device}, expected the env's device {device}")
    if value.is_inference():
        raise _fail(
            what, "is an inference tensor (agents cannot train on it); create it under no_grad"
        )
    if value.requires_grad:
        raise _fail(what, "requires grad; the env's outputs must be plain data")
    if value.is_floating_point() and not torch.isfinite(value).all():
        raise _fail(what, "holds NaN or inf")
    if value.numel() and low is not None and float(value.min()) < low:
        raise _fail(what, f"holds {float(value.min())}, below the lowest valid value {low}")
    if value.numel() and high is not None and float(value.max()) > high:
        raise _fail(what, f"holds {float(value.max())}, above the highest valid value {high}")
    return value


class _Contract:
    def __init__(self, env: Any):
        self.env = env
        for name in ("num_users", "slate_size", "num_items"):
            value = getattr(env, name, None)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise _fail(f"env.{name}", f"expected a positive int, got {value!r}")
        for name in ("reset", "step", "pop_finished_episodes"):
            if not callable(getattr(env, name, None)):
                raise _fail(f"env.{name}", "missing (the env must have this method)")
        device = getattr(env, "device", None)
        if not isinstance(device, torch.device):
            raise _fail("env.device", f"expected a torch.device, got {device!r}")
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        metadata = getattr(env, "metadata", None)
        if not isinstance(metadata, dict) or metadata.get("autoreset_mode") != "same-step":
            raise _fail(
                "env.metadata",
                'must declare {"autoreset_mode": "same-step"} (finished users are replaced at once)',
            )
        self.b, self.k, self.n, self.device = env.num_users, env.slate_size, env.num_items, device
        features = env.item_features
        _check_tensor(
            "env.item_features",
            features,
            (self.n + 1, _cols(features)),
            None,
            device,
            floating=True,
        )
        if features[0].abs().sum() != 0:
            raise _fail("env.item_features", "row 0 (the padding item) must be all zeros")
        self.profile_dim: int | None = None
        self.history_length: int | None = None

    def observation(self, what: str, obs: Any) -> dict[str, torch.Tensor]:
        if not isinstance(obs, dict) or not {"user_profile", "history"} <= set(obs):
            keys = sorted(obs) if isinstance(obs, dict) else type(obs).__name__
            raise _fail(what, f'expected a dict with "user_profile" and "history", got {keys}')
        profile, history = obs["user_profile"], obs["history"]
        if self.profile_dim is None:
            self.profile_dim = _cols(profile)
            self.history_length = _cols(history)
        _check_tensor(
            f"{what}['user_profile']",
            profile,
            (self.b, self.profile_dim),
            torch.float32,
            self.device,
        )
        _check_tensor(
            f"{what}['history']", history, (self.b, self.history_length), torch.long, self.device,
            low=0, high=self.n,
        )  # fmt: skip
        return obs

    def reset(self, seed: int) -> dict[str, torch.Tensor]:
        result = self.env.reset(seed=seed)
        if not isinstance(result, tuple) or len(result) != 2 or not isinstance(result[1], dict):
            raise _fail("reset(seed=...)", "must return (observation, info dict)")
        return self.observation("reset observation", result[0])

    def step(self, slate: torch.Tensor, t: int) -> tuple[Any, ...]:
        result = self.env.step(slate)
        if not isinstance(result, tuple) or len(result) != 5:
            raise _fail("step(slate)", "must return (obs, reward, terminated, truncated, info)")
        obs, reward, terminated, truncated, info = result
        self.observation(f"step {t} observation", obs)
        _check_tensor(f"step {t} reward", reward, (self.b,), None, self.device, floating=True)
        _check_tensor(f"step {t} terminated", terminated, (self.b,), torch.bool, self.device)
        _check_tensor(f"step {t} truncated", truncated, (self.b,), torch.bool, self.device)
        if not isinstance(info, dict) or "response" not in info:
            raise _fail(f"step {t} info", 'must be a dict holding "response"')
        response = _check_tensor(
            f"step {t} info['response']", info["response"], (self.b, self.k), None, self.device,
            floating=True,
        )  # fmt: skip
        if not ((response == 0) | (response == 1)).all():
            raise _fail(f"step {t} info['response']", "must hold only 0 and 1")
        done = terminated | truncated
        if bool(done.any()):
            if "final_observation" not in info or "_final_observation" not in info:
                raise _fail(
                    f"step {t} info",
                    'users finished but "final_observation" / "_final_observation" are missing',
                )
            self.observation(f"step {t} info['final_observation']", info["final_observation"])
            mask = info["_final_observation"]
            if not isinstance(mask, torch.Tensor) or not torch.equal(mask.to(self.device), done):
                raise _fail(
                    f"step {t} info['_final_observation']", "must equal terminated | truncated"
                )
        return obs, reward, terminated, truncated, info


def _cols(tensor: Any) -> int:
    if not isinstance(tensor, torch.Tensor) or tensor.ndim != 2:
        shape = tuple(tensor.shape) if isinstance(tensor, torch.Tensor) else type(tensor).__name__
        raise _fail("tensor", f"expected a 2-d tensor, got {shape}")
    return tensor.shape[1]


def _random_slates(contract: _Contract, steps: int, seed: int) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    shape = (contract.b, contract.k)
    return [
        torch.randint(1, contract.n + 1, shape, generator=generator).to(contract.device)
        for _ in range(steps)
    ]


def _run(contract: _Contract, seed: int, slates: list[torch.Tensor]) -> dict[str, Any]:
    """Run ``slates`` from ``reset(seed)``, checking each step and the episode records."""
    env = contract.env
    env.pop_finished_episodes()  # start from an empty record
    obs = contract.reset(seed)
    trace: list[torch.Tensor] = [obs["user_profile"].clone(), obs["history"].clone()]
    depth = torch.zeros(contract.b, dtype=torch.long, device=contract.device)
    total = torch.zeros(contract.b, dtype=torch.float64, device=contract.device)
    expected_depth, expected_total = [], []
    kept: tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]] | None = None
    for t, slate in enumerate(slates):
        obs, reward, terminated, truncated, info = contract.step(slate, t)
        if kept is not None and not all(
            torch.equal(kept[0][key], kept[1][key]) for key in ("user_profile", "history")
        ):
            raise _fail(
                f"step {t}", "changed an observation returned by the previous step in place"
            )
        kept = (obs, {key: obs[key].clone() for key in ("user_profile", "history")})
        depth += 1
        total += reward.double()
        done = terminated | truncated
        expected_depth.append(depth[done])
        expected_total.append(total[done])
        depth = torch.where(done, 0, depth)
        total = torch.where(done, 0.0, total)
        trace += [
            reward,
            terminated,
            truncated,
            info["response"],
            obs["user_profile"],
            obs["history"],
        ]
    episodes = env.pop_finished_episodes()
    if not isinstance(episodes, dict):
        raise _fail("pop_finished_episodes()", "must return a dict of tensors")
    for key in ("total_reward", "depth", "avg_reward", "click_rate"):
        if not isinstance(episodes.get(key), torch.Tensor):
            raise _fail("pop_finished_episodes()", f'missing the tensor "{key}"')
    want_depth = torch.cat(expected_depth)
    want_total = torch.cat(expected_total)
    got_depth = episodes["depth"]
    if got_depth.shape != want_depth.shape:
        raise _fail(
            "pop_finished_episodes()",
            f"{got_depth.numel()} episodes recorded, but {want_depth.numel()} users finished "
            "(every finished episode must be recorded once)",
        )
    if not torch.equal(got_depth.long().to(contract.device), want_depth):
        raise _fail(
            "episode depth",
            "does not match the steps between resets of each user: finished users must be "
            "replaced by a new user in the same step (same-step autoreset)",
        )
    if not torch.allclose(
        episodes["total_reward"].double().to(contract.device), want_total, atol=1e-4
    ):
        raise _fail("episode total_reward", "is not the sum of the rewards of its steps")
    avg = episodes["avg_reward"].double().to(contract.device)
    if not torch.allclose(avg, want_total / want_depth.clamp(min=1), atol=1e-4):
        raise _fail("episode avg_reward", "is not total_reward / depth")
    rate = episodes["click_rate"].double()
    if rate.numel() and (float(rate.min()) < 0 or float(rate.max()) > 1):
        raise _fail("episode click_rate", "must lie in [0, 1]")
    return {"trace": trace, "episodes": int(want_depth.numel())}


def _expect_rejected(env: Any, slate: torch.Tensor, what: str) -> None:
    try:
        env.step(slate)
    except HsrlError:
        return
    except Exception as exc:  # noqa: BLE001 - reported as a contract violation
        raise _fail(
            f"step with {what}", f"raised {type(exc).__name__} ({exc}); expected an HsrlError"
        ) from exc
    raise _fail(f"step with {what}", "was accepted; it must raise an HsrlError")


def check_env(env: Any, *, steps: int = 60, seed: int = 0) -> dict[str, Any]:
    """Check ``env`` against the contract above with ``steps`` random slates; raise on a violation.

    Returns a short summary (users, slate size, items, episodes seen) when all checks pass.
    """
    contract = _Contract(env)
    slates = _random_slates(contract, steps, seed)
    first = _run(contract, seed, slates)
    if first["episodes"] == 0:
        raise _fail(
            "episodes",
            f"no user finished in {steps} steps of random slates, so autoreset and the episode "
            "records cannot be checked (raise steps, or set a step cap)",
        )
    second = _run(contract, seed, slates)
    for a, b in zip(first["trace"], second["trace"]):
        if not torch.equal(a, b):
            raise _fail("determinism", "the same seed and slates gave different outputs")
    valid = slates[0]
    _expect_rejected(env, torch.zeros_like(valid), "the padding item id 0")
    _expect_rejected(env, torch.full_like(valid, contract.n + 1), f"item id {contract.n + 1} > N")
    _expect_rejected(env, valid[:, :-1] if contract.k > 1 else valid[:0], "a wrong shape")
    _expect_rejected(env, valid.float(), "a float slate")
    env.step(valid)  # still usable after rejected actions
    return {
        "num_users": contract.b,
        "slate_size": contract.k,
        "num_items": contract.n,
        "episodes_checked": first["episodes"],
    }
