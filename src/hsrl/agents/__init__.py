"""Agents: one module per algorithm, registered here by name (no lookups by ``eval``)."""

from __future__ import annotations

from typing import Any

from hsrl.agents.a2c_flat import A2CFlatAgent, A2CFlatConfig
from hsrl.agents.base import Action, Agent, Catalogue, EnvSpec
from hsrl.agents.behavior_ddpg import BehaviorDDPGAgent, BehaviorDDPGConfig
from hsrl.agents.ddpg import DDPGAgent, DDPGConfig
from hsrl.agents.hac import HACAgent, HACConfig
from hsrl.agents.hsrl import HSRLAgent, HSRLConfig
from hsrl.agents.supervised import SupervisedAgent, SupervisedConfig
from hsrl.config import from_dict
from hsrl.errors import ConfigError

AGENTS: dict[str, type[Agent]] = {
    cls.name: cls
    for cls in (
        HSRLAgent,
        DDPGAgent,
        BehaviorDDPGAgent,
        HACAgent,
        SupervisedAgent,
        A2CFlatAgent,
    )
}


def agent_class(name: str) -> type[Agent]:
    if name not in AGENTS:
        raise ConfigError(f"unknown agent {name!r} (choose from {', '.join(sorted(AGENTS))})")
    return AGENTS[name]


def agent_config(name: str, values: dict[str, Any] | None = None) -> Any:
    """The agent's config dataclass, defaults overridden by ``values`` (validated)."""
    cls = agent_class(name).config_class
    return from_dict(cls, values or {}, where=f"agent config ({name})")


def build_agent(name: str, config: Any, spec: EnvSpec, catalogue: Catalogue) -> Agent:
    return agent_class(name)(config, spec, catalogue)


__all__ = [
    "AGENTS",
    "A2CFlatAgent",
    "A2CFlatConfig",
    "Action",
    "Agent",
    "BehaviorDDPGAgent",
    "BehaviorDDPGConfig",
    "Catalogue",
    "DDPGAgent",
    "DDPGConfig",
    "EnvSpec",
    "HACAgent",
    "HACConfig",
    "HSRLAgent",
    "HSRLConfig",
    "SupervisedAgent",
    "SupervisedConfig",
    "agent_class",
    "agent_config",
    "build_agent",
]
