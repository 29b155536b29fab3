"""hsrl: Hierarchical Semantic RL for recommendation.

The package is organised by workflow step: ``data`` (readers and the prepared format),
``simulator`` (the learned user-response model and the batched environment), ``sid``
(semantic-ID codebooks), ``nets`` and ``agents`` (policies and their update rules), and the
shared ``train`` / ``evaluate`` / ``report`` machinery; ``cli`` is a thin layer on top.
"""

__version__ = "0.1.0"
