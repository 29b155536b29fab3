"""hsrl: Hierarchical Semantic RL for recommendation.

The package is organised by workflow step: ``data`` (readers and the prepared format),
``simulator`` (the learned user-response model and the batched environment), ``sid``
(semantic-ID codebooks), ``nets`` and ``agents`` (policies and their update rules), and the
shared ``train`` / ``evaluate`` / ``report`` machinery; ``cli`` is a thin layer on top.
"""

__version__ = "0.1.0"

GYMNASIUM_ENV_ID = "hsrl/SlateRec-v0"
"""The Gymnasium id of the recommendation env (``hsrl.simulator.gymnasium_env``)."""


def _register_gymnasium_envs() -> None:
    """:data:`GYMNASIUM_ENV_ID` for ``gymnasium.make`` and ``make_vec``, when Gymnasium is installed
    (by name only: the env module, and torch, load when an env is made)."""
    try:
        import gymnasium
    except ImportError:
        return
    if GYMNASIUM_ENV_ID not in gymnasium.registry:
        gymnasium.register(
            id=GYMNASIUM_ENV_ID,
            entry_point="hsrl.simulator.gymnasium_env:SlateRecEnv",
            vector_entry_point="hsrl.simulator.gymnasium_env:SlateRecVectorEnv",
        )


_register_gymnasium_envs()
