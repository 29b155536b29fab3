"""A replay buffer that lives on the training device and stores item ids, not feature copies."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Batch:
    """Transitions, each field with a leading batch dimension."""

    user_profile: torch.Tensor  # (B, P)
    history: torch.Tensor  # (B, H) item ids
    slate: torch.Tensor  # (B, K) item ids shown
    response: torch.Tensor  # (B, K) observed responses
    reward: torch.Tensor  # (B,)
    terminated: torch.Tensor  # (B,) float 0/1
    next_user_profile: torch.Tensor  # (B, P)
    next_history: torch.Tensor  # (B, H)
    action: torch.Tensor  # (B, A) the agent's own action record (e.g. SID tokens), float or long

    FIELDS = (
        "user_profile",
        "history",
        "slate",
        "response",
        "reward",
        "terminated",
        "next_user_profile",
        "next_history",
        "action",
    )


class ReplayBuffer:
    """Fixed-capacity ring buffer of transitions, allocated lazily on the first push."""

    def __init__(self, capacity: int, device: torch.device):
        if capacity < 1:
            raise ValueError("replay capacity must be at least 1")
        self.capacity = capacity
        self.device = device
        self.storage: dict[str, torch.Tensor] = {}
        self.position = 0
        self.size = 0

    def __len__(self) -> int:
        return self.size

    def push(self, batch: Batch) -> None:
        n = batch.reward.shape[0]
        if not self.storage:
            for name in Batch.FIELDS:
                value = getattr(batch, name)
                self.storage[name] = torch.zeros(
                    (self.capacity, *value.shape[1:]), dtype=value.dtype, device=self.device
                )
        index = (torch.arange(n, device=self.device) + self.position) % self.capacity
        for name in Batch.FIELDS:
            self.storage[name][index] = getattr(batch, name).to(self.device)
        self.position = (self.position + n) % self.capacity
        self.size = min(self.size + n, self.capacity)

    def sample(self, batch_size: int, generator: torch.Generator) -> Batch:
        index = torch.randint(
            0, self.size, (batch_size,), generator=generator, device=generator.device
        ).to(self.device)
        return Batch(**{name: self.storage[name][index] for name in Batch.FIELDS})

    def state_dict(self) -> dict[str, object]:
        """Only the filled part is saved, so a checkpoint grows with the data, not the capacity."""
        filled = self.size
        return {
            "capacity": self.capacity,
            "position": self.position,
            "size": self.size,
            "storage": {k: v[:filled].clone() for k, v in self.storage.items()},
        }

    def load_state_dict(self, state: dict) -> None:
        if int(state["capacity"]) != self.capacity:
            raise ValueError(
                f"replay capacity {state['capacity']} in the checkpoint, {self.capacity} configured"
            )
        self.position = int(state["position"])
        self.size = int(state["size"])
        self.storage = {}
        for name, saved in state["storage"].items():
            full = torch.zeros(
                (self.capacity, *saved.shape[1:]), dtype=saved.dtype, device=self.device
            )
            full[: saved.shape[0]] = saved.to(self.device)
            self.storage[name] = full
