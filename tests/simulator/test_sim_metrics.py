"""AUC against scikit-learn, including ties and a hand-computed case."""

from __future__ import annotations

import math

import pytest
import torch

from hsrl.simulator.metrics import roc_auc, slot_mean_auc

sklearn_metrics = pytest.importorskip("sklearn.metrics")


def test_auc_by_hand():
    # Pairs (pos, neg): (0.8, 0.1) ok, (0.8, 0.4) ok, (0.35, 0.1) ok, (0.35, 0.4) wrong -> 3/4.
    scores = torch.tensor([0.1, 0.4, 0.35, 0.8])
    labels = torch.tensor([0, 0, 1, 1])
    assert roc_auc(scores, labels) == pytest.approx(0.75)


def test_auc_ties_count_half():
    scores = torch.tensor([0.5, 0.5, 0.5, 0.9])
    labels = torch.tensor([1, 0, 0, 1])
    # pos 0.5 vs negs: two ties (0.5 each); pos 0.9 beats both -> (1 + 2) / 4
    assert roc_auc(scores, labels) == pytest.approx(0.75)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auc_matches_sklearn(seed):
    generator = torch.Generator().manual_seed(seed)
    labels = (torch.rand(500, 9, generator=generator) < 0.3).float()
    scores = labels * 0.7 + torch.randn(500, 9, generator=generator)
    scores = torch.round(scores * 4) / 4  # many ties
    expected = sklearn_metrics.roc_auc_score(labels.reshape(-1).numpy(), scores.reshape(-1).numpy())
    assert roc_auc(scores, labels) == pytest.approx(expected, abs=1e-12)
    # The reference's number: sklearn on (R, K) arrays averages the per-column AUCs.
    macro = sklearn_metrics.roc_auc_score(labels.numpy(), scores.numpy())
    assert slot_mean_auc(scores, labels) == pytest.approx(macro, abs=1e-12)


def test_auc_one_class_is_nan():
    assert math.isnan(roc_auc(torch.rand(5), torch.ones(5)))
