"""Neural building blocks shared by the agents."""

from hsrl.nets.critic import MultiLevelCritic, ValueMLP
from hsrl.nets.hierarchical_policy import HierarchicalPolicy, PolicyOutput
from hsrl.nets.latent import LatentActor, LatentActorConfig, QCritic
from hsrl.nets.state_encoder import StateEncoder, StateEncoderConfig

__all__ = [
    "HierarchicalPolicy",
    "LatentActor",
    "LatentActorConfig",
    "MultiLevelCritic",
    "PolicyOutput",
    "QCritic",
    "StateEncoder",
    "StateEncoderConfig",
    "ValueMLP",
]
