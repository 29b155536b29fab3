"""Semantic IDs: residual k-means codebooks, the one-to-one item <-> SID table, the prefix tree.

``build_sid_index(features, ...)`` fits a codebook and gives every item a distinct SID;
``SidIndex.load(dir, device=...)`` reads a ``hsrl sid build`` folder for the policy. See
docs/sid.md for the formats and the collision policy.
"""

from __future__ import annotations

from hsrl.sid.build import build_sid_folder, build_sid_index, format_report
from hsrl.sid.codebook import ResidualCodebook, fit_residual_codebook
from hsrl.sid.collisions import Placement, place_items
from hsrl.sid.kmeans import KMeansResult, balanced_assign, kmeans
from hsrl.sid.prefix import PrefixIndex, prefix_keys
from hsrl.sid.table import SidIndex, features_sha256

__all__ = [
    "KMeansResult",
    "Placement",
    "PrefixIndex",
    "ResidualCodebook",
    "SidIndex",
    "balanced_assign",
    "build_sid_folder",
    "build_sid_index",
    "features_sha256",
    "fit_residual_codebook",
    "format_report",
    "kmeans",
    "place_items",
    "prefix_keys",
]
