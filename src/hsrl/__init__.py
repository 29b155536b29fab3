"""hsrl: Hierarchical Semantic RL for recommendation.

The package is organised by workflow step: ``data`` (readers and the prepared format),
``simulator`` (the learned user-response model and the batched environment), ``sid``
(semantic-ID codebooks), ``nets`` and ``agents`` (policies and their update rules), and the
shared ``train`` / ``evaluate`` / ``report`` machinery; ``cli`` is a thin layer on top.
"""

__version__ = "0.1.0"


def _register_gymnasium_envs() -> None:
    """``hsrl/SlateRec-v0`` for ``gymnasium.make`` and ``make_vec``, when Gymnasium is installed
    (by name only: the env module, and torch, load when an env is made)."""
    try:
        import gymnasium
    except ImportError:
        return
    if "hsrl/SlateRec-v0" not in gymnasium.registry:
        gymnasium.register(
            id="hsrl/SlateRec-v0",
            entry_point="hsrl.simulator.gymnasium_env:SlateRecEnv",
            vector_entry_point="hsrl.simulator.gymnasium_env:SlateRecVectorEnv",
        )


_register_gymnasium_envs()
